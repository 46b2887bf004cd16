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

from ._flat import Params, flatten, unflatten
from .hypergradient import hypergradient
from .solvers import Solver, SolverInfo
from .solvers.target import ImplicitTarget, newton_solve

PairLoss = Callable[[Params, Params], Tensor]


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
    g_w = torch.autograd.grad(f, w, allow_unused=True)[0]
    g_w = torch.zeros_like(w0) if g_w is None else g_w
    x = torch.linalg.solve(H, g_w)
    grad_inner = torch.autograd.grad(inner_loss(o, as_inner(w)), w, create_graph=True)[0]
    mixed = torch.autograd.grad(grad_inner, list(o.values()), grad_outputs=x, allow_unused=True)
    out = {}
    for (k, p), d, m in zip(o.items(), g_o, mixed, strict=True):
        g = torch.zeros_like(p) if d is None else d
        out[k] = (g if m is None else g - m).detach()
    return out


def central_differences(objective: Callable[[Params], Tensor], o: Params, step: float = 1e-5) -> dict[str, Tensor]:
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


__all__ = [
    "HypergradientReport",
    "central_differences",
    "check_hypergradient",
    "exact_implicit_hypergradient",
    "newton_solve",
]
