"""Problem validation, loss weights, phases, and the engine: exact resume, non-finite handling, logging."""

import csv
import math
import os
import signal

import pytest
import torch
from _trilevel import build, flat_state
from torch import nn

import hyperlevel as hl
from hyperlevel.errors import InvalidProblemError, NonFiniteError


def _obj(P, batch):
    return sum((t**2).sum() for lv in P.values() for t in lv.values())


# ---------------------------------------------------------------- Problem and Level validation
def test_problem_rejects_bad_structures():
    a = {"x": torch.ones(2)}
    with pytest.raises(InvalidProblemError, match="at least 2 levels"):
        hl.Problem([hl.Level("a", a, _obj)])
    with pytest.raises(InvalidProblemError, match="duplicate level names"):
        hl.Problem([hl.Level("a", a, _obj), hl.Level("a", {"y": torch.ones(2)}, _obj)])
    with pytest.raises(InvalidProblemError, match="'x' of level 'a'"):
        hl.Problem([hl.Level("a", a, _obj), hl.Level("b", {"z": a["x"]}, _obj)])
    shared = nn.Linear(2, 2)
    with pytest.raises(InvalidProblemError, match="belong to exactly one level"):
        hl.Problem([hl.Level("a", shared, _obj), hl.Level("b", {"w": shared.weight}, _obj)])
    with pytest.raises(InvalidProblemError, match="no trainable parameters"):
        hl.Level("a", {}, _obj)
    with pytest.raises(InvalidProblemError, match="float64"):
        hl.Problem([hl.Level("a", a, _obj), hl.Level("b", {"y": torch.ones(2, dtype=torch.float64)}, _obj)])
    with pytest.raises(InvalidProblemError, match="must not contain"):
        hl.Problem([hl.Level("a/b", a, _obj), hl.Level("b", {"y": torch.ones(2)}, _obj)])


def test_objective_ignoring_its_own_level_is_rejected_before_training():
    a, b = {"x": torch.ones(2)}, {"y": torch.ones(2)}
    problem = hl.Problem([
        hl.Level("a", a, lambda P, _: (P["a"]["x"] ** 2).sum() + (P["b"]["y"] ** 2).sum()),
        hl.Level("b", b, lambda P, _: (P["a"]["x"] ** 2).sum()),  # ignores b
    ])
    engine = hl.Engine(problem, [hl.Phase("p", outer=["a"], inner=["b"], max_steps=1)])
    with pytest.raises(InvalidProblemError, match="parameters of level 'b' reach neither"):
        engine.run()


def test_hyperparameter_only_in_the_inner_objective_is_accepted():
    a, b = {"lam": torch.ones(2)}, {"w": torch.ones(2)}
    problem = hl.Problem([
        hl.Level("a", a, lambda P, _: ((P["b"]["w"] - 2) ** 2).sum()),  # reaches a only through b's response
        hl.Level("b", b, lambda P, _: (P["a"]["lam"] * P["b"]["w"] ** 2).sum() - P["b"]["w"].sum()),
    ])
    before = a["lam"].detach().clone()
    summary = hl.Engine(problem, [hl.Phase("p", outer=["a"], inner=["b"], max_steps=2)]).run()
    assert summary.status == "finished" and summary.steps == 2
    assert not torch.equal(a["lam"].detach(), before)  # the hyper-parameter moved through b's response


def test_schedule_validation_names_the_problem():
    _, _, problem, _ = build()
    with pytest.raises(InvalidProblemError, match=r"outer levels \['nope'\]"):
        hl.Engine(problem, [hl.Phase("p", outer=["nope"], inner=["lower"])])
    with pytest.raises(InvalidProblemError, match="more than one role"):
        hl.Phase("p", outer=["lower"], inner=["lower"])
    with pytest.raises(InvalidProblemError, match="unique"):
        hl.Schedule([hl.Phase("p", [], ["lower"]), hl.Phase("p", [], ["lower"])])
    with pytest.raises(InvalidProblemError, match="checkpoint_dir"):
        hl.Engine(problem, [hl.Phase("p", [], ["lower"])], checkpoint_every=5)


# ---------------------------------------------------------------- LossWeights
def test_loss_weights_regularised_total_and_positivity():
    w = hl.LossWeights(["a", "b"])
    assert w.weights() == {"a": 1.0, "b": 1.0}
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(4.0)}
    expected = 2.0 / 2 + 4.0 / 2 + 2 * math.log(2.0)
    assert w.total(None, losses).item() == pytest.approx(expected)
    opt = torch.optim.SGD(w.parameters(), lr=100.0)  # a huge step cannot make a weight non-positive
    w.total(None, losses).backward()
    opt.step()
    assert all(v > 0 for v in w.weights().values())
    assert w.effective_weights()["a"] == pytest.approx(1 / (2 * w.weights()["a"]))
    with pytest.raises(InvalidProblemError, match="missing"):
        w.total(None, {"a": torch.tensor(1.0)})


def test_loss_weights_optimum_satisfies_stationarity():
    w = hl.LossWeights(["a"])
    opt = torch.optim.Adam(w.parameters(), lr=0.05)
    for _ in range(2000):
        opt.zero_grad()
        w.total(None, {"a": torch.tensor(3.0)}).backward()
        opt.step()
    s = w.weights()["a"]
    assert 3.0 * (1 + s**2) == pytest.approx(4 * s**3, rel=1e-3)  # L (1 + s^2) = 4 s^3


# ---------------------------------------------------------------- Engine
def test_phases_update_the_right_levels():
    model, weights, problem, schedule = build(s1_steps=3, s2_steps=3)
    engine = hl.Engine(problem, schedule)
    w0, m0 = weights.log_s.detach().clone(), flat_state(model, weights).clone()
    engine.run(stop_after=3)
    assert engine.phase.name == "S2"
    w1 = weights.log_s.detach().clone()
    assert not torch.equal(w0, w1) and not torch.equal(m0, flat_state(model, weights))
    engine.run()  # the rest: S2 must leave the weights untouched
    assert torch.equal(weights.log_s.detach(), w1)


@pytest.mark.parametrize("stop", [4, 9])  # 4: inside S1; 9: in the middle of S2
def test_resume_is_exact(tmp_path, stop):
    model, weights, problem, schedule = build(s1_steps=6, s2_steps=6)
    hl.Engine(problem, schedule).run()
    reference = flat_state(model, weights).clone()

    model, weights, problem, schedule = build(s1_steps=6, s2_steps=6)
    engine = hl.Engine(problem, schedule, checkpoint_dir=tmp_path)
    summary = engine.run(stop_after=stop)
    assert summary.status == "stopped" and summary.steps == stop

    model, weights, problem, schedule = build(seed=123, s1_steps=6, s2_steps=6)  # different init: all restored
    resumed = hl.Engine(problem, schedule, checkpoint_dir=tmp_path)
    summary = resumed.run(resume=tmp_path / "last.pt")
    assert summary.status == "finished" and summary.steps == 12
    diff = (flat_state(model, weights) - reference).abs().max().item()
    print(f"resume after step {stop}: max |difference| = {diff}")
    assert diff == 0.0


def _stopped_and_resumed_equals_uninterrupted(tmp_path, stop_after, make_kwargs) -> bool:
    """Run uninterrupted; run again stopped after ``stop_after`` steps and resumed; compare all parameters.
    ``make_kwargs()`` gives fresh ``build`` arguments each time (solvers and stop criteria carry state)."""
    model, weights, problem, schedule = build(**make_kwargs())
    hl.Engine(problem, schedule).run()
    reference = flat_state(model, weights).clone()
    model, weights, problem, schedule = build(**make_kwargs())
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(stop_after=stop_after)
    model, weights, problem, schedule = build(**make_kwargs())
    hl.Engine(problem, schedule).run(resume=tmp_path / "last.pt")
    return torch.equal(flat_state(model, weights), reference)


def test_resume_is_exact_with_conjugate_gradient_phase(tmp_path):
    def kwargs():
        cg = hl.solvers.ConjugateGradient(iterations=10, on_nonconvergence="ignore")
        return {"s1_steps": 3, "s2_steps": 4, "solver_s2": cg}

    assert _stopped_and_resumed_equals_uninterrupted(tmp_path, 5, kwargs)


def test_resume_rejects_a_different_schedule(tmp_path):
    _, _, problem, schedule = build(s1_steps=2, s2_steps=4)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(stop_after=3)
    _, _, problem, _ = build()
    other = hl.Schedule([hl.Phase("only", outer=[], inner=["lower"])])
    with pytest.raises(InvalidProblemError, match="phase 'S2'"):
        hl.Engine(problem, other).run(resume=tmp_path / "last.pt")


def test_nonfinite_raises_with_level_and_step_or_is_skipped():
    _, _, problem, schedule = build(nan_at=12)
    with pytest.raises(NonFiniteError, match=r"step \d+ \(phase 'S1'\).*(level 'upper'|level 'lower')"):
        hl.Engine(problem, schedule).run()
    _, weights, problem, schedule = build(nan_at=12, s1_steps=4, s2_steps=2)
    summary = hl.Engine(problem, schedule, on_nonfinite="skip").run()
    assert summary.skipped_steps > 0 and summary.status == "finished"
    assert all(math.isfinite(v) for v in weights.weights().values())


def test_convergence_criterion_ends_a_phase_early():
    until = hl.Converged("upper", tol=10.0, window=2)  # a loose tolerance: converged at the first check
    _, _, problem, schedule = build(s1_steps=50, s2_steps=2, until=until)
    records = []

    class Collect(hl.Callback):
        def on_step_end(self, engine, record):
            records.append(record)

    hl.Engine(problem, schedule, callbacks=[Collect()]).run()
    s1 = [r for r in records if r.phase == "S1"]
    assert len(s1) == 3 and s1[-1].converged and len(records) == 5


def test_logs_csv_and_tensorboard_and_truncate_on_resume(tmp_path):
    _, _, problem, schedule = build(s1_steps=3, s2_steps=3)
    cbs = [hl.CSVLogger(tmp_path / "log.csv"), hl.TensorBoardLogger(tmp_path / "tb"), hl.ProgressBar()]
    hl.Engine(problem, schedule, callbacks=cbs, checkpoint_dir=tmp_path).run(stop_after=4)
    _, _, problem, schedule = build(s1_steps=3, s2_steps=3)
    cbs = [hl.CSVLogger(tmp_path / "log.csv"), hl.TensorBoardLogger(tmp_path / "tb")]
    hl.Engine(problem, schedule, callbacks=cbs).run(resume=tmp_path / "last.pt")
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    steps = sorted({int(r["step"]) for r in rows})
    assert steps == [1, 2, 3, 4, 5, 6]
    names = {r["name"] for r in rows}
    assert {"loss/outer", "loss/inner", "weights/upper/mse", "hypergradient_norm/upper", "lr/middle"} <= names
    per_step = [r for r in rows if r["name"] == "loss/inner"]
    assert len(per_step) == 6  # no duplicated rows after the resume
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    _, _, problem, schedule = build(s1_steps=2, s2_steps=2)
    engine = hl.Engine(problem, schedule, checkpoint_dir=tmp_path)
    engine.run(stop_after=2)
    good = hl.checkpoint.load(tmp_path / "last.pt")

    def crash(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        engine.save_checkpoint()
    monkeypatch.undo()
    again = hl.checkpoint.load(tmp_path / "last.pt")
    assert again["global_step"] == good["global_step"] == 2
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_ctrl_c_checkpoints_and_resumes_exactly(tmp_path):
    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    hl.Engine(problem, schedule).run()
    reference = flat_state(model, weights).clone()

    class Interrupt(hl.Callback):
        def on_step_end(self, engine, record):
            if record.step == 6:
                os.kill(os.getpid(), signal.SIGINT)

    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    summary = hl.Engine(problem, schedule, callbacks=[Interrupt()], checkpoint_dir=tmp_path).run()
    assert summary.status == "interrupted" and summary.steps == 6
    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    hl.Engine(problem, schedule).run(resume=tmp_path / "last.pt")
    assert torch.equal(flat_state(model, weights), reference)


def test_checkpoint_loads_with_weights_only(tmp_path):
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path, checkpoint_extra=lambda: {"note": "x"}).run()
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["format"] == "hyperlevel-engine-v1" and state["extra"]["note"] == "x"


def test_reusing_the_solvers_inner_gradient_saves_a_pass_and_matches_when_outer_is_still():
    def run(reuse, outer_lr):
        torch.manual_seed(0)
        net = nn.Linear(3, 1)
        weights = hl.LossWeights(["a", "b"])
        X, Y = torch.randn(64, 3), torch.randn(64, 1)
        data = [(X[i], Y[i]) for i in range(64)]
        calls = {"n": 0}

        def objective(P, batch):
            calls["n"] += 1
            x, y = batch
            out = torch.func.functional_call(net, P["net"], (x,))
            return weights.total(P["w"], {"a": ((out - y) ** 2).mean(), "b": (out - y).abs().mean()})

        problem = hl.Problem([
            hl.Level("w", weights, objective, hl.sgd(outer_lr), hl.ResumableLoader(data[:16], 8, seed=1)),
            hl.Level("net", net, objective, hl.sgd(0.1), hl.ResumableLoader(data[16:], 8, seed=2)),
        ])
        phase = hl.Phase("p", outer=["w"], inner=["net"], solver=hl.solvers.FiniteDifference(0.1),
                         max_steps=5, reuse_inner_gradient=reuse)
        hl.Engine(problem, [phase], check_objectives=False).run()
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()]), calls["n"]

    (a, calls_plain), (b, calls_reuse) = run(False, 0.0), run(True, 0.0)
    assert torch.equal(a, b)  # with a still outer level the reused gradient is the same gradient
    assert calls_plain - calls_reuse == 5  # one objective evaluation (forward + backward) saved per step
    c, _ = run(True, 0.5)
    assert not torch.equal(a, c)


def test_nested_phase_uses_the_exact_nested_hypergradient():
    torch.manual_seed(0)
    dt = torch.float64
    a = {"x": torch.randn(2, dtype=dt)}
    b = {"y": torch.randn(3, dtype=dt)}
    c = {"z": torch.randn(3, dtype=dt)}
    A = torch.randn(3, 2, dtype=dt)

    def f_top(P, _):
        return ((P["c"]["z"] - 1) ** 2).sum() + (P["b"]["y"] ** 2).sum() + 0.1 * (P["a"]["x"] ** 4).sum()

    def f_mid(P, _):
        return ((P["b"]["y"] - A @ P["a"]["x"]) ** 2).sum() + 0.5 * ((P["c"]["z"] + P["b"]["y"]) ** 2).sum()

    def f_low(P, _):
        return ((P["c"]["z"] - torch.tanh(P["b"]["y"])) ** 2).sum() + 0.1 * (P["c"]["z"] ** 4).sum()

    problem = hl.Problem([hl.Level("a", a, f_top, hl.sgd(0.1)), hl.Level("b", b, f_mid, hl.sgd(0.1)),
                          hl.Level("c", c, f_low, hl.sgd(0.1))])
    as_args = lambda f, names: (lambda *ps: f(dict(zip(names, ps)), None))  # noqa: E731
    names = ["a", "b", "c"]
    solver = hl.solvers.ConjugateGradient(50)
    expected_a = hl.nested_hypergradient([as_args(f, names) for f in (f_top, f_mid, f_low)],
                                         [{k: v.detach().clone() for k, v in p.items()} for p in (a, b, c)],
                                         solver=solver)
    expected_b = hl.nested_hypergradient(
        [lambda y, z: f_mid({"a": a, "b": y, "c": z}, None), lambda y, z: f_low({"a": a, "b": y, "c": z}, None)],
        [{k: v.detach().clone() for k, v in p.items()} for p in (b, c)], solver=solver)
    x0, y0 = a["x"].detach().clone(), b["y"].detach().clone()
    phase = hl.Phase("nested", outer=["a"], inner=["b", "c"], solver=solver, nested=True, max_steps=1)
    hl.Engine(problem, [phase]).run()
    torch.testing.assert_close(a["x"].detach(), x0 - 0.1 * expected_a["x"])
    torch.testing.assert_close(b["y"].detach(), y0 - 0.1 * expected_b["y"])


def test_objective_check_does_not_consume_training_batches():
    model_a, weights_a, problem, schedule = build(s1_steps=3, s2_steps=2)
    hl.Engine(problem, schedule, check_objectives=True).run()
    model_b, weights_b, problem, schedule = build(s1_steps=3, s2_steps=2)
    hl.Engine(problem, schedule, check_objectives=False).run()
    assert torch.equal(flat_state(model_a, weights_a), flat_state(model_b, weights_b))


def test_resume_is_exact_when_the_convergence_test_runs_after_resuming(tmp_path):
    def kwargs():  # the stop criterion compares at every step
        return {"s1_steps": 6, "s2_steps": 2, "until": hl.Converged("upper", tol=1e-12, window=1)}

    assert _stopped_and_resumed_equals_uninterrupted(tmp_path, 3, kwargs)


def test_resume_is_exact_with_a_warm_started_solver(tmp_path):
    def kwargs():
        warm = hl.solvers.ConjugateGradient(iterations=2, warm_start=True, on_nonconvergence="ignore")
        return {"s1_steps": 3, "s2_steps": 5, "solver_s2": warm}

    assert _stopped_and_resumed_equals_uninterrupted(tmp_path, 6, kwargs)
