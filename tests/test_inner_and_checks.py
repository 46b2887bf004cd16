"""solve_inner, the eigenvalue estimate, Neumann(alpha="auto") and the nested check (issue 13)."""

import warnings

import _nested_reference as ref
import pytest
import torch
from _problems import Logistic, Ridge

import hyperlevel
from hyperlevel import solvers
from hyperlevel.spectral import hessian_largest_eigenvalue
from hyperlevel.testing import check_nested_hypergradient


@pytest.mark.parametrize("method", ["newton-cg", "lbfgs"])
@pytest.mark.parametrize("make", [Ridge.make, Logistic.make], ids=["ridge", "logistic"])
def test_solve_inner_reaches_a_point_the_implicit_solver_accepts(method, make):
    prob = make()
    o = {"lam": prob.lam.clone()}
    w0 = {"w": torch.zeros(prob.X.shape[1], dtype=torch.float64)}
    tol = 1e-9 if method == "newton-cg" else 1e-7
    w, info = hyperlevel.solve_inner(prob.inner, o, w0, method=method, tol=tol, return_info=True)
    assert info.converged and info.stationarity <= tol and info.iterations > 0
    assert torch.equal(w0["w"], torch.zeros_like(w0["w"]))  # the start is not modified
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no InnerOptimalityWarning at the solved point
        g, hinfo = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, return_info=True)
    assert hinfo.stationarity <= tol * 10
    if make is Ridge.make:
        assert (g["lam"] - prob.exact()).abs().max() < 1e-6


def test_solve_inner_warns_when_it_stops_short():
    prob = Ridge.make()
    with pytest.warns(hyperlevel.ConvergenceWarning, match="solve_inner.*max_iterations"):
        _, info = hyperlevel.solve_inner(prob.inner, {"lam": prob.lam}, {"w": torch.zeros(8, dtype=torch.float64)},
                                         method="lbfgs", max_iterations=2, check_every=1, return_info=True)
    assert not info.converged and info.stationarity > 1e-9


def test_largest_eigenvalue_and_neumann_auto():
    prob = Ridge.make()
    o, w = prob.params()
    estimate = hessian_largest_eigenvalue(prob.inner, o, w)
    exact = float(torch.linalg.eigvalsh(prob.A()).max())
    assert abs(estimate.value - exact) / exact < 1e-2 and estimate.value <= exact * (1 + 1e-12)
    solver = solvers.Neumann(iterations=3000, alpha="auto")
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver, return_info=True)
    assert info.converged and abs(solver.last_alpha - 1 / estimate.value) < 1e-12
    assert (g["lam"] - prob.exact()).abs().max() < 1e-8


def test_nested_check_finds_the_error_of_an_off_point_middle_level():
    f = ref.make_problem([2, 3, 2], seed=0)
    x0 = torch.randn(2, dtype=torch.float64)
    guess = [x0, torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)]
    eq = ref.equilibrium(f, x0, guess)
    losses = [_level_loss(f[k]) for k in range(3)]
    good = check_nested_hypergradient(losses, [{"x": x0}, {"x": eq[0]}, {"x": eq[1]}], solvers.ConjugateGradient())
    assert good.error_vs_exact < 1e-10 and good.exact_vs_finite_difference < 1e-7
    assert max(good.stationarity) < 1e-12
    exact = ref.total_gradient(f, x0, [x0, *eq])
    assert torch.allclose(good.exact["x"], exact, atol=1e-12)
    with pytest.warns(hyperlevel.InnerOptimalityWarning, match="level 1"):
        bad = check_nested_hypergradient(losses, [{"x": x0}, {"x": eq[0] + 0.5}, {"x": eq[1]}],
                                         solvers.ConjugateGradient())
    assert bad.error_vs_exact > 0.01 and bad.stationarity[0] > 1e-3
    assert "stationarity" in str(bad)


def _level_loss(fk):
    """A dict-taking loss over the flat-vector reference loss ``fk``."""
    return lambda *ps: fk(*[p["x"] for p in ps])
