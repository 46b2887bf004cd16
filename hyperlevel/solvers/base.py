"""The protocol every hypergradient solver implements, and the diagnostics it returns."""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from ..errors import ConvergenceError, ConvergenceWarning, DivergenceWarning, InvalidProblemError
from ..typing import PairLoss, Params, Reduce
from .target import Declaration

OnNonconvergence = Literal["warn", "raise", "ignore"]


@dataclass
class SolverInfo:
    """What a solver did for one hypergradient.

    Attributes:
        solver: the solver's class name.
        iterations: iterations of the inner linear solve (CG, Neumann) or steps unrolled; 0 when none.
        residual: final relative residual ``||H x - b|| / ||b||`` of the linear system, or ``nan`` when the
            solver solves none (finite difference, unrolled, first order).
        converged: ``False`` when an iterative solver stopped at its iteration cap above its tolerance.
        gradient_evals: gradient evaluations (forward + backward passes) spent.
        hvp_evals: Hessian-vector (and mixed second-derivative) products spent.
        message: a human-readable note (why it stopped, what was wrong).
        extra: solver-specific figures (for instance the finite-difference step actually used).
        outer_loss: the outer loss value the solver evaluated (at the given, unrolled or probed inner point).
    """

    solver: str
    iterations: int = 0
    residual: float = math.nan
    converged: bool = True
    gradient_evals: int = 0
    hvp_evals: int = 0
    message: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    #: the outer loss the solver evaluated on the way (at the inner point it used), for logging
    outer_loss: float = math.nan
    #: (inner loss, flat inner gradient) at the given point when the solver computed them anyway (finite
    #: difference): the engine can reuse them for the first inner step (``Phase(reuse_inner_gradient=True)``)
    inner_gradient: tuple[float, Tensor] | None = field(default=None, repr=False)
    #: ``||grad_w G||`` at the given inner point (``nan`` when the solver did not measure it)
    inner_gradient_norm: float = math.nan
    #: relative stationarity of the given inner point, ``||grad_w G|| / ||H w - grad_w G||`` (see
    #: :func:`hyperlevel.optimality.relative_stationarity`); ``nan`` when the solver's target does not assume a
    #: stationary inner point (Unrolled, FiniteDifference, FirstOrder)
    stationarity: float = math.nan
    #: the solver's own iterations blew up (inner loss or step length grew): the result is meaningless;
    #: ``converged`` is ``False`` too and ``message`` says what grew
    diverged: bool = False
    #: the Hessian-vector product path used (``"double_backward"``, ``"forward_over_reverse"``,
    #: ``"finite_difference"``; see :mod:`hyperlevel.hvp`), or ``""`` for a solver that takes no products
    hvp: str = ""


class Solver(ABC):
    """A way to compute (or approximate) the hypergradient of a bilevel problem.

    ``solve`` receives fresh autograd leaves (never the user's tensors) and returns the gradient with respect to
    the outer parameters, as tensors in the order of ``outer``, plus a :class:`SolverInfo`.

    ``reduce`` averages a data-dependent quantity across data-parallel processes. A solver applies it to every
    such quantity *before* any non-linear use (a step taken, a norm, a CG coefficient), so that all processes
    run the same iteration and the result equals the single-process one on the union of the data.
    """

    #: the name shared across libraries in benchmarks (``cg``, ``neumann``, ...), and its key in the registry
    method: str = ""

    @property
    def declaration(self) -> Declaration:
        """What this solver computes or approximates, and how (:mod:`hyperlevel.solvers.target`).

        ``check_hypergradient`` compares the solver with finite differences of ``declaration.target``, and
        ``nested_hypergradient`` picks its N-level path from ``declaration.nested``; every solver must declare it.
        """
        raise InvalidProblemError(
            f"{type(self).__name__} declares no target: define its `declaration` property (a "
            "hyperlevel.solvers.target.Declaration saying which function's gradient it computes, e.g. "
            "Declaration(ImplicitTarget(), exact=True, how='...'))"
        )

    @abstractmethod
    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        """Compute the hypergradient at the given inner point."""

    def state_dict(self) -> dict[str, Any]:
        """State carried from one call to the next (for instance a warm start), saved in engine checkpoints so
        that a resumed run continues exactly. Stateless solvers return ``{}``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless solvers need nothing
        """Restore :meth:`state_dict`."""

    def __repr__(self) -> str:  # dataclass-like, for logs and reports
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


def check_choice(what: str, value: object, allowed: tuple[str, ...]) -> None:
    """Reject an option value outside ``allowed`` (``on_nonconvergence="fail"`` must not pass silently)."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")


def report_convergence(info: SolverInfo, policy: OnNonconvergence) -> None:
    """Warn or raise when a solver stopped short of its tolerance; never stay silent unless told to.

    Diverged iterations (``info.diverged``) always warn with :class:`~hyperlevel.DivergenceWarning`: no policy
    makes a blown-up result acceptable."""
    if info.diverged:
        warnings.warn(info.message, DivergenceWarning, stacklevel=4)
        return
    if info.converged or policy == "ignore":
        return
    text = (
        f"{info.solver} stopped after {info.iterations} iterations with relative residual "
        f"{info.residual:.3e}, above its tolerance. {info.message}".strip()
    )
    if policy == "raise":
        raise ConvergenceError(text)
    warnings.warn(text, ConvergenceWarning, stacklevel=4)


def blow_up(first_loss: Tensor, last_loss: Tensor, first_step: Tensor | None = None,
            last_step: Tensor | None = None, reduce: Reduce | None = None) -> tuple[bool, float, float]:
    """Whether inner gradient steps diverged: a non-finite loss, a loss that grew (beyond rounding:
    ``1e-4 |G_0|``), or a last step ten times longer than the first (on a convex problem with a stable step the
    step length never grows). One host synchronisation; ``(diverged, G_0, G_K)``."""
    import torch

    parts = [first_loss.detach().reshape(1), last_loss.detach().reshape(1)]
    if first_step is not None and last_step is not None:
        parts += [first_step.detach().reshape(1), last_step.detach().reshape(1)]
    values = torch.cat([t.to(parts[0].dtype) for t in parts])
    if reduce is not None:
        values = reduce(values)
    v = values.tolist()
    g0, gk = v[0], v[1]
    if not math.isfinite(g0):  # non-finite from the start: the non-finite diagnosis names the culprit
        return False, g0, gk
    grew = not all(math.isfinite(x) for x in v) or gk > g0 + 1e-4 * abs(g0)
    if len(v) == 4 and v[3] > 10 * v[2] > 0:
        grew = True
    return grew, g0, gk


def reduce_list(reduce: Reduce | None, tensors: list[Tensor]) -> list[Tensor]:
    """Apply ``reduce`` to a list of tensors with a single collective call."""
    if reduce is None or not tensors:
        return tensors
    from .._flat import flatten, unflatten

    return unflatten(reduce(flatten(tensors)), tensors)
