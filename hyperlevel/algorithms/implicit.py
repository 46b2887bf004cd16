"""``implicit``: hypergradient descent with any hypergradient solver (the reference method).

Each step takes ``inner_steps`` gradient steps on the inner loss from the previous inner point (warm start),
asks the solver for the hypergradient there, and takes one outer gradient step with it. With an exact solver
(``cg``) and enough inner steps this is gradient descent on the hyper-objective ``F(x, y*(x))``; with
``unrolled`` or ``finite_difference`` it descends their approximation (AID/ITD-BiO of Ji et al. 2021 are
this loop with ``cg`` and ``unrolled``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidProblemError
from ..hypergradient import hypergradient
from ..solvers import Solver
from ..typing import Params
from .base import Algorithm, Oracle, axpy
from .registry import register
from .solver_names import resolve_solver


@register
class Implicit(Algorithm):
    """Hypergradient descent.

    Options:
        solver: a :class:`~hyperlevel.solvers.Solver` or a solver name (``"cg"``, ``"neumann"``, ...; default
            ``"cg"`` with 20 iterations, warm-started across steps).
        solver_options: options for a named solver, passed to the solver registry (default none: the in-loop
            defaults above).
        inner_steps: inner gradient steps (size ``inner_lr``) before each hypergradient (default 10).
    """

    name = "implicit"
    defaults: dict[str, Any] = {"solver": "cg", "solver_options": None, "inner_steps": 10}

    def check_options(self) -> None:
        if not isinstance(self.inner_steps, int) or self.inner_steps < 0:
            raise InvalidProblemError(f"method 'implicit': inner_steps must be an integer >= 0, got {self.inner_steps!r}")
        self.solver_object: Solver = resolve_solver(self.solver, inner_lr=self.inner_lr,
                                                     options=self.solver_options)

    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        y = oracle.inner_descent(x, y, self.inner_steps, self.inner_lr)
        g, info = hypergradient(oracle.outer_loss, oracle.inner_loss, x, y, self.solver_object, return_info=True)
        oracle.add_counts(info.gradient_evals, info.hvp_evals)
        return axpy(x, -self.outer_lr, g), y

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "solver": self.solver_object.state_dict()}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.solver_object.load_state_dict(state.get("solver", {}))
