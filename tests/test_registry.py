"""The solver registry and the declared targets: the only dispatch for testing, nested, the engine and TriCo."""

import pytest
import torch
from _problems import Ridge, rel

import hyperlevel
from hyperlevel import solvers
from hyperlevel.errors import InvalidProblemError
from hyperlevel.solvers.target import Declaration, ImplicitTarget, PartialTarget, UnrolledTarget
from hyperlevel.testing import check_hypergradient

ORIGINAL = ["cg", "neumann", "finite_difference", "unrolled", "first_order"]


def test_every_registered_name_builds_its_solver_with_a_declaration():
    names = solvers.available()
    assert names[: len(ORIGINAL)] == ORIGINAL
    for name in names:
        solver = solvers.get(name)
        assert solver.method == name, name
        assert isinstance(solver.declaration, Declaration), name
        assert solver.declaration.describe()


def test_unknown_name_and_unknown_option_are_clear_errors():
    with pytest.raises(InvalidProblemError, match=r"unknown solver 'conjugate'; available: cg, neumann, "):
        solvers.get("conjugate")
    with pytest.raises(InvalidProblemError, match=r"'cg' does not accept \['alpha'\]; its options: \['iterations'"):
        solvers.get("cg", alpha=0.1)
    assert solvers.options("neumann")["alpha"] == 0.01
    built = solvers.get("unrolled", steps=3, inner_lr=0.1)
    assert (built.steps, built.inner_lr) == (3, 0.1)


def test_declarations_of_the_original_solvers():
    assert solvers.get("cg").declaration.target == ImplicitTarget()
    assert solvers.get("cg").declaration.nested == "implicit"
    fd = solvers.get("finite_difference", inner_lr=0.05).declaration
    assert fd.target == UnrolledTarget(1, 0.05) and not fd.exact and fd.nested is None
    truncated = solvers.Unrolled(8, 0.01, truncate=3).declaration
    assert truncated.target == UnrolledTarget(8, 0.01, frozen_steps=5) and truncated.nested is None
    assert solvers.get("first_order").declaration.target == PartialTarget()


def test_truncated_unrolled_is_checked_against_its_own_target():
    """Truncated back-propagation is the gradient of the last T steps from the (held) iterate K - T."""
    prob = Ridge.make(n=30, p=4)
    o, w = prob.params()
    w = {"w": w["w"] + 0.3}
    report = check_hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(6, 0.01, truncate=2))
    assert report.error_vs_own_target < 1e-6, str(report)
    full = check_hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(2, 0.01))
    assert rel(report.hypergradient["lam"], full.hypergradient["lam"]) > 1e-3  # a different quantity


class _Halved(solvers.Solver):
    """A user's solver: half the partial derivative, declared as such (an approximation of the partial target)."""

    method = "halved"

    def __init__(self, factor: float = 0.5):
        self.factor = factor

    @property
    def declaration(self):
        return Declaration(PartialTarget(), exact=self.factor == 1.0, how=f"scaled by {self.factor}",
                           nested="partial")

    def solve(self, outer_loss, inner_loss, outer, inner, reduce=None):
        grads, info = solvers.FirstOrder().solve(outer_loss, inner_loss, outer, inner, reduce)
        return [self.factor * g for g in grads], info


def test_a_new_solver_is_one_class_and_one_registry_line():
    solvers.register("halved", _Halved)
    try:
        assert "halved" in solvers.available()
        prob = Ridge.make(n=30, p=3)
        o, w = prob.params()
        outer = lambda o, i: prob.outer(o, i) + (o["lam"] ** 2).sum()  # noqa: E731 - partial is non-zero
        exact = check_hypergradient(outer, prob.inner, o, w, solvers.get("halved", factor=1.0))
        assert exact.error_vs_own_target < 1e-8  # compared with the partial target, as declared
        half = check_hypergradient(outer, prob.inner, o, w, solvers.get("halved"))
        assert abs(half.error_vs_own_target - 0.5) < 1e-6
        # nested dispatch follows the declaration (partial: the top loss's partial derivative)
        losses = [lambda a, b, c: (a["x"] ** 2).sum() + (b["y"] * c["z"]).sum(),
                  lambda a, b, c: ((b["y"] - a["x"]) ** 2).sum(), lambda a, b, c: ((c["z"] - b["y"]) ** 2).sum()]
        params = [{"x": torch.ones(2, dtype=torch.float64)}, {"y": torch.ones(2, dtype=torch.float64)},
                  {"z": torch.ones(2, dtype=torch.float64)}]
        g = hyperlevel.nested_hypergradient(losses, params, solvers.get("halved"))
        torch.testing.assert_close(g["x"], 2 * torch.ones(2, dtype=torch.float64))  # the partial path: 2x
        with pytest.raises(InvalidProblemError, match="already registered"):
            solvers.register("halved", solvers.FirstOrder)
    finally:
        solvers.SOLVERS.pop("halved", None)


def test_an_undeclared_solver_is_an_error_not_a_silent_implicit_comparison():
    class Undeclared(solvers.Solver):
        def solve(self, outer_loss, inner_loss, outer, inner, reduce=None):
            return solvers.FirstOrder().solve(outer_loss, inner_loss, outer, inner, reduce)

    prob = Ridge.make(n=30, p=3)
    o, w = prob.params()
    with pytest.raises(InvalidProblemError, match="Undeclared declares no target"):
        check_hypergradient(prob.outer, prob.inner, o, w, Undeclared())
    params = [{"x": torch.ones(1, dtype=torch.float64)}] * 3
    losses = [lambda a, b, c: (a["x"] * b["x"] * c["x"]).sum() + (b["x"] ** 2).sum() + (c["x"] ** 2).sum()] * 3
    with pytest.raises(InvalidProblemError, match="declares no target"):
        hyperlevel.nested_hypergradient(losses, params, Undeclared())


def test_phase_points_a_solver_name_to_the_registry():
    with pytest.raises(InvalidProblemError, match=r"get\('cg'\)"):
        hyperlevel.Phase("p", outer=["a"], inner=["b"], solver="cg")


def test_trico_builds_any_registered_solver_and_rejects_unknown_names():
    from examples.trico.config import ConfigError, SolverConfig
    from examples.trico.problem import build_solver

    for name in solvers.available():
        solver = build_solver(SolverConfig(name=name), inner_lr=3e-3)
        assert solver.method == name
        if "inner_lr" in solvers.options(name):
            assert solver.inner_lr == 3e-3, name  # the phase's inner learning rate
    unrolled = build_solver(SolverConfig(name="unrolled", params={"inner_lr": "1e-2"}), inner_lr=3e-3)
    assert (unrolled.steps, unrolled.inner_lr) == (1, 1e-2)  # TriCo's one step; YAML's string 1e-2 read as float
    with pytest.raises(ConfigError, match=r"algorithm.solver.name: unknown solver 'gmress'; available: \['cg'"):
        SolverConfig(name="gmress").validate("algorithm.solver")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['alpha'\] for solver 'cg'"):
        SolverConfig(name="cg", params={"alpha": 1}).validate("algorithm.solver")
