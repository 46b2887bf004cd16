"""Check any solver against exact references on the user's own (small) problem.

``check_hypergradient`` answers "can I trust this number?" with two independent references:

* the exact implicit hypergradient, from a dense Hessian solve (what the implicit solvers converge to);
* central finite differences of the quantity the solver itself approximates, as its ``declaration.target``
  states (the implicit objective ``F(o, w*(o))`` re-solved by Newton's method, the one-step or K-step unrolled
  objective, the partial objective, ...), so a solver is judged against its own definition, not only against the
  implicit one. A solver without a declaration is an error, never silently compared with the implicit target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._flat import flatten, unflatten
from .functional import total_derivative, zeros_for_none
from .hypergradient import hypergradient
from .solvers import Solver, SolverInfo
from .solvers.target import ImplicitTarget, newton_solve
from .typing import PairLoss, Params, ReducedObjective


@dataclass
class HypergradientReport:
    """Relative errors of one solver on one problem (``||a - b|| / ||b||`` over all outer parameters)."""

    solver: str
    error_vs_implicit: float
    error_vs_own_target: float
    implicit_vs_finite_difference: float
    info: SolverInfo
    hypergradient: dict[str, Tensor] = field(repr=False)
    implicit: dict[str, Tensor] = field(repr=False)
    own_target: dict[str, Tensor] = field(repr=False)
    #: the solver's declared target, in words
    target: str = ""

    def __str__(self) -> str:
        rows = [
            ("solver vs exact implicit (dense Hessian solve)", self.error_vs_implicit),
            ("solver vs finite differences of its own target", self.error_vs_own_target),
            ("exact implicit vs finite differences (reference check)", self.implicit_vs_finite_difference),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [f"check_hypergradient: {self.solver}"]
        if self.target:
            lines.append(f"  computes {self.target}")
        lines += [f"  {name:<{width}}  {value:.3e}" for name, value in rows]
        lines.append(
            f"  info: iterations={self.info.iterations} residual={self.info.residual:.3e} "
            f"converged={self.info.converged}"
        )
        return "\n".join(lines)


def _relative(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    fa = flatten([a[k].reshape(-1) for k in b])
    fb = flatten([b[k].reshape(-1) for k in b])
    denom = torch.linalg.vector_norm(fb)
    diff = torch.linalg.vector_norm(fa - fb)
    return float(diff / denom) if denom > 0 else float(diff)


def dense_hessian(loss: Callable[[Tensor], Tensor], w: Tensor) -> Tensor:
    """Dense Hessian of a scalar function of a flat vector (small problems only)."""
    return torch.autograd.functional.hessian(loss, w)


def exact_implicit_hypergradient(
    outer_loss: PairLoss, inner_loss: PairLoss, outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """The implicit-function-theorem hypergradient with a dense Hessian and a direct solve, in float64."""
    o = {k: v.detach().double().requires_grad_() for k, v in outer_params.items()}
    shapes = [v.detach().double() for v in inner_params.values()]
    names = list(inner_params)
    w0 = flatten(shapes).detach()

    def as_inner(w: Tensor) -> Params:
        return dict(zip(names, unflatten(w, shapes), strict=True))

    w = w0.clone().requires_grad_()
    H = dense_hessian(lambda v: inner_loss(o, as_inner(v)), w0)
    f = outer_loss(o, as_inner(w))
    g_o = torch.autograd.grad(f, list(o.values()), allow_unused=True, retain_graph=True)
    (g_w,) = zeros_for_none(torch.autograd.grad(f, w, allow_unused=True), [w0])
    x = torch.linalg.solve(H, g_w)
    grad_inner = torch.autograd.grad(inner_loss(o, as_inner(w)), w, create_graph=True)[0]
    mixed = torch.autograd.grad(grad_inner, list(o.values()), grad_outputs=x, allow_unused=True)
    return {k: g.detach() for k, g in zip(o, total_derivative(g_o, mixed, o), strict=True)}


def central_differences(objective: ReducedObjective, o: Params, step: float = 1e-5) -> dict[str, Tensor]:
    """Central finite differences of a scalar function of a dict of tensors (float64, small problems)."""
    out: dict[str, Tensor] = {}
    base = {k: v.detach() for k, v in o.items()}
    for name, value in base.items():
        grad = torch.zeros_like(value)
        flat = grad.view(-1)
        for i in range(value.numel()):
            plus = {k: v.clone() for k, v in base.items()}
            minus = {k: v.clone() for k, v in base.items()}
            plus[name].view(-1)[i] += step
            minus[name].view(-1)[i] -= step
            flat[i] = (objective(plus).detach() - objective(minus).detach()) / (2 * step)
        out[name] = grad
    return out


def check_hypergradient(
    outer_loss: PairLoss,
    inner_loss: PairLoss,
    outer_params: Mapping[str, Tensor],
    inner_params: Mapping[str, Tensor],
    solver: Solver,
    *,
    fd_step: float = 1e-5,
) -> HypergradientReport:
    """Compare ``solver`` with the exact implicit hypergradient and with finite differences of its own target.

    Meant for small problems (it forms dense Hessians and differentiates coordinate by coordinate); all
    references are computed in float64 whatever the input dtype. Print the result for a readable table.

    Example:
        >>> report = check_hypergradient(outer, inner, o, w, hyperlevel.solvers.ConjugateGradient(50))
        >>> print(report); assert report.error_vs_implicit < 1e-6
    """
    declaration = solver.declaration  # before solving: a stateful solver's target is that of this call
    grads, info = hypergradient(outer_loss, inner_loss, outer_params, inner_params, solver, return_info=True)
    implicit = exact_implicit_hypergradient(outer_loss, inner_loss, outer_params, inner_params)
    o64 = {k: v.detach().double() for k, v in outer_params.items()}
    w64 = {k: v.detach().double() for k, v in inner_params.items()}
    reference = ImplicitTarget()
    with torch.enable_grad():
        own = central_differences(declaration.target.objective(outer_loss, inner_loss, o64, w64), o64, fd_step)
        implicit_fd = (
            own
            if declaration.target == reference
            else central_differences(reference.objective(outer_loss, inner_loss, o64, w64), o64, fd_step)
        )
    g64 = {k: v.double() for k, v in grads.items()}
    return HypergradientReport(
        solver=repr(solver),
        error_vs_implicit=_relative(g64, implicit),
        error_vs_own_target=_relative(g64, own),
        implicit_vs_finite_difference=_relative(implicit, implicit_fd),
        info=info,
        hypergradient=grads,
        implicit=implicit,
        own_target=own,
        target=declaration.describe(),
    )


# -- N levels ----------------------------------------------------------------------------------------------------
@dataclass
class NestedHypergradientReport:
    """Relative errors of a nested solver against two references on an N-level problem.

    ``error_vs_exact``: against the exact nested hypergradient (autograd through differentiable Newton steps at
    the re-converged responses); ``exact_vs_finite_difference``: that reference against central differences of
    the fully re-solved top objective (a check of the reference itself); ``stationarity``: each lower level's
    relative stationarity at the *given* point, as the solver measured it (large values explain large errors).
    """

    solver: str
    error_vs_exact: float
    exact_vs_finite_difference: float
    stationarity: list[float]
    info: SolverInfo
    hypergradient: dict[str, Tensor] = field(repr=False)
    exact: dict[str, Tensor] = field(repr=False)

    def __str__(self) -> str:
        levels = ", ".join(f"{s:.1e}" for s in self.stationarity)
        return (
            f"check_nested_hypergradient: {self.solver}\n"
            f"  solver vs exact nested hypergradient            {self.error_vs_exact:.3e}\n"
            f"  exact vs finite differences (reference check)   {self.exact_vs_finite_difference:.3e}\n"
            f"  stationarity of levels 1..N-1 at the given point {levels}"
        )


def _jacobian_rows(g: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    return torch.stack([torch.autograd.grad(g[i], x, retain_graph=True, create_graph=create_graph)[0]
                        for i in range(x.numel())])


def _newton_response(gamma: Callable[[Tensor], Tensor], start: Tensor, order: int, converge: bool) -> Tensor:
    """A root of ``gamma`` by dense Newton (to 1e-13), then ``s`` differentiable Newton steps with
    ``2**s - 1 >= order``: by quadratic convergence their derivatives are exact to that order."""
    x = start.detach().clone()
    if converge:
        for _ in range(100):
            leaf = x.detach().requires_grad_()
            g = gamma(leaf)
            step = torch.linalg.solve(_jacobian_rows(g, leaf, False), g.detach())
            x = x - step
            if float(step.norm()) <= 1e-13 * (1 + float(x.norm())):
                break
    steps = 0
    while 2**steps - 1 < order:
        steps += 1
    for _ in range(steps):
        leaf = x if x.requires_grad else x.detach().requires_grad_()
        g = gamma(leaf)
        x = leaf - torch.linalg.solve(_jacobian_rows(g, leaf, True), g)
    return x


def _nested_responses(losses, guess, k, upper, order, converge):
    """Responses of levels ``k..N-1`` to ``upper``, differentiable with exact derivatives up to ``order``."""
    if k == len(losses):
        return []
    lower_order = max(order + 1, 2)  # Gamma_k to order m, and its Jacobian, need the lower levels to m + 1

    def gamma(x: Tensor) -> Tensor:
        lower = _nested_responses(losses, guess, k + 1, [*upper, x], lower_order, converge)
        return torch.autograd.grad(losses[k](*upper, x, *lower), x, create_graph=True)[0]

    x = _newton_response(gamma, guess[k], order, converge)
    return [x, *_nested_responses(losses, guess, k + 1, [*upper, x], order, converge)]


def check_nested_hypergradient(
    losses, params, solver: Solver, *, fd_step: float = 1e-5
) -> NestedHypergradientReport:
    """Compare a nested solver with the exact N-level hypergradient on a small problem (float64, dense Newton).

    The reference re-solves every lower level from the given point by dense Newton on its *total* stationarity
    (through the responses of the levels below), then differentiates through differentiable Newton steps; a
    second reference, central differences of the top loss at re-solved responses, checks the first. Both are
    independent of the solvers. Cost grows exponentially with N: meant for N <= 4 and a few parameters per level.
    """
    from .nested import nested_hypergradient

    grads, info = nested_hypergradient(losses, params, solver, return_info=True)
    names = [list(p) for p in params]
    likes = [[t.detach().double() for t in p.values()] for p in params]
    guess = [flatten(like) for like in likes]

    def flat_losses():
        def wrap(fn):
            return lambda *xs: fn(*[dict(zip(names[j], unflatten(x, likes[j]), strict=True))
                                    for j, x in enumerate(xs)])
        return [wrap(fn) for fn in losses]

    fl = flat_losses()
    with torch.enable_grad():
        converged = [r.detach() for r in _nested_responses(fl, guess, 1, [guess[0]], 0, True)]
        start = [guess[0], *converged]
        top = guess[0].clone().requires_grad_()
        lower = _nested_responses(fl, start, 1, [top], 1, False)
        exact_flat = torch.autograd.grad(fl[0](top, *lower), top)[0]

        def objective(o: Params) -> Tensor:
            x0 = flatten([o[n].reshape(-1) for n in names[0]])
            responses = _nested_responses(fl, start, 1, [x0], 0, True)
            return fl[0](x0, *[r.detach() for r in responses]).detach()

        o64 = dict(zip(names[0], likes[0], strict=True))
        fd = central_differences(objective, o64, fd_step)
    exact = dict(zip(names[0], unflatten(exact_flat, likes[0]), strict=True))
    g64 = {k: v.double() for k, v in grads.items()}
    stationarity = [lv.stationarity for lv in getattr(info, "levels", [])] or [info.stationarity]
    return NestedHypergradientReport(
        solver=repr(solver),
        error_vs_exact=_relative(g64, exact),
        exact_vs_finite_difference=_relative(exact, fd),
        stationarity=stationarity,
        info=info,
        hypergradient=grads,
        exact=exact,
    )


__all__ = [
    "HypergradientReport",
    "NestedHypergradientReport",
    "central_differences",
    "check_hypergradient",
    "check_nested_hypergradient",
    "exact_implicit_hypergradient",
    "newton_solve",
]


def __dir__() -> list[str]:
    """Only the public API (the module's own imports such as ``torch`` stay out of completion and ``dir``)."""
    return sorted(__all__)
