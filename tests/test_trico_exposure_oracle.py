"""benchmarks/trico_exposure_oracle.py: the oracle exposure correction matches the target's mean linear
luminance and leaves an image that already matches it unchanged."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "trico_exposure_oracle.py"
_spec = importlib.util.spec_from_file_location("trico_exposure_oracle", _PATH)
oracle = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = oracle
_spec.loader.exec_module(oracle)


def test_srgb_round_trip_and_exposure_correction():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 3, 16, 16, generator=g) * 0.6
    assert torch.allclose(oracle.linear_to_srgb(oracle.srgb_to_linear(target)), target, atol=1e-6)
    dark = oracle.linear_to_srgb(oracle.srgb_to_linear(target) * 0.25)  # two stops under, no clipping
    fixed = oracle.exposure_corrected(dark, target)
    assert torch.allclose(oracle.srgb_to_linear(fixed).mean(), oracle.srgb_to_linear(target).mean(), rtol=1e-5)
    assert torch.allclose(fixed, target, atol=1e-5)  # a pure exposure error is removed entirely
    assert torch.allclose(oracle.exposure_corrected(target, target), target, atol=1e-6)
