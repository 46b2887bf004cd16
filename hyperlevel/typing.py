"""The type aliases shared across hyperlevel, defined once.

Two shapes of parameters travel through the library, and they have two names:

* :data:`Params`: one level's tensors by name, ``{name: tensor}``: what a loss receives for each level and what a
  solver returns a gradient for;
* :data:`ParamsByLevel`: every level's, ``{level: {name: tensor}}``: what a :class:`~hyperlevel.Level`'s
  objective receives from a :class:`~hyperlevel.Problem`.

The functional API calls losses on :data:`Params` (``PairLoss`` for two levels, ``Loss`` for a chain of ``N``);
the engine calls :data:`Objective` on :data:`ParamsByLevel` and a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

#: One level's parameters: ``{name: tensor}``.
Params = dict[str, Tensor]

#: Every level's parameters: ``{level name: {parameter name: tensor}}`` (:meth:`hyperlevel.Problem.parameters`).
ParamsByLevel = dict[str, dict[str, Tensor]]

#: A two-level loss, called as ``loss(outer_params, inner_params) -> scalar tensor``
#: (:func:`hyperlevel.hypergradient`, every :class:`~hyperlevel.solvers.Solver`).
PairLoss = Callable[[Params, Params], Tensor]

#: One level's loss in an ``N``-level chain, called as ``loss(params_0, ..., params_{N-1}) -> scalar tensor``
#: with one :data:`Params` per level, outermost first (:func:`hyperlevel.nested_hypergradient`).
Loss = Callable[..., Tensor]

#: A level's objective in a :class:`~hyperlevel.Problem`: ``objective(params, batch) -> scalar tensor`` with
#: ``params[level][name]`` (:data:`ParamsByLevel`, read-only).
Objective = Callable[[Mapping[str, Mapping[str, Tensor]], Any], Tensor]

#: The function of the outer parameters alone whose gradient a solver computes, ``o -> F(o, w(o))``, with ``w(o)``
#: the inner point the solver's target defines (:mod:`hyperlevel.solvers.target`).
ReducedObjective = Callable[[Params], Tensor]

#: Averages a tensor over data-parallel processes (the identity in a single process); see
#: :mod:`hyperlevel.distributed`.
Reduce = Callable[[Tensor], Tensor]

#: A symmetric linear operator given by its products, ``v -> A v`` (a Hessian-vector product).
MatVec = Callable[[Tensor], Tensor]

__all__ = ["Loss", "MatVec", "Objective", "PairLoss", "Params", "ParamsByLevel", "ReducedObjective", "Reduce"]
