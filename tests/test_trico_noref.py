"""NIQE and BRISQUE with the reference packages' parameters (examples.trico.noref, re-exported by metrics)."""

import pickle

import numpy as np
import pytest
import torch

from examples.trico import noref
from examples.trico.metrics import brisque, evaluate_pairs, niqe

# Values of the reference implementations on scikit-image photos (uint8), produced by
# benchmarks/noref_reference.py: skvideo.measure.niqe (scikit-video 1.1.11) and brisque.BRISQUE().score
# (brisque 0.2.0 with OpenCV 5.1 and libsvm-official 3.37), with the shims that script documents.
REFERENCE = {"astronaut": (8.81745433807373, 10.794862939073454),
             "chelsea": (11.7017183303833, 2.870766629424878),
             "rocket": (9.034238815307617, 4.23315409325491)}


def _photo(name):
    import skimage.data as skd

    return torch.from_numpy(np.asarray(getattr(skd, name)()).copy()).permute(2, 0, 1)[None].double() / 255.0


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_matches_reference_implementations(name):
    img = _photo(name)
    ref_niqe, ref_brisque = REFERENCE[name]
    assert niqe(img) == pytest.approx(ref_niqe, rel=1e-5)
    assert brisque(img) == pytest.approx(ref_brisque, rel=1e-3)  # rocket (427 rows): 1.6e-4, OpenCV's odd edge


def test_noise_raises_brisque_and_scores_are_floats():
    img = _photo("astronaut")[..., :256, :256].float()
    noisy = (img + 0.08 * torch.randn(img.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert brisque(noisy) > brisque(img) + 20.0  # measured: -5.58 -> 44.52
    # NIQE of a 256 px crop rests on four 96 px patches: measured 41.19 clean, 36.66 noisy (not monotone there)
    assert niqe(img) == pytest.approx(41.1923, abs=1e-3) and isinstance(niqe(noisy), float)


def test_niqe_needs_more_than_193_pixels_and_the_report_counts_it():
    small = torch.rand(1, 3, 128, 256, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="193"):
        niqe(small)
    r = evaluate_pairs([small[0]], [small[0]], metric_names=["niqe", "brisque"])
    assert r["skipped"] == {} and r["metrics"]["niqe"]["non_finite"] == 1
    assert r["metrics"]["brisque"]["count"] == 1


def test_parameter_pickle_is_read_without_globals(tmp_path):
    _, norm = noref.brisque_model_paths()
    scale = noref.safe_load_pickle(norm)
    assert sorted(scale) == ["max_", "min_"] and len(scale["min_"]) == len(scale["max_"]) == 36
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"x": np.float64(1.0)}))  # a numpy scalar needs a global: refused
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        noref.safe_load_pickle(evil)


def test_svr_parser_reads_the_model():
    svm, _ = noref.brisque_model_paths()
    svr = noref.load_svr(svm)
    assert svr.sv.shape == (770, 36) and svr.gamma == 0.05 and svr.rho == pytest.approx(-155.845)
