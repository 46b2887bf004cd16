"""Peak memory and time of ``Unrolled`` with the stored trajectory against ``checkpoint_every=C``, same run.

    python benchmarks/unroll_memory.py [--steps 1000] [--hidden 256] [--every 32] [--dtype float64]

Inner problem: an MLP (64 -> hidden -> hidden -> 16, about 1e5 parameters at hidden=256) fitted to a fixed
regression batch with one log weight decay per layer as the outer parameters; outer loss: the MSE on a validation
batch. Every variant runs in its own fresh process, so that one variant's freed memory cannot hide another's peak.

How memory is measured: the process's peak resident set (``VmHWM`` in ``/proc/self/status``) is reset just before
the solve (writing ``5`` to ``/proc/self/clear_refs``) and read after it; the figure reported is that peak minus
the resident set just before the solve: every byte the solve touched (tensor storage, the autograd graph, the
allocator's overhead), not an estimate. Large tensors are mmapped by the allocator and returned on free, so the
figure follows tensor lifetimes. The hypergradients of all variants are compared with the stored trajectory's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hyperlevel  # noqa: E402


def mlp_problem(hidden: int, dtype: torch.dtype, seed: int = 0, batch: int = 32):
    """Losses and starting parameters of the MLP bilevel problem (deterministic for a seed)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [64, hidden, hidden, 16]
    inner = {}
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        inner[f"W{k}"] = torch.randn(b, a, generator=g, dtype=dtype) / a**0.5
        inner[f"b{k}"] = torch.zeros(b, dtype=dtype)
    X, Xv = (torch.randn(batch, sizes[0], generator=g, dtype=dtype) for _ in range(2))
    Y, Yv = (torch.randn(batch, sizes[-1], generator=g, dtype=dtype) for _ in range(2))
    outer = {"log_decay": torch.full((len(sizes) - 1,), -3.0, dtype=dtype)}

    def net(w, x):
        for k in range(len(sizes) - 1):
            x = x @ w[f"W{k}"].T + w[f"b{k}"]
            if k < len(sizes) - 2:
                x = torch.tanh(x)
        return x

    def inner_loss(o, w):
        decay = sum(torch.exp(o["log_decay"][k]) * (w[f"W{k}"] ** 2).sum() for k in range(len(sizes) - 1))
        return ((net(w, X) - Y) ** 2).mean() + 0.5 * decay

    def outer_loss(o, w):
        return ((net(w, Xv) - Yv) ** 2).mean()

    return outer_loss, inner_loss, outer, inner


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(args) -> None:
    torch.set_num_threads(1)
    dtype = getattr(torch, args.dtype)
    outer_loss, inner_loss, outer, inner = mlp_problem(args.hidden, dtype)
    every = None if args.variant == "stored" else args.every
    solver = hyperlevel.solvers.Unrolled(args.steps, args.inner_lr, checkpoint_every=every)
    before = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    start = time.perf_counter()
    g = hyperlevel.hypergradient(outer_loss, inner_loss, outer, inner, solver)
    seconds = time.perf_counter() - start
    peak = _rss("VmHWM") - before
    params = sum(t.numel() for t in inner.values())
    json.dump({"variant": args.variant, "peak_bytes": peak, "seconds": seconds, "params": params,
               "grad": g["log_decay"].tolist()}, open(args.out, "w"))


def run(variant: str, args, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--out", str(out), "--steps", str(args.steps),
           "--hidden", str(args.hidden), "--every", str(args.every), "--dtype", args.dtype,
           "--inner-lr", str(args.inner_lr)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)
    return json.loads(out.read_text())


def compare(steps: int, hidden: int, every: int, dtype: str = "float64", inner_lr: float = 0.05) -> list[dict]:
    """Run the stored and the checkpointed variant in fresh processes; rows with peaks, times and errors."""
    args = argparse.Namespace(steps=steps, hidden=hidden, every=every, dtype=dtype, inner_lr=inner_lr)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for variant in ("stored", "checkpointed"):
            rows.append(run(variant, args, Path(d) / f"{variant}.json"))
    ref = torch.tensor(rows[0]["grad"], dtype=torch.float64)
    for row in rows:
        g = torch.tensor(row["grad"], dtype=torch.float64)
        row["rel_error"] = float((g - ref).norm() / ref.norm())
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--every", type=int, default=32)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--inner-lr", type=float, default=0.05)
    ap.add_argument("--child", choices=["stored", "checkpointed"])
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if args.child:
        args.variant = args.child
        child(args)
        return
    rows = compare(args.steps, args.hidden, args.every, args.dtype, args.inner_lr)
    print(f"MLP inner problem, {rows[0]['params']} parameters, {args.steps} steps, {args.dtype}, C={args.every}")
    print("| variant | peak memory (MiB) | ratio to stored | seconds | relative difference to stored |")
    print("|---|---|---|---|---|")
    for r in rows:
        label = "stored trajectory" if r["variant"] == "stored" else f"checkpoint_every={args.every}"
        print(f"| {label} | {r['peak_bytes'] / 2**20:.1f} | {r['peak_bytes'] / rows[0]['peak_bytes']:.3f} | "
              f"{r['seconds']:.1f} | {r['rel_error']:.1e} |")


if __name__ == "__main__":
    main()
