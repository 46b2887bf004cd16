"""hypergradient under torch.func (vmap, grad, jacrev, jacfwd) and with differentiable=True (issue 13)."""

import pytest
import torch
from _problems import Ridge

import hyperlevel
from hyperlevel import solvers


@pytest.fixture(scope="module")
def ridge():
    prob = Ridge.make()
    gram, rhs = prob.X.T @ prob.X, prob.X.T @ prob.y

    def w_star(lam):
        return torch.linalg.solve(gram + torch.diag(torch.exp(lam)), rhs)

    def hg(lam, solver=None, **kw):
        return hyperlevel.hypergradient(prob.outer, prob.inner, {"lam": lam}, {"w": w_star(lam)}, solver, **kw)["lam"]

    return prob, hg


def _central(fn, x, step=1e-5):
    eye = torch.eye(x.numel(), dtype=x.dtype)
    return torch.stack([(fn(x + step * e) - fn(x - step * e)) / (2 * step) for e in eye], dim=1)


def test_vmap_over_64_outer_points_equals_the_loop(ridge):
    prob, hg = ridge
    gen = torch.Generator().manual_seed(0)
    lams = prob.lam + 0.3 * torch.randn(64, prob.lam.numel(), generator=gen, dtype=torch.float64)
    batched = torch.func.vmap(hg)(lams)
    looped = torch.stack([hg(lam) for lam in lams])
    assert batched.shape == (64, 8)
    assert (batched - looped).abs().max() < 1e-12
    assert (looped[0] - Ridge(prob.X, prob.y, prob.Xv, prob.yv, lams[0]).exact()).abs().max() < 1e-12


@pytest.mark.parametrize("transform", ["jacrev", "jacfwd"])
def test_hyper_hessian_matches_central_differences_of_the_hypergradient(ridge, transform):
    prob, hg = ridge
    hessian = getattr(torch.func, transform)(hg)(prob.lam)
    reference = _central(hg, prob.lam)
    assert float(torch.linalg.norm(hessian - reference) / torch.linalg.norm(reference)) < 1e-6
    assert float(torch.linalg.norm(hessian - hessian.T) / torch.linalg.norm(hessian)) < 1e-6  # a Hessian
    assert float(torch.linalg.norm(hessian)) > 0.1


def test_grad_of_a_function_of_the_hypergradient(ridge):
    prob, hg = ridge
    g = torch.func.grad(lambda lam: hg(lam).pow(2).sum())(prob.lam)
    reference = 2 * _central(hg, prob.lam).T @ hg(prob.lam)
    assert torch.allclose(g, reference, rtol=1e-6, atol=1e-9)


def test_differentiable_true_keeps_the_autograd_graph(ridge):
    prob, hg = ridge
    jac = torch.autograd.functional.jacobian(lambda lam: hg(lam, differentiable=True), prob.lam)
    assert float(torch.linalg.norm(jac - _central(hg, prob.lam)) / torch.linalg.norm(jac)) < 1e-6


@pytest.mark.parametrize("solver", [solvers.Neumann(300, alpha="auto"), solvers.Unrolled(5, inner_lr=5e-3),
                                    solvers.FirstOrder()], ids=["neumann", "unrolled", "first_order"])
def test_other_solvers_under_vmap_equal_their_loop(ridge, solver):
    prob, hg = ridge
    lams = prob.lam + 0.2 * torch.randn(4, prob.lam.numel(), dtype=torch.float64)
    batched = torch.func.vmap(lambda lam: hg(lam, solver))(lams)
    looped = torch.stack([hg(lam, solver) for lam in lams])
    # Neumann: the loop stops at its tolerance and its alpha estimate early; vmap runs every term
    assert (batched - looped).abs().max() < (1e-8 if isinstance(solver, solvers.Neumann) else 1e-12)


def test_nested_two_levels_under_vmap(ridge):
    prob, _ = ridge
    lams = prob.lam + 0.2 * torch.randn(3, prob.lam.numel(), dtype=torch.float64)

    def nested(lam):
        w = torch.linalg.solve(prob.A() - torch.diag(torch.exp(prob.lam)) + torch.diag(torch.exp(lam)),
                               prob.X.T @ prob.y)
        return hyperlevel.nested_hypergradient([prob.outer, prob.inner], [{"lam": lam}, {"w": w}])["lam"]

    batched = torch.func.vmap(nested)(lams)
    assert (batched - torch.stack([nested(lam) for lam in lams])).abs().max() < 1e-12
