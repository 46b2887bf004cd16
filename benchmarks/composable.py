"""torch.func composability of hyperlevel.hypergradient: vmap over many outer points against a Python loop.

The ridge problem of tests/_problems.py (60 x 8, float64): the hypergradient of the validation loss with respect
to the 8 log-penalties, at the closed-form inner solution, for 64 penalty vectors at once. Three ways:

* ``loop``: a Python loop of the default (fast, detached) path, one point at a time;
* ``loop (differentiable)``: a loop of the traced path ``differentiable=True`` (what vmap batches);
* ``vmap``: ``torch.func.vmap`` of the same function, which takes the traced path automatically.

Also the hyper-Hessian by ``jacrev`` / ``jacfwd`` against central differences of the hypergradient.
Run: .venv/bin/python benchmarks/composable.py [--iterations 50]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import round_robin  # noqa: E402

import hyperlevel  # noqa: E402
from hyperlevel.solvers import ConjugateGradient  # noqa: E402


def _ridge():
    """tests/_problems.py's Ridge (loaded by path: benchmarks/_problems.py shares the module name)."""
    spec = importlib.util.spec_from_file_location("_test_problems", Path(__file__).resolve().parents[1] / "tests"
                                                  / "_problems.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Ridge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--budget", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    prob = _ridge().make()
    solver = ConjugateGradient(iterations=args.iterations)
    gram, rhs = prob.X.T @ prob.X, prob.X.T @ prob.y

    def w_star(lam):
        return torch.linalg.solve(gram + torch.diag(torch.exp(lam)), rhs)

    def hg(lam, differentiable=False):
        return hyperlevel.hypergradient(prob.outer, prob.inner, {"lam": lam}, {"w": w_star(lam)}, solver,
                                        differentiable=differentiable)["lam"]

    gen = torch.Generator().manual_seed(0)
    lams = prob.lam + 0.3 * torch.randn(args.points, prob.lam.numel(), generator=gen, dtype=torch.float64)
    batched = torch.func.vmap(hg)
    looped = torch.stack([hg(lam) for lam in lams])
    vmapped = batched(lams)  # also the warm-up (the first vmap call imports and registers batching rules)
    print(f"vmap vs loop, max abs difference: {(vmapped - looped).abs().max().item():.2e}")
    runs = [
        lambda: torch.stack([hg(lam) for lam in lams]),
        lambda: torch.stack([hg(lam, True) for lam in lams]),
        lambda: batched(lams),
    ]
    (t_loop, n_loop), (t_dloop, n_dloop), (t_vmap, n_vmap) = round_robin(runs, repeats=30, budget_s=args.budget)
    print(f"| {args.points} points, CG {args.iterations} | loop {t_loop * 1e3:.1f} ms | loop (differentiable) "
          f"{t_dloop * 1e3:.1f} ms | vmap {t_vmap * 1e3:.1f} ms | loop / vmap {t_loop / t_vmap:.1f}x | "
          f"samples {n_loop}/{n_dloop}/{n_vmap} |")

    lam = prob.lam
    step = 1e-5
    eye = torch.eye(lam.numel(), dtype=lam.dtype)
    fd = torch.stack([(hg(lam + step * e) - hg(lam - step * e)) / (2 * step) for e in eye], dim=1)
    for name, jac in (("jacrev", torch.func.jacrev(hg)(lam)), ("jacfwd", torch.func.jacfwd(hg)(lam))):
        err = float(torch.linalg.norm(jac - fd) / torch.linalg.norm(fd))
        print(f"hyper-Hessian by {name}: relative difference to central differences {err:.2e} "
              f"(norm {float(torch.linalg.norm(jac)):.3f}, asymmetry "
              f"{float(torch.linalg.norm(jac - jac.T) / torch.linalg.norm(jac)):.1e})")


if __name__ == "__main__":
    main()
