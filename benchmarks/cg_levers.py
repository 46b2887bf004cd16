"""Levers for a faster CG hypergradient, measured one at a time (issue 12, item 3).

    python benchmarks/cg_levers.py [--parts products,preconditioners,warm] [--sizes-large]

Three parts, all float64, one torch thread, times in CPU seconds of the timing thread (time.thread_time: the
development machine is shared, and wall time there mostly measures the scheduler), configurations interleaved:

* ``products``: the cost of one Hessian-vector product as each library computes it at the same point: hyperlevel's
  ``HessianOperator`` (double backward, engine called directly), Betty's (``torch.autograd.grad`` of the inner
  gradient with ``retain_graph``), BOAT's (``torch.autograd.grad`` of the fixed-point map ``w - lr * grad`` and
  ``v - J v``), and a batched block of 32 (``is_grads_batched``) per vector. Beside it, one complete CG
  hypergradient of hyperlevel and BOAT divided by the products each made (BOAT's counted by wrapping
  ``torch.autograd.grad`` during one call): the per-product cost of a whole call, overheads included.
* ``preconditioners``: plain CG at 50 and 100 iterations against preconditioned CG (exact Jacobi, Hutchinson
  Jacobi, randomised Nystrom of rank 20 / 50) at 50 iterations: products, relative error, CPU ms per call.
* ``warm``: a sequence of outer gradient steps (inner problem re-solved exactly at each step): CG cold against
  ``warm_start=True``, both to tol 1e-10: products per step, total CPU time and the worst relative error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _problems as bp  # noqa: E402
from _timing import round_robin  # noqa: E402

from hyperlevel import solvers  # noqa: E402
from hyperlevel.functional import HessianOperator, inner_gradient  # noqa: E402
from hyperlevel.solvers.preconditioners import Jacobi, NystromPreconditioner  # noqa: E402


def leaves(d):
    return {k: v.detach().clone().requires_grad_(True) for k, v in d.items()}


def cpu_rr(runs, repeats=7, budget=2.0):
    return [m for m, _ in round_robin(runs, repeats, budget, clock=time.thread_time)]


def part_products(problems) -> list[str]:
    lines = ["| problem | inner params | hyperlevel HVP ms | Betty-style HVP ms | BOAT-style HVP ms | batched (32) ms per "
             "vector | hyperlevel CG call: ms / products | BOAT CG call: ms / products |",
             "|---|---|---|---|---|---|---|---|"]
    for P in problems:
        lines.append(_product_row(P))
        print(lines[-1], flush=True)
    return lines


def _product_row(P) -> str:
    """One problem's row (a function of its own, so the closures bind this problem's tensors)."""
    import peers

    o, w = leaves(P.outer), leaves(P.inner)
    params = list(w.values())
    g = inner_gradient(P.inner_loss, o, w, create_graph=True)
    op = HessianOperator(g, w)
    n = sum(t.numel() for t in params)
    v = torch.randn(n, dtype=torch.float64)
    vs = op.split(v)
    lr = P.inner_lr
    mapped = [p - lr * gi for p, gi in zip(params, g)]
    V = torch.randn(32, n, dtype=torch.float64)

    def betty():
        return torch.autograd.grad(g, params, grad_outputs=vs, retain_graph=True)

    def boat():
        j = torch.autograd.grad(mapped, params, grad_outputs=vs, retain_graph=True)
        return [a - b for a, b in zip(vs, j)]

    def batched():
        return op.batched(V)

    cg = peers.hyperlevel_adapter(P, "cg")
    hl_products = solvers.get("cg", **peers.hyperlevel_options("cg", P))
    _, info = hl_products.solve(P.outer_loss, P.inner_loss, leaves(P.outer), leaves(P.inner))
    boat_run = peers.boat_adapter(P, "cg")
    count = [0]
    original = torch.autograd.grad

    def counting(*a, **k):
        count[0] += 1
        return original(*a, **k)

    torch.autograd.grad = counting
    try:
        boat_run()
    finally:
        torch.autograd.grad = original
    t = cpu_rr([lambda: op(v), betty, boat, batched, cg, boat_run])
    return (f"| {P.description} | {n} | {1e3 * t[0]:.3g} | {1e3 * t[1]:.3g} | {1e3 * t[2]:.3g} | "
            f"{1e3 * t[3] / 32:.3g} | {1e3 * t[4]:.3g} / {info.hvp_evals} = {1e3 * t[4] / info.hvp_evals:.3g}"
            f" | {1e3 * t[5]:.3g} / {count[0]} = {1e3 * t[5] / count[0]:.3g} |")


def part_preconditioners(problems) -> list[str]:
    lines = ["| problem | variant | iterations | products | rel_error | CPU ms per call | x plain CG(50) time |",
             "|---|---|---|---|---|---|---|"]
    for P in problems:
        ref = P.ift_reference()
        variants = [("plain CG(50)", 50, None), ("plain CG(100)", 100, None)]
        if P.size <= 1000:
            variants.append(("Jacobi exact, CG(50)", 50, Jacobi()))
        variants += [("Jacobi Hutchinson 10, CG(50)", 50, Jacobi(probes=10)),
                     ("Nystrom 20, CG(50)", 50, NystromPreconditioner(20)),
                     ("Nystrom 50, CG(50)", 50, NystromPreconditioner(50))]
        runs, rows = [], []
        for name, iters, pc in variants:
            s = solvers.ConjugateGradient(iterations=iters, tol=1e-10, on_nonconvergence="ignore",
                                          on_nonstationary="ignore", preconditioner=pc)
            res, info = s.solve(P.outer_loss, P.inner_loss, leaves(P.outer), leaves(P.inner))
            err = bp.rel_error(dict(zip(P.outer, res)), ref)
            rows.append((name, info.iterations, info.hvp_evals, err))
            runs.append(lambda s=s, P=P: s.solve(P.outer_loss, P.inner_loss, leaves(P.outer), leaves(P.inner)))
        t = cpu_rr(runs, repeats=5)
        for (name, it, hv, err), ti in zip(rows, t):
            lines.append(f"| {P.description} | {name} | {it} | {hv} | {err:.1e} | {1e3 * ti:.3g} | {ti / t[0]:.2f} |")
            print(lines[-1], flush=True)
    return lines


def part_warm(problems, steps: int = 10, lr_outer: float = 1.0) -> list[str]:
    lines = ["| problem | outer steps | variant | products per step (median) | total CPU ms | worst rel_error |",
             "|---|---|---|---|---|---|"]
    for P in problems:
        key = next(iter(P.outer))
        path, x = [], P.outer[key].clone()
        for _ in range(steps):  # the outer trajectory: plain gradient steps on the exact hypergradient
            w = P.solve_inner(x)
            P.outer, P.inner = {key: x}, {next(iter(P.inner)): w}
            g = P.ift_reference()[key]
            path.append(({key: x.clone()}, {next(iter(P.inner)): w}, g))
            x = x - lr_outer * g / float(g.abs().max())  * 0.05
        for name, warm in (("cold", False), ("warm_start=True", True)):
            s = solvers.ConjugateGradient(iterations=200, tol=1e-10, warm_start=warm, on_nonstationary="ignore")
            products, errs = [], []
            t0 = time.thread_time()
            for o, w, g in path:
                res, info = s.solve(P.outer_loss, P.inner_loss, leaves(o), leaves(w))
                products.append(info.hvp_evals)
                errs.append(bp.rel_error(dict(zip(o, res)), {key: g}))
            total = time.thread_time() - t0
            lines.append(f"| {P.description} | {steps} | {name} | {statistics.median(products):g} | "
                         f"{1e3 * total:.3g} | {max(errs):.1e} |")
            print(lines[-1], flush=True)
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="products,preconditioners,warm")
    ap.add_argument("--large", action="store_true", help="also ridge 10^4 and 10^5 in products/preconditioners")
    ap.add_argument("--out", default=None, help="write the tables to this markdown file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    small = [bp.Ridge(100), bp.Logistic(50), bp.HyperCleaning(200), bp.CNNMinimum(128)]
    large = [bp.Ridge(10_000), bp.Ridge(100_000)] if args.large else []
    out = []
    parts = args.parts.split(",")
    if "products" in parts:
        out += ["### per-product cost", ""] + part_products(small + large) + [""]
    if "preconditioners" in parts:
        out += ["### preconditioners", ""] + part_preconditioners(small + large) + [""]
    if "warm" in parts:
        out += ["### warm starts", ""] + part_warm([bp.Ridge(100), bp.Logistic(50)]) + [""]
    if args.out:
        Path(args.out).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
