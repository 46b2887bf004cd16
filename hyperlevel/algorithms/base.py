"""What every bilevel algorithm shares: the oracle that counts calls, the step protocol, small vector helpers.

A bilevel *algorithm* updates both levels itself (unlike a hypergradient solver, which only returns the outer
gradient at a given inner point). Each one is a small stateful object: ``reset`` builds its auxiliary variables
(a second inner copy, a linear-system estimate, a penalty schedule position) from the starting point, ``step``
advances the outer and inner parameters by one iteration of the method, and ``state_dict`` carries everything
a resumed run needs.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import InvalidProblemError
from ..functional import zeros_for_none
from ..typing import PairLoss, Params
from ..validation import check_loss


# ---------------------------------------------------------------------- vector helpers over dicts of tensors
def axpy(y: Params, a: float, x: Mapping[str, Tensor]) -> Params:
    """``y + a * x`` for dicts of tensors (new tensors, nothing modified)."""
    return {k: v + a * x[k] for k, v in y.items()}


def combine(a: Mapping[str, Tensor], b: Mapping[str, Tensor], weight: float) -> Params:
    """``a + weight * b``."""
    return {k: v + weight * b[k] for k, v in a.items()}


def dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
    return sum((torch.sum(v * b[k]) for k, v in a.items()), start=torch.zeros((), dtype=_dtype(a)))


def clone(a: Mapping[str, Tensor]) -> Params:
    return {k: v.detach().clone() for k, v in a.items()}


def _dtype(a: Mapping[str, Tensor]) -> torch.dtype:
    return next(iter(a.values())).dtype


# ---------------------------------------------------------------------- oracle
class Oracle:
    """Evaluates the two losses and their derivatives, and counts the calls.

    One *gradient call* is one forward and backward pass of either loss (whatever subset of parameters the
    gradient is taken with respect to); one *HVP call* is one Hessian-vector (or mixed second-derivative)
    product of the inner loss, both blocks ``(d_yy G) v`` and ``(d_xy G) v`` coming from the same backward pass.
    Hypergradient solvers report their own counts, which :meth:`add_counts` adds. Every returned tensor is
    detached.
    """

    def __init__(self, outer_loss: PairLoss, inner_loss: PairLoss):
        self.outer_loss = outer_loss
        self.inner_loss = inner_loss
        self.gradient_calls = 0
        self.hvp_calls = 0

    @property
    def calls(self) -> int:
        return self.gradient_calls + self.hvp_calls

    def add_counts(self, gradients: int, hvps: int) -> None:
        self.gradient_calls += int(gradients)
        self.hvp_calls += int(hvps)

    def value(self, which: str, x: Params, y: Params) -> float:
        """A loss value without derivatives (not counted: used for logging). Evaluated on autograd leaves, as
        every loss here, because wrapped objectives (the engine's) check that the value carries a graph."""
        with torch.enable_grad():
            xs = {k: v.detach().requires_grad_() for k, v in x.items()}
            ys = {k: v.detach().requires_grad_() for k, v in y.items()}
            return float(self._loss(which)(xs, ys).detach())

    def grad(self, which: str, x: Params, y: Params, wrt: str = "xy") -> tuple[Tensor, Params, Params]:
        """``(value, d_x loss, d_y loss)`` of ``which`` (``"outer"`` or ``"inner"``); a block not in ``wrt`` is
        returned empty, a parameter the loss does not use gets zeros."""
        self.gradient_calls += 1
        xs = {k: v.detach().requires_grad_("x" in wrt) for k, v in x.items()}
        ys = {k: v.detach().requires_grad_("y" in wrt) for k, v in y.items()}
        with torch.enable_grad():
            value = self._loss(which)(xs, ys)
            if not (isinstance(value, Tensor) and value.requires_grad):  # e.g. an outer loss of y only, wrt x
                value = check_loss(value, f"{which}_loss", finite=False) if wrt == "xy" else torch.as_tensor(value)
            inputs = ({} if "x" not in wrt else xs) | ({} if "y" not in wrt else {("y", k): v for k, v in ys.items()})
            tensors = list(inputs.values())
            gs = torch.autograd.grad(value, tensors, allow_unused=True) if value.requires_grad else [None] * len(
                tensors)
        gs = [g.detach() for g in zeros_for_none(gs, tensors)]
        n = len(xs) if "x" in wrt else 0
        gx = dict(zip(xs, gs[:n], strict=True)) if "x" in wrt else {}
        gy = dict(zip(ys, gs[n:], strict=True)) if "y" in wrt else {}
        return value.detach(), gx, gy

    def inner_hvp(self, x: Params, y: Params, v: Params) -> tuple[Params, Params, Params]:
        """``(d_y G, (d_yy G) v, (d_xy G) v)`` at ``(x, y)``: one gradient with graph, one backward (counted as
        1 gradient and 1 HVP)."""
        self.gradient_calls += 1
        self.hvp_calls += 1
        xs = {k: t.detach().requires_grad_() for k, t in x.items()}
        ys = {k: t.detach().requires_grad_() for k, t in y.items()}
        with torch.enable_grad():
            value = check_loss(self.inner_loss(xs, ys), "inner_loss", finite=False)
            gy = torch.autograd.grad(value, list(ys.values()), create_graph=True, allow_unused=True)
            pairs = [(g, v[k]) for g, k in zip(gy, ys, strict=True) if g is not None and g.requires_grad]
            inputs = list(ys.values()) + list(xs.values())
            hs = torch.autograd.grad([g for g, _ in pairs], inputs, grad_outputs=[u for _, u in pairs],
                                     allow_unused=True) if pairs else [None] * len(inputs)
        hs = [h.detach() for h in zeros_for_none(hs, inputs)]
        grad_y = {k: g.detach() for k, g in zip(ys, zeros_for_none(gy, ys), strict=True)}
        return grad_y, dict(zip(ys, hs[: len(ys)], strict=True)), dict(zip(xs, hs[len(ys):], strict=True))

    def inner_descent(self, x: Params, y: Params, steps: int, lr: float) -> Params:
        """``steps`` plain gradient steps of size ``lr`` on ``G(x, .)`` from ``y``."""
        for _ in range(steps):
            _, _, gy = self.grad("inner", x, y, wrt="y")
            y = axpy(y, -lr, gy)
        return y

    def _loss(self, which: str) -> PairLoss:
        if which == "outer":
            return self.outer_loss
        if which == "inner":
            return self.inner_loss
        raise ValueError(f"which must be 'outer' or 'inner', got {which!r}")


# ---------------------------------------------------------------------- algorithm protocol
class Algorithm(ABC):
    """One bilevel method: ``x`` (outer) and ``y`` (inner) updated together, one :meth:`step` at a time.

    Subclasses declare ``name`` (the registry key) and ``defaults`` (every option besides the two step sizes,
    with its default value); the constructor rejects an option that is not declared, naming the ones that are.

    Args:
        outer_lr: step size of the outer variables.
        inner_lr: step size of the inner variables (and of auxiliary inner-like variables).
        **options: the method's options (see the subclass and docs/algorithms.md).
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, outer_lr: float, inner_lr: float, **options: Any):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(["outer_lr", "inner_lr", *sorted(self.defaults)])
            raise InvalidProblemError(f"method {self.name!r} has no option(s) {unknown}; its options are: {known}")
        for what, lr in (("outer_lr", outer_lr), ("inner_lr", inner_lr)):
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise InvalidProblemError(f"method {self.name!r}: {what} must be a positive number, got {lr!r}")
        self.outer_lr = float(outer_lr)
        self.inner_lr = float(inner_lr)
        self.options = {**self.defaults, **options}
        for key, value in self.options.items():
            setattr(self, key, value)
        self.iteration = 0
        self.state: dict[str, Any] = {}
        self.initialized = False
        self.check_options()

    def check_options(self) -> None:  # noqa: B027 - most methods have nothing beyond the defaults to check
        """Validate ``self.options`` (raise :class:`InvalidProblemError` naming the bad one)."""

    def _positive(self, *names: str, integer: bool = False) -> None:
        for n in names:
            v = self.options[n]
            ok = isinstance(v, int) and not isinstance(v, bool) if integer else isinstance(v, (int, float))
            if not ok or not v > 0:
                kind = "a positive integer" if integer else "a positive number"
                raise InvalidProblemError(f"method {self.name!r}: option {n!r} must be {kind}, got {v!r}")

    def reset(self, outer: Params, inner: Params) -> None:
        """Start from ``(outer, inner)``: build the auxiliary variables (default: none)."""
        self.iteration = 0
        self.state = self.init_state(clone(outer), clone(inner))
        self.initialized = True

    def init_state(self, outer: Params, inner: Params) -> dict[str, Any]:
        """The method's auxiliary variables at the start (dicts of tensors, floats)."""
        return {}

    def step(self, oracle: Oracle, outer: Params, inner: Params) -> tuple[Params, Params]:
        """One iteration: the new ``(outer, inner)`` (auxiliary variables are updated in ``self.state``)."""
        if not self.initialized:
            self.reset(outer, inner)
        x, y = self.update(oracle, clone(outer), clone(inner))
        self.iteration += 1
        return x, y

    @abstractmethod
    def update(self, oracle: Oracle, x: Params, y: Params) -> tuple[Params, Params]:
        """The method's iteration proper (``x``, ``y`` are fresh detached copies)."""

    def state_dict(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "state": self.state, "initialized": self.initialized}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.iteration = int(state.get("iteration", 0))
        self.state = dict(state.get("state", {}))
        self.initialized = bool(state.get("initialized", False))

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(outer_lr={self.outer_lr}, inner_lr={self.inner_lr}{', ' if opts else ''}{opts})"
