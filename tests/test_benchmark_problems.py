"""The benchmarks are only as good as their references: check them against central finite differences."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

# loaded by path under its own name: tests/_problems.py (the solver tests' problems) is a different module
_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_problems.py"
_spec = importlib.util.spec_from_file_location("hyperlevel_benchmark_problems", _PATH)
bp = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bp
_spec.loader.exec_module(bp)


def _central_differences(f, x: torch.Tensor, h: float = 1e-4) -> torch.Tensor:
    g = torch.zeros_like(x)
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e.view(-1)[i] = h
        g.view(-1)[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize(
    "problem",
    [
        lambda: bp.Ridge(n_features=6, n_samples=30),
        lambda: bp.Ridge(n_features=12, n_samples=5),  # p > n: the Woodbury path
        lambda: bp.Logistic(n_features=5, n_samples=40),
        lambda: bp.HyperCleaning(n_train=8, n_val=40),
    ],
    ids=["ridge", "ridge-woodbury", "logistic", "hypercleaning"],
)
def test_ift_reference_matches_finite_differences_of_the_hyperobjective(problem):
    p = problem()
    (key,) = p.outer
    ref = p.ift_reference()[key]
    fd = _central_differences(p.hyperobjective, p.outer[key])
    assert torch.allclose(ref, fd, rtol=1e-5, atol=1e-9 * float(fd.abs().max())), (ref, fd)


@pytest.mark.parametrize(
    "problem",
    [lambda: bp.Ridge(n_features=6, n_samples=30), lambda: bp.CNNReweighting(n_train=6, n_val=20, steps=2)],
    ids=["ridge", "cnn"],
)
def test_one_step_and_unrolled_references_match_finite_differences(problem):
    p = problem()
    (key,) = p.outer
    w0, lr = p.point("unrolled"), p.inner_lr

    def after(steps):
        def f(x):
            o = {key: x}
            w = {k: v.clone().requires_grad_(True) for k, v in w0.items()}
            for _ in range(steps):
                g = torch.autograd.grad(p.inner_loss(o, w), list(w.values()))
                w = {k: (v - lr * gk).detach().requires_grad_(True) for (k, v), gk in zip(w.items(), g)}
            return float(p.outer_loss(o, w).detach())

        return f

    name, one = p.reference("finite_difference")
    assert name == "one_step"
    fd1 = _central_differences(after(1), p.outer[key])
    assert torch.allclose(one[key], fd1, rtol=1e-5, atol=1e-9 * float(fd1.abs().max()))
    name, unr = p.reference("unrolled")
    assert name == f"unrolled_{p.unroll_steps}"
    fdk = _central_differences(after(p.unroll_steps), p.outer[key])
    assert torch.allclose(unr[key], fdk, rtol=1e-5, atol=1e-9 * float(fdk.abs().max()))


def test_inner_points_are_converged():
    for p in (bp.Ridge(n_features=8, n_samples=40), bp.Logistic(n_features=5, n_samples=40),
              bp.HyperCleaning(n_train=8, n_val=40)):
        w = {k: v.clone().requires_grad_(True) for k, v in p.inner.items()}
        g = torch.autograd.grad(p.inner_loss(p.outer, w), list(w.values()))
        assert max(float(x.abs().max()) for x in g) < 1e-10


def test_cnn_minimum_is_a_strict_minimum_and_its_reference_matches_finite_differences(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERLEVEL_BENCH_CACHE", str(tmp_path))
    p = bp.CNNMinimum(n_train=12, n_val=40)
    assert p.grad_norm < 1e-12 and float(p.tilt.norm()) < 1e-5  # L-BFGS's point, made exactly stationary
    assert p.lambda_min > 0  # positive-definite Hessian: a strict local minimum
    H = p.H
    assert torch.allclose(H, bp.dense_hessian(p._flat_loss(p.outer["u"]), p._flat(p.inner)), rtol=0, atol=1e-12)
    ref = p.ift_reference()["u"]
    # directional derivative of the hyper-objective (inner re-solved by chord Newton) along a random direction
    d = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h = 1e-4
    fd = (p.hyperobjective(p.outer["u"] + h * d) - p.hyperobjective(p.outer["u"] - h * d)) / (2 * h)
    assert abs(fd - float(ref @ d)) <= 1e-5 * abs(fd), (fd, float(ref @ d))
    again = bp.CNNMinimum(n_train=12, n_val=40)  # from the on-disk cache: the same point
    assert torch.equal(again._flat(again.inner), p._flat(p.inner))
