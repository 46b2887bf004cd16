"""Input checks shared by every entry point: clear errors instead of wrong numbers."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

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


def gradients_by_group(value: Tensor, groups: Sequence[Mapping[str, Tensor]]) -> list[list[Tensor | None]]:
    """``d value / d t`` for every tensor ``t`` of every group, in one backward pass, split by group: ``None`` where
    the value does not depend on ``t`` (all ``None`` when the value carries no graph)."""
    flat = [t for group in groups for t in group.values()]
    gs = torch.autograd.grad(value, flat, allow_unused=True) if value.requires_grad else [None] * len(flat)
    out, offset = [], 0
    for group in groups:
        out.append(list(gs[offset : offset + len(group)]))
        offset += len(group)
    return out


def used_names(groups: Sequence[Mapping[str, Tensor]], grads: Sequence[Sequence[Tensor | None]]) -> list[set[str]]:
    """Per group, the names whose gradient (from :func:`gradients_by_group`) is not ``None``."""
    return [{name for name, g in zip(group, gs, strict=True) if g is not None}
            for group, gs in zip(groups, grads, strict=True)]


def check_reach(
    used: Sequence[Sequence[Collection[str]]],
    names: Sequence[Sequence[str]],
    describe: Callable[[int, list[str]], str],
    *,
    every_parameter: bool = True,
) -> None:
    """The well-posedness rule of a nested problem (levels outermost first), in one place: the parameters of level
    ``k`` must reach the objective of level ``k`` or of a level below it. Through a lower level they still act on
    level ``k``'s objective, by that level's response (a hyper-parameter that only enters the inner loss is fine);
    for the top level this means some objective. Parameters that reach none of these have no gradient to follow:
    an undefined hypergradient at the top, a singular Hessian and an undefined best response below it.

    ``used[j][k]`` holds the names of level ``k``'s parameters that objective ``j`` depends on, ``names[k]`` all of
    level ``k``'s names. With ``every_parameter`` each name must reach (the functional API:
    :func:`hyperlevel.nested_hypergradient`); without, at least one name per level (:class:`hyperlevel.Problem`,
    whose modules may hold parameters a forward pass skips). Raises :class:`InvalidProblemError` with
    ``describe(k, unreached_names)`` for the first level that breaks the rule.
    """
    n = len(names)
    for k in range(n):
        reached = set().union(*(used[j][k] for j in range(k, n)))
        missing = [name for name in names[k] if name not in reached]
        if missing and (every_parameter or len(missing) == len(names[k])):
            raise InvalidProblemError(describe(k, missing))
