"""Data parallelism over torch.distributed (gloo, loopback, 2 CPU processes) equals one process on the union of
the data, and a run interrupted with one world size resumes exactly with another."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _distributed_problem import STEPS_S1, build, parameters

import hyperlevel as hl
from hyperlevel.distributed import MeanReduce, init_from_env

HERE = Path(__file__).resolve().parent
B = 4  # per-process batch; the single-process references use 2 * B
TOL = 1e-5
STOP_2PROC = STEPS_S1 + 2  # the two-process run stops after 2 of S2's steps
STOP_1PROC = STEPS_S1 + 1
TIMEOUT_S = 300  # generous: the two-process run is ~30 s alone, minutes on a loaded 2-core machine

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def launch_two(out: Path, resume_from: Path) -> list[dict]:
    """Start 2 ranks as torchrun would (its environment variables), fail instead of hanging."""
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
        if sys.platform.startswith("linux"):
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        cmd = [sys.executable, str(HERE / "_distributed_worker.py"), str(out), str(B), str(STOP_2PROC),
               str(resume_from)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the two-process run hung for {TIMEOUT_S} s")
    for rank, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{log[-4000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed")
    # one process, batch 2B: the interrupted run the two processes resume (written before they start) ...
    problem, engine = build("fd", 2 * B, checkpoint_dir=out / "one")
    summary = engine.run(stop_after=STOP_1PROC)
    assert summary.status == "stopped" and summary.phase == "S2"
    ranks = launch_two(out, out / "one" / "last.pt")
    # ... and the uninterrupted references
    reference = {}
    for variant in ("fd", "cg", "unrolled", "nested"):
        problem, engine = build(variant, 2 * B)
        engine.run()
        reference[variant] = parameters(problem)
    return out, ranks, reference


@pytest.mark.parametrize("variant", ["fd", "cg", "unrolled", "nested"])
def test_two_processes_equal_one_process_with_double_batch(runs, variant):
    _, ranks, reference = runs
    assert max_diff(ranks[0][variant], ranks[1][variant]) == 0.0  # replicas stay bitwise identical
    err = max_diff(ranks[0][variant], reference[variant])
    assert err < TOL, f"{variant}: max |two processes - one process| = {err:.3e}"
    start = build(variant, 2 * B)[0]
    assert max_diff(parameters(start), reference[variant]) > 1e-2  # the runs did move the parameters


def test_interrupted_with_two_processes_resumes_with_one(runs):
    out, ranks, reference = runs
    assert ranks[0]["stopped"] == {"status": "stopped", "phase": "S2", "steps": STOP_2PROC}
    assert (out / "stopped_rank0" / "last.pt").is_file()
    assert not (out / "stopped_rank1").exists(), "only rank 0 writes checkpoints"
    problem, engine = build("fd", 2 * B)
    engine.run(resume=out / "stopped_rank0" / "last.pt")
    err = max_diff(parameters(problem), reference["fd"])
    assert err < TOL, f"max |resumed - uninterrupted| = {err:.3e}"


def test_interrupted_with_one_process_resumes_with_two(runs):
    _, ranks, reference = runs
    assert max_diff(ranks[0]["resumed"], ranks[1]["resumed"]) == 0.0
    err = max_diff(ranks[0]["resumed"], reference["fd"])
    assert err < TOL, f"max |resumed - uninterrupted| = {err:.3e}"


def test_single_process_without_torchrun_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    ctx = init_from_env()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.reduce) == (0, 1, True, None)
    assert not torch.distributed.is_initialized()
    t = torch.ones(3)
    assert ctx.reduce_mean(t) is t and ctx.reduce_mean_differentiable(t) is t
    ctx.barrier()
    ctx.cleanup()


def test_reduce_is_identity_for_one_rank_and_rejects_chord_nested_phases():
    reduce = MeanReduce(1, torch.device("cpu"), "gloo")
    t = torch.arange(3.0)
    assert reduce(t) is t and reduce.differentiable(t) is t
    problem = build("fd", B)[0]
    for solver in (hl.solvers.ConjugateGradient(), hl.solvers.Unrolled(steps=1, inner_lr=0.1)):
        chord = hl.Phase("N", outer=["upper", "middle"], inner=["lower"], nested=True, solver=solver)
        with pytest.raises(hl.InvalidProblemError, match="joint method"):
            hl.Engine(problem, [chord], reduce=reduce)
    joint = hl.Phase("N", outer=["upper", "middle"], inner=["lower"], nested=True, solver=hl.solvers.Dense())
    hl.Engine(problem, [joint], reduce=reduce)  # the joint method takes the reduce
