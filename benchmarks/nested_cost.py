"""Cost of nested_hypergradient (N = 3, 4) against a two-level hypergradient of the same total size.

The two-level baseline lumps levels 1..N-1 into one inner level minimising the sum of their losses (same
parameters, same losses, one CG solve). Run: .venv/bin/python benchmarks/nested_cost.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _nested_reference as ref  # noqa: E402

import hyperlevel  # noqa: E402
from hyperlevel.solvers import ConjugateGradient  # noqa: E402


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(cases=((3, 4, 5), (4, 10, 10), (2, 2, 2, 2), (2, 3, 3, 3))):
    torch.set_num_threads(1)
    print("| levels (dims) | nested: time, HVPs per level, loss evals | two-level: time, HVPs | ratio time, HVPs |")
    print("|---|---|---|---|")
    for dims in cases:
        run_case(dims)


def run_case(dims):
    """One table row: nested CG against the lumped two-level CG hypergradient."""
    f = ref.make_problem(list(dims), seed=0)
    x0 = torch.randn(dims[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xs = [x0, *ref.equilibrium(f, x0, [torch.zeros(d, dtype=torch.float64) for d in dims])]

    def level(k):
        return lambda *ds: f[k](*[d["x"] for d in ds])

    losses = [level(k) for k in range(len(dims))]
    params = [{"x": x} for x in xs]
    solver = ConjugateGradient(iterations=100)
    t_n, (_, info) = best_of(lambda: hyperlevel.nested_hypergradient(losses, params, solver, return_info=True))
    set_sizes, fj = ref.joint(f)
    set_sizes(xs[1:])
    z = ref.equilibrium(fj, x0, [x0, torch.cat(xs[1:])])[0]
    outer = lambda o, i: fj[0](o["x"], i["z"])  # noqa: E731
    inner = lambda o, i: fj[1](o["x"], i["z"])  # noqa: E731
    t_2, (_, info2) = best_of(
        lambda: hyperlevel.hypergradient(outer, inner, {"x": x0}, {"z": z}, solver, return_info=True)
    )
    per_level = " / ".join(str(lv.hvp_evals) for lv in info.levels)
    print(
        f"| {len(dims)} {dims} | {t_n * 1e3:.1f} ms, {per_level} (total {info.hvp_evals}), "
        f"{info.gradient_evals} | {t_2 * 1e3:.1f} ms, {info2.hvp_evals} | "
        f"{t_n / t_2:.0f}x, {info.hvp_evals / info2.hvp_evals:.0f}x |"
    )


if __name__ == "__main__":
    main()
