"""TriCo training: the tri-level wiring, train -> resume -> evaluate, config validation, the command line."""

from __future__ import annotations

import warnings

import pytest
import torch

import hyperlevel
from examples.trico import cli
from examples.trico.checkpoint import load_model
from examples.trico.config import ConfigError, config_from_dict, load_config
from examples.trico.losses import LOSS_NAMES
from examples.trico.problem import build_schedule, build_setup
from examples.trico.train import train

TINY_WIDTHS = dict(ir_width=4, fr_widths=[4, 4, 8], enc_blocks=[1, 0, 0], dec_blocks=[0, 0, 0], refine_blocks=0,
                   hr_blocks=0, heads=[1, 1, 1], ffn_expansion=1.0, upsampler="pixelshuffle")


def tiny_config(**algorithm):
    algo = {"s1": {"max_steps": 2, "converge_tol": 1e-3, "converge_window": 50}, "s2": {"max_steps": 2},
            "lr": {"gamma_u": 1e-2, "gamma_l": 2e-3, "o_u": 1e-3, "o_l": 2e-3},
            "scheduler": {"period": 3}}
    algo.update(algorithm)
    return config_from_dict({
        "model": {"scale": 2, "widths": TINY_WIDTHS},
        "data": {"crop": 8, "batch_size": 2, "samples_per_epoch": 12},
        "losses": {"allow_random_init": True, "ssim_kernel_size": 5},
        "algorithm": algo,
        "log": {"checkpoint_every": 1, "progress": False, "tensorboard": False},
    })


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VGG19 weights not found")
        yield


def _params(model):
    return {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}


class _Snapshots(hyperlevel.Callback):
    """Loss weights at the end of each phase, read from the engine's problem."""

    def __init__(self):
        self.log_s = {}

    def on_phase_end(self, engine, phase):
        self.log_s[phase.name] = engine.problem["upper"].params.log_s.detach().clone()


def test_levels_and_phases_are_wired_as_the_paper_says():
    config = tiny_config()
    setup = build_setup(config)
    assert setup.problem.names == ["upper", "middle", "lower"]
    assert setup.problem["middle"].params is setup.model.illumination
    assert setup.problem["lower"].params is setup.model.refinement
    assert set(setup.problem["upper"].named_parameters()) == {"log_s"}
    s1, s2 = build_schedule(config)
    assert (s1.outer, s1.inner, s1.inner_objective) == (["upper"], ["middle", "lower"], "lower")
    assert (s2.outer, s2.inner, s2.frozen, s2.outer_objective) == (["middle"], ["lower"], ["upper"], "middle")
    assert isinstance(s1.solver, hyperlevel.solvers.FiniteDifference) and s1.solver.inner_lr == 2e-3
    assert s2.solver.inner_lr == 2e-3 and isinstance(s1.until, hyperlevel.Converged)
    assert sizes_ok(setup.data_sizes)
    # every objective depends on its own level, and the middle/upper objectives see D_ul, the lower one D_ll
    setup.problem.check_objectives({n: setup.problem[n].next_batch() for n in setup.problem.names})
    for variant, names in (("naive", ["naive"]), ("no_s1", ["S2"]), ("no_s2", ["S1", "joint"])):
        phases = build_schedule(tiny_config(variant=variant))
        assert [p.name for p in phases] == names
    assert build_schedule(tiny_config(variant="naive"))[0].max_steps == 4  # s1 + s2 steps
    solver = build_schedule(tiny_config(solver={"name": "cg", "params": {"iterations": 3}}))[0].solver
    assert isinstance(solver, hyperlevel.solvers.ConjugateGradient)


def sizes_ok(sizes):
    return sizes["D_ul"] == 2 and sizes["D_ll"] == 10 and sizes["lower"] == 10


def test_s1_moves_weights_and_takes_plain_inner_steps_s2_freezes_weights(tmp_path):
    config = tiny_config(s1={"max_steps": 1}, s2={"max_steps": 2})
    snaps = _Snapshots()
    result = train(config, tmp_path / "run", callbacks=[snaps])
    assert result.phase_steps == {"S1": 1, "S2": 2}
    assert not torch.equal(snaps.log_s["S1"], torch.zeros(5)), "S1 must change the loss weights"
    assert torch.equal(snaps.log_s["S2"], snaps.log_s["S1"]), "S2 must leave the weights bit-identical"
    assert torch.equal(result.setup.loss_weights.log_s.detach(), snaps.log_s["S1"])

    # S1's inner update is one plain (Adam) gradient step of w_i and w_s jointly on Phi^ll, on a D_ll batch,
    # at the already updated weights: compare one S1 step with that step computed by hand
    one = train(config, tmp_path / "s1", stop_after=1)
    log_s1 = one.setup.loss_weights.log_s.detach()
    ref = build_setup(config)  # same seeds: same initial model and data order
    w0 = _params(ref.model)
    loader = ref.problem["lower"].data
    batch = next(loader)  # the engine's objective check rewinds the loaders: step 1 trains on the first batch
    middle = dict(ref.model.illumination.named_parameters())
    lower = dict(ref.model.refinement.named_parameters())
    value = ref.problem["lower"].objective({"upper": {"log_s": log_s1}, "middle": middle, "lower": lower}, batch)
    grads = torch.autograd.grad(value, [*middle.values(), *lower.values()])
    names = [f"illumination.{n}" for n in middle] + [f"refinement.{n}" for n in lower]
    w1 = _params(one.setup.model)
    lr = config.algorithm.lr.gamma_l
    for name, g in zip(names, grads, strict=True):
        expected = w0[name] - lr * g / (g.abs() + 1e-8)  # Adam's first step (bias-corrected moments)
        assert torch.allclose(w1[name], expected, atol=1e-6, rtol=0), name


def test_no_s1_keeps_initial_weights(tmp_path):
    result = train(tiny_config(variant="no_s1", s1={"max_steps": 1}, s2={"max_steps": 1}), tmp_path)
    assert torch.equal(result.setup.loss_weights.log_s.detach(), torch.zeros(5))
    assert result.phase_steps == {"S2": 2}


def test_train_resume_equals_uninterrupted_then_evaluate_and_enhance(tmp_path, capsys):
    config = tiny_config()
    full = train(config, tmp_path / "full")
    part = train(config, tmp_path / "part", stop_after=3)
    assert part.summary.status == "stopped" and part.summary.steps == 3
    resumed = train(config, tmp_path / "part", resume=tmp_path / "part" / "checkpoints" / "last.pt")
    assert resumed.summary.status == "finished" and resumed.summary.steps == 4
    a = {**_params(full.setup.model), "log_s": full.setup.loss_weights.log_s.detach()}
    b = {**_params(resumed.setup.model), "log_s": resumed.setup.loss_weights.log_s.detach()}
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    with capsys.disabled():
        print(f"\nmax |uninterrupted - resumed| over all parameters and weights: {diff:.3g}")
    assert diff < 1e-6
    # the CSV log of the resumed run matches the uninterrupted one row for row (step, phase, name)
    rows = lambda p: [r.split(",")[:3] for r in (p / "logs" / "train.csv").read_text().splitlines()]  # noqa: E731
    assert rows(tmp_path / "full") == rows(tmp_path / "part")

    ckpt = tmp_path / "full" / "checkpoints" / "last.pt"
    model, cfg = load_model(ckpt)  # the engine checkpoint, as is
    assert cfg["scale"] == 2 and cfg["fr_widths"] == [4, 4, 8]
    for k, v in _params(full.setup.model).items():
        assert torch.equal(model.trainable_state_dict()[k], v)
    from examples.trico.export import training_info

    info = training_info(ckpt)  # what `export` copies into the shipped model's card
    assert (info["global_step"], info["finished"], info["seed"]) == (4, True, config.seed)
    assert info["schedule"]["variant"] == "trico" and set(info["loss_weights"]) == set(LOSS_NAMES)

    capsys.readouterr()
    rc = cli.main(["evaluate", "--checkpoint", str(ckpt), "--metrics", "psnr", "rmse", "lpips", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 0 and "psnr" in out.out and "SKIPPED" in out.out  # lpips has no weights here

    from examples.trico.imageio import read_image, write_image

    src = tmp_path / "in.png"
    write_image(src, torch.rand(3, 20, 28) * 0.1)
    rc = cli.main(["enhance", "--checkpoint", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o"),
                   "--scale", "2"])
    assert rc == 0
    assert read_image(tmp_path / "o" / "in.png").shape == (3, 40, 56)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key algorithm\.s1\.max_step\b"):
        config_from_dict({"algorithm": {"s1": {"max_step": 3}}})
    with pytest.raises(ConfigError, match=r"unknown key bogus"):
        config_from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match=r"data\.batch_size: expected int, got str 'four'"):
        config_from_dict({"data": {"batch_size": "four"}})
    with pytest.raises(ConfigError, match=r"losses\.allow_random_init: expected bool"):
        config_from_dict({"losses": {"allow_random_init": "yes please"}})
    with pytest.raises(ConfigError, match=r"algorithm\.variant: must be one of"):
        config_from_dict({"algorithm": {"variant": "fancy"}})
    with pytest.raises(ConfigError, match=r"algorithm\.lr\.gamma_u: must be positive"):
        config_from_dict({"algorithm": {"lr": {"gamma_u": -1.0}}})
    with pytest.raises(ConfigError, match=r"model\.widths: unknown key\(s\) \['fr_width'\]"):
        config_from_dict({"model": {"widths": {"fr_width": [8, 8, 8]}}})
    with pytest.raises(ConfigError, match=r"algorithm\.solver\.params: unknown key\(s\) \['alpha'\]"):
        config_from_dict({"algorithm": {"solver": {"name": "cg", "params": {"alpha": 0.1}}}})
    with pytest.raises(ConfigError, match=r"data\.root: required"):
        config_from_dict({"data": {"source": "rellisur"}})
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  crop: 16\n")
    cfg = load_config(path, ["data.batch_size=3", "algorithm.lr.gamma_u=1e-3"])
    assert (cfg.data.crop, cfg.data.batch_size, cfg.algorithm.lr.gamma_u) == (16, 3, 1e-3)
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown key data\.crops"):
        load_config(path, ["data.crops=3"])
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    for name in ("demo", "rellisur_x2", "rellisur_x4", "shipped_x2", "study_quick"):
        assert load_config(name).model.scale in (2, 4)


def test_cli_parses_every_subcommand():
    parser = cli.build_parser()
    a = parser.parse_args(["train", "--config", "demo", "--resume", "--set", "data.crop=8", "--set", "seed=1"])
    assert a.command == "train" and a.resume is True and a.overrides == ["data.crop=8", "seed=1"]
    a = parser.parse_args(["train", "--config", "x.yaml", "--resume", "ck.pt", "--out", "o"])
    assert a.resume == "ck.pt" and a.out == "o"
    # issue 14: enhance takes the scale from the checkpoint unless --scale repeats it
    assert parser.parse_args(["enhance", "--checkpoint", "c", "--input", "i", "--output", "o"]).scale is None
    assert parser.parse_args(["train", "--config", "x.yaml", "--overwrite", "--debug"]).overwrite
    assert parser.parse_args(["evaluate", "--baseline", "bicubic"]).baseline == "bicubic"
    assert parser.parse_args(["profile", "--size", "64"]).size == 64
    assert parser.parse_args(["demo", "--out", "d"]).out == "d"
    a = parser.parse_args(["study", "--variants", "trico", "no_ihem", "--seeds", "3", "--out", "s", "--quick"])
    assert (a.variants, a.seeds, a.quick, a.out) == (["trico", "no_ihem"], 3, True, "s")
    with pytest.raises(SystemExit):
        parser.parse_args(["fly"])


def test_train_command_reports_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("algorithm:\n  s1:\n    max_steps: ten\n")
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "algorithm.s1.max_steps: expected int, got str 'ten'" in capsys.readouterr().err


def test_reuse_inner_gradient_reaches_both_phases():
    from examples.trico.config import config_from_dict
    from examples.trico.problem import build_schedule

    config = config_from_dict({"algorithm": {"reuse_inner_gradient": True}})
    phases = build_schedule(config)
    assert [p.name for p in phases] == ["S1", "S2"] and all(p.reuse_inner_gradient for p in phases)
    assert not any(p.reuse_inner_gradient for p in build_schedule(config_from_dict({})))
