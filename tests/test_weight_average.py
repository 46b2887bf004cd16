"""Weight averaging of one run's checkpoints: the toolkit's mean of weights and TriCo's ``average`` command."""

import json

import pytest
import torch
from _benchmarks import load_benchmark
from torch import nn

from examples.restoration.checkpoint import CheckpointError
from examples.restoration.weight_average import average_checkpoints, average_models
from examples.trico.checkpoint import TRICO_BUILDER, load_model, save_model
from examples.trico.cli import main
from examples.trico.config import load_config
from examples.trico.model import build_model
from examples.trico.train import train

SMALL = {"ir_width": 4, "fr_widths": [4, 8, 8], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 1, 1],
         "refine_blocks": 1, "hr_blocks": 1, "heads": [1, 1, 1]}


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1))


def test_average_models_is_the_parameterwise_mean_and_leaves_inputs_alone():
    nets = [_net(s) for s in (0, 1, 2)]
    before = [{k: v.clone() for k, v in n.state_dict().items()} for n in nets]
    mean = average_models(nets)
    for key, value in mean.state_dict().items():
        expected = torch.stack([b[key] for b in before]).mean(0)
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)
    for net, state in zip(nets, before):
        for key, value in net.state_dict().items():
            assert torch.equal(value, state[key])
    assert not mean.training
    assert mean is not nets[0]


def test_average_models_refuses_nothing_and_mismatched_networks():
    with pytest.raises(ValueError, match="no model"):
        average_models([])
    with pytest.raises(ValueError, match="same parameters"):
        average_models([_net(0), nn.Sequential(nn.Conv2d(3, 4, 3))])


def test_average_models_warns_that_batch_norm_statistics_are_not_averaged():
    with pytest.warns(UserWarning, match="update_bn"):
        average_models([nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)) for _ in range(2)])


def test_average_checkpoints_of_trico_models(tmp_path):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(scale=2, **SMALL)
        paths.append(tmp_path / f"m{seed}.pt")
        save_model(paths[-1], model)
    mean, config = average_checkpoints(paths, TRICO_BUILDER)
    a, b = (load_model(p)[0].trainable_state_dict() for p in paths)
    for key, value in mean.trainable_state_dict().items():
        torch.testing.assert_close(value, (a[key] + b[key]) / 2, rtol=0, atol=1e-7)
    assert config == load_model(paths[0])[1]
    # another network (other widths) cannot be averaged with them: a one-line error naming the file
    other = tmp_path / "other.pt"
    save_model(other, build_model(scale=2, **{**SMALL, "ir_width": 8}))
    with pytest.raises(CheckpointError, match="other.pt builds a different network"):
        average_checkpoints([paths[0], other], TRICO_BUILDER)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        average_checkpoints([], TRICO_BUILDER)


@pytest.mark.slow
def test_average_command_writes_a_loadable_checkpoint_with_its_record(tmp_path, capsys):
    overrides = [f"model.widths={json.dumps(SMALL)}",
                 "data.crop=8", "data.batch_size=2", "data.samples_per_epoch=12", "algorithm.s1.max_steps=2",
                 "algorithm.s2.max_steps=2", "log.checkpoint_every=1", "log.log_every=1", "log.keep_checkpoints=10",
                 "data.holdout=[motorcycle_right]", "log.progress=false"]
    run_dir = tmp_path / "run"
    train(load_config("demo", overrides), run_dir)
    assert main(["average", "--run", str(run_dir), "--from-step", "2", "--to-step", "3"]) == 0
    out = run_dir / "checkpoints" / "swa.pt"
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["steps"] == [2, 3]
    assert 5.0 < record["validation"]["psnr"] < 40.0 and 0.0 < record["validation"]["ssim"] <= 1.0
    printed = capsys.readouterr().out
    assert "averaged 2 checkpoints (steps 2..3)" in printed and "validation" in printed
    # the file is the mean of steps 2 and 3 and carries the run's training record
    mean = load_model(out)[0].trainable_state_dict()
    s2, s3 = (load_model(run_dir / "checkpoints" / f"step_{k:08d}.pt")[0].trainable_state_dict() for k in (2, 3))
    for key, value in mean.items():
        torch.testing.assert_close(value, (s2[key] + s3[key]) / 2, rtol=0, atol=1e-7)
    saved = torch.load(out, weights_only=True)
    assert saved["weight_average"]["steps"] == [2, 3]
    assert saved["train_config"]["data"]["holdout"] == ["motorcycle_right"]
    assert set(saved["loss_weights"]) >= {"l1"}
    # a step range holding no checkpoint, or an inverted one, is a usage error (exit status 2), nothing written
    assert main(["average", "--run", str(run_dir), "--from-step", "50", "--out", str(tmp_path / "x.pt")]) == 2
    assert main(["average", "--run", str(run_dir), "--from-step", "3", "--to-step", "2",
                 "--out", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()
    assert main(["average", "--run", str(tmp_path)]) == 2  # not a run folder



def test_weight_average_study_table_in_the_docs_is_its_json_and_the_rule_held():
    from pathlib import Path

    bench = load_benchmark("trico_weight_average")
    root = Path(__file__).resolve().parents[1]
    models = json.loads((root / "docs" / "results" / "weight_average" / "psnr.json").read_text())["models"]
    assert len(models) == 30  # 2 variants x 3 rules x 5 seeds
    text = (root / "docs" / "trico.md").read_text()
    for line in bench.summary(models).splitlines():
        assert line in text, line
    score = {rule: sum(bench.decision_score(models[f"trico_{rule}_s{s}"]) for s in range(5)) / 5
             for rule in ("sel", "swa700")}
    assert score["swa700"] < score["sel"]  # the pre-registered rule: not adopted
    assert "**Not adopted**" in text
    # the summary's paired difference is the mean of the per-seed differences
    toy = {f"trico_{r}_s{s}": dict.fromkeys(bench.SETS, 20.0 + s + (0.5 if r == "swa700" else 0.0))
           for r in ("sel", "swa700") for s in range(3)}
    toy["trico_swa700_s2"] = dict.fromkeys(bench.SETS, 22.0 + 0.8)
    row = [line for line in bench.summary(toy).splitlines() if "| swa700 |" in line][0]
    assert "(+0.60, p " in row and "| 3 | " in row
