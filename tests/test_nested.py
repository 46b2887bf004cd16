"""nested_hypergradient against independent dense references (tests/_nested_reference.py)."""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path

import pytest
import torch

import hyperlevel
from hyperlevel import ConvergenceWarning, InvalidProblemError, NonFiniteError, nested_hypergradient
from hyperlevel.solvers import ConjugateGradient, FiniteDifference, FirstOrder, Neumann, Unrolled

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nested_reference as ref  # noqa: E402

DT = torch.float64


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def as_api(f, dims):
    """Losses on dicts: level 0 is {"w": vector, "s": scalar} (two entries, one 0-d), the others {"x": vector}."""

    def flat(ds):
        top = torch.cat([ds[0]["w"], ds[0]["s"].reshape(1)])
        return [top, *[d["x"] for d in ds[1:]]]

    def level(k):
        return lambda *ds: f[k](*flat(ds))

    losses = [level(k) for k in range(len(dims))]

    def params(xs):
        return [{"w": xs[0][:-1].clone(), "s": xs[0][-1].clone()}, *[{"x": x.clone()} for x in xs[1:]]]

    return losses, params


def flat_top(g):
    return torch.cat([g["w"], g["s"].reshape(1)])


class Case:
    def __init__(self, dims, seed=0, dtype=DT):
        self.dims = dims
        self.f = ref.make_problem(dims, seed=seed, dtype=dtype)
        self.x0 = torch.randn(dims[0], generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64).to(
            dtype
        )
        zeros = [torch.zeros(d, dtype=dtype) for d in dims]
        self.xs = [self.x0, *ref.equilibrium(self.f, self.x0, zeros)]
        self.losses, self.to_params = as_api(self.f, dims)
        self.params = self.to_params(self.xs)
        self._ref = None

    @property
    def reference(self):
        if self._ref is None:
            self._ref = ref.total_gradient(self.f, self.x0, self.xs)
        return self._ref


@pytest.fixture(scope="module")
def three():
    return Case([3, 4, 5])


@pytest.fixture(scope="module")
def four():
    return Case([2, 2, 2, 2], seed=3)


# -- (1) three levels ---------------------------------------------------------------------------------------------


def test_three_level_reference_matches_finite_differences_of_the_resolved_objective(three):
    fd = ref.fd_gradient(three.f, three.x0, three.xs)
    assert rel(three.reference, fd) < 1e-7


def test_three_level_cg_matches_the_dense_reference(three):
    g, info = nested_hypergradient(three.losses, three.params, ConjugateGradient(iterations=50), return_info=True)
    assert set(g) == {"w", "s"} and g["s"].shape == () and g["w"].dtype == DT
    assert rel(flat_top(g), three.reference) < 1e-10
    assert info.converged and [lv.level for lv in info.levels] == [1, 2]
    assert all(lv.solves > 0 and lv.converged for lv in info.levels)
    assert info.hvp_evals == sum(lv.hvp_evals for lv in info.levels) > 0


def test_three_level_neumann_matches_the_dense_reference(three):
    g, info = nested_hypergradient(
        three.losses, three.params, Neumann(iterations=500, alpha=0.3, tol=1e-9), return_info=True
    )
    assert info.converged
    assert rel(flat_top(g), three.reference) < 1e-7


def test_the_default_solver_is_cg_and_the_default_call_matches(three):
    g = nested_hypergradient(three.losses, three.params)
    assert rel(flat_top(g), three.reference) < 1e-10


# -- (2) four levels ----------------------------------------------------------------------------------------------


def test_four_level_cg_matches_the_dense_reference(four):
    g, info = nested_hypergradient(four.losses, four.params, ConjugateGradient(iterations=50), return_info=True)
    assert [lv.level for lv in info.levels] == [1, 2, 3] and info.converged
    assert rel(flat_top(g), four.reference) < 1e-10


@pytest.mark.slow
def test_four_level_reference_matches_finite_differences(four):
    fd = ref.fd_gradient(four.f, four.x0, four.xs)
    assert rel(four.reference, fd) < 1e-7


@pytest.mark.slow
def test_four_level_neumann_matches_the_dense_reference(four):
    g = nested_hypergradient(four.losses, four.params, Neumann(iterations=300, alpha=0.4, tol=1e-8))
    assert rel(flat_top(g), four.reference) < 1e-6


# -- (3) two levels delegate to hypergradient --------------------------------------------------------------------


@pytest.mark.parametrize(
    "solver",
    [
        ConjugateGradient(iterations=50),
        Neumann(iterations=200, alpha=0.3),
        Unrolled(steps=5, inner_lr=0.1),
        FirstOrder(),
        FiniteDifference(inner_lr=0.1, epsilon=1e-3),
    ],
    ids=["cg", "neumann", "unrolled", "first_order", "finite_difference"],
)
def test_two_levels_equal_hypergradient(solver):
    case = Case([3, 4], seed=5)
    o, i = case.params
    f, g = case.losses
    expected = hyperlevel.hypergradient(f, g, o, i, solver)
    got = nested_hypergradient(case.losses, case.params, solver)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-13, atol=1e-15)
    if isinstance(solver, ConjugateGradient):
        assert rel(flat_top(got), case.reference) < 1e-10


# -- (4) wrong nestings give other numbers ------------------------------------------------------------------------


def test_partial_and_joint_nestings_differ_from_the_nested_answer(three):
    correct = three.reference
    ours = flat_top(nested_hypergradient(three.losses, three.params))
    assert rel(ours, correct) < 1e-10
    # (a) level 1 ignores that level 2 responds to it: stationary for the partial derivative only
    partial_eq = [three.x0, *ref.equilibrium(three.f, three.x0, three.xs, mode="partial")]
    partial = ref.total_gradient(three.f, three.x0, partial_eq, mode="partial")
    # (b) levels 1 and 2 lumped into one inner level minimising losses[1] + losses[2] jointly
    set_sizes, fj = ref.joint(three.f)
    set_sizes(three.xs[1:])
    z0 = torch.cat(three.xs[1:])
    joint_eq = [three.x0, *ref.equilibrium(fj, three.x0, [three.x0, z0])]
    joint = ref.total_gradient(fj, three.x0, joint_eq)
    print(f"partial: {rel(partial, correct):.3e}, joint: {rel(joint, correct):.3e}")
    for wrong in (partial, joint):  # errors ~1e-2 or more, against ~1e-16 for ours
        assert rel(wrong, correct) > 5e-3, rel(wrong, correct)
        assert rel(ours, wrong) > 5e-3
    # the partial variant's own reference is sound too (so the difference is the nesting, not the reference)
    assert rel(partial, ref.fd_gradient(three.f, three.x0, partial_eq, mode="partial")) < 1e-6


# -- (5) errors ---------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(three):
    L, P = three.losses, three.params
    with pytest.raises(InvalidProblemError, match="at least 2 levels"):
        nested_hypergradient(L[:1], P[:1])
    with pytest.raises(InvalidProblemError, match="3 losses but 2 parameter dicts"):
        nested_hypergradient(L, P[:2])
    with pytest.raises(InvalidProblemError, match=r"losses\[1\].*shape \(2,\)"):
        nested_hypergradient([L[0], lambda *ds: torch.stack([L[1](*ds)] * 2), L[2]], P)
    with pytest.raises(NonFiniteError, match=r"losses\[2\]"):
        nested_hypergradient([L[0], L[1], lambda *ds: L[2](*ds) * float("nan")], P)
    extra = copy.copy(P)
    extra[1] = {**P[1], "ghost": torch.zeros(2, dtype=DT)}
    with pytest.raises(InvalidProblemError, match=r"params\[1\] entries \['ghost'\]"):
        nested_hypergradient(L, extra)
    top = copy.copy(P)
    top[0] = {**P[0], "idle": torch.ones(3, dtype=DT)}
    with pytest.raises(InvalidProblemError, match=r"params\[0\] entries \['idle'\]"):
        nested_hypergradient(L, top)
    mixed = copy.copy(P)
    mixed[2] = {"x": P[2]["x"].float()}
    with pytest.raises(InvalidProblemError, match="one dtype"):
        nested_hypergradient(L, mixed)
    with pytest.raises(InvalidProblemError, match="FiniteDifference"):
        nested_hypergradient(L, P, FiniteDifference())
    with pytest.raises(InvalidProblemError, match="solver must be"):
        nested_hypergradient(L, P, "cg")


def test_user_tensors_are_untouched_and_info_reports_nonconvergence(three):
    before = [{k: v.clone() for k, v in p.items()} for p in three.params]
    with pytest.warns(ConvergenceWarning, match="level"):
        _, info = nested_hypergradient(three.losses, three.params, ConjugateGradient(iterations=1), return_info=True)
    assert not info.converged and any(not lv.converged for lv in info.levels)
    for p, b in zip(three.params, before, strict=True):
        for k in p:
            assert torch.equal(p[k], b[k]) and p[k].grad is None and not p[k].requires_grad
    with pytest.raises(hyperlevel.ConvergenceError):
        nested_hypergradient(three.losses, three.params, ConjugateGradient(iterations=1, on_nonconvergence="raise"))


# -- (6) unrolled and first order ---------------------------------------------------------------------------------


def test_unrolled_nested_equals_autograd_through_explicit_steps(three):
    K, lr = 3, 0.1
    f = three.f
    x0 = three.x0.clone().requires_grad_()

    def step_level2(x0, x1):
        x2 = three.xs[2]
        for _ in range(K):
            x2 = x2 if x2.requires_grad else x2.detach().requires_grad_()
            (g,) = torch.autograd.grad(f[2](x0, x1, x2), x2, create_graph=True)
            x2 = x2 - lr * g
        return x2

    x1 = three.xs[1]
    for _ in range(K):
        x1 = x1 if x1.requires_grad else x1.detach().requires_grad_()
        (g,) = torch.autograd.grad(f[1](x0, x1, step_level2(x0, x1)), x1, create_graph=True)
        x1 = x1 - lr * g
    (expected,) = torch.autograd.grad(f[0](x0, x1, step_level2(x0, x1)), x0)
    got, info = nested_hypergradient(three.losses, three.params, Unrolled(steps=K, inner_lr=lr), return_info=True)
    assert rel(flat_top(got), expected) < 1e-13
    assert info.iterations == K and [lv.loss_evals for lv in info.levels] == [K, (K + 1) * K]
    with pytest.raises(InvalidProblemError, match="truncate"):
        nested_hypergradient(three.losses, three.params, Unrolled(steps=3, inner_lr=lr, truncate=1))


def test_first_order_is_the_partial_derivative(three):
    x0 = three.x0.clone().requires_grad_()
    (expected,) = torch.autograd.grad(three.f[0](x0, *three.xs[1:]), x0)
    got = nested_hypergradient(three.losses, three.params, FirstOrder())
    assert rel(flat_top(got), expected) < 1e-14
    assert rel(flat_top(got), three.reference) > 0.05  # and it is not the nested answer


# -- (7) float32 --------------------------------------------------------------------------------------------------


def test_float32_runs_and_returns_float32(three):
    losses32, _ = as_api(ref.make_problem(three.dims, seed=0, dtype=torch.float32), three.dims)
    p32 = [{k: v.float() for k, v in p.items()} for p in three.params]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        g = nested_hypergradient(losses32, p32)
    assert all(v.dtype == torch.float32 for v in g.values())
    assert rel(flat_top(g).double(), three.reference) < 1e-4
