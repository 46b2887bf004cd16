"""The inner problem as an equation ``T(o, w) = 0``, and products with its Jacobians, for the fixed-point solvers.

``T = scale * d_w G`` for an inner loss ``G`` (then ``M = d_w T`` is the scaled, symmetric Hessian), or
``T = w - Phi(o, w)`` for a fixed-point map ``Phi`` (then ``M = I - d_w Phi`` is in general *not* symmetric). At a
solution the implicit function theorem gives ``dF/do = d_o F - (d_o T)^T v`` with ``M^T v = d_w F``. Products:

* ``M^T v`` (:meth:`Stationarity.transpose`): one backward pass over ``T``'s graph;
* ``M u`` (:meth:`Stationarity.forward`): by the double-backward trick, ``M u = d/dz <M^T z, u>``: one backward
  pass over the (linear in ``z``) graph of ``M^T z``, built once;
* ``(d_o T)^T v`` (:meth:`Stationarity.mixed`): one backward pass to the outer parameters.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping

import torch
from torch import Tensor

from .._flat import flatten, unflatten
from ..errors import InvalidProblemError
from ..functional import (
    HessianOperator,
    backward_products,
    check_outer_used,
    inner_gradient,
    outer_partials,
    total_derivative,
    zeros_for_none,
)
from ..typing import PairLoss, Params, Reduce
from .base import OnNonconvergence, Solver, SolverInfo, reduce_list
from .implicit import default_tol
from .linear import LinearSolveInfo
from .target import Declaration, FixedPointMap, ImplicitTarget


class Stationarity:
    """``T(o, w)`` at the given point with its graph, and the three products the solvers need."""

    def __init__(self, inner_loss: PairLoss, outer: Params, inner: Params,
                 fixed_point_map: FixedPointMap | None = None, scale: float = 1.0):
        self.inner = inner
        if fixed_point_map is None:
            parts = [scale * g for g in inner_gradient(inner_loss, outer, inner, create_graph=True)]
        else:
            mapped = fixed_point_map(outer, inner)
            if not isinstance(mapped, Mapping) or set(mapped) != set(inner):
                raise InvalidProblemError(
                    f"fixed_point_map must return a dict with the inner parameters' names {sorted(inner)}, got "
                    f"{sorted(mapped) if isinstance(mapped, Mapping) else type(mapped).__name__}"
                )
            parts = []
            for k, w in inner.items():
                if mapped[k].shape != w.shape:
                    raise InvalidProblemError(f"fixed_point_map[{k!r}] has shape {tuple(mapped[k].shape)}, "
                                              f"the inner parameter {tuple(w.shape)}")
                parts.append(w - mapped[k])
        self.parts = parts
        self.value = flatten([p.detach() for p in parts])
        self.operator = HessianOperator(parts, inner)
        self._dual: tuple[Tensor, list[tuple[int, Tensor]]] | None = None
        self.products = 0

    def transpose(self, v: Tensor) -> Tensor:
        """``M^T v``."""
        self.products += 1
        return self.operator(v)

    def forward(self, u: Tensor) -> Tensor:
        """``M u`` (double backward: differentiate ``<M^T z, u>`` with respect to ``z``)."""
        inputs = list(self.inner.values())
        if self._dual is None:
            z = torch.zeros_like(self.value).requires_grad_()
            mtz = torch.autograd.grad(self.parts, inputs, grad_outputs=self.operator.split(z), create_graph=True,
                                      allow_unused=True)
            self._dual = (z, [(i, m) for i, m in enumerate(mtz) if m is not None and m.requires_grad])
        z, used = self._dual
        self.products += 1
        if not used:
            return torch.zeros_like(u)
        pieces = unflatten(u, inputs)
        (mu,) = zeros_for_none(backward_products([m for _, m in used], [pieces[i] for i, _ in used], [z]), [u])
        return mu

    def mixed(self, outer: Params, v: Tensor) -> list[Tensor | None]:
        """``(d_o T)^T v`` (releases the graph)."""
        return self.operator.mixed(outer, v)


class StationaritySolver(Solver):
    """Shared machinery of the solvers that solve ``M^T v = d_w F`` for the equation ``T(o, w) = 0``; subclasses
    choose the linear solver (:meth:`solve_transposed`) and whether ``T`` is scaled."""

    def __init__(self, iterations: int, tol: float | None, on_nonconvergence: OnNonconvergence,
                 fixed_point_map: FixedPointMap | None):
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if tol is not None and tol <= 0:
            raise ValueError(f"tol must be positive, got {tol}")
        if fixed_point_map is not None and not callable(fixed_point_map):
            raise ValueError(f"fixed_point_map must be callable(outer, inner) -> inner dict, got {fixed_point_map!r}")
        self.iterations = int(iterations)
        self.tol = tol
        self.on_nonconvergence: OnNonconvergence = on_nonconvergence
        self.fixed_point_map = fixed_point_map

    #: the factor of ``T = scale * d_w G`` when there is no fixed-point map
    def scale(self) -> float:
        return 1.0

    @abstractmethod
    def solve_transposed(self, equation: Stationarity, b: Tensor, tol: float,
                         reduce: Reduce | None) -> tuple[Tensor, LinearSolveInfo]:
        """Solve ``M^T v = b`` approximately."""

    def solve(
        self, outer_loss: PairLoss, inner_loss: PairLoss, outer: Params, inner: Params, reduce: Reduce | None = None
    ) -> tuple[list[Tensor], SolverInfo]:
        f_value, direct, d_inner = outer_partials(outer_loss, outer, inner)
        equation = Stationarity(inner_loss, outer, inner, self.fixed_point_map, self.scale())
        b = flatten(zeros_for_none(d_inner, inner))
        if reduce is not None:
            b = reduce(b)
        tol = self.tol if self.tol is not None else default_tol(b.dtype)
        v, lin = self.solve_transposed(equation, b, tol, reduce)
        mixed = equation.mixed(outer, v)
        check_outer_used(outer, direct, list(mixed))
        result = total_derivative(direct, mixed, outer)
        info = SolverInfo(
            solver=type(self).__name__, iterations=lin.iterations, residual=lin.residual, converged=lin.converged,
            gradient_evals=2, hvp_evals=equation.products + 1, message=lin.message, outer_loss=float(f_value.detach()),
        )
        return reduce_list(reduce, result), info

    @property
    def declaration(self) -> Declaration:
        return Declaration(ImplicitTarget(self.fixed_point_map), exact=True, how=self.how)

    #: the method in words, for the declaration
    how: str = ""


def reduced(product, reduce: Reduce | None):
    """``product`` followed by the data-parallel average (each process holds its share of ``M``)."""
    return product if reduce is None else (lambda v: reduce(product(v)))
