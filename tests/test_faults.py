"""Fault corpus of issue 14: every probe a careful user or a cluster scheduler made, and what they now get.

1. run folders (lock, stale locks, new run into a folder holding one), 2. SIGTERM, 3. checkpoints (keep K,
records, fallback, temporary files, errors naming the file), 4. data validated before training and one-line
errors with exit statuses, 5. evaluate/enhance (scale from the checkpoint, output checked first, multi-frame
inputs, 16-bit PNG filters), 6. the smaller items (infinite learning rates, data.root, changed model or settings
on resume, the random-VGG warning).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from _trilevel import build, flat_state
from PIL import Image

import hyperlevel as hl
from hyperlevel import checkpoint as ckpt
from hyperlevel import runfolder
from hyperlevel.runfolder import RunFolderInUseError, RunFolderLockedError, RunLock

ROOT = Path(__file__).resolve().parents[1]

TINY_WIDTHS = dict(ir_width=4, fr_widths=[4, 4, 8], enc_blocks=[1, 0, 0], dec_blocks=[0, 0, 0], refine_blocks=0,
                   hr_blocks=0, heads=[1, 1, 1], ffn_expansion=1.0, upsampler="pixelshuffle")


def tiny_raw(**log):
    return {
        "model": {"scale": 2, "widths": TINY_WIDTHS},
        "data": {"crop": 8, "batch_size": 2, "samples_per_epoch": 12},
        "losses": {"allow_random_init": True, "ssim_kernel_size": 5},
        "algorithm": {"s1": {"max_steps": 2, "converge_tol": 1e-3, "converge_window": 50}, "s2": {"max_steps": 2},
                      "lr": {"gamma_u": 1e-2, "gamma_l": 2e-3, "o_u": 1e-3, "o_l": 2e-3},
                      "scheduler": {"period": 3}},
        "log": {"checkpoint_every": 1, "progress": False, "tensorboard": False, **log},
    }


@pytest.fixture
def tiny_yaml(tmp_path):
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_raw()))
    return path


@pytest.fixture(autouse=True)
def _quiet_vgg():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VGG19 weights not found")
        yield


def _cli(capsys, *argv):
    from examples.trico import cli

    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _hold_lock_in_child(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock (flock + record, as RunLock writes them; no torch import)."""
    code = textwrap.dedent(f"""
        import fcntl, json, os, socket, sys, time
        fd = os.open({str(folder / runfolder.LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": os.getpid(), "host": socket.gethostname(), "started_at": 0}}).encode())
        print("locked", flush=True)
        time.sleep(120)
    """)
    folder.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


# ------------------------------------------------------------------ 1. run folders
@pytest.mark.skipif(runfolder.fcntl is None, reason="flock is POSIX")
def test_second_run_into_a_locked_folder_refuses_at_once_and_a_dead_holder_is_stale(tmp_path):
    child = _hold_lock_in_child(tmp_path / "run")
    try:
        start = time.perf_counter()
        with pytest.raises(RunFolderLockedError, match=rf"in use by another run \(process {child.pid} on host"):
            RunLock(tmp_path / "run").acquire()
        assert time.perf_counter() - start < 1.0  # at once, no waiting
        _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
        with pytest.raises(RunFolderLockedError):
            hl.Engine(problem, schedule, checkpoint_dir=tmp_path / "run").run()
    finally:
        child.kill()
        child.wait()
    lock = RunLock(tmp_path / "run").acquire()  # SIGKILLed holder: the kernel dropped its flock
    assert lock.stale_record["pid"] == child.pid
    lock.release()
    assert not (tmp_path / "run" / runfolder.LOCK_NAME).exists()


def test_lock_records_without_flock_detect_dead_live_and_remote_holders(tmp_path, monkeypatch):
    monkeypatch.setattr(runfolder, "fcntl", None)
    folder = tmp_path / "run"
    folder.mkdir()
    lock_file = folder / runfolder.LOCK_NAME
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_file.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with RunLock(folder) as lock:  # the process is gone: stale, taken over
        assert lock.stale_record["pid"] == int(dead.stdout)
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(RunFolderLockedError, match=f"process {os.getppid()}"):
        RunLock(folder).acquire()
    lock_file.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunFolderLockedError, match=f"if that run is gone, delete {lock_file}"):
        RunLock(folder).acquire()


def test_lock_is_reentrant_in_one_process_and_released_on_error(tmp_path):
    with RunLock(tmp_path) as outer, RunLock(tmp_path):
        assert outer.holder()["pid"] == os.getpid()
    assert not (tmp_path / runfolder.LOCK_NAME).exists()
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1, nan_at=1)
    with pytest.raises(hl.HyperlevelError):
        hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run()
    assert not (tmp_path / runfolder.LOCK_NAME).exists()  # released on the way out of an error


def test_new_run_into_a_folder_holding_one_needs_resume_or_overwrite(tmp_path):
    _, _, problem, schedule = build(s1_steps=2, s2_steps=2)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path, checkpoint_every=1).run()
    assert [s for s, _ in ckpt.numbered_checkpoints(tmp_path)] == [3, 4]
    _, _, problem, schedule = build(s1_steps=2, s2_steps=2)
    with pytest.raises(RunFolderInUseError, match="holds the checkpoints of an earlier run"):
        hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run()
    assert ckpt.load(tmp_path / "last.pt")["global_step"] == 4  # untouched
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path, overwrite=True).run()
    assert [s for s, _ in ckpt.numbered_checkpoints(tmp_path)] == [2]  # the old run's checkpoints are gone


def test_cli_run_folder_rules(tmp_path, tiny_yaml, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--set", "algorithm.s2.max_steps=1")
    assert code == 0, err
    log_lines = (out / "logs" / "train.csv").read_text().splitlines()
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out)
    assert code == 5 and "pass --resume to continue it or --overwrite" in _one_error_line(err)
    assert (out / "logs" / "train.csv").read_text().splitlines() == log_lines  # the log was not truncated
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--resume", "--overwrite")
    assert code == 2 and "exclude each other" in _one_error_line(err)
    if runfolder.fcntl is not None:
        child = _hold_lock_in_child(out)
        try:
            code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--resume")
            assert code == 5 and f"process {child.pid}" in _one_error_line(err)
        finally:
            child.kill()
            child.wait()
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--overwrite")
    assert code == 0, err
    assert ckpt.load(out / "checkpoints" / "last.pt")["global_step"] == 4  # the new run, not the old one


# ------------------------------------------------------------------ 2. SIGTERM
class _SendAt(hl.Callback):
    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, engine, record):
        if record.step == self.step:
            os.kill(os.getpid(), self.signum)


def test_sigterm_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path):
    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    hl.Engine(problem, schedule).run()
    reference = flat_state(model, weights).clone()
    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    before = signal.getsignal(signal.SIGTERM)
    summary = hl.Engine(problem, schedule, callbacks=[_SendAt(5, signal.SIGTERM)], checkpoint_dir=tmp_path).run()
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert (summary.status, summary.steps, summary.signal, summary.exit_status) == ("interrupted", 5, 15, 143)
    assert ckpt.load(tmp_path / "last.pt")["global_step"] == 5
    model, weights, problem, schedule = build(s1_steps=4, s2_steps=4)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(resume=tmp_path / "last.pt")
    assert torch.equal(flat_state(model, weights), reference)


def test_sigterm_from_outside_ends_the_process_with_status_143(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        import hyperlevel as hl
        from _trilevel import build

        class Slow(hl.Callback):
            def on_step_end(self, engine, record):
                if record.step == 1:
                    print("step 1", flush=True)
                time.sleep(0.2)

        _, _, problem, schedule = build(s1_steps=200, s2_steps=1)
        summary = hl.Engine(problem, schedule, callbacks=[Slow()], checkpoint_dir={str(tmp_path / 'ck')!r}).run()
        print(summary.status, summary.steps, flush=True)
        sys.exit(summary.exit_status)
    """))
    job = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert job.stdout.readline().strip() == "step 1"
    job.send_signal(signal.SIGTERM)
    out, _ = job.communicate(timeout=120)
    status, steps = out.split()
    assert job.returncode == 143 and status == "interrupted"
    assert ckpt.load(tmp_path / "ck" / "last.pt")["global_step"] == int(steps) < 201


def test_cli_sigterm_exits_143_and_resume_equals_uninterrupted(tmp_path, tiny_yaml, capsys, monkeypatch):
    from examples.trico import train as train_module
    from examples.trico.config import load_config

    reference = train_module.train(load_config(tiny_yaml), tmp_path / "full")
    original = train_module.PhaseSteps.on_step_end

    def on_step_end(self, engine, record):
        original(self, engine, record)
        if record.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_module.PhaseSteps, "on_step_end", on_step_end)
    code, out, _ = _cli(capsys, "train", "--config", tiny_yaml, "--out", tmp_path / "part")
    assert code == 143 and out.startswith("interrupted: 2 steps")
    monkeypatch.undo()
    code, out, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", tmp_path / "part", "--resume")
    assert code == 0 and out.startswith("finished: 4 steps"), err
    a = ckpt.load(tmp_path / "full" / "checkpoints" / "last.pt")["extra"]["model"]
    b = ckpt.load(tmp_path / "part" / "checkpoints" / "last.pt")["extra"]["model"]
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6
    assert reference.summary.steps == 4


# ------------------------------------------------------------------ 3. checkpoints
def test_last_k_kept_and_a_corrupt_last_falls_back_with_a_warning_naming_both(tmp_path):
    _, _, problem, schedule = build(s1_steps=3, s2_steps=3)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path, checkpoint_every=2, keep_checkpoints=2).run(stop_after=5)
    assert [s for s, _ in ckpt.numbered_checkpoints(tmp_path)] == [4, 5]
    assert ckpt.checksum_path(tmp_path / "last.pt").read_text().split()[1] == "last.pt"
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").unlink()  # break the hard link, then truncate the new last.pt only
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=r"last\.pt: it is \d+ bytes, its record last\.pt\.sha256 says"):
        ckpt.load(tmp_path / "last.pt")
    _, _, problem, schedule = build(s1_steps=3, s2_steps=3)
    with pytest.warns(ckpt.CheckpointFallbackWarning, match=r"last\.pt.*truncated.*step_00000005\.pt \(step 5\)"):
        summary = hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(resume=tmp_path / "last.pt")
    assert summary.status == "finished" and summary.steps == 6


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, "half", "object"])
def test_every_load_error_names_the_file_and_never_suggests_weights_only_false(tmp_path, content):
    path = tmp_path / "last.pt"
    if content == "half":
        torch.save({"a": torch.ones(100)}, path)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "object":
        torch.save({"a": Path("x")}, path)  # a pickled object safe loading refuses
    else:
        path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load_with_fallback(path)  # no numbered checkpoint to fall back on
    text = str(err.value)
    assert str(path) in text and "weights_only=False" not in text and "\n" not in text
    print(text)


def test_leftover_temporary_files_are_cleaned_on_the_next_start(tmp_path):
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    engine = hl.Engine(problem, schedule, checkpoint_dir=tmp_path)
    engine.run(stop_after=1)
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"killed while writing")
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(resume=tmp_path / "last.pt")
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_into_another_model_is_one_line_naming_the_file(tmp_path):
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    hl.Engine(problem, schedule, checkpoint_dir=tmp_path).run(stop_after=1)
    state = ckpt.load(tmp_path / "last.pt")
    state["levels"]["lower"] = {k: torch.zeros(3) for k in state["levels"]["lower"]}
    ckpt.save_atomic(state, tmp_path / "other.pt")
    _, _, problem, schedule = build(s1_steps=1, s2_steps=1)
    with pytest.raises(ckpt.CheckpointError, match=r"cannot resume from .*other\.pt: the checkpoint does not fit"):
        hl.Engine(problem, schedule).run(resume=tmp_path / "other.pt")


# ------------------------------------------------------------------ 4. data and one-line errors
def _rellisur(root: Path, size=(12, 16), scale=2, names=("00001-2.5", "00002-3.5")) -> Path:
    rng = np.random.default_rng(0)
    (root / "Train" / "LLLR").mkdir(parents=True)
    (root / "Train" / "NLHR-Duplicates" / f"X{scale}").mkdir(parents=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "Train" / "LLLR" / f"{name}.png")
        hr = rng.integers(0, 255, (size[0] * scale, size[1] * scale, 3), dtype=np.uint8)
        Image.fromarray(hr).save(root / "Train" / "NLHR-Duplicates" / f"X{scale}" / f"{name}.png")
    return root


def test_data_is_validated_before_the_first_step(tmp_path):
    from examples.trico.data import Rellisur, RellisurError

    root = _rellisur(tmp_path / "R")
    assert len(Rellisur(root, crop=8)) == 2
    with pytest.raises(RellisurError, match=r"00001-2\.5\.png' is 12x16, smaller than the crop 14x14"):
        Rellisur(root, crop=14)
    target = root / "Train" / "NLHR-Duplicates" / "X2" / "00002-3.5.png"
    target.write_bytes(target.read_bytes()[:-30])  # truncated: caught at construction, not mid-run
    with pytest.raises(RellisurError, match=r"unreadable image .*00002-3\.5\.png.*replace or remove it"):
        Rellisur(root, crop=8)
    target.unlink()
    with pytest.raises(RellisurError, match=r"unpaired input .*00002-3\.5\.png.*add its target or remove it"):
        Rellisur(root, crop=8)


def test_data_progress_for_large_sets(capsys):
    from examples.trico.data.common import progress

    assert list(progress(range(3), "checking", threshold=5)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert len(list(progress(range(6), "checking", threshold=5))) == 6
    assert "checking: 6 files" in capsys.readouterr().err  # stderr is not a terminal under pytest


@pytest.mark.parametrize("case, status, words", [
    ("missing rellisur", 3, "does not exist; check data.root"),
    ("empty folder", 3, "no image files"),
    ("bad key", 2, "unknown key algorithm.s1.max_step"),
    ("inf lr", 2, "algorithm.lr.gamma_u: must be a finite number"),
    ("root ignored", 2, "data.root: '/x' would be ignored"),
    ("nothing to resume", 4, "nothing to resume"),
])
def test_train_errors_are_one_line_with_a_documented_status(tmp_path, tiny_yaml, capsys, case, status, words):
    (tmp_path / "empty").mkdir()
    sets = {"missing rellisur": ["data.source=rellisur", f"data.root={tmp_path / 'nope'}"],
            "empty folder": ["data.source=folder", f"data.root={tmp_path / 'empty'}"],
            "bad key": ["algorithm.s1.max_step=3"], "inf lr": ["algorithm.lr.gamma_u=.inf"],
            "root ignored": ["data.root=/x"], "nothing to resume": []}[case]
    extra = ["--resume"] if case == "nothing to resume" else []
    argv = ["train", "--config", tiny_yaml, "--out", tmp_path / "o", *extra]
    for s in sets:
        argv += ["--set", s]
    code, _, err = _cli(capsys, *argv)
    assert code == status and words in _one_error_line(err)


def test_debug_shows_the_traceback(tmp_path, tiny_yaml, capsys):
    from examples.trico import cli

    with pytest.raises(Exception, match="nothing to resume"):
        cli.main(["--debug", "train", "--config", str(tiny_yaml), "--out", str(tmp_path / "o"), "--resume"])


# ------------------------------------------------------------------ 5. evaluate and enhance
@pytest.fixture(scope="module")
def x1_checkpoint(tmp_path_factory):
    from examples.trico import build_model
    from examples.trico.checkpoint import save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "x1.pt"
    save_model(path, build_model(1, **TINY_WIDTHS))
    return path


def test_evaluate_takes_the_scale_from_the_checkpoint_and_checks_output_first(tmp_path, x1_checkpoint, capsys):
    code, out, err = _cli(capsys, "evaluate", "--checkpoint", x1_checkpoint, "--metrics", "psnr", "--no-progress",
                          "--output", tmp_path / "r" / "report.json")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "report.json").read_text())["scale"] == 1
    code, _, err = _cli(capsys, "evaluate", "--checkpoint", x1_checkpoint, "--scale", "2", "--no-progress")
    assert code == 2 and "conflicts with the checkpoint" in _one_error_line(err) and "x1" in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    code, _, err = _cli(capsys, "evaluate", "--checkpoint", garbage, "--no-progress")
    assert code == 4 and str(garbage) in _one_error_line(err)
    # an unusable --output is reported before the (garbage) checkpoint is even read
    code, _, err = _cli(capsys, "evaluate", "--checkpoint", garbage, "--output", tmp_path, "--no-progress")
    assert code == 6 and "is a folder" in _one_error_line(err)
    code, _, err = _cli(capsys, "evaluate", "--checkpoint", garbage, "--output", garbage / "r.json")
    assert code == 6 and "is a file" in _one_error_line(err)


def test_enhance_output_checked_first_multiframe_refused_and_counted(tmp_path, x1_checkpoint, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 60, (10, 12, 3), dtype=np.uint8)).save(src / "still.png")
    frames = [Image.fromarray(rng.integers(0, 60, (10, 12, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    (src / "notes.txt").write_text("not an image")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for output, words in ((blocker, "is a file, not a folder"), (blocker / "sub", "is a file")):
        code, _, err = _cli(capsys, "enhance", "--checkpoint", tmp_path / "missing.pt", "--input", src,
                            "--output", output)
        assert code == 6 and words in _one_error_line(err)
    code, out, err = _cli(capsys, "enhance", "--checkpoint", x1_checkpoint, "--input", src, "--output",
                          tmp_path / "out")
    assert code == 1
    assert "anim.gif" in err and "3 frames" in err and "1 of 2 file(s) failed" in err
    assert "skipped 1 file(s) that are not images: notes.txt" in err
    assert (tmp_path / "out" / "still.png").exists() and not (tmp_path / "out" / "anim.png").exists()
    code, _, err = _cli(capsys, "enhance", "--checkpoint", x1_checkpoint, "--input", src / "still.png",
                        "--output", tmp_path / "out2", "--scale", "4")
    assert code == 2 and "pass --scale 1" in _one_error_line(err)


def _png16(arr: np.ndarray, types: np.ndarray) -> bytes:
    """A 16-bit PNG whose row ``y`` uses filter ``types[y]`` (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    h, w, c = arr.shape
    raw = arr.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(np.int16)
    bpp = 2 * c
    up = np.vstack([np.zeros((1, raw.shape[1]), np.int16), raw[:-1]])
    left = np.hstack([np.zeros((h, bpp), np.int16), raw[:, :-bpp]])
    up_left = np.hstack([np.zeros((h, bpp), np.int16), up[:, :-bpp]])
    pa, pb, pc = np.abs(up - up_left), np.abs(left - up_left), np.abs(left + up - 2 * up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    preds = [np.zeros_like(raw), left, up, (left + up) >> 1, paeth]
    rows = b"".join(bytes([t]) + ((raw[y] - preds[t][y]) & 0xFF).astype(np.uint8).tobytes()
                    for y, t in enumerate(types))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 2: 4, 3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("shape", [(9, 7, 3), (31, 40, 4), (20, 5, 1), (6, 33, 2)])
def test_16bit_png_every_filter_mix_decodes_exactly(tmp_path, shape):
    from examples.trico.imageio import _read_png16

    rng = np.random.default_rng(sum(shape))
    arr = rng.integers(0, 65536, shape).astype(np.uint16)
    h = shape[0]
    for types in (rng.integers(0, 5, h), np.full(h, 4), np.full(h, 3), np.r_[[0, 1, 2], np.full(h - 3, 4)]):
        path = tmp_path / "x.png"
        path.write_bytes(_png16(arr, types))
        got = _read_png16(path)
        assert np.array_equal(got if got.ndim == 3 else got[..., None], arr)


# ------------------------------------------------------------------ 6. smaller items
def test_resume_with_another_model_or_changed_settings(tmp_path, tiny_yaml, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--set", "algorithm.s2.max_steps=1")
    assert code == 0, err
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--resume",
                        "--set", "model.widths.ir_width=8")
    assert code == 4 and "another model (model.widths.ir_width: 4 in the checkpoint, 8 now)" in _one_error_line(err)
    code, _, err = _cli(capsys, "train", "--config", tiny_yaml, "--out", out, "--resume")  # s2.max_steps 1 -> 2
    assert code == 0, err
    assert "changed settings: algorithm.s2.max_steps 1 -> 2" in err
    history = __import__("yaml").safe_load((out / "config_history.yaml").read_text())
    assert history[0]["changed"] == {"algorithm.s2.max_steps": {"before": 1, "after": 2}}
    assert history[0]["resumed_at_step"] == 3


def test_random_vgg_warning_is_shown_once(tmp_path):
    from examples.trico.config import config_from_dict
    from examples.trico.train import train

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        train(config_from_dict(tiny_raw(checkpoint_every=0)), tmp_path / "a")
    assert sum("RANDOM" in str(w.message) for w in seen) == 1
