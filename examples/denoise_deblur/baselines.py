"""Classical non-blind baselines, given what the network is given: the true kernel and the noise level.

* ``wiener``: scikit-image's ``unsupervised_wiener`` (Laplacian prior, regularisation estimated by Gibbs
  sampling: no hand-set parameter);
* ``tv+rl``: total-variation denoising (``denoise_tv_chambolle``, weight = noise std) then Richardson-Lucy
  (``richardson_lucy``, 20 iterations);
* ``bm3d``: BM3D deblurring (``bm3d.bm3d_deblurring``: regularised inverse then BM3D in two stages), when the
  optional ``bm3d`` package is installed.

Every method sees the image reflect-padded by the kernel size (as the network does) and cropped back, so
neither the FFT's wrap-around nor Richardson-Lucy's zero padding darkens the borders.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Baseline = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _padded(fn: Baseline) -> Baseline:
    def run(y: np.ndarray, k: np.ndarray, sigma: float) -> np.ndarray:
        p = k.shape[0]
        return fn(np.pad(y, p, mode="reflect"), k, sigma)[p:-p, p:-p]
    return run


@_padded
def wiener(y: np.ndarray, k: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import unsupervised_wiener

    return unsupervised_wiener(y, k, rng=0)[0]


@_padded
def tv_rl(y: np.ndarray, k: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle, richardson_lucy

    return richardson_lucy(np.clip(denoise_tv_chambolle(y, weight=sigma), 1e-4, 1), k, num_iter=20)


@_padded
def bm3d(y: np.ndarray, k: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d as bm3d_package

    if not hasattr(np, "trapz"):  # bm4d 4.2.5 calls np.trapz, removed in NumPy 2.4 (renamed trapezoid)
        np.trapz = np.trapezoid
    return bm3d_package.bm3d_deblurring(y[..., None], sigma, k)  # bm3d 4.0.3 fails on 2-D input under bm4d 4.2.5


def available() -> dict[str, Baseline]:
    """The baselines that can run here (``bm3d`` needs the optional package)."""
    methods: dict[str, Baseline] = {"wiener": wiener, "tv+rl": tv_rl}
    try:
        import bm3d as _  # noqa: F401
        methods["bm3d"] = bm3d
    except ImportError:
        pass
    return methods
