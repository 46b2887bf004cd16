"""Cross-check of ``examples.trico.metrics.niqe`` / ``brisque`` against the reference implementations.

The references do not run with the pinned stack as installed, so each runs in a subprocess with the smallest
shims that let it run unchanged:

- NIQE: ``skvideo.measure.niqe`` (scikit-video 1.1.11) with ``np.int = int`` (removed from numpy) and
  ``scipy.misc.imresize`` (removed from scipy) restored as what it was: ``PIL.Image.fromarray(arr, "F")
  .resize(size, BICUBIC)`` for ``mode="F"``.
- BRISQUE: ``brisque.BRISQUE().score`` (brisque 0.2.0) with its undeclared-at-install dependencies OpenCV
  (``opencv-python-headless``) and ``libsvm-official`` on ``--ref-path`` (a ``pip install --target`` folder
  outside the project's environment; neither is a project dependency) and an empty ``requests`` module (it
  is imported for URL inputs only); its features that come out as shape-(1,) arrays are unwrapped to
  scalars (numpy 2.4's ``float()`` refuses them), values unchanged.

Images: scikit-image photos as uint8, the same arrays fed to both sides (ours gets them as ``k / 255``
tensors). Writes a markdown table (and JSON with ``--json``) of the values and relative differences.

    python benchmarks/noref_reference.py --ref-path /tmp/refpkgs [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera_rgb")

_REFERENCE = r'''
import json, sys, types
import numpy as np
np.int = int  # scikit-video 1.1.11 uses np.int (removed in numpy 1.24)
import scipy
try:
    import scipy.misc as misc
except ImportError:
    misc = types.ModuleType("scipy.misc")
    sys.modules["scipy.misc"] = misc
    scipy.misc = misc
from PIL import Image

def imresize(arr, size, interp="bilinear", mode=None):
    # scipy.misc.imresize as scipy <= 1.2 defined it, for the call scikit-video makes (float size, mode "F")
    assert mode == "F" and interp == "bicubic"
    im = Image.fromarray(np.asarray(arr, dtype=np.float32), mode="F")
    new = tuple((np.array(im.size) * size).astype(int))
    return np.asarray(im.resize(new, resample=Image.BICUBIC), dtype=np.float32)

misc.imresize = imresize
sys.modules.setdefault("requests", types.ModuleType("requests"))  # brisque imports it for URLs only (unused)
data = np.load(sys.argv[1])
out = {}
from skvideo.measure import niqe
from skvideo.utils import rgb2gray
from brisque import BRISQUE
_features = BRISQUE.calculate_brisque_features

def calculate_brisque_features(self, *args, **kwargs):
    # brisque 0.2.0 yields some features as shape-(1,) arrays, which numpy 2.4's float() refuses: unwrap them
    return np.array([np.ravel(f)[0] for f in _features(self, *args, **kwargs)], dtype=object)

BRISQUE.calculate_brisque_features = calculate_brisque_features
b = BRISQUE(url=False)
for name in data.files:
    img = data[name]
    out[name] = {"niqe": float(niqe(rgb2gray(img.astype(np.float64)))[0]), "brisque": float(b.score(img))}
print(json.dumps(out))
'''


def load_images() -> dict[str, np.ndarray]:
    import skimage.data as skd

    out = {}
    for name in IMAGES:
        if name == "camera_rgb":  # a grey photo as RGB: exercises the colour conversions with R = G = B
            out[name] = np.repeat(skd.camera()[..., None], 3, axis=-1)
        else:
            out[name] = np.asarray(getattr(skd, name)())
    return out


def ours(images: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    import torch

    from examples.trico.metrics import brisque, niqe

    res = {}
    for name, img in images.items():
        t = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].double() / 255.0
        res[name] = {"niqe": niqe(t), "brisque": brisque(t)}
    return res


def reference(images: dict[str, np.ndarray], ref_path: str) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "images.npz"
        np.savez(npz, **images)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ref_path, os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", _REFERENCE, str(npz)], capture_output=True, text=True, env=env,
                              check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the reference implementations failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-path", required=True, help="folder with opencv-python-headless and libsvm-official")
    parser.add_argument("--json", help="also write the values here")
    args = parser.parse_args(argv)
    images = load_images()
    mine, ref = ours(images), reference(images, args.ref_path)
    rows = []
    print("| image | size | NIQE (ours) | NIQE (scikit-video) | rel. diff | BRISQUE (ours) | BRISQUE (brisque) "
          "| rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, img in images.items():
        a, b = mine[name], ref[name]
        dn = abs(a["niqe"] - b["niqe"]) / abs(b["niqe"])
        db = abs(a["brisque"] - b["brisque"]) / abs(b["brisque"])
        rows.append({"image": name, "shape": list(img.shape), "ours": a, "reference": b,
                     "rel_diff": {"niqe": dn, "brisque": db}})
        print(f"| {name} | {img.shape[1]} x {img.shape[0]} | {a['niqe']:.4f} | {b['niqe']:.4f} | {dn:.1e} | "
              f"{a['brisque']:.4f} | {b['brisque']:.4f} | {db:.1e} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    worst = max(max(r["rel_diff"].values()) for r in rows)
    print(f"largest relative difference: {worst:.2e}")
    return 0 if worst < 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
