"""Frozen semantic prior: SAM image encoders (ViT-B/L/H) through the ``segment-anything`` package.

``SamEncoder`` builds the real ``ImageEncoderViT`` of ``segment_anything.sam_model_registry[variant]`` and, when
given, loads a real SAM checkpoint (the official ``sam_vit_*.pth`` files, whose keys start with
``image_encoder.``, or a bare image-encoder state dict). A missing file raises ``FileNotFoundError``; a file
whose keys or shapes do not fit the variant raises ``SemanticCheckpointError`` (a ``ValueError``) naming the
variant the file looks like. Without a checkpoint the encoder has random weights drawn from a fixed seed (so a
model rebuilt from its config is identical); that is for tests and profiling only.

The encoder input size is configurable (``encoder_size``, a multiple of 16; SAM's checkpoints are trained at
1024). ``v`` is resized to ``encoder_size x encoder_size`` (stretched, not letter-boxed: every feature then
covers the whole image), scaled to 0..255 and normalised with SAM's pixel mean and std. For sizes other than
1024 the absolute position embedding is resized bicubically on the fly (the relative position tables of the
global-attention blocks are resized by segment-anything itself).

Features: the outputs of the last three global-attention blocks (ViT-B: blocks 5, 8, 11), as ``(B, D, h, w)``
maps at ``encoder_size / 16``, ordered to match the decoder levels coarsest first: deepest block for the 1/4
level, the shallowest of the three for the full-resolution level. The trainable projections that bring them to
the decoder widths and sizes live in the refinement network (IHEM's query branch), not here.

The encoder is never trained: its parameters have ``requires_grad=False``, it is kept in eval mode, and
``forward`` runs under ``torch.no_grad()``.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SAM_VARIANTS", "SemanticCheckpointError", "SamEncoder", "build_semantic_encoder"]

# variant -> (registry key, embed dim, depth, global attention blocks)
SAM_VARIANTS: dict[str, tuple[str, int, int, tuple[int, ...]]] = {
    "sam_vit_b": ("vit_b", 768, 12, (2, 5, 8, 11)),
    "sam_vit_l": ("vit_l", 1024, 24, (5, 11, 17, 23)),
    "sam_vit_h": ("vit_h", 1280, 32, (7, 15, 23, 31)),
}
RANDOM_INIT_SEED = 0


class SemanticCheckpointError(ValueError):
    """A semantic-encoder checkpoint that cannot be read or does not match the chosen variant."""


def _guess_variant(state: dict[str, torch.Tensor]) -> str | None:
    pos = state.get("pos_embed")
    if pos is None:
        return None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for name, (_, dim, d, _) in SAM_VARIANTS.items():
        if pos.shape[-1] == dim and depth == d:
            return name
    return f"an unknown ViT (embed dim {pos.shape[-1]}, {depth} blocks)"


def _encoder_state(raw: object, path: str) -> dict[str, torch.Tensor]:
    if isinstance(raw, dict) and "model" in raw and isinstance(raw["model"], dict):
        raw = raw["model"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise SemanticCheckpointError(f"{path}: not a state dict of tensors")
    if any(k.startswith("image_encoder.") for k in raw):
        return {k[len("image_encoder.") :]: v for k, v in raw.items() if k.startswith("image_encoder.")}
    return dict(raw)


class SamEncoder(nn.Module):
    """Frozen SAM image encoder returning three multi-layer feature maps (see the module docstring)."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, variant: str = "sam_vit_b", checkpoint: str | None = None, encoder_size: int = 1024):
        super().__init__()
        if variant not in SAM_VARIANTS:
            raise ValueError(f"unknown SAM variant {variant!r}; choose one of {sorted(SAM_VARIANTS)}")
        if encoder_size % 16 or encoder_size < 16:
            raise ValueError(f"encoder_size must be a positive multiple of 16, got {encoder_size}")
        from segment_anything import sam_model_registry

        key, dim, _, global_blocks = SAM_VARIANTS[variant]
        self.variant, self.encoder_size = variant, encoder_size
        self.block_indexes = tuple(global_blocks[-3:])
        self.channels = (dim, dim, dim)  # per decoder level, coarsest first

        if checkpoint is not None:
            path = os.fspath(checkpoint)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"SAM checkpoint for {variant} not found: {path!r}")
            with torch.device("meta"):  # no random init: every tensor comes from the file
                encoder = sam_model_registry[key]().image_encoder
            encoder.neck = nn.Identity()
            state = self._read_checkpoint(path, encoder)
            encoder.load_state_dict(state, strict=True, assign=True)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                encoder = sam_model_registry[key]().image_encoder
        encoder.neck = nn.Identity()  # unused: features come from the transformer blocks
        encoder.requires_grad_(False)
        encoder.eval()
        self.encoder = encoder
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1), False)

    def _read_checkpoint(self, path: str, encoder: nn.Module) -> dict[str, torch.Tensor]:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            raise SemanticCheckpointError(f"cannot read SAM checkpoint {path!r}: {exc}") from exc
        state = _encoder_state(raw, path)
        expected = {k: v.shape for k, v in encoder.state_dict().items() if k.split(".")[0] != "neck"}
        state = {k: v for k, v in state.items() if k.split(".")[0] != "neck"}
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k]))
        if missing or unexpected or wrong:
            looks = _guess_variant(state)
            details = []
            if wrong:
                k = wrong[0]
                details.append(
                    f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                    f"{self.variant} {tuple(expected[k])})"
                )
            if missing:
                details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
            if unexpected:
                details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
            hint = f"; the file looks like {looks}" if looks and looks != self.variant else ""
            raise SemanticCheckpointError(
                f"SAM checkpoint {path!r} does not match semantic={self.variant!r}: " + ", ".join(details) + hint
            )
        return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}

    def train(self, mode: bool = True) -> SamEncoder:
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode (no dropout/batch-norm here, but be explicit)
        return self

    @torch.no_grad()
    def forward(self, v: torch.Tensor, sizes: list[tuple[int, int]] | None = None) -> list[torch.Tensor]:
        """Features ``f_s`` of ``v``, coarsest decoder level first, at ``encoder_size / 16`` or, when ``sizes``
        (one ``(h, w)`` per decoder level) is given, resized bilinearly to those sizes. ``TriCo`` uses the
        former and resizes after IHEM's 1x1 query projection (cheaper, same result up to the layer norm)."""
        enc = self.encoder
        dtype = enc.patch_embed.proj.weight.dtype
        s = self.encoder_size
        x = F.interpolate(v.to(dtype), size=(s, s), mode="bilinear", align_corners=False)
        x = (x * 255.0 - self.pixel_mean.to(dtype)) / self.pixel_std.to(dtype)
        x = enc.patch_embed(x)  # (B, s/16, s/16, D)
        pos = enc.pos_embed
        if pos is not None:
            if pos.shape[1:3] != x.shape[1:3]:
                pos = F.interpolate(
                    pos.permute(0, 3, 1, 2).float(), size=x.shape[1:3], mode="bicubic", align_corners=False
                ).permute(0, 2, 3, 1).to(dtype)
            x = x + pos
        feats: dict[int, torch.Tensor] = {}
        for i, blk in enumerate(enc.blocks[: self.block_indexes[-1] + 1]):
            x = blk(x)
            if i in self.block_indexes:
                feats[i] = x.permute(0, 3, 1, 2)
        # coarsest decoder level first: deepest block -> 1/4, shallowest of the three -> full resolution
        out = [feats[i].to(v.dtype) for i in reversed(self.block_indexes)]
        if sizes is not None:
            out = [F.interpolate(f, size=tuple(hw), mode="bilinear", align_corners=False) for f, hw in zip(out, sizes)]
        return out


def build_semantic_encoder(
    semantic: str, checkpoint: str | None = None, encoder_size: int = 1024
) -> SamEncoder | None:
    if semantic == "none":
        if checkpoint is not None:
            raise ValueError("a semantic checkpoint was given but semantic='none'")
        return None
    if semantic not in SAM_VARIANTS:
        raise ValueError(f"unknown semantic encoder {semantic!r}; choose 'none' or one of {sorted(SAM_VARIANTS)}")
    return SamEncoder(semantic, checkpoint, encoder_size)
