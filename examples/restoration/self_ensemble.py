"""Geometric self-ensemble: average a restorer's outputs over the eight flips and rotations of its input.

A convolutional restorer is not exactly equivariant to flips and quarter turns (its weights are learnt, not
tied), so its errors differ between the eight orientations of the same photo while the content does not.
Averaging the eight outputs, each turned back, cancels part of those errors: "x8 self-ensemble" (Lim et al.,
EDSR+, CVPRW 2017; Timofte et al., "Seven ways to improve example-based single image super resolution", CVPR
2016). It costs eight forward passes and needs no training. Global, orientation-free statistics such as an
auto-exposure gain are the same in every orientation, so a wrapped model that computes them sees the same value.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["DIHEDRAL_TRANSFORMS", "self_ensemble"]

#: the eight elements of the symmetry group of the square as ``(quarter_turns, mirrored)``
DIHEDRAL_TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, m) for k in range(4) for m in (False, True))


def _forward(x: torch.Tensor, turns: int, mirrored: bool) -> torch.Tensor:
    x = torch.rot90(x, turns, (-2, -1))
    return x.flip(-1) if mirrored else x


def _inverse(y: torch.Tensor, turns: int, mirrored: bool) -> torch.Tensor:
    y = y.flip(-1) if mirrored else y
    return torch.rot90(y, -turns, (-2, -1))


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                  transforms: tuple[tuple[int, bool], ...] = DIHEDRAL_TRANSFORMS) -> torch.Tensor:
    """The mean of ``T^-1(fn(T(x)))`` over ``transforms`` (default: all eight flips and quarter turns).

    ``fn`` maps ``(..., h, w)`` to ``(..., s*h, s*w)`` (any integer scale ``s``, the same along both axes);
    ``x`` may be non-square (quarter turns swap its height and width, ``fn`` must accept both). The sum is
    accumulated in place, so memory is that of one output more than a single call.
    """
    if not transforms:
        raise ValueError("self_ensemble needs at least one transform")
    total = None
    for turns, mirrored in transforms:
        y = _inverse(fn(_forward(x, turns, mirrored)), turns, mirrored)
        total = y.clone() if total is None else total.add_(y)
    return total / len(transforms)
