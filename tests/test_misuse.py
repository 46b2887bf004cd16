"""The misuse corpus (issue 13): wrong setups, each answered by a warning or an error that names the fix.

None of them may return a different quantity silently. Each test is one setup a user could write.
"""

import io
import math
import re
import warnings

import pytest
import torch
from torch import nn

import hyperlevel as hl
from hyperlevel import solvers
from hyperlevel.errors import (
    DivergenceWarning,
    InnerOptimalityError,
    InnerOptimalityWarning,
    InvalidProblemError,
    SkippedStepsWarning,
    SolverDivergedError,
)


def _saddle():
    o = {"a": torch.tensor(1.0, dtype=torch.float64)}
    w = {"w": torch.tensor([0.0, 0.0], dtype=torch.float64)}

    def inner(o, i):
        return o["a"] * (i["w"][0] ** 2 - i["w"][1] ** 2) + o["a"] * i["w"].sum()

    def outer(o, i):
        return (i["w"] ** 2).sum() + i["w"].sum()

    return outer, inner, o, w


# ---------------------------------------------------------------- 1-5: implicit solvers at a non-stationary point
@pytest.mark.parametrize("solver", [solvers.ConjugateGradient(), solvers.Neumann(3000, alpha="auto")],
                         ids=["cg", "neumann"])
def test_01_02_implicit_solver_at_w_zero_warns_with_the_fix(ridge, solver):
    prob, o, w = ridge
    with pytest.warns(InnerOptimalityWarning, match=r"not stationary.*solve_inner.*Unrolled / FiniteDifference"):
        _, info = hl.hypergradient(prob.outer, prob.inner, o, {"w": torch.zeros_like(w["w"])}, solver,
                                   return_info=True)
    assert info.stationarity == pytest.approx(1.0)  # the documented scale: 1 at w = 0


def test_03_cg_at_w_star_plus_5_warns(ridge):
    prob, o, w = ridge
    with pytest.warns(InnerOptimalityWarning, match="relative stationarity"):
        _, info = hl.hypergradient(prob.outer, prob.inner, o, {"w": w["w"] + 5}, return_info=True)
    assert info.stationarity > 1 and info.inner_gradient_norm > 1


def test_04_nonstationary_point_can_raise_under_the_policy(ridge):
    prob, o, w = ridge
    with pytest.raises(InnerOptimalityError, match="solve_inner"):
        hl.hypergradient(prob.outer, prob.inner, o, {"w": w["w"] + 1},
                         solvers.ConjugateGradient(on_nonstationary="raise"))


def test_05_stationary_point_is_silent_and_reported(ridge):
    prob, o, w = ridge
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = hl.hypergradient(prob.outer, prob.inner, o, w, return_info=True)
    assert info.stationarity < 1e-12


# ---------------------------------------------------------------- 6-10: divergence and indefinite Hessians
def test_06_unrolled_with_a_huge_step_reports_divergence(ridge):
    prob, o, w = ridge
    with pytest.warns(DivergenceWarning, match=r"diverged.*Lower inner_lr below 2 / lambda_max = 1\.9"):
        _, info = hl.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(10, inner_lr=100),
                                   return_info=True)
    assert not info.converged and info.diverged


def test_07_finite_difference_step_that_increases_the_inner_loss(ridge):
    prob, o, w = ridge
    with pytest.warns(DivergenceWarning, match="FiniteDifference.*inner loss"):
        _, info = hl.hypergradient(prob.outer, prob.inner, o, {"w": torch.zeros_like(w["w"])},
                                   solvers.FiniteDifference(inner_lr=1.0), return_info=True)
    assert not info.converged and info.diverged


def test_08_neumann_alpha_too_large_gives_a_safe_alpha(ridge):
    prob, o, w = ridge
    with pytest.raises(SolverDivergedError, match=r"lower alpha below 1\.9\d*e-02.*alpha='auto'"):
        hl.hypergradient(prob.outer, prob.inner, o, w, solvers.Neumann(200, alpha=1.0))


def test_09_neumann_on_an_indefinite_hessian_does_not_advise_lowering_alpha():
    outer, inner, o, w = _saddle()
    with pytest.raises(SolverDivergedError, match="negative curvature.*no alpha") as err:
        hl.hypergradient(outer, inner, o, w, solvers.Neumann(500, alpha=0.1))
    assert "lower alpha below" not in str(err.value)


def test_10_cg_on_an_indefinite_hessian_does_not_advise_ignoring_it():
    outer, inner, o, w = _saddle()
    with pytest.raises(InvalidProblemError, match="solve_inner.*Unrolled") as err:
        hl.hypergradient(outer, inner, o, w, solvers.ConjugateGradient(10))
    assert "ignore" not in str(err.value)


# ---------------------------------------------------------------- 11-14: option values
@pytest.mark.parametrize("make", [
    lambda: solvers.ConjugateGradient(on_nonconvergence="fail"),
    lambda: solvers.Neumann(on_nonconvergence="fail"),
    lambda: solvers.ConjugateGradient(on_nonstationary="quiet"),
    lambda: solvers.Neumann(alpha="fast"),
], ids=["cg-fail", "neumann-fail", "nonstationary", "alpha"])
def test_11_14_invalid_option_values_are_rejected(make):
    with pytest.raises(ValueError, match="must be"):
        make()


# ---------------------------------------------------------------- 15-19: functional API misuse
def test_15_swapped_loss_arguments_are_named(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match=r"KeyError\('w'\).*\(inner, outer\) instead of \(outer, inner\)"):
        hl.hypergradient(prob.outer, lambda i, o: prob.inner(o, i), o, w)


def test_16_jacobian_of_a_detached_result_raises_instead_of_zeros(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match="differentiable=True"):
        torch.autograd.functional.jacobian(
            lambda lam: hl.hypergradient(prob.outer, prob.inner, {"lam": lam}, w)["lam"], o["lam"])


def test_17_return_info_inside_vmap_is_explained(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match="return_info is not available inside torch.func"):
        torch.func.vmap(lambda lam: hl.hypergradient(prob.outer, prob.inner, {"lam": lam}, w,
                                                     return_info=True)[0]["lam"])(o["lam"].expand(2, -1))


def test_18_finite_difference_inside_a_transform_names_the_exact_equivalent(ridge):
    prob, o, w = ridge
    with pytest.raises(InvalidProblemError, match=r"Unrolled\(steps=1, inner_lr=0.01\)"):
        torch.func.grad(lambda lam: hl.hypergradient(prob.outer, prob.inner, {"lam": lam}, w,
                                                     solvers.FiniteDifference())["lam"].sum())(o["lam"])


def test_19_nested_three_levels_inside_a_transform_is_refused(ridge):
    prob, o, w = ridge
    losses = [lambda a, b, c: prob.outer(a, b) + (c["z"] ** 2).sum(), lambda a, b, c: prob.inner(a, b),
              lambda a, b, c: ((c["z"] - b["w"].sum()) ** 2).sum()]
    z = {"z": w["w"].sum().reshape(1)}
    with pytest.raises(InvalidProblemError, match="3 levels does not run inside torch.func"):
        torch.func.vmap(lambda lam: hl.nested_hypergradient(losses, [{"lam": lam}, w, z])["lam"])(
            o["lam"].expand(2, -1))


@pytest.mark.parametrize("solver", [None, solvers.MinimalResidual(), solvers.ConjugateGradient()],
                         ids=["default-joint", "joint-minres", "chord-cg"])
def test_20_nested_middle_level_off_its_optimum_warns_naming_the_level(solver):
    import _nested_reference as ref

    f = ref.make_problem([2, 3, 2], seed=1)
    x0 = torch.randn(2, dtype=torch.float64)
    eq = ref.equilibrium(f, x0, [x0, torch.zeros(3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)])
    losses = [_level_loss(f[k]) for k in range(3)]
    with pytest.warns(InnerOptimalityWarning, match=r"level 1 \(params\[1\]") as rec:
        # both nested methods measure each level's total stationarity (the joint one from its Lagrangian)
        hl.nested_hypergradient(losses, [{"x": x0}, {"x": eq[0] + 0.5}, {"x": eq[1]}], solver)
    assert any("level 1" in str(r.message) for r in rec)


def test_21_solve_inner_on_a_loss_without_minimiser():
    with pytest.raises(InvalidProblemError, match="linear in the inner parameters"):
        hl.solve_inner(lambda o, i: (o["a"] * i["w"]).sum(), {"a": torch.ones(2)}, {"w": torch.ones(2)})
    with pytest.raises(ValueError, match="method must be"):
        hl.solve_inner(lambda o, i: (i["w"] ** 2).sum(), {"a": torch.ones(2)}, {"w": torch.ones(2)}, method="bfgs")


# ---------------------------------------------------------------- 22-30: the engine
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return self.lin(x)


def _reweighting(direct: bool, data: bool = True):
    """Data reweighting: outer = per-sample log-weights, inner = a linear model. ``direct``: the inner objective
    calls the module instead of evaluating it at the parameters it is given."""
    torch.manual_seed(0)
    net = _Net()
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    weights = {"logw": torch.zeros(16)}

    def predict(P, xb):
        if direct:
            return net(xb)
        return torch.func.functional_call(net, P["model"], (xb,))

    def inner(P, batch):
        xb, yb = batch
        return (torch.exp(P["weights"]["logw"]) * ((predict(P, xb) - yb) ** 2).squeeze(1)).mean()

    def outer(P, batch):
        xb, yb = batch
        return ((predict(P, xb) - yb) ** 2).mean()

    feed = [(x, y)] if data else None
    return hl.Problem([hl.Level("weights", weights, outer, hl.sgd(0.1), feed),
                       hl.Level("model", net, inner, hl.sgd(0.1), feed)])


@pytest.mark.parametrize("solver", [solvers.FiniteDifference(), solvers.ConjugateGradient(5),
                                    solvers.Unrolled(2, inner_lr=0.1)], ids=["fd", "cg", "unrolled"])
def test_22_24_objective_calling_the_module_directly_is_refused_before_training(solver):
    problem = _reweighting(direct=True)
    engine = hl.Engine(problem, [hl.Phase("p", outer=["weights"], inner=["model"], solver=solver, max_steps=3)])
    with pytest.raises(InvalidProblemError, match=r"objective of level '(weights|model)' uses the live parameters.*"
                                                  r"torch.func.functional_call"):
        engine.run()
    assert engine.global_step == 0


def test_25_level_without_data_is_named():
    problem = _reweighting(direct=False, data=False)
    engine = hl.Engine(problem, [hl.Phase("p", outer=["weights"], inner=["model"], max_steps=1)])
    with pytest.raises(InvalidProblemError, match=r"level 'weights' .*has no data.*Pass data="):
        engine.run()


def test_26_objective_reading_a_level_that_does_not_exist():
    a, b = {"x": torch.ones(2)}, {"y": torch.ones(2)}
    problem = hl.Problem([hl.Level("a", a, lambda P, _: (P["a"]["x"] ** 2).sum() + (P["b"]["y"] ** 2).sum()),
                          hl.Level("b", b, lambda P, _: (P["B"]["y"] ** 2).sum())])
    with pytest.raises(InvalidProblemError, match=r"level 'b' raised KeyError\('B'\).*levels are \['a', 'b'\]"):
        hl.Engine(problem, [hl.Phase("p", outer=["a"], inner=["b"], max_steps=1)]).run()


def test_27_bad_engine_and_callback_options():
    problem = _reweighting(direct=False)
    phases = [hl.Phase("p", outer=["weights"], inner=["model"], max_steps=1)]
    with pytest.raises(InvalidProblemError, match="keep_checkpoints must be an integer >= 0"):
        hl.Engine(problem, phases, keep_checkpoints=-1)
    with pytest.raises(InvalidProblemError, match="on_nonfinite must be"):
        hl.Engine(problem, phases, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="print_every"):
        hl.ProgressBar(print_every=0)


def test_28_skipped_nonfinite_steps_are_counted_and_warned():
    a, b = {"x": torch.ones(2)}, {"y": torch.ones(2)}
    calls = {"n": 0}

    def inner(P, _):
        calls["n"] += 1
        bad = float("nan") if calls["n"] > 2 else 1.0
        return ((P["b"]["y"] - P["a"]["x"]) ** 2).sum() * bad

    problem = hl.Problem([hl.Level("a", a, lambda P, _: (P["b"]["y"] ** 2).sum()), hl.Level("b", b, inner)])
    engine = hl.Engine(problem, [hl.Phase("p", outer=["a"], inner=["b"], max_steps=6)], on_nonfinite="skip")
    with pytest.warns(SkippedStepsWarning, match=r"(\d) of 6 steps were skipped.*first: step 1"):
        summary = engine.run()
    assert summary.skipped_steps >= 5


def test_29_errors_inside_a_step_name_the_step_and_phase():
    a, b = {"x": torch.ones(2)}, {"y": torch.ones(2)}
    calls = {"n": 0}

    def outer(P, _):
        calls["n"] += 1
        if calls["n"] > 4:
            raise RuntimeError("user bug")
        return ((P["b"]["y"] - 1) ** 2).sum()

    problem = hl.Problem([hl.Level("a", a, outer),
                          hl.Level("b", b, lambda P, _: ((P["b"]["y"] - P["a"]["x"]) ** 2).sum())])
    engine = hl.Engine(problem, [hl.Phase("warm", outer=["a"], inner=["b"], max_steps=5,
                                          solver=solvers.ConjugateGradient(5))])
    with pytest.raises(RuntimeError, match="user bug") as err:
        engine.run()
    notes = getattr(err.value, "__notes__", [])
    assert any(re.search(r"step \d, phase 'warm'", note) for note in notes), (notes, err.value)


def test_30_resuming_a_finished_run_with_a_larger_budget_continues_it(tmp_path):
    def run(max_steps, resume=None, folder="a"):
        problem = _reweighting(direct=False)
        engine = hl.Engine(problem, [hl.Phase("p", outer=["weights"], inner=["model"], max_steps=max_steps,
                                              solver=solvers.Unrolled(2, inner_lr=0.1))],
                           checkpoint_dir=tmp_path / folder)
        summary = engine.run(resume=resume)
        return summary, {k: t.detach().clone() for lv in problem.parameters().values() for k, t in lv.items()}

    first, _ = run(4)
    assert first.status == "finished" and first.steps == 4
    resumed, params = run(7, resume=first.checkpoint)
    assert resumed.steps == 7
    _, straight = run(7, folder="b")
    assert all(torch.equal(params[k], straight[k]) for k in straight)


def test_31_progress_bar_prints_lines_when_not_a_terminal():
    problem = _reweighting(direct=False)
    out = io.StringIO()
    hl.Engine(problem, [hl.Phase("p", outer=["weights"], inner=["model"], max_steps=10)],
              callbacks=[hl.ProgressBar(print_every=4, file=out)]).run()
    text = out.getvalue()
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["4", "8"]
    assert "outer=" in lines[0]


def test_32_testing_module_exports_only_its_api():
    names = dir(hl.testing)
    assert "torch" not in names and "Callable" not in names and "dataclass" not in names
    assert names == sorted(hl.testing.__all__) and "check_nested_hypergradient" in names
    namespace: dict = {}
    exec("from hyperlevel.testing import *", namespace)  # noqa: S102 - a fixed statement, no user text
    assert set(namespace) - {"__builtins__"} == set(hl.testing.__all__)


def test_33_unrolled_blowup_to_nonfinite_raises_with_the_step(ridge):
    prob, o, w = ridge
    with pytest.raises(SolverDivergedError, match="inner_lr is likely too large"):
        hl.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(400, inner_lr=1.0))
    assert math.isfinite(float(prob.inner(o, w)))


def _level_loss(fk):
    """A dict-taking loss over the flat-vector reference loss ``fk``."""
    return lambda *ps: fk(*[p["x"] for p in ps])
