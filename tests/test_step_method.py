"""MethodStep: one phase step is one iteration of the registry's algorithm, written back into the levels."""

import pytest
import torch

import hyperlevel as hl
from hyperlevel.algorithms import Oracle
from hyperlevel.steps import MethodStep, StepContext
from hyperlevel.training import StepRecord


def _problem(prob, o, w):
    return hl.Problem([hl.Level("outer", o, lambda P, _: prob.outer(P["outer"], P["inner"])),
                       hl.Level("inner", w, lambda P, _: prob.inner(P["outer"], P["inner"]))])


@pytest.mark.parametrize("name", ["bome", "soba"])
def test_method_step_is_one_iteration_of_the_algorithm(ridge, name):
    prob, o, w = ridge
    x0, y0 = {"outer/lam": o["lam"].clone()}, {"inner/w": w["w"].clone() + 0.1}
    problem = _problem(prob, {"lam": o["lam"].clone()}, {"w": w["w"].clone() + 0.1})
    options = {"inner_steps": 3} if name == "bome" else {}
    phase = hl.Phase("m", outer=["outer"], inner=["inner"], method=hl.algorithms.get(name, outer_lr=1e-2,
                                                                                    inner_lr=1e-3, **options))
    record = StepRecord(0, "m", 0)
    step = MethodStep(phase)
    for _ in range(2):  # the second iteration uses the auxiliary state the first left
        step(StepContext(problem, {}), record)

    reference = hl.algorithms.get(name, outer_lr=1e-2, inner_lr=1e-3, **options)
    oracle = Oracle(lambda x, y: prob.outer({"lam": x["outer/lam"]}, {"w": y["inner/w"]}),
                    lambda x, y: prob.inner({"lam": x["outer/lam"]}, {"w": y["inner/w"]}))
    x, y = x0, y0
    for _ in range(2):
        last_outer = oracle.value("outer", x, y)
        x, y = reference.step(oracle, x, y)
    torch.testing.assert_close(problem["outer"].params["lam"].detach(), x["outer/lam"], rtol=0, atol=0)
    torch.testing.assert_close(problem["inner"].params["w"].detach(), y["inner/w"], rtol=0, atol=0)
    assert record.outer_loss == pytest.approx(last_outer, rel=1e-12)
    assert not torch.equal(y["inner/w"], y0["inner/w"])  # the iteration did move the levels


def test_method_step_refuses_a_nonfinite_update(ridge):
    prob, o, w = ridge
    problem = _problem(prob, {"lam": o["lam"].clone()}, {"w": w["w"].clone()})
    phase = hl.Phase("m", outer=["outer"], inner=["inner"], method=hl.algorithms.get("soba", outer_lr=1e308,
                                                                                    inner_lr=1e308))
    problem["inner"].params["w"].data.add_(1.0)  # away from w*: 1e308 x the inner gradient overflows
    before = problem["outer"].params["lam"].detach().clone()
    with pytest.raises(hl.NonFiniteError, match="non-finite update"):
        MethodStep(phase)(StepContext(problem, {}), StepRecord(0, "m", 0))
    assert torch.equal(problem["outer"].params["lam"].detach(), before)  # nothing written
