"""The issue-15 hypergradient approximations, each against its own exact target on ridge and logistic problems."""

import pytest
import torch
from _problems import Logistic, Ridge, rel

import hyperlevel
from hyperlevel import solvers
from hyperlevel.errors import SolverDivergedError
from hyperlevel.solvers.gmres import gmres
from hyperlevel.testing import check_hypergradient

PROBLEMS = {"ridge": lambda: Ridge.make(n=40, p=6), "logistic": lambda: Logistic.make(n=50, p=5)}


def _hessian(prob):
    o, w = prob.params()
    return torch.autograd.functional.hessian(lambda v: prob.inner(o, {"w": v}), w["w"])


def _lr(prob, fraction=0.5):
    return fraction / torch.linalg.eigvalsh(_hessian(prob)).max().item()


def _gradient_map(prob, P):
    """A fixed-point map with the inner minimiser as fixed point and a non-symmetric Jacobian I - P H."""

    def phi(o, i):
        w = i["w"].detach().requires_grad_() if not i["w"].requires_grad else i["w"]
        with torch.enable_grad():
            g = torch.autograd.grad(prob.inner(o, {"w": w}), w, create_graph=True)[0]
        return {"w": i["w"] - P @ g}

    return phi


def _skew_preconditioner(prob, scale):
    p = prob.X.shape[1]
    B = torch.randn(p, p, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return scale * (torch.eye(p, dtype=torch.float64) + 0.5 * (B - B.T))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_fixed_point_solvers_match_the_closed_form_on_non_symmetric_maps(name):
    prob = PROBLEMS[name]()
    o, w = prob.params()
    P = _skew_preconditioner(prob, _lr(prob, 0.2))
    jac = torch.eye(len(w["w"]), dtype=torch.float64) - P @ _hessian(prob)
    assert (jac - jac.T).abs().max() > 1e-2  # really non-symmetric
    phi = _gradient_map(prob, P)
    for solver, tol in [
        (solvers.GMRES(iterations=60, fixed_point_map=phi), 1e-8),
        (solvers.CGNormal(iterations=200, fixed_point_map=phi), 1e-7),
        (solvers.FixedPoint(iterations=20000, fixed_point_map=phi), 1e-7),
        (solvers.GMRES(iterations=60), 1e-8),  # the inner loss's own Hessian
        (solvers.CGNormal(iterations=200), 1e-7),
        (solvers.FixedPoint(iterations=20000, step=_lr(prob, 0.9)), 1e-7),
    ]:
        g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver, return_info=True)
        assert rel(g["lam"], prob.exact()) < tol, (repr(solver), info)
        assert info.converged, info
    report = check_hypergradient(prob.outer, prob.inner, o, w, solvers.GMRES(fixed_point_map=phi))
    assert report.error_vs_own_target < 1e-6 and "Phi" in report.target, str(report)


def test_fixed_point_iteration_diverges_loudly_and_gmres_does_not_need_a_contraction():
    prob = Ridge.make(n=40, p=6)
    o, w = prob.params()
    phi = _gradient_map(prob, _skew_preconditioner(prob, _lr(prob, 3.0)))  # spectral radius > 1
    with pytest.raises(SolverDivergedError, match="not a contraction"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.FixedPoint(5000, fixed_point_map=phi))
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.GMRES(60, fixed_point_map=phi))
    assert rel(g["lam"], prob.exact()) < 1e-8


def test_gmres_solves_a_non_symmetric_system_with_restarts():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(30, 30, generator=gen, dtype=torch.float64) / 30**0.5 + 2 * torch.eye(30, dtype=torch.float64)
    b = torch.randn(30, generator=gen, dtype=torch.float64)
    x, info = gmres(lambda v: A @ v, b, iterations=300, restart=10, tol=1e-10)
    assert info.converged and info.residual < 1e-10
    assert rel(x, torch.linalg.solve(A, b)) < 1e-8


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_nystrom_full_rank_is_implicit_and_low_rank_is_its_closed_form(name):
    prob = PROBLEMS[name]()
    o, w = prob.params()
    p = len(w["w"])
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Nystrom(rank=p, rho=1e-8))
    assert rel(g["lam"], prob.exact()) < 1e-5  # (H + rho I)^-1 at full rank
    rank, rho = 3, 0.5
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Nystrom(rank, rho, seed=4),
                                       return_info=True)
    idx = torch.randperm(p, generator=torch.Generator().manual_seed(4))[:rank].sort().values
    H = _hessian(prob)
    C = H[:, idx]
    approx = C @ torch.linalg.pinv(C[idx]) @ C.T + rho * torch.eye(p, dtype=torch.float64)
    lam = o["lam"].clone().requires_grad_()
    ww = w["w"].clone().requires_grad_()
    b = torch.autograd.grad(prob.outer({"lam": lam}, {"w": ww}), ww)[0]
    x = torch.linalg.solve(approx, b)
    gw = torch.autograd.grad(prob.inner({"lam": lam}, {"w": ww}), ww, create_graph=True)[0]
    closed = -torch.autograd.grad(gw, lam, grad_outputs=x)[0]
    assert rel(g["lam"], closed) < 1e-8
    assert rel(g["lam"], prob.exact()) > 1e-3 and info.hvp_evals == rank + 2  # an approximation at rank 3
    assert abs(info.residual - rel(H @ x, b)) < 1e-8 * info.residual  # the reported residual is the true one


def test_zero_order_orthogonal_is_exact_on_quadratics_and_gaussian_within_its_variance():
    prob = Ridge.make(n=40, p=6)
    o, w = prob.params()
    lr = _lr(prob)
    orth = solvers.ZeroOrder(samples=12, sigma=1e-4, steps=2, inner_lr=lr, orthogonal=True)
    report = check_hypergradient(prob.outer, prob.inner, o, w, orth)
    assert report.error_vs_own_target < 1e-6, str(report)
    unrolled = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(2, lr))
    errors = []
    for seed in range(2):
        es = solvers.ZeroOrder(samples=64, sigma=1e-4, steps=2, inner_lr=lr, seed=seed)
        errors.append(rel(hyperlevel.hypergradient(prob.outer, prob.inner, o, w, es)["lam"], unrolled["lam"]))
    bound = ((6 + 1) / 64) ** 0.5  # relative standard deviation of the Gaussian estimator
    assert all(0.01 * bound < e < 3 * bound for e in errors), errors
    state = orth.state_dict()
    a = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, orth)
    orth.load_state_dict(state)
    torch.testing.assert_close(hyperlevel.hypergradient(prob.outer, prob.inner, o, w, orth), a)  # exact resume
    b = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, orth)
    assert rel(a["lam"], b["lam"]) > 1e-12  # fresh directions at every call


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_unrolled_recompute_equals_unrolled(name):
    prob = PROBLEMS[name]()
    o, w = prob.params()
    w = {"w": w["w"] + 0.3}
    lr = _lr(prob)
    ref = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(9, lr))
    for segments in (None, 1, 2, 9):
        g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.UnrolledRecompute(9, lr, segments),
                                           return_info=True)
        assert rel(g["lam"], ref["lam"]) < 1e-12, segments
        stored = int(info.extra["segments"])
        assert stored == {None: 3, 1: 1, 2: 2, 9: 9}[segments]
        assert info.gradient_evals == 3 * 9 - stored + 1 and info.hvp_evals == 9  # forward, recompute, graphs
    report = check_hypergradient(prob.outer, prob.inner, o, w, solvers.UnrolledRecompute(5, lr))
    assert report.error_vs_own_target < 1e-6, str(report)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_ptt_is_the_gradient_of_the_pessimistic_objective(name):
    prob = PROBLEMS[name]()
    o, w = prob.params()
    start = {"w": w["w"] + 0.5 * torch.linspace(-1, 1, len(w["w"]), dtype=torch.float64)}
    lr = _lr(prob, 0.3)
    solver = solvers.PessimisticTruncation(steps=8, inner_lr=lr)
    g, info = hyperlevel.hypergradient(prob.outer, prob.inner, o, start, solver, return_info=True)
    k = int(info.extra["selected_step"])
    assert 1 <= k <= 8
    same = hyperlevel.hypergradient(prob.outer, prob.inner, o, start, solvers.Unrolled(k, lr))
    assert rel(g["lam"], same["lam"]) < 1e-12
    report = check_hypergradient(prob.outer, prob.inner, o, start, solver)
    assert report.error_vs_own_target < 1e-6, str(report)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_aggregation_is_exact_on_its_trajectory_and_unrolled_without_aggregation(name):
    prob = PROBLEMS[name]()
    o, w = prob.params()
    start = {"w": w["w"] + 0.2}
    lr = _lr(prob)
    report = check_hypergradient(prob.outer, prob.inner, o, start, solvers.Aggregated(6, lr, alpha=0.8))
    assert report.error_vs_own_target < 1e-6, str(report)
    plain = hyperlevel.hypergradient(prob.outer, prob.inner, o, start, solvers.Unrolled(6, lr))
    zero = hyperlevel.hypergradient(prob.outer, prob.inner, o, start, solvers.Aggregated(6, lr, alpha=0.0))
    assert rel(zero["lam"], plain["lam"]) < 1e-12
    assert rel(report.hypergradient["lam"], plain["lam"]) > 1e-3


def test_iad_learns_its_initialisation_by_the_closed_form_gradient():
    prob = Ridge.make(n=40, p=6)
    o, w = prob.params()
    start = {"w": torch.zeros_like(w["w"])}
    lr, steps, init_lr = _lr(prob), 3, 0.05
    solver = solvers.InitialisationAuxiliary(steps, lr, init_lr)
    report = check_hypergradient(prob.outer, prob.inner, o, start, solver)  # first call: unrolled from start
    assert report.error_vs_own_target < 1e-6, str(report)
    # closed form: w_K = T^K z + sum_j T^j lr X'y with T = I - lr A; dF/dz = (T^K)' Xv'(Xv w_K - yv)
    T = torch.eye(6, dtype=torch.float64) - lr * prob.A()
    TK = torch.linalg.matrix_power(T, steps)
    wK = TK @ start["w"] + sum(torch.linalg.matrix_power(T, j) @ (lr * prob.X.T @ prob.y) for j in range(steps))
    z1 = start["w"] - init_lr * TK.T @ (prob.Xv.T @ (prob.Xv @ wK - prob.yv))
    assert rel(solver.initialisation["w"], z1) < 1e-12
    second = check_hypergradient(prob.outer, prob.inner, o, start, solver)  # now unrolled from z1
    assert second.error_vs_own_target < 1e-6, str(second)
    losses = [solver.solve(prob.outer, prob.inner, {"lam": o["lam"].clone().requires_grad_()},
                           {"w": start["w"].clone().requires_grad_()})[1].outer_loss for _ in range(10)]
    assert all(b < a for a, b in zip(losses, losses[1:]))  # the learned initialisation lowers the outer loss
    assert losses[-1] < 0.8 * losses[0]
