"""The joint (Lagrangian) nested hypergradient, the dense path and MINRES (docs/nesting.md, docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import hyperlevel
from hyperlevel import ConvergenceWarning, InvalidProblemError, nested_hypergradient
from hyperlevel.solvers import ConjugateGradient, Dense, MinimalResidual, minres
from hyperlevel.solvers.dense import dense_jacobian, saddle_solve

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _problems import Logistic, Ridge  # noqa: E402
from test_nested import Case, flat_top, rel  # noqa: E402

DT = torch.float64


@pytest.fixture(scope="module")
def three():
    return Case([3, 4, 5])


@pytest.fixture(scope="module")
def four():
    return Case([2, 2, 2, 2], seed=3)


# -- the joint method against the dense references -----------------------------------------------------------------


@pytest.mark.parametrize("solver", [MinimalResidual(), Dense()], ids=["minres", "dense"])
def test_joint_three_levels_matches_the_dense_reference(three, solver):
    g, info = nested_hypergradient(three.losses, three.params, solver, return_info=True)
    assert rel(flat_top(g), three.reference) < 1e-12
    assert info.method == "joint" and info.converged
    # the joint system has the level-1 and level-2 variables and one adjoint per level-2 variable: 4 + 2 * 5
    assert info.joint_size == 14 and [lv.size for lv in info.levels] == [14, 5]
    assert info.joint_residual < 1e-10
    if isinstance(solver, MinimalResidual):
        assert 0 < info.joint_iterations <= 14 and info.levels[0].hvp_evals == info.joint_iterations
    assert info.gradient_evals == 3  # one evaluation of every loss, whatever the iteration counts


@pytest.mark.parametrize("solver", [MinimalResidual(), Dense()], ids=["minres", "dense"])
def test_joint_four_levels_matches_the_reference_and_the_chord_method(four, solver):
    g, info = nested_hypergradient(four.losses, four.params, solver, return_info=True)
    assert rel(flat_top(g), four.reference) < 1e-12
    assert info.joint_size == 2 + 2 * 2 + 4 * 2 and [lv.size for lv in info.levels] == [14, 6, 2]
    chord = nested_hypergradient(four.losses, four.params, ConjugateGradient(iterations=50))
    assert rel(flat_top(g), flat_top(chord)) < 1e-12  # two independent algorithms, one number


def test_default_solver_is_the_joint_method_dense_when_small(three, monkeypatch):
    g, info = nested_hypergradient(three.losses, three.params, return_info=True)
    assert info.solver == "Dense" and info.method == "joint" and rel(flat_top(g), three.reference) < 1e-12
    monkeypatch.setattr(sys.modules["hyperlevel.nested"], "DENSE_JOINT_MAX_SIZE", 13)  # the system has 14 unknowns
    g, info = nested_hypergradient(three.losses, three.params, return_info=True)
    assert info.solver == "MinimalResidual" and rel(flat_top(g), three.reference) < 1e-12


def test_joint_nonconvergence_warns_and_names_the_level(three):
    with pytest.warns(ConvergenceWarning, match="level 1"):
        _, info = nested_hypergradient(three.losses, three.params, MinimalResidual(iterations=2), return_info=True)
    assert not info.converged and info.joint_iterations == 2 and info.joint_residual > 1e-6


def test_dense_joint_rejects_a_level_at_a_saddle():
    """Level 1 maximises instead of minimising (its loss is concave in its own variable): the joint Hessian's
    inertia is wrong and the dense path says so instead of returning a number."""
    x0 = torch.tensor([0.3], dtype=DT)

    def top(a, b, c):
        return (b["y"] ** 2).sum() + (c["z"] ** 2).sum() + (a["x"] ** 2).sum()

    def mid(a, b, c):  # stationary at y = 0 (z* = x + y / 2 -> h_1 = -y^2 + ...): a maximum in y
        return -(b["y"] ** 2).sum() + 0.1 * ((c["z"] - a["x"]) ** 2).sum()

    def low(a, b, c):
        return ((c["z"] - a["x"] - b["y"] / 2) ** 2).sum()

    params = [{"x": x0}, {"y": torch.zeros(1, dtype=DT)}, {"z": x0.clone()}]
    with pytest.raises(InvalidProblemError, match="negative eigenvalue"):
        nested_hypergradient([top, mid, low], params, Dense())


# -- the dense two-level path ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", [Ridge.make(), Logistic.make()], ids=["ridge", "logistic"])
def test_dense_two_levels_is_exact(problem):
    o, i = problem.params()
    g, info = hyperlevel.hypergradient(problem.outer, problem.inner, o, i, Dense(), return_info=True)
    assert rel(g["lam"], problem.exact()) < 1e-10
    assert info.solver == "Dense" and info.residual < 1e-12 and info.hvp_evals == i["w"].numel() + 1
    default, dinfo = hyperlevel.hypergradient(problem.outer, problem.inner, o, i, return_info=True)
    assert dinfo.solver == "Dense" and torch.equal(default["lam"], g["lam"])


def test_default_two_level_solver_switches_to_cg_above_the_crossover(monkeypatch):
    problem = Ridge.make()
    o, i = problem.params()
    monkeypatch.setattr(sys.modules["hyperlevel.hypergradient"], "DENSE_MAX_SIZE", i["w"].numel() - 1)
    g, info = hyperlevel.hypergradient(problem.outer, problem.inner, o, i, return_info=True)
    assert info.solver == "ConjugateGradient" and rel(g["lam"], problem.exact()) < 1e-8


def test_dense_rejects_an_indefinite_inner_hessian():
    o = {"a": torch.tensor(1.0, dtype=DT)}
    i = {"w": torch.zeros(3, dtype=DT)}
    inner = lambda o, i: (i["w"] ** 2).sum() - 2 * o["a"] * i["w"][0] ** 2  # noqa: E731 - a saddle in w[0]
    outer = lambda o, i: (i["w"] - 1).pow(2).sum()  # noqa: E731
    with pytest.raises(InvalidProblemError, match="not positive definite.*smallest eigenvalue -2"):
        hyperlevel.hypergradient(outer, inner, o, i, Dense())


def test_dense_jacobian_is_the_hessian_of_a_known_function():
    A = torch.randn(5, 5, dtype=DT)
    A = A @ A.T
    x = torch.randn(2, dtype=DT, requires_grad=True)
    y = torch.randn(3, dtype=DT, requires_grad=True)
    z = torch.cat([x, y])
    value = 0.5 * z @ A @ z + (x**3).sum()
    grads = torch.autograd.grad(value, [x, y], create_graph=True)
    expected = A.clone()
    expected[:2, :2] += torch.diag(6 * x.detach())
    torch.testing.assert_close(dense_jacobian(grads, [x, y]), expected, rtol=1e-13, atol=1e-13)


# -- MINRES ----------------------------------------------------------------------------------------------------------


def test_minres_solves_symmetric_indefinite_systems_with_an_exact_residual():
    g = torch.Generator().manual_seed(0)
    n = 40
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    eig = torch.rand(n, generator=g, dtype=DT) + 0.2
    eig[::3] *= -1
    A = Q @ torch.diag(eig) @ Q.T
    b = torch.randn(n, generator=g, dtype=DT)
    x, info = minres(lambda v: A @ v, b, iterations=200, tol=1e-12)
    assert info.converged and info.iterations <= n + 5 and info.matvecs == info.iterations
    true = float((A @ x - b).norm() / b.norm())
    assert true < 1e-11 and abs(true - info.residual) < 1e-11  # the recurrence tracks the true residual
    torch.testing.assert_close(x, torch.linalg.solve(A, b), rtol=1e-9, atol=1e-10)
    x1, info1 = minres(lambda v: A @ v, b, iterations=200, tol=1e-10, x0=x)  # warm start at the answer
    assert info1.iterations == 0 and info1.matvecs == 1 and torch.equal(x1, x)
    zero, info0 = minres(lambda v: A @ v, torch.zeros(n, dtype=DT), iterations=5, tol=1e-12)
    assert info0.matvecs == 0 and not zero.any()
    assert saddle_solve(A, b, int((eig < 0).sum()), "A").sub(x).norm() < 1e-9


def test_minimal_residual_two_levels_equals_cg():
    problem = Logistic.make()
    o, i = problem.params()
    mr = hyperlevel.hypergradient(problem.outer, problem.inner, o, i, MinimalResidual())
    assert rel(mr["lam"], problem.exact()) < 1e-9
