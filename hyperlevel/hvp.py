"""Second-order products of the inner loss, by a path chosen per problem and device.

The implicit solvers need two products at the inner point ``(o, w)``: ``H v = d_w d_w G v`` (many times) and the
mixed ``(d_o d_w G) v`` (once). Three ways to compute them:

* ``"double_backward"``: build ``d_w G`` once with ``create_graph=True``, then every product is one backward pass
  over that graph. Cheapest per product when the graph is cheap to replay (CPU, small dense problems).
* ``"forward_over_reverse"``: ``torch.func.jvp`` of ``torch.func.grad``: no stored gradient graph, each product is
  one forward-mode pass through a reverse pass. Less memory; whether it is faster depends on the device and ops.
* ``"finite_difference"``: ``(d_w G(w + e v) - d_w G(w - e v)) / (2 e)``: two first-order gradients per product,
  no second-order graph at all (fast where double backward through the network's kernels is slow, as convolutions
  on GPUs). An approximation with error ``O(e^2)``: explicit opt-in only.

``"auto"`` (an :class:`AutoHvp`) times the exact candidates on a few products once per problem signature (device,
dtype, parameter shapes, loss name) and caches the choice; it considers the finite-difference product only when
asked to, and then only after measuring its relative error against an exact product, which it reports. Every
solve reports the path it used (``SolverInfo.hvp``) and, for finite differences, the measured error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from ._flat import flatten, unflatten
from .errors import InvalidProblemError
from .functional import HessianOperator, evaluate, grads, inner_gradient
from .typing import PairLoss, Params

EXACT_PATHS = ("double_backward", "forward_over_reverse")
PATHS = ("auto", *EXACT_PATHS, "finite_difference")


class SecondOrderOperator(Protocol):
    """What the implicit solvers need: ``op(v) = H v`` on flat vectors and ``op.mixed(outer, v)``."""

    calls: int

    def __call__(self, v: Tensor) -> Tensor: ...

    def mixed(self, outer: Mapping[str, Tensor], v: Tensor) -> list[Tensor | None]: ...


def _check_inner_used(inner_loss: PairLoss, outer: Params, inner: Params) -> list[bool]:
    """One plain gradient of the inner loss: raises when an inner tensor is unused (like ``inner_gradient``) and
    returns, per outer tensor, whether the inner loss depends on it (the mixed product is ``None`` otherwise)."""
    value = evaluate(inner_loss, outer, inner, "inner_loss")
    gs = grads(value, {**{("o", k): v for k, v in outer.items()}, **{("i", k): v for k, v in inner.items()}})
    n = len(outer)
    missing = [name for name, g in zip(inner, gs[n:], strict=True) if g is None]
    if missing:
        raise InvalidProblemError(
            f"inner parameters {missing} do not influence inner_loss: its Hessian is singular and their best "
            "response is undefined; remove them or make the inner loss depend on them"
        )
    return [g is not None for g in gs[:n]]


class _InnerProducts:
    """State shared by the product paths: the inner loss at a point, a product counter and which inner
    parameters reach the loss."""

    def __init__(self, inner_loss: PairLoss, outer: Params, inner: Params):
        self.loss = inner_loss
        self.outer = outer
        self.inner = inner
        self.calls = 0
        self._used = _check_inner_used(inner_loss, outer, inner)
        self._like = list(inner.values())


class ForwardOverReverse(_InnerProducts):
    """``H v`` as ``torch.func.jvp`` of ``torch.func.grad`` of the inner loss; the mixed product likewise (the
    forward-mode derivative along ``v`` of the outer gradient). Nothing is stored between products."""

    def __init__(self, inner_loss: PairLoss, outer: Params, inner: Params):
        super().__init__(inner_loss, outer, inner)
        outer_fixed = {k: v.detach() for k, v in outer.items()}
        self._grad_w = torch.func.grad(lambda i: inner_loss(outer_fixed, i))

    def _tangent(self, v: Tensor) -> Params:
        return dict(zip(self.inner, unflatten(v, self._like), strict=True))

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        primal = {k: t.detach() for k, t in self.inner.items()}
        _, hv = torch.func.jvp(self._grad_w, (primal,), (self._tangent(v),))
        return flatten([hv[k] for k in self.inner])

    def mixed(self, outer: Mapping[str, Tensor], v: Tensor) -> list[Tensor | None]:
        loss = self.loss
        outer_fixed = {k: t.detach() for k, t in outer.items()}

        def grad_o(i):
            return torch.func.grad(lambda o: loss(o, i))(outer_fixed)

        primal = {k: t.detach() for k, t in self.inner.items()}
        _, m = torch.func.jvp(grad_o, (primal,), (self._tangent(v),))
        return [m[k] if used else None for k, used in zip(outer, self._used, strict=True)]


class FiniteDifferenceHvp(_InnerProducts):
    """``H v ~ (d_w G(w + e v) - d_w G(w - e v)) / (2 e)`` and the mixed product likewise with ``d_o G``.

    ``e = step * max(1, ||w||) / ||v||``: the probe moves ``w`` by ``step`` relative to its size. The default
    ``step`` is the cube root of the dtype's machine epsilon, which balances the ``O(e^2)`` truncation error of the
    central difference against rounding (about 6e-6 in float64, 5e-3 in float32). Two gradient evaluations per
    product, no second-order graph.
    """

    def __init__(self, inner_loss: PairLoss, outer: Params, inner: Params, step: float | None = None):
        super().__init__(inner_loss, outer, inner)
        w = flatten([t.detach() for t in self._like])
        self._w = w
        self.step = step if step is not None else torch.finfo(w.dtype).eps ** (1 / 3)
        self._scale = self.step * max(1.0, float(torch.linalg.vector_norm(w)))

    def _probe(self, v: Tensor, on_outer: bool) -> tuple[list[Tensor | None], list[Tensor | None], float]:
        """Gradients (with respect to the inner point, or to the outer tensors) at ``w +- e v``."""
        v_norm = float(torch.linalg.vector_norm(v))
        eps = self._scale / v_norm
        sides = []
        for sign in (1.0, -1.0):
            point = {
                n: t.detach().requires_grad_()
                for n, t in zip(self.inner, unflatten(self._w + (sign * eps) * v.detach(), self._like), strict=True)
            }
            value = evaluate(self.loss, self.outer, point, "inner_loss")
            sides.append(grads(value, self.outer if on_outer else point))
        return sides[0], sides[1], eps

    def __call__(self, v: Tensor) -> Tensor:
        self.calls += 1
        if not bool(v.any()):
            return torch.zeros_like(v)
        plus, minus, eps = self._probe(v, on_outer=False)
        diff = [(a - b) / (2 * eps) for a, b in zip(plus, minus, strict=True)]  # type: ignore[operator]
        return flatten(diff)

    def mixed(self, outer: Mapping[str, Tensor], v: Tensor) -> list[Tensor | None]:
        if not bool(v.any()):
            return [torch.zeros_like(t) if used else None for t, used in zip(outer.values(), self._used)]
        plus, minus, eps = self._probe(v, on_outer=True)
        return [
            None if (a is None or not used) else (a - b) / (2 * eps)  # type: ignore[operator]
            for a, b, used in zip(plus, minus, self._used, strict=True)
        ]


def build(path: str, inner_loss: PairLoss, outer: Params, inner: Params) -> SecondOrderOperator:
    """The operator for one exact or approximate ``path`` (not ``"auto"``) at the inner point."""
    if path == "double_backward":
        return HessianOperator(inner_gradient(inner_loss, outer, inner, create_graph=True), inner)
    if path == "forward_over_reverse":
        return ForwardOverReverse(inner_loss, outer, inner)
    if path == "finite_difference":
        return FiniteDifferenceHvp(inner_loss, outer, inner)
    raise ValueError(f"hvp must be one of {PATHS}, got {path!r}")


@dataclass(frozen=True)
class AutoHvp:
    """Choose the product path by timing the candidates once per problem signature and device.

    Args:
        products: products timed per candidate (after one untimed warm-up product); the fastest counts, since
            timing noise (other processes, interrupts) only ever adds time.
        expected_products: how many products a solve is expected to take; a candidate's cost is
            ``setup + expected_products * fastest product time`` (the double-backward path pays its gradient graph
            once, the others pay nothing up front).
        allow_finite_difference: also consider the finite-difference product. It is picked only when it is the
            fastest *and* its relative error against an exact product on the probe vector is at most
            ``max_error``; the error is reported in ``SolverInfo.extra["hvp_error"]`` on every solve that uses it.
        max_error: the largest accepted relative error of the finite-difference product.
    """

    products: int = 3
    expected_products: int = 20
    allow_finite_difference: bool = False
    max_error: float = 1e-3


@dataclass
class Choice:
    """What :func:`choose` decided for one signature: the path, the measured seconds per candidate, and the
    finite-difference product's relative error when it was measured (``nan`` otherwise)."""

    path: str
    seconds: dict[str, float]
    fd_error: float = math.nan


_CHOICES: dict[tuple, Choice] = {}


def clear_cache() -> None:
    """Forget every cached ``auto`` choice (for instance after changing threads or devices)."""
    _CHOICES.clear()


def signature(inner_loss: PairLoss, outer: Params, inner: Params, hvp: AutoHvp) -> tuple:
    """Device, dtype, names and shapes of both levels, the loss's name and the auto settings."""
    first = next(iter(inner.values()))
    name = getattr(inner_loss, "hyperlevel_name", None) or getattr(inner_loss, "__qualname__", type(inner_loss).__name__)

    def shapes(params):
        return tuple((k, tuple(v.shape)) for k, v in params.items())

    return (str(first.device), first.dtype, shapes(outer), shapes(inner), name, hvp)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build_timed(path: str, inner_loss: PairLoss, outer: Params, inner: Params, v: Tensor):
    """Build one candidate (timed: the setup a solve pays) and take its first, untimed product."""
    _sync(v.device)
    start = time.perf_counter()
    op = build(path, inner_loss, outer, inner)
    _sync(v.device)
    setup = time.perf_counter() - start
    return op, setup, op(v)  # the first product warms up (lazy initialisation) and is compared for the error


def _time_product(op, v: Tensor) -> float:
    _sync(v.device)
    start = time.perf_counter()
    op(v)
    _sync(v.device)
    return time.perf_counter() - start


def choose(inner_loss: PairLoss, outer: Params, inner: Params, hvp: AutoHvp) -> Choice:
    """Time the candidates at this point (cached per :func:`signature`) and return the choice.

    The candidates' products are timed in turns (one product each, ``products`` rounds), so that a change of the
    machine's load during the measurement hits every candidate alike; the fastest product of each counts.
    """
    key = signature(inner_loss, outer, inner, hvp)
    if key in _CHOICES:
        return _CHOICES[key]
    like = list(inner.values())
    g = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(sum(t.numel() for t in like), generator=g, dtype=like[0].dtype).to(like[0].device)
    candidates = list(EXACT_PATHS) + (["finite_difference"] if hvp.allow_finite_difference else [])
    built: dict[str, tuple] = {}
    for path in candidates:
        try:
            built[path] = _build_timed(path, inner_loss, outer, inner, v)
        except (RuntimeError, NotImplementedError):  # e.g. an op without a forward-mode formula
            continue
    exact = [p for p in EXACT_PATHS if p in built]
    if not exact:
        raise InvalidProblemError("no exact Hessian-vector product path works for this inner loss")
    fastest = {path: math.inf for path in built}
    for _ in range(hvp.products):
        for path, (op, _, _) in built.items():
            fastest[path] = min(fastest[path], _time_product(op, v))
    seconds = {path: setup + hvp.expected_products * fastest[path] for path, (_, setup, _) in built.items()}
    fd_error = math.nan
    if "finite_difference" in built:
        ref, approx = built[exact[0]][2], built["finite_difference"][2]
        fd_error = float(torch.linalg.vector_norm(approx - ref)
                         / torch.linalg.vector_norm(ref).clamp_min(torch.finfo(ref.dtype).tiny))
        if not fd_error <= hvp.max_error:
            del seconds["finite_difference"]
    del built
    path = min(seconds, key=seconds.__getitem__)
    choice = Choice(path, seconds, fd_error)
    _CHOICES[key] = choice
    return choice


def resolve(
    hvp: str | AutoHvp, inner_loss: PairLoss, outer: Params, inner: Params
) -> tuple[SecondOrderOperator, str, dict[str, float]]:
    """The operator for the solver's ``hvp`` setting, the path it uses, and figures for ``SolverInfo.extra``."""
    if hvp == "auto":
        hvp = AutoHvp()
    if isinstance(hvp, AutoHvp):
        choice = choose(inner_loss, outer, inner, hvp)
        extra = {f"hvp_seconds_{k}": v for k, v in choice.seconds.items()}
        if choice.path == "finite_difference":
            extra["hvp_error"] = choice.fd_error
        return build(choice.path, inner_loss, outer, inner), choice.path, extra
    return build(hvp, inner_loss, outer, inner), hvp, {}


def check_hvp_option(hvp: object) -> str | AutoHvp:
    """Validate a solver's ``hvp`` argument early (at construction)."""
    if isinstance(hvp, AutoHvp) or hvp in PATHS:
        return hvp  # type: ignore[return-value]
    raise ValueError(f"hvp must be one of {PATHS} or an AutoHvp, got {hvp!r}")


__all__ = ["AutoHvp", "Choice", "ForwardOverReverse", "FiniteDifferenceHvp", "build", "choose",
           "clear_cache", "resolve"]
