"""NestedStep on a linear-quadratic three-level chain, where the nested hypergradients have closed forms.

    L_c = 1/2 |z - B y|^2                      -> R_c(y) = B y
    L_b = 1/2 |y - A x|^2 + mu/2 |z|^2         -> Gamma_b = (y - A x) + mu B^T z,  dy/dx = (I + mu B^T B)^-1 A
    L_a = 1/2 |z - t|^2 + nu/2 |x|^2           -> Gamma_a = nu x + (dy/dx)^T B^T (z - t)

(all second derivatives constant, so the formulas hold at any point, not only at the equilibrium).
"""

import torch

import hyperlevel as hl
from hyperlevel.steps import NestedStep, StepContext
from hyperlevel.training import StepRecord

dt = torch.float64


def test_nested_step_moves_each_level_by_its_closed_form_nested_hypergradient():
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn(3, 2, generator=g, dtype=dt), torch.randn(4, 3, generator=g, dtype=dt)
    t = torch.randn(4, generator=g, dtype=dt)
    mu, nu, lr = 0.3, 0.2, 0.1
    x0, y0, z0 = (torch.randn(n, generator=g, dtype=dt) for n in (2, 3, 4))
    a, b, c = {"x": x0.clone()}, {"y": y0.clone()}, {"z": z0.clone()}

    def f_a(P, _):
        return 0.5 * ((P["c"]["z"] - t) ** 2).sum() + 0.5 * nu * (P["a"]["x"] ** 2).sum()

    def f_b(P, _):
        return 0.5 * ((P["b"]["y"] - A @ P["a"]["x"]) ** 2).sum() + 0.5 * mu * (P["c"]["z"] ** 2).sum()

    def f_c(P, _):
        return 0.5 * ((P["c"]["z"] - B @ P["b"]["y"]) ** 2).sum()

    problem = hl.Problem([hl.Level("a", a, f_a, hl.sgd(lr)), hl.Level("b", b, f_b, hl.sgd(lr)),
                          hl.Level("c", c, f_c, hl.sgd(lr))])
    phase = hl.Phase("n", outer=["a"], inner=["b", "c"], solver=hl.solvers.Dense(), nested=True)
    optimizers = {n: problem[n].optimizer(list(problem[n].named_parameters().values())) for n in "abc"}
    record = StepRecord(0, "n", 0)
    NestedStep(phase)(StepContext(problem, optimizers), record)

    dy_dx = torch.linalg.solve(torch.eye(3, dtype=dt) + mu * B.T @ B, A)
    gamma_a = nu * x0 + dy_dx.T @ B.T @ (z0 - t)
    gamma_b = (y0 - A @ x0) + mu * B.T @ z0
    y1 = y0 - lr * gamma_b
    torch.testing.assert_close(a["x"].detach(), x0 - lr * gamma_a, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b["y"].detach(), y1, rtol=1e-10, atol=1e-12)
    # the innermost level then takes one plain step, after the levels above moved
    torch.testing.assert_close(c["z"].detach(), z0 - lr * (z0 - B @ y1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.tensor(record.outer_loss, dtype=dt), f_a({"a": {"x": x0}, "c": {"z": z0}}, None))
    assert set(record.hypergradient_norm) == {"a", "b", "c"}
