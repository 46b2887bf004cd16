"""The assembled TriCo network (Sec. 3.1, Fig. 2): ``N_ir`` -> (u, v) -> frozen semantic encoder on ``v`` ->
``N_fr`` with IHEM -> upsampler -> ``y``.

Before ``N_ir``, an optional parameter-free **auto-exposure** front end (``auto_exposure``, on by default; a choice
the paper leaves open, see docs/trico_model.md) applies one global gain per image in linear light so that the
mean linear luminance becomes ``auto_exposure`` (0.18, photographic middle grey; gain clipped to
[1, ``MAX_EXPOSURE_GAIN``]). It makes the networks' input independent of how many stops the exposure was cut,
so they learn denoising, local illumination and detail rather than a global brightness that a 2 .. 5-stop
training range would otherwise have to cover. ``exposure_gain`` exposes the gain so that tiled inference can
compute it once on the whole image (``forward(x, gain=...)``).

After the network, an optional **exposure prior** (``exposure_prior``, off by default; fitted after training by
``python -m examples.trico exposure-prior``) rescales the output in linear light so that its mean luminance
becomes ``own ** (1 - weight) * level ** weight``: ``own`` the network's, ``level = exp(alpha + beta * log m)``
the scene brightness that a regression fitted on the training photos predicts from the input's own mean linear
luminance ``m``. The auto-exposure front end divides ``m`` out, so without it the network never learns how dark
its input was; under the training exposure range that level is evidence about the scene (docs/trico.md,
"Exposure prior"). ``apply_exposure_prior`` exposes it so that tiled inference applies it once to the whole
output.

The output is a residual (``residual_base``): by default over the bicubically upsampled auto-exposed input
(``"input"``), so an untrained refinement starts from "global gain + bicubic" and every update is a correction
of it; ``"reflectance"`` adds it to the bilinearly upsampled ``v`` instead (the first-wave form, whose Retinex
normalisation lifts blacks: night skies came out grey).

Trainable parameter groups, as the tri-level trainer needs them:

- ``model.illumination`` (``N_ir``, ``w_i``),
- ``model.refinement`` (``N_fr`` + IHEM + upsampler, ``w_s``),
- ``model.semantic`` (frozen SAM encoder or ``None``): ``requires_grad=False``, always in eval mode, excluded
  from ``trainable_parameters()``, ``parameter_groups()`` and ``trainable_state_dict()``.

``forward`` is free of in-place updates of parameters and of cached parameter-derived tensors, so
``torch.func.functional_call(model, params, (x,))`` works with any subset of ``named_parameters()`` names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from examples.restoration.degradations import linear_to_srgb, luminance, srgb_to_linear

from .common import pad_to_multiple
from .illumination import IlluminationRegulator
from .refinement import RefinementNetwork
from .semantic import build_semantic_encoder

__all__ = ["TriCo", "TriCoOutput", "DEFAULT_WIDTHS", "MAX_EXPOSURE_GAIN", "build_model"]

# Chosen to sit just under the size budget (1.5 M trainable parameters, 21 GMACs at 1x3x128x128, x2).
DEFAULT_WIDTHS: dict[str, Any] = {
    "ir_width": 12,
    "fr_widths": [48, 64, 96],
    "enc_blocks": [3, 2, 1],
    "dec_blocks": [0, 1, 1],
    "refine_blocks": 4,
    "hr_blocks": 4,
    "heads": [4, 2, 1],
    "ffn_expansion": 2.0,
    "alpha_channels": 3,
    "upsampler": "a2u",
    "encoder_size": 1024,
    "ihem": True,
    "auto_exposure": 0.18,
    "residual_base": "input",
    "exposure_prior": None,
}
RESIDUAL_BASES = ("input", "reflectance")
MAX_EXPOSURE_GAIN = 64.0  # 6 stops: beyond the 2 .. 5-stop cuts the networks are trained on
SEMANTIC_PREFIX = "semantic."


@dataclass
class TriCoOutput:
    """Result of ``TriCo.forward``: ``y`` (B, 3, sH, sW); ``u``, ``v``, ``alpha``, ``beta`` (B, 3, H, W) of the
    auto-exposed input; ``illumination_features`` (f_i, coarsest first, padded size), ``semantic_features`` (f_s
    or None) and ``exposure_gain`` (B, 1, 1, 1; ones when auto-exposure is off)."""

    y: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    illumination_features: list[torch.Tensor] = field(default_factory=list, repr=False)
    semantic_features: list[torch.Tensor] | None = field(default=None, repr=False)
    exposure_gain: torch.Tensor | None = None


class TriCo(nn.Module):
    """See the module docstring. Build it with :func:`build_model`."""

    def __init__(self, scale: int = 2, semantic: str = "none", checkpoint: str | None = None, **widths: Any):
        super().__init__()
        unknown = set(widths) - set(DEFAULT_WIDTHS)
        if unknown:
            raise TypeError(f"unknown TriCo options {sorted(unknown)}; known: {sorted(DEFAULT_WIDTHS)}")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        cfg = {**DEFAULT_WIDTHS, **widths}
        if cfg["auto_exposure"] is not None and not 0.0 < float(cfg["auto_exposure"]) < 1.0:
            raise ValueError(f"auto_exposure must be a mean linear luminance in (0, 1) or None, "
                             f"got {cfg['auto_exposure']}")
        self.auto_exposure = None if cfg["auto_exposure"] is None else float(cfg["auto_exposure"])
        if cfg["residual_base"] not in RESIDUAL_BASES:
            raise ValueError(f"residual_base must be one of {list(RESIDUAL_BASES)}, got {cfg['residual_base']!r}")
        self.residual_base = cfg["residual_base"]
        self.exposure_prior = _check_exposure_prior(cfg["exposure_prior"])
        self.scale = int(scale)
        self.config: dict[str, Any] = {
            "scale": self.scale,
            "semantic": semantic,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "exposure_prior": None if self.exposure_prior is None else dict(self.exposure_prior),
        }
        self.illumination = IlluminationRegulator(cfg["ir_width"], cfg["alpha_channels"])
        self.semantic = build_semantic_encoder(semantic, checkpoint, cfg["encoder_size"])
        self.refinement = RefinementNetwork(
            self.scale,
            self.illumination.channels,
            None if self.semantic is None else self.semantic.channels,
            widths=cfg["fr_widths"],
            enc_blocks=cfg["enc_blocks"],
            dec_blocks=cfg["dec_blocks"],
            refine_blocks=cfg["refine_blocks"],
            hr_blocks=cfg["hr_blocks"],
            heads=cfg["heads"],
            ffn_expansion=cfg["ffn_expansion"],
            upsampler=cfg["upsampler"],
            ihem=bool(cfg["ihem"]),
        )

    # ----------------------------------------------------------------------------------------------- params
    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of ``w_i`` and ``w_s``, names as in ``named_parameters()``."""
        for name, p in self.named_parameters():
            if not name.startswith(SEMANTIC_PREFIX):
                yield name, p

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        for _, p in self.named_trainable_parameters():
            yield p

    def parameter_groups(self) -> dict[str, dict[str, nn.Parameter]]:
        """``{"illumination": {name: p}, "refinement": {name: p}}`` with full ``named_parameters()`` names,
        ready for ``torch.func.functional_call``."""
        return {
            group: {f"{group}.{n}": p for n, p in getattr(self, group).named_parameters()}
            for group in ("illumination", "refinement")
        }

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """``state_dict()`` without the frozen semantic encoder (its weights come from its own checkpoint)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(SEMANTIC_PREFIX)}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a (trainable) state dict; semantic-encoder entries, if present, are ignored."""
        state = {k: v for k, v in state.items() if not k.startswith(SEMANTIC_PREFIX)}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(SEMANTIC_PREFIX)]
        if missing or unexpected:
            raise ValueError(
                f"state dict does not match this TriCo model: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                f"{'...' if len(unexpected) > 5 else ''}"
            )

    # ---------------------------------------------------------------------------------------------- forward
    def exposure_gain(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image auto-exposure gain ``(B, 1, 1, 1)`` for sRGB inputs ``x`` (ones when it is off)."""
        if self.auto_exposure is None:
            return torch.ones(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)
        return self.gain_for_luminance(luminance(srgb_to_linear(x.detach())).mean(dim=(-2, -1)))

    def gain_for_luminance(self, mean_luminance: torch.Tensor) -> torch.Tensor:
        """The auto-exposure gain ``(B, 1, 1, 1)`` for images whose mean linear luminance is ``mean_luminance``
        ``(B,)``: how training with ``data.scene_exposure`` gives a crop the gain of its whole photo."""
        mean = mean_luminance.detach().reshape(-1).clamp_min(1e-6)
        if self.auto_exposure is None:
            return torch.ones_like(mean).view(-1, 1, 1, 1)
        return (self.auto_exposure / mean).clamp(1.0, MAX_EXPOSURE_GAIN).view(-1, 1, 1, 1)

    def apply_exposure_prior(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``y`` (B, 3, sH, sW) rescaled in linear light toward the exposure prior's brightness for the input
        ``x`` (B, 3, H, W), both sRGB in [0, 1]; ``y`` itself when the model has no prior (or weight 0)."""
        prior = self.exposure_prior
        if prior is None or prior["weight"] == 0.0:
            return y
        lin = srgb_to_linear(y.clamp(0.0, 1.0))
        own = luminance(lin).mean(dim=(-2, -1)).reshape(-1).clamp_min(1e-6)
        seen = luminance(srgb_to_linear(x.detach().clamp(0.0, 1.0))).mean(dim=(-2, -1)).reshape(-1).clamp_min(1e-6)
        level = torch.exp(prior["alpha"] + prior["beta"] * torch.log(seen))
        target = own ** (1.0 - prior["weight"]) * level ** prior["weight"]
        return linear_to_srgb((lin * (target / own).view(-1, 1, 1, 1)).clamp(0.0, 1.0))

    def forward(self, x: torch.Tensor, gain: torch.Tensor | None = None, exposure_prior: bool = True
                ) -> TriCoOutput:
        """Enhance ``x`` (B, 3, H, W) in [0, 1]; ``gain`` overrides the auto-exposure gain and
        ``exposure_prior=False`` skips the exposure prior (tiled inference applies both to the whole image)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a batch (B, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        s = self.scale
        x = x.clamp(0.0, 1.0)
        raw = x
        if gain is None:
            gain = self.exposure_gain(x)
        if self.auto_exposure is not None:
            x = linear_to_srgb(srgb_to_linear(x) * gain)
        xp, _, _ = pad_to_multiple(x, 4)
        ill = self.illumination(xp)
        f_s = self.semantic(ill.v) if self.semantic is not None else None
        y = self.refinement(ill.v, ill.features, f_s, base=xp if self.residual_base == "input" else None)
        y = y[..., : s * h, : s * w]
        if exposure_prior:
            y = self.apply_exposure_prior(raw, y)
        return TriCoOutput(
            y=y,
            u=ill.u[..., :h, :w],
            v=ill.v[..., :h, :w],
            alpha=ill.alpha[..., :h, :w],
            beta=ill.beta[..., :h, :w],
            illumination_features=ill.features,
            semantic_features=f_s,
            exposure_gain=gain,
        )


def _check_exposure_prior(prior: Any) -> dict[str, Any] | None:
    """``None`` or ``{"alpha", "beta", "weight"}`` as floats (weight in [0, 1]); ``ValueError`` naming the fault."""
    if prior is None:
        return None
    if not isinstance(prior, dict) or set(prior) - {"alpha", "beta", "weight", "fit"} or \
            not {"alpha", "beta", "weight"} <= set(prior):
        raise ValueError(f"exposure_prior must be None or a dict with alpha, beta, weight (and optionally fit), "
                         f"got {prior!r}")
    out = {k: float(prior[k]) for k in ("alpha", "beta", "weight")}
    if not all(math.isfinite(v) for v in out.values()) or not 0.0 <= out["weight"] <= 1.0:
        raise ValueError(f"exposure_prior: alpha and beta must be finite and weight in [0, 1], got {out}")
    if "fit" in prior:
        out["fit"] = prior["fit"]
    return out


def build_model(scale: int = 2, semantic: str = "none", checkpoint: str | None = None, **widths: Any) -> TriCo:
    """Build the TriCo network.

    Args:
        scale: 2 or 4 (any positive integer works).
        semantic: ``"none"``, ``"sam_vit_b"``, ``"sam_vit_l"`` or ``"sam_vit_h"``.
        checkpoint: path of the SAM checkpoint for a ``sam_*`` prior (``None``: random weights, tests only).
        **widths: overrides of :data:`DEFAULT_WIDTHS` (``ir_width``, ``fr_widths``, ``enc_blocks``, ...).

    ``model.config`` holds these arguments as a plain dict, so ``build_model(**model.config)`` rebuilds it.
    """
    return TriCo(scale=scale, semantic=semantic, checkpoint=checkpoint, **widths)


