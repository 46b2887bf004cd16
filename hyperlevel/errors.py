"""Exceptions and warnings raised by hyperlevel.

Every error names what went wrong in the user's terms (which loss, which parameter, which solver), because a
hypergradient that is silently wrong is worse than no hypergradient at all.
"""

from __future__ import annotations


class HyperlevelError(Exception):
    """Base class of every error raised by hyperlevel."""


class InvalidProblemError(HyperlevelError, ValueError):
    """The inputs do not describe a well-posed problem (bad shapes, unused parameters, non-scalar losses)."""


class NonFiniteError(HyperlevelError, FloatingPointError):
    """A loss or a gradient evaluated to NaN or Inf."""


class SolverDivergedError(HyperlevelError, FloatingPointError):
    """A solver's iterations produced NaN/Inf or blew up; the message names the solver and the quantity."""


class ConvergenceError(HyperlevelError, RuntimeError):
    """A solver stopped short of its tolerance and was told to raise (``on_nonconvergence="raise"``)."""


class ConvergenceWarning(UserWarning):
    """A solver stopped short of its tolerance; the result is an approximation worse than requested."""
