"""Data-parallel throughput of TriCo-like tri-level training steps (phases S1 and S2) for 1 and 2 processes.

Usage: ``python benchmarks/throughput.py [--procs 1 2] [--batch 4] [--crop 24] [--steps 6] [--threads 1]``.

Each configuration is launched with ``torchrun --standalone --nproc_per_node N`` (gloo on CPU, NCCL on GPUs)
and runs :class:`hyperlevel.Engine` with :mod:`hyperlevel.distributed`, exactly as ``examples.trico`` training
does. The problem is TriCo's own (``examples.trico.problem.build_setup`` / ``build_schedule``): the real network
at small widths (``SMALL_WIDTHS``, scale 2, no semantic prior), the five candidate losses (random VGG19), the
embedded data set with its D_ul : D_ll split, phases S1 and S2 with ``FiniteDifference`` (Alg. 1).

``images/s`` = global batch (``batch x processes``) / median wall time of a step, measured on rank 0 between
consecutive steps after one warm-up step per phase (a step draws that many images for its outer objective
and again for its inner one). Each process uses ``--threads`` torch threads, so 1 process x 2 threads is the
fair single-process comparison on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SMALL_WIDTHS = {"ir_width": 4, "fr_widths": [8, 12, 16], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 1, 1],
                "refine_blocks": 1, "hr_blocks": 1, "heads": [1, 1, 1]}


def worker(args: argparse.Namespace) -> None:
    import torch

    import hyperlevel as hl
    from examples.trico.config import config_from_dict
    from examples.trico.problem import build_schedule, build_setup
    from hyperlevel.distributed import init_from_env

    torch.set_num_threads(args.threads)
    ctx = init_from_env(timeout=300)
    steps = args.steps + 1  # one warm-up step per phase
    config = config_from_dict({
        "model": {"widths": SMALL_WIDTHS},
        "data": {"source": "embedded", "crop": args.crop, "batch_size": args.batch},
        "losses": {"allow_random_init": True},
        "algorithm": {"s1": {"max_steps": steps, "converge_tol": None}, "s2": {"max_steps": steps}},
    })
    setup = build_setup(config, rank=ctx.rank, world_size=ctx.world_size, device=ctx.device)
    problem = setup.problem
    ctx.broadcast_parameters(problem)
    phases = build_schedule(config)

    class Timer(hl.Callback):
        def __init__(self) -> None:
            self.last = time.perf_counter()
            self.times: dict[str, list[float]] = {"S1": [], "S2": []}

        def on_phase_start(self, engine, phase) -> None:
            self.last = time.perf_counter()

        def on_step_end(self, engine, record) -> None:
            now = time.perf_counter()
            if record.phase_step > 1:  # the first step of a phase is a warm-up
                self.times[record.phase].append(now - self.last)
            self.last = now

    timer = Timer()
    engine = hl.Engine(problem, phases, reduce=ctx.reduce, is_main_process=ctx.is_main, callbacks=[timer],
                       check_objectives=False)
    engine.run()
    if ctx.is_main:
        n_params = sum(t.numel() for ps in problem.parameters().values() for t in ps.values())
        print("RESULT " + json.dumps({"procs": ctx.world_size, "threads": args.threads, "params": n_params,
                                      "device": f"{ctx.backend or 'single process'} on {ctx.device.type}",
                                      "times": timer.times}), flush=True)
    ctx.barrier()
    ctx.cleanup()


def launch(procs: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           __file__, "--worker", "--batch", str(args.batch), "--crop", str(args.crop), "--steps", str(args.steps),
           "--threads", str(args.threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{procs} process(es) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=4, help="images per process per step")
    parser.add_argument("--crop", type=int, default=24, help="low-resolution crop (output is 2x), as the demo")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per phase (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    base: dict[str, float] = {}
    for procs in args.procs:
        result = launch(procs, args)
        for phase in ("S1", "S2"):
            seconds = statistics.median(result["times"][phase])
            ips = args.batch * procs / seconds
            base.setdefault(phase, ips)
            rows.append((procs, args.threads, result["device"], phase, args.batch * procs, seconds, ips,
                         ips / base[phase]))
    print(f"TriCo (small widths, {result['params']} parameters), {args.crop}x{args.crop} -> x2, "
          f"FiniteDifference")
    print("| processes | threads/process | backend | phase | global batch | s/step (median) | images/s | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for procs, threads, device, phase, gb, s, ips, up in rows:
        print(f"| {procs} | {threads} | {device} | {phase} | {gb} | {s:.3f} | {ips:.2f} | {up:.2f}x |")


if __name__ == "__main__":
    main()
