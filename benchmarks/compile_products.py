"""Does ``torch.compile`` speed up the solvers' losses and products? Measured, not assumed.

    python benchmarks/compile_products.py [--sizes 500x100,5000x1000] [--products 20] [--device cpu]

On a ridge problem (float64 on CPU, float32 on CUDA) it times one Hessian-vector product
(after warm-up, fastest of the repeats: noise only adds time), for:

* eager double backward (what the solvers do by default): the inner gradient's graph built once, one backward
  per product (setup reported separately);
* double backward through a ``torch.compile``-d inner loss: AOTAutograd does not support double backward, so this
  is expected to fail; the error is printed;
* ``torch.compile`` of the whole product ``v -> jvp(grad(G), (w,), (v,))`` (forward-over-reverse through
  ``torch.func``), compared with the same function eager;
* ``torch.compile`` of the first-order gradient ``torch.func.grad(G)`` used by the finite-difference product.

Compilation time is reported too: a solver pays it once per shape, so it only pays off over many solves.
"""

from __future__ import annotations

import argparse
import time

import torch


def ridge(n: int, p: int, dtype, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=dtype).to(device)
    y = torch.randn(n, generator=g, dtype=dtype).to(device)
    lam = torch.rand(p, generator=g, dtype=dtype).to(device)

    def inner(w):
        return 0.5 * ((X @ w - y) ** 2).sum() + 0.5 * (lam * w**2).sum()

    w = torch.randn(p, generator=g, dtype=dtype).to(device)
    v = torch.randn(p, generator=g, dtype=dtype).to(device)
    return inner, w, v


def timed(fn, repeats, device):
    out = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return min(out)


def first_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_size(n: int, p: int, args, dev: str, dtype) -> None:
    inner, w0, v = ridge(n, p, dtype, dev)
    label = f"ridge {n} x {p}"
    w = w0.clone().requires_grad_()
    grad = torch.autograd.grad(inner(w), w, create_graph=True)[0]

    def db():
        return torch.autograd.grad(grad, w, grad_outputs=v, retain_graph=True)[0]

    ref = db()
    base = timed(db, args.products, dev)
    print(f"| {label} | eager double backward | - | {1e3 * base:.3f} | 1.00 | 0 |", flush=True)

    compiled_loss = torch.compile(inner)
    try:
        wc = w0.clone().requires_grad_()
        gc = torch.autograd.grad(compiled_loss(wc), wc, create_graph=True)[0]
        torch.autograd.grad(gc, wc, grad_outputs=v)
        print(f"| {label} | compiled loss, double backward | works | | | |", flush=True)
    except Exception as exc:  # noqa: BLE001 - the failure is the result
        print(f"| {label} | compiled loss, double backward | fails: {type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:90]} | | | |", flush=True)

    grad_fn = torch.func.grad(inner)

    def for_eager():
        return torch.func.jvp(grad_fn, (w0,), (v,))[1]

    for_compiled = torch.compile(for_eager)
    fd_grad = torch.compile(grad_fn)
    eps = 1e-4

    def fd_compiled():
        return (fd_grad(w0 + eps * v) - fd_grad(w0 - eps * v)) / (2 * eps)

    def fd_eager():
        return (grad_fn(w0 + eps * v) - grad_fn(w0 - eps * v)) / (2 * eps)

    for name, fn in (("eager forward-over-reverse", for_eager), ("compiled forward-over-reverse", for_compiled),
                     ("eager finite difference (func.grad)", fd_eager),
                     ("compiled finite difference (func.grad)", fd_compiled)):
        try:
            first = first_call(fn)
            t = timed(fn, args.products, dev)
            diff = float((fn() - ref).abs().max())
            print(f"| {label} | {name} | {1e3 * first:.0f} | {1e3 * t:.3f} | {t / base:.2f} | {diff:.1e} |",
                  flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"| {label} | {name} | fails: {type(exc).__name__}: {str(exc).splitlines()[0][:90]} | | | |",
                  flush=True)




def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500x100,5000x1000")
    ap.add_argument("--products", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    dev = args.device
    dtype = torch.float64 if dev == "cpu" else torch.float32
    print("| problem | variant | first call ms (compiles) | ms per product | x eager double backward | max |diff| |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        n, p = (int(s) for s in size.split("x"))
        run_size(n, p, args, dev, dtype)


if __name__ == "__main__":
    main()
