"""Which Hessian-vector-product path should the solvers use? Measure, don't guess.

    python benchmarks/hvp_path.py [--sizes 500x100,5000x1000] [--iterations 50]

Times 50 conjugate-gradient iterations on a ridge problem in float64 with the HVP computed
(a) by plain double backward: the inner gradient is built once with ``create_graph=True`` and every product is one
    ``torch.autograd.grad`` over it (what ``hyperlevel`` does), and
(b) by forward-over-reverse with ``torch.func``: ``jvp(grad(inner), (w,), (v,))`` per product.
Both use hyperlevel's own ``conjugate_gradient``; the solutions are compared so that speed is not bought with error.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hyperlevel.solvers import conjugate_gradient


def ridge(n: int, p: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    lam = torch.rand(p, generator=g, dtype=torch.float64)

    def inner(w):
        return 0.5 * ((X @ w - y) ** 2).sum() + 0.5 * (lam * w**2).sum()

    return inner, torch.linalg.solve(X.T @ X + torch.diag(lam), X.T @ y), torch.randn(p, generator=g, dtype=X.dtype)


def double_backward(inner, w, b, iterations):
    w = w.detach().requires_grad_()
    grad = torch.autograd.grad(inner(w), w, create_graph=True)[0]
    matvec = lambda v: torch.autograd.grad(grad, w, grad_outputs=v, retain_graph=True)[0]  # noqa: E731
    return conjugate_gradient(matvec, b, iterations=iterations, tol=0.0)[0]


def forward_over_reverse(inner, w, b, iterations):
    grad_fn = torch.func.grad(inner)
    matvec = lambda v: torch.func.jvp(grad_fn, (w,), (v,))[1]  # noqa: E731
    return conjugate_gradient(matvec, b, iterations=iterations, tol=0.0)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500x100,5000x1000")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"| problem (n x p) | path | ms per {args.iterations} CG iterations (median) | ratio | max |x_a - x_b| |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        n, p = (int(v) for v in size.split("x"))
        inner, w, b = ridge(n, p)
        times = {"double backward": [], "torch.func jvp(grad)": []}
        paths = {"double backward": double_backward, "torch.func jvp(grad)": forward_over_reverse}
        for fn in paths.values():
            fn(inner, w, b, args.iterations)  # warm-up
        for _ in range(args.repeats):  # interleaved so that drift hits both
            for name, fn in paths.items():
                start = time.perf_counter()
                fn(inner, w, b, args.iterations)
                times[name].append(time.perf_counter() - start)
        diff = (double_backward(inner, w, b, args.iterations) - forward_over_reverse(inner, w, b, args.iterations))
        base = statistics.median(times["double backward"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"| {n} x {p} | {name} | {1e3 * med:.2f} | {med / base:.1f}x | {diff.abs().max():.1e} |")


if __name__ == "__main__":
    main()
