"""Where the dense path stops paying: Dense (batched Hessian + Cholesky) against CG, and for nested problems the
dense joint solve against MINRES, at growing sizes; configurations interleaved in the same run (medians).

Run: PYTHONPATH=. .venv/bin/python benchmarks/dense_crossover.py [--budget SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import _nested_reference as ref  # noqa: E402
from _problems import Logistic, Ridge, rel_error  # noqa: E402
from _timing import round_robin  # noqa: E402

import hyperlevel  # noqa: E402

#: CPU time of this (single) thread: the development machine runs far more jobs than it has cores, and wall time
#: there mostly measures the scheduler; thread time is what a call costs (docs/benchmarks.md)
CLOCK = time.thread_time
from hyperlevel.solvers import ConjugateGradient, Dense, MinimalResidual  # noqa: E402


def _on_dicts(fk):
    return lambda *ds: fk(*[d["x"] for d in ds])


def two_level(budget_s: float, sizes=(10, 25, 50, 100, 200, 400)) -> None:
    print("| problem | inner size | Dense | CG (50 it., tol 1e-10) | CG / Dense | rel. error Dense, CG |")
    print("|---|---|---|---|---|---|")
    for cls in (Ridge, Logistic):
        for p in sizes:
            prob = cls(n_features=p)
            ref_g = prob.ift_reference()
            solvers = {"dense": Dense(), "cg": ConjugateGradient(iterations=50)}
            runs = [
                (lambda s=s, q=prob: hyperlevel.hypergradient(q.outer_loss, q.inner_loss, q.outer, q.inner, s))
                for s in solvers.values()
            ]
            errs = [rel_error(run(), ref_g) for run in runs]
            (td, _), (tc, _) = round_robin(runs, 30, budget_s, clock=CLOCK)
            print(f"| {prob.name} | {p} | {td * 1e3:.2f} ms | {tc * 1e3:.2f} ms | {tc / td:.2f}x | "
                  f"{errs[0]:.1e}, {errs[1]:.1e} |", flush=True)


def nested(budget_s: float, cases=((3, 4, 5), (4, 10, 10), (10, 20, 20), (10, 40, 40), (10, 60, 60),
                                    (10, 100, 100))) -> None:
    print("| levels (dims) | joint size | Dense (joint) | MINRES (joint) | MINRES / Dense |")
    print("|---|---|---|---|---|")
    for dims in cases:
        f = ref.make_problem(list(dims), seed=0)
        x0 = torch.randn(dims[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        xs = [x0, *ref.equilibrium(f, x0, [torch.zeros(d, dtype=torch.float64) for d in dims])]
        losses = [_on_dicts(fk) for fk in f]
        params = [{"x": x} for x in xs]
        runs = [lambda s=s, L=losses, P=params: hyperlevel.nested_hypergradient(L, P, s)
                for s in (Dense(), MinimalResidual(iterations=1000))]
        size = sum(2 ** (k - 1) * d for k, d in enumerate(dims) if k)
        (td, _), (tm, _) = round_robin(runs, 30, budget_s, clock=CLOCK)
        print(f"| {len(dims)} {dims} | {size} | {td * 1e3:.2f} ms | {tm * 1e3:.2f} ms | {tm / td:.2f}x |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="seconds of timing per configuration and row")
    parser.add_argument("--only", choices=["two-level", "nested"], default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.only != "nested":
        two_level(args.budget)
    if args.only != "two-level":
        nested(args.budget)
