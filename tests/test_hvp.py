"""The Hessian-vector product paths of the implicit solvers (hyperlevel.hvp) against closed forms."""

import pytest
import torch
from _problems import Logistic, Ridge, rel

import hyperlevel
from hyperlevel import hvp, solvers
from hyperlevel.errors import InvalidProblemError


@pytest.fixture(autouse=True)
def _fresh_cache():
    hvp.clear_cache()
    yield
    hvp.clear_cache()


@pytest.mark.parametrize("problem_cls", [Ridge, Logistic])
@pytest.mark.parametrize("path,tol", [("double_backward", 1e-12), ("forward_over_reverse", 1e-12),
                                      ("finite_difference", 1e-8)])
def test_every_path_gives_the_implicit_hypergradient(problem_cls, path, tol):
    prob = problem_cls.make()
    o, w = prob.params()
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(50, hvp=path),
                                       return_info=True)
    assert info.hvp == path and info.converged
    assert rel(g["lam"], prob.exact()) < tol


@pytest.mark.parametrize("path", ["forward_over_reverse", "finite_difference"])
def test_neumann_takes_the_same_paths(path):
    prob = Ridge.make()
    o, w = prob.params()
    alpha = 1.0 / float(torch.linalg.eigvalsh(prob.A()).max())
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Neumann(5000, alpha, hvp=path),
                                       return_info=True)
    assert info.hvp == path and rel(g["lam"], prob.exact()) < 1e-6


@pytest.mark.parametrize("path", ["double_backward", "forward_over_reverse", "finite_difference"])
def test_products_match_the_analytic_hessian_and_mixed_derivative(path):
    prob = Logistic.make()
    o, w = prob.params()
    outer = {"lam": o["lam"].clone().requires_grad_()}
    inner = {"w": w["w"].clone().requires_grad_()}
    op = hvp.build(path, prob.inner, outer, inner)
    s = torch.sigmoid(prob.X @ w["w"])
    H = prob.X.T @ (prob.X * (s * (1 - s))[:, None]) + torch.diag(torch.exp(prob.lam))
    v = torch.randn(w["w"].numel(), dtype=torch.float64)
    tol = 1e-8 if path == "finite_difference" else 1e-13
    assert rel(op(v), H @ v) < tol
    # d_lam (d_w G) v = exp(lam) * w * v elementwise
    assert rel(op.mixed(outer, v)[0], torch.exp(prob.lam) * w["w"] * v) < tol


def test_auto_picks_an_exact_path_reports_it_and_caches_the_choice(monkeypatch):
    prob = Ridge.make()
    o, w = prob.params()
    calls = []
    real = hvp._build_timed
    monkeypatch.setattr(hvp, "_build_timed", lambda *a: calls.append(a[0]) or real(*a))
    solver = solvers.ConjugateGradient(50, hvp="auto")
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver, return_info=True)
    assert info.hvp in hvp.EXACT_PATHS and rel(g["lam"], prob.exact()) < 1e-12
    assert sorted(calls) == sorted(hvp.EXACT_PATHS)  # the finite difference is not a candidate by default
    assert {k for k in info.extra if k.startswith("hvp_seconds_")} == {f"hvp_seconds_{p}" for p in hvp.EXACT_PATHS}
    assert "hvp_error" not in info.extra
    _, again = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver, return_info=True)
    assert len(calls) == 2 and again.hvp == info.hvp  # cached: no second timing
    other = Ridge.make(p=5)  # another signature (shapes) is timed afresh
    hyperlevel.hypergradient(other.outer, other.inner, *other.params(), solver)
    assert len(calls) == 4


def _fake_timings(monkeypatch, fastest: type):
    monkeypatch.setattr(hvp, "_time_product", lambda op, v: 1e-6 if isinstance(op, fastest) else 1.0)


def test_auto_uses_the_finite_difference_only_when_allowed_and_reports_its_error(monkeypatch):
    prob = Logistic.make()
    o, w = prob.params()
    _fake_timings(monkeypatch, fastest=hvp.FiniteDifferenceHvp)
    _, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(50, hvp="auto"),
                                       return_info=True)
    assert info.hvp in hvp.EXACT_PATHS  # fastest, but not opted in
    hvp.clear_cache()
    allowed = hvp.AutoHvp(allow_finite_difference=True, max_error=1e-6)
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(50, hvp=allowed),
                                       return_info=True)
    assert info.hvp == "finite_difference" and 0 < info.extra["hvp_error"] < 1e-6
    assert rel(g["lam"], prob.exact()) < 1e-8
    hvp.clear_cache()
    strict = hvp.AutoHvp(allow_finite_difference=True, max_error=1e-20)  # its measured error is too large
    _, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(50, hvp=strict),
                                       return_info=True)
    assert info.hvp in hvp.EXACT_PATHS and "hvp_error" not in info.extra


@pytest.mark.parametrize("path", ["forward_over_reverse", "finite_difference"])
def test_outer_parameter_only_in_the_outer_loss_and_unused_inner_parameter(path):
    prob = Ridge.make()
    o, w = prob.params()
    o = {**o, "shift": torch.tensor(0.3, dtype=torch.float64)}

    def outer(oo, ii):
        return prob.outer(oo, ii) + oo["shift"] ** 2

    g = hyperlevel.hypergradient(outer, prob.inner, o, w, solvers.ConjugateGradient(50, hvp=path))
    assert rel(g["lam"], prob.exact()) < 1e-8 and abs(float(g["shift"]) - 0.6) < 1e-12
    with pytest.raises(InvalidProblemError, match="do not influence inner_loss"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, {**w, "extra": torch.ones(2, dtype=torch.float64)},
                                 solvers.ConjugateGradient(50, hvp=path))


def test_unknown_path_is_rejected_at_construction():
    with pytest.raises(ValueError, match="hvp must be one of"):
        solvers.ConjugateGradient(hvp="jvp")
    with pytest.raises(ValueError, match="hvp must be one of"):
        solvers.Neumann(hvp="fd")
