"""Issue 13's checks combined with main's options (issues 15/17): checkpointed unrolls, product paths, precision."""

import pytest
import torch

import hyperlevel as hl
from hyperlevel import solvers
from hyperlevel.errors import DivergenceWarning, InnerOptimalityWarning, InvalidProblemError


def test_checkpointed_unroll_reports_divergence_like_the_stored_one(ridge):
    prob, o, w = ridge
    with pytest.warns(DivergenceWarning, match=r"diverged.*Lower inner_lr below 2 / lambda_max = 1\.9"):
        _, info = hl.hypergradient(prob.outer, prob.inner, o, w,
                                   solvers.Unrolled(10, inner_lr=100, checkpoint_every=3), return_info=True)
    assert not info.converged and info.diverged
    _, ok = hl.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(10, inner_lr=0.1, checkpoint_every=3),
                             return_info=True)
    assert not ok.diverged


@pytest.mark.parametrize("path", ["forward_over_reverse", "finite_difference"])
def test_stationarity_is_measured_on_every_product_path(ridge, path):
    prob, o, w = ridge
    off = {"w": w["w"] + 0.3}
    infos = {}
    for p in ("double_backward", path):
        with pytest.warns(InnerOptimalityWarning):
            _, infos[p] = hl.hypergradient(prob.outer, prob.inner, o, off, solvers.ConjugateGradient(hvp=p),
                                           return_info=True)
    ref, got = infos["double_backward"], infos[path]
    assert got.hvp == path and ref.hvp == "double_backward"
    assert got.inner_gradient_norm == pytest.approx(ref.inner_gradient_norm, rel=1e-10)
    assert got.stationarity == pytest.approx(ref.stationarity, rel=1e-4) and got.stationarity > 1e-3
    assert (ref.gradient_evals, got.gradient_evals) == (2, 3)  # the other paths pay one graph-free gradient


def test_neumann_auto_takes_main_options(ridge):
    prob, o, w = ridge
    g_cg = hl.hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(iterations=100))
    g, info = hl.hypergradient(prob.outer, prob.inner, o, w,
                               solvers.Neumann(iterations=3000, alpha="auto", hvp="forward_over_reverse"),
                               return_info=True)
    assert info.hvp == "forward_over_reverse" and info.converged
    assert torch.allclose(g["lam"], g_cg["lam"], rtol=1e-6, atol=1e-10)
    x, lin = solvers.Neumann(iterations=50, alpha="auto").linear_solve(lambda v: 2 * v, torch.ones(3), warm=False)
    assert torch.allclose(x, torch.full((3,), 0.5)) and lin.matvecs > lin.iterations  # power products counted


def test_differentiable_path_refuses_precision(ridge):
    prob, o, w = ridge
    o32 = {k: v.float() for k, v in o.items()}
    w32 = {k: v.float() for k, v in w.items()}
    with pytest.raises(InvalidProblemError, match="precision= is not supported by the differentiable path"):
        hl.hypergradient(prob.outer, prob.inner, o32, w32, differentiable=True, precision="bfloat16")
