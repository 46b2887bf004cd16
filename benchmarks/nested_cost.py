"""Cost of nested_hypergradient (N = 3, 4) against a two-level CG hypergradient of the same total size.

The two-level baseline lumps levels 1..N-1 into one inner level minimising the sum of their losses (same
parameters, same losses, one CG solve). Rows: the default solver (``solver=None``: the joint method, dense below
``DENSE_MAX_SIZE``), the joint method with MINRES, and the chord-step recursion with CG (the cross-check). All
configurations of a case are timed round-robin in the same run (medians), so load drift hits them alike.
Run: PYTHONPATH=. .venv/bin/python benchmarks/nested_cost.py [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _nested_reference as ref  # noqa: E402
from _timing import round_robin  # noqa: E402

import hyperlevel  # noqa: E402

#: CPU time of this (single) thread: the development machine runs far more jobs than it has cores, and wall time
#: there mostly measures the scheduler; thread time is what a call costs (docs/benchmarks.md)
CLOCK = time.thread_time
from hyperlevel.solvers import ConjugateGradient, MinimalResidual  # noqa: E402

CASES = ((3, 4, 5), (4, 10, 10), (2, 2, 2, 2), (2, 3, 3, 3))
LARGE = ((10, 40, 40), (4, 10, 10, 10))


def main(cases=CASES, budget_s: float = 1.0) -> list[dict]:
    torch.set_num_threads(1)
    print("| levels (dims) | joint size | two-level CG | default (joint) | joint MINRES | chord CG | "
          "ratio default / two-level | ratio MINRES / two-level | rel. error default, MINRES, chord |")
    print("|---|---|---|---|---|---|---|---|---|")
    return [run_case(dims, budget_s) for dims in cases]


def run_case(dims, budget_s: float) -> dict:
    """One table row: medians of interleaved calls, errors against the dense reference."""
    f = ref.make_problem(list(dims), seed=0)
    x0 = torch.randn(dims[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xs = [x0, *ref.equilibrium(f, x0, [torch.zeros(d, dtype=torch.float64) for d in dims])]
    reference = ref.total_gradient(f, x0, xs)

    def level(k):
        return lambda *ds: f[k](*[d["x"] for d in ds])

    losses = [level(k) for k in range(len(dims))]
    params = [{"x": x} for x in xs]
    set_sizes, fj = ref.joint(f)
    set_sizes(xs[1:])
    z = ref.equilibrium(fj, x0, [x0, torch.cat(xs[1:])])[0]
    outer = lambda o, i: fj[0](o["x"], i["z"])  # noqa: E731
    inner = lambda o, i: fj[1](o["x"], i["z"])  # noqa: E731
    cg = ConjugateGradient(iterations=200)
    configs = {
        "two-level CG": lambda: hyperlevel.hypergradient(outer, inner, {"x": x0}, {"z": z}, cg, return_info=True),
        "default": lambda: hyperlevel.nested_hypergradient(losses, params, return_info=True),
        "minres": lambda: hyperlevel.nested_hypergradient(losses, params, MinimalResidual(iterations=500),
                                                          return_info=True),
        "chord": lambda: hyperlevel.nested_hypergradient(losses, params, cg, return_info=True),
    }
    outs = {name: run() for name, run in configs.items()}
    medians = round_robin(list(configs.values()), 50, budget_s, clock=CLOCK)
    times = dict(zip(configs, [t for t, _ in medians], strict=True))
    errors = {k: float((outs[k][0]["x"] - reference).norm() / reference.norm()) for k in ("default", "minres", "chord")}
    base = times["two-level CG"]
    info = outs["default"][1]
    row = dict(dims=dims, size=info.joint_size, times=times, errors=errors,
               ratio_default=times["default"] / base, ratio_minres=times["minres"] / base,
               solver=info.solver, hvps={k: outs[k][1].hvp_evals for k in configs})
    print(
        f"| {len(dims)} {dims} | {info.joint_size} | {base * 1e3:.2f} ms ({row['hvps']['two-level CG']} HVPs) | "
        f"{times['default'] * 1e3:.2f} ms ({info.solver}) | {times['minres'] * 1e3:.2f} ms "
        f"({outs['minres'][1].joint_iterations} it.) | {times['chord'] * 1e3:.1f} ms ({row['hvps']['chord']} HVPs) | "
        f"{row['ratio_default']:.2f}x | {row['ratio_minres']:.2f}x | "
        f"{errors['default']:.1e}, {errors['minres']:.1e}, {errors['chord']:.1e} |",
        flush=True,
    )
    return row


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per configuration and case")
    parser.add_argument("--large", action="store_true", help="also the larger cases (slow dense references)")
    args = parser.parse_args()
    main(CASES + LARGE if args.large else CASES, budget_s=args.budget)
