"""Bad input gets a clear error naming what is wrong; non-convergence is never silent."""

import warnings

import pytest
import torch

import hyperlevel
from hyperlevel import solvers
from hyperlevel.errors import (
    ConvergenceError,
    ConvergenceWarning,
    InvalidProblemError,
    NonFiniteError,
    SolverDivergedError,
)


def test_non_scalar_loss_is_named(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match=r"outer_loss returned a tensor of shape \(40,\)"):
        hyperlevel.hypergradient(lambda o, i: (prob.Xv @ i["w"] - prob.yv) ** 2, prob.inner, o, w)


def test_non_finite_loss_is_named(ridge):
    prob, o, w = ridge
    with pytest.raises(NonFiniteError, match="inner_loss"):
        hyperlevel.hypergradient(prob.outer, lambda o, i: prob.inner(o, i) * float("nan"), o, w)


def test_non_finite_parameter(ridge):
    prob, o, w = ridge
    o = {"lam": o["lam"].clone()}
    o["lam"][0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"outer_params\['lam'\]"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w)


def test_mixed_dtypes_rejected(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match="float32"):
        hyperlevel.hypergradient(prob.outer, prob.inner, {"lam": o["lam"].float()}, w)


def test_not_a_dict_and_empty_dict(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match="outer_params must be a dict"):
        hyperlevel.hypergradient(prob.outer, prob.inner, [o["lam"]], w)
    with pytest.raises(InvalidProblemError, match="inner_params is empty"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, {})
    with pytest.raises(InvalidProblemError, match="integer|floating point"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, {"w": torch.ones(3, dtype=torch.int64)})


@pytest.mark.parametrize(
    "solver", [solvers.ConjugateGradient(50), solvers.Neumann(10, 1e-3), solvers.Unrolled(2, 1e-3)]
)
def test_unused_inner_parameter_is_named(ridge, solver):
    prob, o, w = ridge
    w = {**w, "ghost": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(InvalidProblemError, match="ghost"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver)


@pytest.mark.parametrize(
    "solver",
    [solvers.ConjugateGradient(50), solvers.Neumann(10, 1e-3), solvers.FiniteDifference(1e-3), solvers.Unrolled(2, 1e-3)],
)
def test_unused_outer_parameter_is_named(ridge, solver):
    prob, o, w = ridge
    o = {**o, "orphan": torch.zeros(2, dtype=torch.float64)}
    with pytest.raises(InvalidProblemError, match="orphan"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver)


def test_neumann_divergence_names_solver_and_quantity(ridge):
    prob, o, w = ridge
    with pytest.raises(SolverDivergedError, match=r"Neumann\(alpha=1.0\).*series term.*lower alpha"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Neumann(iterations=200, alpha=1.0))


def test_unrolled_divergence_is_reported(ridge):
    prob, o, w = ridge
    with pytest.raises((SolverDivergedError, NonFiniteError), match="Unrolled|unrolled|inner_loss"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(400, inner_lr=1.0))


def test_conjugate_gradient_nonconvergence_warns_and_can_raise(ridge):
    prob, o, w = ridge
    with pytest.warns(ConvergenceWarning, match="ConjugateGradient stopped after 2 iterations"):
        _, info = hyperlevel.hypergradient(
            prob.outer, prob.inner, o, w, solvers.ConjugateGradient(iterations=2), return_info=True
        )
    assert not info.converged and info.iterations == 2 and info.residual > 1e-10
    with pytest.raises(ConvergenceError):
        hyperlevel.hypergradient(
            prob.outer, prob.inner, o, w, solvers.ConjugateGradient(iterations=2, on_nonconvergence="raise")
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hyperlevel.hypergradient(
            prob.outer, prob.inner, o, w, solvers.ConjugateGradient(iterations=2, on_nonconvergence="ignore")
        )


def test_indefinite_hessian_is_reported():
    o = {"a": torch.tensor(1.0, dtype=torch.float64)}
    w = {"w": torch.tensor([0.0, 0.0], dtype=torch.float64)}

    def inner(o, i):  # saddle: not a minimum
        return o["a"] * (i["w"][0] ** 2 - i["w"][1] ** 2) + (i["w"] * torch.tensor([1.0, 1.0])).sum() * o["a"]

    def outer(o, i):
        return (i["w"] ** 2).sum() + i["w"].sum()

    with pytest.raises(InvalidProblemError, match="not positive definite"):
        hyperlevel.hypergradient(outer, inner, o, w, solvers.ConjugateGradient(10))


def test_linear_inner_loss_rejected():
    o = {"a": torch.tensor(1.0, dtype=torch.float64)}
    w = {"w": torch.tensor([1.0], dtype=torch.float64)}
    with pytest.raises(InvalidProblemError, match="linear in the inner parameters|not positive definite"):
        hyperlevel.hypergradient(lambda o, i: (i["w"] ** 2).sum(), lambda o, i: (o["a"] * i["w"]).sum(), o, w)


def test_bad_solver_and_constructor_arguments(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match="solver must be"):
        hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver="cg")
    with pytest.raises(ValueError):
        solvers.ConjugateGradient(iterations=0)
    with pytest.raises(ValueError):
        solvers.Neumann(alpha=-1)
    with pytest.raises(ValueError):
        solvers.Unrolled(steps=3, truncate=5)
    with pytest.raises(ValueError):
        solvers.FiniteDifference(epsilon=0)
