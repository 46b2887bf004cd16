"""Every solver against closed forms (float64), plus dtype handling and diagnostics."""

import pytest
import torch
from _problems import Logistic, Ridge, rel

import hyperlevel
from hyperlevel import solvers


def _max_eig(A):
    return torch.linalg.eigvalsh(A).max().item()


@pytest.mark.parametrize("problem_cls", [Ridge, Logistic])
def test_conjugate_gradient_matches_closed_form(problem_cls):
    prob = problem_cls.make()
    o, w = prob.params()
    g, info = hyperlevel.hypergradient(
        prob.outer, prob.inner, o, w, solvers.ConjugateGradient(iterations=50), return_info=True
    )
    assert rel(g["lam"], prob.exact()) < 1e-6
    assert info.converged and info.residual < 1e-10
    assert 0 < info.iterations <= prob.X.shape[1] + 1  # CG is exact in at most dim iterations


def test_neumann_matches_closed_form_ridge():
    prob = Ridge.make()
    o, w = prob.params()
    alpha = 1.0 / _max_eig(prob.A())
    g, info = hyperlevel.hypergradient(
        prob.outer, prob.inner, o, w, solvers.Neumann(iterations=5000, alpha=alpha), return_info=True
    )
    assert rel(g["lam"], prob.exact()) < 1e-6
    assert info.converged and info.residual < 1e-9


def test_neumann_matches_closed_form_logistic():
    prob = Logistic.make()
    o, w = prob.params()
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Neumann(iterations=5000, alpha=0.02))
    assert rel(g["lam"], prob.exact()) < 1e-6


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_finite_difference_matches_one_step_unrolled_ridge(lr):
    prob = Ridge.make()
    o, _ = prob.params()
    w = {"w": prob.w_star() + 0.1 * torch.randn(prob.X.shape[1], dtype=torch.float64)}  # off the minimum
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.FiniteDifference(inner_lr=lr, epsilon=1e-2))
    assert rel(g["lam"], prob.one_step(w["w"], lr)) < 1e-3


def test_finite_difference_matches_one_step_unrolled_logistic():
    prob = Logistic.make()
    o, w = prob.params()
    lr = 1e-2
    solver = solvers.FiniteDifference(inner_lr=lr, epsilon=1e-2)
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver)

    def one_step(lam):
        ww = w["w"].clone().requires_grad_()
        gw = torch.autograd.grad(prob.inner({"lam": lam}, {"w": ww}), ww, create_graph=True)[0]
        return prob.outer({"lam": lam}, {"w": w["w"] - lr * gw})

    lam = o["lam"].clone().requires_grad_()
    exact = torch.autograd.grad(one_step(lam), lam)[0]
    assert rel(g["lam"], exact) < 1e-3


@pytest.mark.parametrize("truncate", [None, 3])
def test_unrolled_equals_autograd_through_same_steps(truncate):
    prob = Logistic.make()
    o, w = prob.params()
    w = {"w": w["w"] + 0.2}
    steps, lr = 8, 0.01
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(steps, lr, truncate=truncate))

    lam = o["lam"].clone().requires_grad_()
    ww = w["w"].clone()
    first_tracked = 0 if truncate is None else steps - truncate
    for t in range(steps):
        if t < first_tracked:
            ww = ww.detach().requires_grad_()
            gw = torch.autograd.grad(prob.inner({"lam": lam.detach()}, {"w": ww}), ww)[0]
            ww = (ww - lr * gw).detach()
        else:
            ww = ww if ww.requires_grad else ww.requires_grad_()
            gw = torch.autograd.grad(prob.inner({"lam": lam}, {"w": ww}), ww, create_graph=True)[0]
            ww = ww - lr * gw
    exact = torch.autograd.grad(prob.outer({"lam": lam}, {"w": ww}), lam)[0]
    torch.testing.assert_close(g["lam"], exact, rtol=1e-12, atol=1e-14)


def test_unrolled_converges_to_implicit_with_many_steps():
    prob = Ridge.make(n=40, p=4)
    o, w = prob.params()
    lr = 1.0 / _max_eig(prob.A())
    g = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(3000, lr))
    assert rel(g["lam"], prob.exact()) < 1e-4


def test_first_order_equals_direct_partial():
    prob = Ridge.make()
    o, w = prob.params()

    def outer(o, i):  # outer depends on lam directly too
        return prob.outer(o, i) + 0.3 * (o["lam"] ** 3).sum()

    g = hyperlevel.hypergradient(outer, prob.inner, o, w, solvers.FirstOrder())
    torch.testing.assert_close(g["lam"], 0.9 * o["lam"] ** 2)


def test_float32_inputs_give_float32_result_close_to_float64():
    prob = Ridge.make()
    o, w = prob.params()
    o32 = {k: v.float() for k, v in o.items()}
    w32 = {k: v.float() for k, v in w.items()}
    X, y, Xv, yv = (t.float() for t in (prob.X, prob.y, prob.Xv, prob.yv))

    def inner(o, i):
        return 0.5 * ((X @ i["w"] - y) ** 2).sum() + 0.5 * (torch.exp(o["lam"]) * i["w"] ** 2).sum()

    def outer(o, i):
        return 0.5 * ((Xv @ i["w"] - yv) ** 2).sum()

    for solver in (solvers.ConjugateGradient(50), solvers.FiniteDifference(1e-3), solvers.Unrolled(3, 1e-3),
                   solvers.FirstOrder(), solvers.Neumann(3000, alpha=1 / _max_eig(prob.A()))):
        g = hyperlevel.hypergradient(outer, inner, o32, w32, solver)
        assert g["lam"].dtype == torch.float32
    g = hyperlevel.hypergradient(outer, inner, o32, w32, solvers.ConjugateGradient(50))
    assert rel(g["lam"].double(), prob.exact()) < 1e-3


def test_inputs_untouched_and_no_grad_written():
    prob = Ridge.make()
    lam = torch.nn.Parameter(prob.lam.clone())
    w = torch.nn.Parameter(prob.w_star())
    before = (lam.detach().clone(), w.detach().clone())
    hyperlevel.hypergradient(prob.outer, prob.inner, {"lam": lam}, {"w": w})
    assert lam.grad is None and w.grad is None
    assert torch.equal(lam.detach(), before[0]) and torch.equal(w.detach(), before[1])


def test_multiple_tensors_per_level_and_shapes_preserved():
    g = torch.Generator().manual_seed(3)
    X = torch.randn(30, 3, 2, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)

    def inner(o, i):
        pred = torch.einsum("nab,ab->n", X, i["W"]) + i["b"]
        return ((pred - y) ** 2).mean() + (torch.exp(o["log_reg"]) * i["W"] ** 2).sum() + o["bias_reg"] * i["b"] ** 2

    def outer(o, i):
        return ((torch.einsum("nab,ab->n", X, i["W"]) + i["b"] - 1.0) ** 2).mean()

    o = {"log_reg": torch.zeros(3, 2, dtype=torch.float64), "bias_reg": torch.tensor(0.5, dtype=torch.float64)}
    w0 = {"W": torch.zeros(3, 2, dtype=torch.float64), "b": torch.zeros((), dtype=torch.float64)}
    from hyperlevel.testing import newton_solve

    w = newton_solve(inner, o, w0)
    res = hyperlevel.hypergradient(outer, inner, o, w)
    assert res["log_reg"].shape == (3, 2) and res["bias_reg"].shape == ()
    from hyperlevel.testing import exact_implicit_hypergradient

    exact = exact_implicit_hypergradient(outer, inner, o, w)
    for k in o:
        torch.testing.assert_close(res[k], exact[k], rtol=1e-8, atol=1e-12)
