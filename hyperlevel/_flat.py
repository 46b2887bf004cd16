"""Flat-vector views of parameter dictionaries.

Solvers do their linear algebra on one flat vector per level: a single tensor op is far cheaper than a loop over
a dict of tensors, and on small problems per-call overhead, not arithmetic, dominates (see docs/concepts.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .typing import Params


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one 1-D vector."""
    if len(tensors) == 1:
        return tensors[0].reshape(-1)
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    out, offset = [], 0
    for t in like:
        n = t.numel()
        out.append(vector[offset : offset + n].view_as(t))
        offset += n
    return out


def leaves(params: Mapping[str, Tensor], requires_grad: bool = True) -> Params:
    """Detached copies of ``params`` that are fresh autograd leaves (the user's tensors are never touched)."""
    return {k: v.detach().requires_grad_(requires_grad) for k, v in params.items()}


def as_dict(names: Sequence[str], tensors: Sequence[Tensor]) -> Params:
    return dict(zip(names, tensors, strict=True))
