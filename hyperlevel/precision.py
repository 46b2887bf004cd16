"""Mixed precision: a level's forward passes under ``torch.autocast``, everything else in float32.

With a :class:`Precision`, an objective runs under ``torch.autocast(device, dtype)``: matrix products and
convolutions compute in bfloat16 or float16, the parameters stay float32 (autocast casts copies), so the gradients
with respect to them, the solvers' linear algebra (CG and Neumann vectors, dot products, norms) and the optimizer
state all stay float32. The loss value is returned in float32.

float16 has a narrow exponent range: small gradients underflow to zero in the backward pass. Its losses are
therefore multiplied by a loss scale ``S`` (default ``2**10``) before differentiation and the results divided by
``S`` afterwards. Every hypergradient solver gives exactly ``S_F`` times its result when the outer loss is scaled by
``S_F`` and the inner loss by ``S_G``, once the inner step sizes are divided by ``S_G`` (``inner_lr`` of Unrolled and
FiniteDifference, ``alpha`` of Neumann; CG and the implicit formula are invariant), which :func:`rescaled_solver` does
on a copy of the solver. When the float16 result is not finite the functional entry point halves ``S`` and tries
again (dynamic loss scaling, at most ``max_retries`` times) and reports the scale used in
``SolverInfo.extra["loss_scale"]``. bfloat16 has float32's exponent range and uses no scale.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import InvalidProblemError

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
#: solver attributes that multiply an inner gradient into a step: divided by the inner loss scale
STEP_ATTRIBUTES = ("inner_lr", "alpha")


@dataclass(frozen=True)
class Precision:
    """How a level's objective (or a loss of the functional API) runs its forward pass.

    Args:
        dtype: ``"bfloat16"``, ``"float16"`` or ``"float32"`` (plain float32, no autocast; useful as a switch).
        loss_scale: the initial loss scale ``S``; default ``2**10`` for float16 and 1 otherwise.
        max_retries: float16 only: how often a non-finite hypergradient is recomputed with ``S`` halved.
    """

    dtype: str = "bfloat16"
    loss_scale: float | None = None
    max_retries: int = 16

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"precision dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.loss_scale is not None and not self.loss_scale > 0:
            raise ValueError(f"loss_scale must be positive, got {self.loss_scale}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def scale(self) -> float:
        if self.loss_scale is not None:
            return float(self.loss_scale)
        return 2.0**10 if self.dtype == "float16" else 1.0

    def wrap(self, loss: Callable[..., Tensor], scale: float | None = None) -> Callable[..., Tensor]:
        """``loss`` evaluated under autocast, returned in float32 and multiplied by ``scale`` (default
        :attr:`scale`). Arguments are dicts of tensors; the device is read from the first tensor."""
        s = self.scale if scale is None else float(scale)
        dtype = self.torch_dtype

        @functools.wraps(loss)
        def wrapped(*args, **kwargs):
            device = _first_device(args)
            if dtype == torch.float32:
                value = loss(*args, **kwargs)
            else:
                with torch.autocast(device.type, dtype=dtype):
                    value = loss(*args, **kwargs)
            value = value.to(torch.float32)
            return value * s if s != 1.0 else value

        wrapped.hyperlevel_precision = self  # type: ignore[attr-defined]  # solvers normalise products for it
        wrapped.hyperlevel_name = getattr(loss, "hyperlevel_name", getattr(loss, "__name__", "loss"))  # type: ignore[attr-defined]
        return wrapped


def as_precision(value: Precision | str | None) -> Precision | None:
    """Accept ``None``, a dtype name or a :class:`Precision`."""
    if value is None or isinstance(value, Precision):
        return value
    if isinstance(value, str):
        return Precision(value)
    raise InvalidProblemError(f"precision must be a Precision, a dtype name or None, got {value!r}")


def _first_device(args) -> torch.device:
    for a in args:
        if isinstance(a, Tensor):
            return a.device
        if isinstance(a, dict):
            for v in a.values():
                if isinstance(v, Tensor):
                    return v.device
                if isinstance(v, dict):
                    for t in v.values():
                        if isinstance(t, Tensor):
                            return t.device
    return torch.device("cpu")


def check_float32(precision: Precision | None, params, what: str) -> None:
    """Autocast lowers float32 only: float64 parameters would silently run in full precision."""
    if precision is None or precision.dtype == "float32":
        return
    bad = [n for n, t in params.items() if t.dtype != torch.float32]
    if bad:
        raise InvalidProblemError(
            f"{what}: mixed precision ({precision.dtype}) needs float32 parameters (autocast lowers float32 "
            f"only); {bad} are not float32"
        )


class UnitProducts:
    """A second-order operator whose products see unit-norm directions: ``H v = ||v|| H (v / ||v||)``.

    Under autocast the backward pass of a product runs partly in the low precision, and its intermediate values
    scale with ``||v||``; CG and Neumann vectors carry the outer loss's scale and magnitude, which in float16
    overflows long before the loss itself does. Normalising costs two vector operations per product and no host
    synchronisation; the implicit solvers use it whenever the inner loss runs under a :class:`Precision`.
    """

    def __init__(self, operator):
        self.operator = operator

    @property
    def calls(self) -> int:
        return self.operator.calls

    def _unit(self, v: Tensor) -> tuple[Tensor, Tensor]:
        norm = torch.linalg.vector_norm(v)
        return v / norm.clamp_min(torch.finfo(v.dtype).tiny), norm

    def __call__(self, v: Tensor) -> Tensor:
        unit, norm = self._unit(v)
        return self.operator(unit) * norm

    def mixed(self, outer, v: Tensor):
        unit, norm = self._unit(v)
        return [None if m is None else m * norm for m in self.operator.mixed(outer, unit)]


def rescaled_solver(solver, inner_scale: float):
    """A copy of ``solver`` whose inner step sizes are divided by the inner loss scale (itself when 1)."""
    if inner_scale == 1.0 or not any(hasattr(solver, a) for a in STEP_ATTRIBUTES):
        return solver
    out = copy.copy(solver)
    for a in STEP_ATTRIBUTES:
        # a non-numeric step (Neumann(alpha="auto")) is estimated from the scaled Hessian itself: it scales already
        if hasattr(out, a) and isinstance(getattr(out, a), (int, float)):
            setattr(out, a, getattr(out, a) / inner_scale)
    return out


__all__ = ["Precision", "as_precision"]
