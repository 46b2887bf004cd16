"""The parts the Engine composes: step selection, phase optimizers, the non-finite policy, data-parallel
agreement, the checkpoint folder policy and what levels report to the logs."""

import sys

import pytest
import torch
from torch import nn

import hyperlevel as hl
from hyperlevel import steps
from hyperlevel.runfolder import RunFolderInUseError
from hyperlevel.signals import StopSignals
from hyperlevel.training import StepRecord, logged_values
from hyperlevel.training.agreement import agree_on_step
from hyperlevel.training.checkpoints import RunCheckpoints
from hyperlevel.training.nonfinite import NonFinitePolicy
from hyperlevel.training.optimizers import PhaseOptimizers


def _problem():
    return hl.Problem([hl.Level("up", {"u": torch.ones(2)}, lambda P, _: (P["up"]["u"] * P["low"]["v"]).sum()),
                       hl.Level("low", {"v": torch.ones(2)}, lambda P, _: (P["up"]["u"] * P["low"]["v"] ** 2).sum(),
                                hl.sgd(0.5))])


@pytest.mark.parametrize("options, kind", [
    ({"outer": ["up"], "inner": ["low"]}, steps.BilevelStep),
    ({"outer": [], "inner": ["low"]}, steps.InnerStep),
    ({"outer": ["up"], "inner": ["low"], "nested": True}, steps.NestedStep),
    ({"outer": ["up"], "inner": ["low"], "method": hl.algorithms.get("soba", outer_lr=0.1, inner_lr=0.1)},
     steps.MethodStep),
])
def test_each_phase_gets_its_step_kind(options, kind):
    phase = hl.Phase("p", **options)
    chosen = steps.for_phase(phase)
    assert type(chosen) is kind and chosen.phase is phase
    assert [k for k in steps.STEP_KINDS if k.handles(phase)][0] is kind


def test_phase_optimizers_factories_and_restore_part_way():
    problem = _problem()
    phase = hl.Phase("p", outer=["up"], inner=["low"], optimizers={"up": hl.adam(0.1)},
                     lr_schedulers={"low": hl.cosine_restarts(4)})
    opts = PhaseOptimizers()
    assert not opts.active
    opts.start(problem, phase, part_way=False)
    assert isinstance(opts.optimizers["up"], torch.optim.Adam)  # the phase's factory
    assert isinstance(opts.optimizers["low"], torch.optim.SGD)  # else the level's own
    assert set(opts.schedulers) == {"low"}
    problem["up"].params["u"].grad = torch.ones(2)
    opts.optimizers["up"].step()
    opts.step_schedulers()
    saved = opts.state_dict()
    lr = opts.learning_rates()["low"]
    assert lr < 0.5  # the cosine schedule moved

    for part_way, expect_state in ((True, True), (False, False)):
        again = PhaseOptimizers()
        again.restore_on_start(saved)
        again.start(problem, phase, part_way=part_way)
        assert bool(again.optimizers["up"].state) is expect_state
        assert (again.learning_rates()["low"] == lr) is expect_state
    again.clear()
    assert not again.active


def test_nonfinite_policy_raises_with_the_step_or_skips_and_counts():
    phase = hl.Phase("p", outer=["up"], inner=["low"])
    record = StepRecord(0, "p", 0)
    with pytest.raises(hl.NonFiniteError, match=r"step 7 \(phase 'p'\): bad"):
        with NonFinitePolicy("raise").guard(7, phase, record):
            raise hl.NonFiniteError("bad")
    skip = NonFinitePolicy("skip")
    for step in (3, 4):
        with skip.guard(step, phase, record):
            raise hl.SolverDivergedError("diverged")
    assert skip.skipped == 2 and record.skipped and skip.first_skip.startswith("step 3")
    with pytest.warns(hl.SkippedStepsWarning, match="2 of 10 steps"):
        skip.warn_if_skipped(10)
    with pytest.raises(ValueError) as info:
        with skip.guard(5, phase, record):
            raise ValueError("other")
    if sys.version_info >= (3, 11):
        assert "step 5, phase 'p'" in info.value.__notes__[0]
    with pytest.raises(hl.InvalidProblemError):
        NonFinitePolicy("ignore")


def test_agreement_stops_every_rank_when_one_was_interrupted_and_averages_losses():
    other_rank = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)  # that rank was interrupted
    signals, record = StopSignals(), StepRecord(0, "p", 0, outer_loss=1.0, inner_loss=2.0)
    agree_on_step(lambda t: (t + other_rank) / 2, signals, record)
    assert signals.requested and signals.signum is None
    assert (record.outer_loss, record.inner_loss) == (2.0, 3.5)
    quiet = StopSignals()
    agree_on_step(lambda t: t, quiet, StepRecord(0, "p", 0, outer_loss=1.0, inner_loss=1.0))
    assert not quiet.requested


def test_run_checkpoints_write_keep_prune_and_claim(tmp_path):
    folder = RunCheckpoints(tmp_path, every=2, keep=2)
    assert [folder.due(s) for s in (1, 2, 3, 4)] == [False, True, False, True]
    for step in (2, 4, 6):
        assert folder.write(lambda s=step: {"step": s}, step) == tmp_path / "last.pt"
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_00000004.pt", "step_00000006.pt"]
    assert hl.checkpoint.load(tmp_path / "last.pt") == {"step": 6}
    state, used = folder.read(tmp_path / "last.pt")
    assert state == {"step": 6} and used == tmp_path / "last.pt"
    with pytest.raises(RunFolderInUseError):
        folder.claim(new_run=True)
    with folder.claim(new_run=False):
        assert (tmp_path / ".hyperlevel.lock").exists()
    with RunCheckpoints(tmp_path, overwrite=True).claim(new_run=True):
        assert not list(tmp_path.glob("*.pt"))
    assert RunCheckpoints(tmp_path, writer=False).write(lambda: {"x": 1}, 1) is None
    with pytest.raises(hl.InvalidProblemError, match="checkpoint_every needs a checkpoint_dir"):
        RunCheckpoints(None, every=5)


def test_levels_choose_what_is_logged():
    class Temperature(nn.Module):
        def __init__(self):
            super().__init__()
            self.log_t = nn.Parameter(torch.zeros(()))

        def logged_values(self):
            return {"t": float(self.log_t.exp())}

    weights = hl.LossWeights(["a", "b"], init=[1.0, 2.0])
    f = lambda P, _: sum(p.sum() for lv in P.values() for p in lv.values())  # noqa: E731
    problem = hl.Problem([hl.Level("w", weights, f), hl.Level("t", Temperature(), f),
                          hl.Level("net", nn.Linear(2, 1), f)])
    logged = logged_values(problem)
    assert logged.keys() == {"w", "t"}
    assert logged["w"] == pytest.approx({"a": 1.0, "b": 2.0}) and logged["t"] == {"t": 1.0}
    record = StepRecord(1, "p", 1, weights=logged)
    assert record.scalars()["weights/w/b"] == pytest.approx(2.0)
