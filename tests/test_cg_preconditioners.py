"""Preconditioned CG and warm starts (issue 12): same solutions as plain CG and the dense solve, fewer iterations
where the preconditioner fits the spectrum, products counted honestly."""

import pytest
import torch
from _problems import Ridge, rel

import hyperlevel
from hyperlevel.functional import HessianOperator, inner_gradient
from hyperlevel.solvers import ConjugateGradient, conjugate_gradient
from hyperlevel.solvers.preconditioners import Jacobi, NystromPreconditioner, batched_products, resolve

N = 40


def _scaled_spd(seed: int = 0) -> torch.Tensor:
    """``D^{1/2} (I + 0.1 S) D^{1/2}`` with a diagonal spanning four decades: ill-conditioned by its scaling only,
    which is exactly what a Jacobi preconditioner undoes."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(N, N, generator=g, dtype=torch.float64)
    core = torch.eye(N, dtype=torch.float64) + 0.1 * (s + s.T) / (2 * N ** 0.5)
    d = torch.logspace(0, 4, N, dtype=torch.float64).sqrt()
    return d[:, None] * core * d[None, :]


def _rhs() -> torch.Tensor:
    return torch.randn(N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_jacobi_preconditioned_cg_matches_the_dense_solve_in_fewer_iterations():
    a, b = _scaled_spd(), _rhs()
    exact = torch.linalg.solve(a, b)
    x, plain = conjugate_gradient(lambda v: a @ v, b, iterations=500, tol=1e-12)
    inv_diag = 1.0 / a.diagonal()
    xp, pre = conjugate_gradient(lambda v: a @ v, b, iterations=500, tol=1e-12, preconditioner=lambda r: r * inv_diag)
    assert rel(x, exact) < 1e-8 and rel(xp, exact) < 1e-8
    assert pre.converged and pre.residual <= 1e-12
    assert pre.iterations < plain.iterations / 3, (pre.iterations, plain.iterations)


def test_full_rank_nystrom_preconditioner_solves_in_one_iteration():
    a, b = _scaled_spd(), _rhs()
    apply, products = NystromPreconditioner(rank=N).build(lambda v: a @ v, b)
    assert products == N
    x, info = conjugate_gradient(lambda v: a @ v, b, iterations=50, tol=1e-10, preconditioner=apply)
    assert info.iterations <= 2 and rel(x, torch.linalg.solve(a, b)) < 1e-8


def test_exact_and_estimated_jacobi_diagonals():
    a, b = _scaled_spd(), _rhs()
    d, products = Jacobi().diagonal(lambda v: a @ v, b)
    assert products == N and torch.allclose(d, a.diagonal(), rtol=1e-12)
    est, k = Jacobi(probes=2000, seed=3).diagonal(lambda v: a @ v, b)
    assert k == 2000
    # Hutchinson: each entry's error is the off-diagonal row norm / sqrt(probes), here ~2% of the entry
    assert rel(est, a.diagonal()) < 0.05


@pytest.mark.parametrize("preconditioner", ["jacobi", "hutchinson", "nystrom", Jacobi(probes=4),
                                            NystromPreconditioner(rank=3)])
def test_preconditioned_hypergradient_equals_plain_cg_and_the_closed_form(ridge, preconditioner):
    prob, o, w = ridge
    plain = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver=ConjugateGradient(tol=1e-12))
    solver = ConjugateGradient(tol=1e-12, preconditioner=preconditioner)
    pre = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver=solver)
    assert rel(pre["lam"], plain["lam"]) < 1e-8
    assert rel(pre["lam"], prob.exact()) < 1e-8


def test_preconditioner_products_are_counted(ridge):
    prob, o, w = ridge
    _, plain = ConjugateGradient(tol=1e-12).solve(prob.outer, prob.inner, *_leaves(o, w))
    _, pre = ConjugateGradient(tol=1e-12, preconditioner=Jacobi(probes=5)).solve(prob.outer, prob.inner,
                                                                                *_leaves(o, w))
    assert pre.hvp_evals == pre.iterations + 2 + 5 and plain.hvp_evals == plain.iterations + 2


def _leaves(o, w):
    return ({k: v.clone().requires_grad_(True) for k, v in o.items()},
            {k: v.clone().requires_grad_(True) for k, v in w.items()})


def test_batched_products_equal_single_products():
    prob = Ridge.make(p=6)
    o, w = _leaves(*prob.params())
    op = HessianOperator(inner_gradient(prob.inner, o, w, create_graph=True), w)
    V = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    block = batched_products(op, V)
    assert torch.allclose(block, V @ prob.A(), rtol=1e-12, atol=1e-12)  # A symmetric: rows of V A = (A v_i)^T
    assert op.calls == 5
    assert torch.allclose(batched_products(lambda v: prob.A() @ v, V), block, rtol=1e-12, atol=1e-12)


def test_warm_start_cuts_iterations_on_a_nearby_second_solve():
    prob = Ridge.make(p=30, n=60)
    o, w = prob.params()
    solver = ConjugateGradient(tol=1e-10, warm_start=True)
    _, first = solver.solve(prob.outer, prob.inner, *_leaves(o, w))
    prob.lam = prob.lam + 1e-3 * torch.randn(30, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    o2, w2 = prob.params()
    g_warm, warm = solver.solve(prob.outer, prob.inner, *_leaves(o2, w2))
    _, cold = ConjugateGradient(tol=1e-10).solve(prob.outer, prob.inner, *_leaves(o2, w2))
    assert rel(g_warm[0], prob.exact()) < 1e-8
    # the start is 1e-3-close: CG's late iterations converge fastest, so this saves 5 of 30, not a third
    assert warm.iterations <= cold.iterations - 4, (warm.iterations, cold.iterations)
    assert warm.hvp_evals == warm.iterations + 3  # the warm start's initial residual costs one product
    assert first.iterations == cold.iterations or abs(first.iterations - cold.iterations) <= 2


def test_resolve_names_and_errors():
    assert resolve(None) is None
    assert isinstance(resolve("jacobi"), Jacobi) and resolve("jacobi").probes is None
    assert resolve("hutchinson").probes == 10
    assert isinstance(resolve("nystrom"), NystromPreconditioner)
    with pytest.raises(ValueError, match="preconditioner must be"):
        ConjugateGradient(preconditioner="ilu")
    with pytest.raises(ValueError):
        Jacobi(probes=0)
    with pytest.raises(ValueError):
        NystromPreconditioner(rank=0)
