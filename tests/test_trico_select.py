"""Held-out validation photos (``data.holdout``) and ``select``: a checkpoint is chosen without the test split."""

import json
import shutil

import pytest

from examples.trico.cli import main
from examples.trico.config import ConfigError, load_config
from examples.trico.data import TEST_IMAGES, TRAIN_IMAGES, embedded_dataset
from examples.trico.select import select_checkpoint
from examples.trico.train import train

TINY = ["model.widths={ir_width: 4, fr_widths: [4, 8, 8], enc_blocks: [1, 1, 1], dec_blocks: [0, 1, 1], "
        "refine_blocks: 1, hr_blocks: 1, heads: [1, 1, 1]}",
        "data.crop=8", "data.batch_size=2", "data.samples_per_epoch=12", "algorithm.s1.max_steps=2",
        "algorithm.s2.max_steps=2", "log.checkpoint_every=1", "log.log_every=1", "log.keep_checkpoints=10",
        "data.holdout=[motorcycle_right]", "log.progress=false"]


def test_holdout_leaves_training_and_makes_the_val_split():
    train_set = embedded_dataset("train", crop=8, samples_per_epoch=6, holdout=("motorcycle_right",))
    assert "motorcycle_right" not in train_set.names and len(train_set.names) == len(TRAIN_IMAGES) - 1
    val = embedded_dataset("val", hr_size=64, degradation="seen", holdout=("motorcycle_right",))
    test = embedded_dataset("test", hr_size=64, degradation="seen")
    assert [s["name"] for s in val.samples] == ["motorcycle_right-2.5", "motorcycle_right-3.5", "motorcycle_right-4.5"]
    assert all(s["name"].split("-")[0] in TEST_IMAGES for s in test.samples)
    again = embedded_dataset("val", hr_size=64, degradation="seen", holdout=("motorcycle_right",))
    assert all((a["input"] == b["input"]).all() for a, b in zip(val.samples, again.samples, strict=True))
    with pytest.raises(ValueError, match="holdout=\\[...\\]"):
        embedded_dataset("val")
    with pytest.raises(ValueError, match="not embedded training photos"):
        embedded_dataset("train", holdout=("chelsea",))


def test_extra_split_photos_from_other_wheels_disjoint_and_fixed():
    from examples.restoration.data import EXTRA_TEST_IMAGES, load_skimage_photo

    assert not set(EXTRA_TEST_IMAGES) & (set(TRAIN_IMAGES) | set(TEST_IMAGES))
    extra = embedded_dataset("extra", hr_size=64, degradation="unseen")
    assert [s["name"] for s in extra.samples][:3] == ["china-2.5", "china-3.5", "china-4.5"]
    assert len(extra) == 3 * len(EXTRA_TEST_IMAGES)
    assert tuple(extra[0]["input"].shape) == (3, 32, 32) and tuple(extra[0]["target"].shape) == (3, 64, 64)
    again = embedded_dataset("extra", hr_size=64, degradation="unseen")
    assert all((a["input"] == b["input"]).all() for a, b in zip(extra.samples, again.samples, strict=True))
    assert tuple(load_skimage_photo("grace_hopper").shape) == (3, 600, 512)  # matplotlib's sample photo, as shipped
    with pytest.raises(ValueError, match="'extra'"):
        embedded_dataset("bogus")


def test_more_photos_join_training_and_may_be_held_out():
    from examples.restoration.data import EXTRA_TEST_IMAGES, MORE_TRAIN_IMAGES, load_skimage_photo

    assert not set(MORE_TRAIN_IMAGES) & (set(TRAIN_IMAGES) | set(TEST_IMAGES) | set(EXTRA_TEST_IMAGES))
    more = ("camera", "coins", "retina")
    train_set = embedded_dataset("train", crop=8, samples_per_epoch=6, holdout=("motorcycle_right", "coins"),
                                 more=more)
    assert train_set.names[-2:] == ["camera", "retina"] and "coins" not in train_set.names
    val = embedded_dataset("val", hr_size=64, degradation="seen", holdout=("motorcycle_right", "coins"), more=more)
    assert [s["name"] for s in val.samples][3:] == ["coins-2.5", "coins-3.5", "coins-4.5"]
    # the first held-out photo keeps the samples it had as the only one (seeds by position)
    alone = embedded_dataset("val", hr_size=64, degradation="seen", holdout=("motorcycle_right",))
    assert all((a["input"] == b["input"]).all() for a, b in zip(alone.samples, val.samples[:3], strict=False))
    gray = load_skimage_photo("camera")  # a grayscale photo as neutral RGB
    assert tuple(gray.shape) == (3, 512, 512) and (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()
    assert tuple(load_skimage_photo("retina").shape)[0] == 3 and not (load_skimage_photo("retina")[0] ==
                                                                     load_skimage_photo("retina")[1]).all()
    with pytest.raises(ValueError, match="not in MORE_TRAIN_IMAGES"):
        embedded_dataset("train", more=("chelsea",))
    with pytest.raises(ValueError, match="not embedded training photos"):
        embedded_dataset("train", holdout=("coins",))  # coins is not a training photo unless `more` adds it


def test_more_photos_config():
    config = load_config("demo", ["data.more_photos=[camera, coins]", "data.holdout=[coins]"])
    assert config.data.more_photos == ["camera", "coins"]
    with pytest.raises(ConfigError, match="data.more_photos"):
        load_config("demo", ["data.more_photos=[rocket]"])
    with pytest.raises(ConfigError, match="data.holdout"):
        load_config("demo", ["data.holdout=[coins]"])


def test_evaluate_cli_measures_the_extra_split(tmp_path):
    out = tmp_path / "extra.json"
    assert main(["evaluate", "--split", "extra", "--baselines", "bicubic", "--metrics", "psnr",
                 "--degradation", "seen", "--output", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["split"] == "extra" and report["degradations"]["seen"]["num_images"] == 9


def test_holdout_config_errors():
    with pytest.raises(ConfigError, match="data.holdout"):
        load_config("demo", ["data.holdout=[chelsea]"])
    with pytest.raises(ConfigError, match="data.holdout"):
        load_config("demo", [f"data.holdout=[{', '.join(TRAIN_IMAGES)}]"])


def test_select_prefers_the_best_then_the_later_step():
    rows = [{"step": 1, "psnr": 20.0}, {"step": 2, "psnr": 21.5}, {"step": 3, "psnr": 21.5}, {"step": 4, "psnr": 19.0}]
    assert select_checkpoint(rows)["step"] == 3
    with pytest.raises(ValueError):
        select_checkpoint([])


@pytest.mark.slow
def test_select_command_scores_every_checkpoint_and_copies_the_best(tmp_path, capsys):
    config = load_config("demo", TINY)
    run_dir = tmp_path / "run"
    train(config, run_dir)
    assert main(["select", "--run", str(run_dir), "--no-progress"]) == 0
    record = json.loads((run_dir / "selection.json").read_text())
    assert [r["step"] for r in record["checkpoints"]] == [1, 2, 3, 4]
    chosen = record["chosen"]
    assert chosen["psnr"] == max(r["psnr"] for r in record["checkpoints"])
    assert (run_dir / "checkpoints" / "best.pt").read_bytes() == open(chosen["path"], "rb").read()
    assert (run_dir / "selection.png").stat().st_size > 1000
    assert f"step {chosen['step']} ->" in capsys.readouterr().out
    # a run without held-out photos cannot be selected on: a usage error (exit status 2), nothing written
    plain = tmp_path / "plain"
    shutil.copytree(run_dir, plain)
    (plain / "selection.json").unlink()
    text = (plain / "config.yaml").read_text().replace("- motorcycle_right", "").replace("holdout:", "holdout: []")
    (plain / "config.yaml").write_text(text)
    assert main(["select", "--run", str(plain)]) == 2
    assert not (plain / "selection.json").exists()
