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


class InnerOptimalityError(HyperlevelError, RuntimeError):
    """The inner point is not stationary although the solver's target assumes it is, and the solver was told to
    raise (``on_nonstationary="raise"``)."""


class HyperlevelWarning(UserWarning):
    """Base class of every warning issued by hyperlevel (filter them all with this category)."""


class ConvergenceWarning(HyperlevelWarning):
    """A solver stopped short of its tolerance; the result is an approximation worse than requested."""


class InnerOptimalityWarning(HyperlevelWarning):
    """The inner point is not stationary, but the solver computes a quantity defined at a stationary point (the
    implicit hypergradient): the result may be far from the true hypergradient."""


class DivergenceWarning(HyperlevelWarning):
    """Unrolled or finite-difference inner steps blew up (the inner loss grew): the result is finite but
    meaningless; the step size is too large for the inner loss."""


class SkippedStepsWarning(HyperlevelWarning):
    """An engine run skipped steps because of non-finite values (``on_nonfinite="skip"``)."""
