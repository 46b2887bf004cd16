"""Accuracy and cost of each hyperlevel solver on ridge problems with 100, 1 000 and 10 000 inner parameters.

Usage: ``python benchmarks/hypergradient.py [--quick] --out DIR`` writes DIR/hypergradient.csv, .md and .png.

Problem (benchmarks/_problems.py, ``Ridge``): one penalty per feature, validation MSE, float64, seed 0. The number
of training samples is n = 200 for p = 100 and n = 1 000 for p = 1 000 and p = 10 000 (the closed form then uses the
Woodbury identity, an n x n solve, so the reference at p = 10 000 takes about a second; one Hessian-vector product
costs ~4 n p flops). Validation set: as many samples as training.

Solvers: every name in ``hyperlevel.solvers.available()``, built with ``solvers.get(name, **options)``; the options
are ``peers.hyperlevel_options`` (ConjugateGradient(50, tol=1e-10), Neumann(100, alpha=1/L),
FiniteDifference(inner_lr=1/L, epsilon=0.01), Unrolled(100, inner_lr=1/L), Nystrom(rank 50, rho=0.1 L),
ZeroOrder(32 pairs, sigma 1e-3, 10 steps), FixedPoint(100, step=1/L), GMRES(50), CGNormal(50), and 100 steps of
1/L for the trajectory solvers), with L the largest Hessian eigenvalue (power iteration, +1%).

Columns: ``rel_error_ift`` against the closed-form implicit hypergradient; ``rel_error_target`` against the exact
quantity the solver declares (``solver.declaration.target``; ``target``: ``ift`` for the implicit target (closed
form), ``unrolled_K`` for a K-step unrolled target (autograd through the same K steps; one step for
FiniteDifference), ``partial`` for the partial derivative; empty for targets without an independent reference at
this size (pessimistic and aggregated trajectories: their closed-form checks are in tests/test_new_solvers.py));
``ms_median``: median wall time of one ``hyperlevel.hypergradient`` call after a warm-up, solvers timed round-robin,
one torch thread; ``peak_mb``: growth of ru_maxrss during one call in a fresh process (see benchmarks/peers.py);
``iterations`` / ``residual``: from ``return_info=True``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _plotting import finish_scatter_figure  # noqa: E402
from _problems import Ridge, first_order_gradient, rel_error, unrolled_hypergradient  # noqa: E402
from _timing import round_robin  # noqa: E402
from peers import hyperlevel_options, markdown_table, measure_memory, write_csv  # noqa: E402

import hyperlevel  # noqa: E402
from hyperlevel import solvers  # noqa: E402
from hyperlevel.solvers.target import ImplicitTarget, PartialTarget, UnrolledTarget  # noqa: E402

SIZES = (100, 1000, 10000)
METHODS = tuple(solvers.available())
COLUMNS = ["solver", "method", "size", "n_samples", "rel_error_ift", "rel_error_target", "target", "ms_median",
           "peak_mb", "iterations", "residual", "repeats"]


def make_solver(method: str, P: Ridge):
    return solvers.get(method, **hyperlevel_options(method, P))


def declared_reference(P: Ridge, solver, point) -> tuple[str, dict | None]:
    """The exact gradient of the solver's declared target at this size (None when there is no cheap one)."""
    target = solver.declaration.target
    if isinstance(target, ImplicitTarget) and target.fixed_point_map is None:
        return "ift", P.reference("cg")[1]
    if isinstance(target, UnrolledTarget) and not target.frozen_steps and target.start is None:
        return f"unrolled_{target.steps}", P._cached(
            f"unrolled_{target.steps}_{target.inner_lr}", lambda: unrolled_hypergradient(
                P.outer_loss, P.inner_loss, P.outer, point, target.steps, target.inner_lr))
    if isinstance(target, PartialTarget):
        return "partial", first_order_gradient(P.outer_loss, P.outer, point)
    return target.kind, None


def run_size(p: int, repeats: int, budget: float, memory: bool, jobs: int) -> list[dict]:
    P = Ridge(n_features=p)
    ift = P.reference("cg")[1]
    rows, runs = [], []
    for method in METHODS:
        solver = make_solver(method, P)
        point = P.point(method)
        target, ref = declared_reference(P, solver, point)

        def run(solver=solver, point=point):
            return hyperlevel.hypergradient(P.outer_loss, P.inner_loss, P.outer, point, solver=solver,
                                            return_info=True)

        g, info = run()
        row = {"solver": repr(solver), "method": method, "size": p, "n_samples": P.n, "target": target,
               "rel_error_ift": rel_error(g, ift), "rel_error_target": rel_error(g, ref) if ref is not None else None,
               "iterations": info.iterations, "residual": f"{info.residual:.1e}"}
        rows.append(row)
        runs.append((row, run, []))
    timings = round_robin([run for _, run, _ in runs], repeats, budget)
    for (row, _, _), (median, samples) in zip(runs, timings):
        row["ms_median"] = 1e3 * median
        row["repeats"] = samples
    if memory:
        from concurrent.futures import ThreadPoolExecutor

        spec = P.spec()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            res = list(pool.map(lambda m: measure_memory("hyperlevel", m, spec), METHODS))
        for row, r in zip(rows, res):
            row["peak_mb"] = r["peak_mb"] if isinstance(r, dict) else None
            if not isinstance(r, dict):
                print(f"  memory {row['method']}: {r}", file=sys.stderr)
    return rows


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {100: "o", 1000: "s", 10000: "D"}
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, col, title in ((axes[0], "rel_error_ift", "error vs closed-form implicit hypergradient"),
                           (axes[1], "rel_error_target", "error vs the exact quantity each approximates")):
        for r in rows:
            if r[col] is None:
                continue
            ax.scatter(r["ms_median"], max(r[col], 1e-17), marker=markers[r["size"]], color=colors[r["method"]],
                       s=55, edgecolors="k", linewidths=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("median ms per hypergradient")
        ax.set_ylabel("relative error")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    finish_scatter_figure(fig, path, "hyperlevel solvers on ridge regression (float64)",
                          {f"p={size}": m for size, m in markers.items()}, colors, ncol=9, top=0.92)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 timed calls per solver instead of 20")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per solver and size")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (5 if args.quick else 20)
    budget = args.budget or (5.0 if args.quick else 30.0)
    rows = []
    t0 = time.perf_counter()
    for p in [int(s) for s in args.sizes.split(",")]:
        t1 = time.perf_counter()
        rows += run_size(p, repeats, budget, not args.no_memory, args.jobs)
        print(f"p={p}: {time.perf_counter() - t1:.0f} s", flush=True)
    table = markdown_table(rows, COLUMNS)
    print(table)
    write_csv(rows, out / "hypergradient.csv", COLUMNS)
    (out / "hypergradient.md").write_text(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float64, ridge (benchmarks/_problems.py)"
        f"\n\n{table}\n")
    plot(rows, out / "hypergradient.png")
    print(f"wrote {out}/hypergradient.csv, .md, .png in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
