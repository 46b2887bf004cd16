"""Property tests on random positive-definite quadratics, and the user-facing checker."""

import torch
from _problems import Logistic, Ridge
from hypothesis import given, settings
from hypothesis import strategies as st

import hyperlevel
from hyperlevel import solvers
from hyperlevel.testing import check_hypergradient


def _quadratic(seed, n_inner, n_outer, cond):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n_inner, n_inner, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n_inner, dtype=torch.float64)
    A = Q @ torch.diag(eig) @ Q.T
    B = torch.randn(n_inner, n_outer, generator=g, dtype=torch.float64)
    c = torch.randn(n_inner, generator=g, dtype=torch.float64)
    t = torch.randn(n_inner, generator=g, dtype=torch.float64)
    D = torch.diag(torch.rand(n_outer, generator=g, dtype=torch.float64))
    o = torch.randn(n_outer, generator=g, dtype=torch.float64)
    return A, B, c, t, D, o


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_inner=st.integers(1, 12),
    n_outer=st.integers(1, 5),
    cond=st.floats(1.0, 1e3),
)
def test_cg_equals_closed_form_on_random_quadratics(seed, n_inner, n_outer, cond):
    A, B, c, t, D, o = _quadratic(seed, n_inner, n_outer, cond)

    def inner(op, ip):
        w = ip["w"]
        return 0.5 * w @ A @ w - w @ (B @ op["o"] + c)

    def outer(op, ip):
        return 0.5 * ((ip["w"] - t) ** 2).sum() + 0.5 * op["o"] @ D @ op["o"]

    w_star = torch.linalg.solve(A, B @ o + c)
    exact = B.T @ torch.linalg.solve(A, w_star - t) + D @ o
    g, info = hyperlevel.hypergradient(
        outer, inner, {"o": o}, {"w": w_star}, solvers.ConjugateGradient(iterations=4 * n_inner + 10),
        return_info=True,
    )
    assert info.converged
    torch.testing.assert_close(g["o"], exact, rtol=1e-7, atol=1e-9)
    # Neumann with the optimal step converges to the same answer.
    lmax, lmin = torch.linalg.eigvalsh(A)[[-1, 0]]
    alpha = (2.0 / (lmax + lmin)).item()
    gn = hyperlevel.hypergradient(outer, inner, {"o": o}, {"w": w_star}, solvers.Neumann(20000, alpha=alpha, tol=1e-9))
    torch.testing.assert_close(gn["o"], exact, rtol=1e-6, atol=1e-8)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), n_inner=st.integers(1, 8), lr=st.floats(1e-3, 0.2))
def test_unrolled_single_step_equals_finite_difference_target(seed, n_inner, lr):
    A, B, c, t, D, o = _quadratic(seed, n_inner, 2, 10.0)

    def inner(op, ip):
        return 0.5 * ip["w"] @ A @ ip["w"] - ip["w"] @ (B @ op["o"] + c)

    def outer(op, ip):
        return 0.5 * ((ip["w"] - t) ** 2).sum()

    w = {"w": torch.randn(n_inner, dtype=torch.float64)}
    gu = hyperlevel.hypergradient(outer, inner, {"o": o}, w, solvers.Unrolled(1, lr))
    gf = hyperlevel.hypergradient(outer, inner, {"o": o}, w, solvers.FiniteDifference(lr, 1e-3))
    # inner gradient is linear in w: the central difference is exact up to rounding
    torch.testing.assert_close(gf["o"], gu["o"], rtol=1e-6, atol=1e-9)


def test_check_hypergradient_reports_small_errors_for_every_solver():
    prob = Logistic.make(n=40, p=4)
    o, w = prob.params()
    for solver, tol_own in [
        (solvers.ConjugateGradient(50), 1e-6),
        (solvers.Neumann(3000, 0.05), 1e-6),
        (solvers.FiniteDifference(1e-2, 1e-2), 1e-3),
        (solvers.Unrolled(5, 1e-2), 1e-6),
        (solvers.FirstOrder(), 1e-6),
    ]:
        report = check_hypergradient(prob.outer, prob.inner, o, w, solver)
        assert report.error_vs_own_target < tol_own, str(report)
        assert report.implicit_vs_finite_difference < 1e-6, str(report)
        text = str(report)
        assert type(solver).__name__ in text and "finite differences" in text
    cg = check_hypergradient(prob.outer, prob.inner, o, w, solvers.ConjugateGradient(50))
    assert cg.error_vs_implicit < 1e-8
    fo = check_hypergradient(prob.outer, prob.inner, o, w, solvers.FirstOrder())
    assert fo.error_vs_implicit == 1.0  # zero hypergradient: the first-order baseline misses it entirely


def test_check_hypergradient_catches_a_wrong_solver():
    """A deliberately broken solver (sign of the indirect term flipped) is caught by the report."""

    class WrongSign(solvers.ConjugateGradient):
        def solve(self, outer_loss, inner_loss, outer, inner, reduce=None):
            grads, info = super().solve(outer_loss, inner_loss, outer, inner, reduce)
            return [-g for g in grads], info

    prob = Ridge.make(n=30, p=3)
    o, w = prob.params()
    report = check_hypergradient(prob.outer, prob.inner, o, w, WrongSign(50))
    assert report.error_vs_implicit > 1.0 and report.error_vs_own_target > 1.0
