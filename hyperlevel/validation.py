"""Input checks shared by every entry point: clear errors instead of wrong numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .errors import InvalidProblemError, NonFiniteError


def check_params(params: object, what: str, *, finite: bool = True) -> None:
    """A parameter set must be a non-empty mapping of names to floating-point (and, if asked, finite) tensors."""
    if not isinstance(params, Mapping):
        raise InvalidProblemError(f"{what} must be a dict of name -> tensor, got {type(params).__name__}")
    if len(params) == 0:
        raise InvalidProblemError(f"{what} is empty: a level needs at least one parameter tensor")
    for name, value in params.items():
        if not isinstance(name, str):
            raise InvalidProblemError(f"{what} has a non-string key {name!r}")
        if not isinstance(value, Tensor):
            raise InvalidProblemError(f"{what}[{name!r}] is a {type(value).__name__}, not a torch.Tensor")
        if not value.is_floating_point():
            raise InvalidProblemError(f"{what}[{name!r}] has dtype {value.dtype}; parameters must be floating point")
        if finite and not torch.isfinite(value).all():
            raise NonFiniteError(f"{what}[{name!r}] contains NaN or Inf")


def check_same_dtype(groups: Sequence[tuple[str, Mapping[str, Tensor]]]) -> torch.dtype:
    """All parameters of one problem share one dtype and device; return the dtype."""
    first: tuple[str, str, Tensor] | None = None
    for what, params in groups:
        for name, value in params.items():
            if first is None:
                first = (what, name, value)
                continue
            if value.dtype != first[2].dtype or value.device != first[2].device:
                raise InvalidProblemError(
                    f"{what}[{name!r}] is {value.dtype} on {value.device} but {first[0]}[{first[1]!r}] is "
                    f"{first[2].dtype} on {first[2].device}; cast all parameters to one dtype and device"
                )
    assert first is not None
    return first[2].dtype


def check_loss(value: object, what: str, *, finite: bool = True) -> Tensor:
    """A loss must be a real scalar tensor with an autograd graph, and finite unless ``finite=False``.

    Hot paths pass ``finite=False``: the finiteness test forces a host synchronisation (costly on a GPU), so they
    test their final result once and diagnose which input was non-finite only when it is (see
    ``hyperlevel.hypergradient``)."""
    if not isinstance(value, Tensor):
        raise InvalidProblemError(f"{what} returned a {type(value).__name__}; it must return a scalar tensor")
    if value.numel() != 1:
        raise InvalidProblemError(
            f"{what} returned a tensor of shape {tuple(value.shape)}; it must return a scalar "
            "(reduce it, e.g. with .mean() or .sum())"
        )
    if not value.is_floating_point():
        raise InvalidProblemError(f"{what} returned dtype {value.dtype}; it must be floating point")
    if finite and not torch.isfinite(value).all():
        raise NonFiniteError(f"{what} is {value.item()} (non-finite) at the given parameters")
    if not value.requires_grad:
        raise InvalidProblemError(
            f"{what} does not depend on any parameter (it carries no autograd graph); "
            "does the function use the parameter dicts it is given?"
        )
    return value if value.dim() == 0 else value.reshape(())


def unused_names(names: Sequence[str], grads: Sequence[Tensor | None]) -> list[str]:
    return [n for n, g in zip(names, grads, strict=True) if g is None]


def check_finite_grads(names: Sequence[str], grads: Sequence[Tensor], what: str) -> None:
    for n, g in zip(names, grads, strict=True):
        if not torch.isfinite(g).all():
            raise NonFiniteError(f"the gradient of {what} with respect to {n!r} contains NaN or Inf")
