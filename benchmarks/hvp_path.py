"""Which Hessian-vector-product path should the solvers use? Measure, don't guess.

    python benchmarks/hvp_path.py [--problems ridge,logistic,trico] [--products 10] [--device cpu]

For each problem and each path of :mod:`hyperlevel.hvp` (double backward, forward-over-reverse, finite difference)
it times, at the same inner point and with the same direction:

* setup: what a solve pays once (the double-backward path builds the inner gradient's graph; the others check
  which parameters the inner loss uses, one plain gradient);
* product: the fastest of ``--products`` timed ``H v`` products after one warm-up product (on a loaded machine
  noise only adds time, so the minimum is the least disturbed figure);
* "20-product solve": setup + 20 products, what ``AutoHvp`` ranks by (its ``expected_products`` is the solver's
  iteration cap; 20 here);
* the product's relative error against double backward;

and reports the path ``hvp="auto"`` picks (cached per signature) and, with ``AutoHvp(allow_finite_difference=True)``,
the finite-difference error it measured. A plain gradient (forward + backward) is timed as the unit.

Problems: ridge and logistic regression (500 x 100, float64, one penalty per feature as the outer parameters) and
TriCo's network (``examples.trico.build_model`` at reduced widths by default: ``--trico-widths paper`` for the
paper's 1.2 M parameters) as the inner parameters with the log-weights of four candidate losses (L1, TV, SSIM,
luminance; the VGG perceptual loss is left out: it needs downloaded weights) as the outer ones, float32.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hyperlevel import hvp  # noqa: E402

SMALL_WIDTHS = {"ir_width": 8, "fr_widths": [16, 24, 32], "enc_blocks": [1, 1, 1], "dec_blocks": [0, 1, 1],
                "refine_blocks": 1, "hr_blocks": 1, "heads": [2, 2, 1]}


def regression(kind: str, n: int = 500, p: int = 100, device: str = "cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g, dtype=torch.float64)
    w_true = torch.randn(p, generator=g, dtype=torch.float64) / p**0.5
    if kind == "ridge":
        y = X @ w_true + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    else:
        y = (torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid(X @ w_true)).double()
    X, y = X.to(device), y.to(device)

    def data_loss(w):
        z = X @ w
        return 0.5 * ((z - y) ** 2).sum() if kind == "ridge" else (torch.nn.functional.softplus(z) - y * z).sum()

    def inner(o, i):
        return data_loss(i["w"]) + 0.5 * (torch.exp(o["lam"]) * i["w"] ** 2).sum()

    def outer(o, i):
        return data_loss(i["w"])

    outer_p = {"lam": torch.zeros(p, dtype=torch.float64, device=device)}
    inner_p = {"w": (0.1 * torch.randn(p, generator=g, dtype=torch.float64)).to(device)}
    return outer, inner, outer_p, inner_p


def trico(widths: str, crop: int = 16, batch: int = 2, device: str = "cpu", seed: int = 0):
    from examples.trico import build_model
    from examples.trico.losses import l1_loss, luminance_loss, ssim_loss, tv_loss

    torch.manual_seed(seed)
    model = build_model(scale=2, **({} if widths == "paper" else SMALL_WIDTHS)).to(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, crop, crop, generator=g).to(device)
    target = torch.rand(batch, 3, 2 * crop, 2 * crop, generator=g).to(device)
    names = [n for n, p in model.named_parameters() if p.requires_grad]

    def losses(i):
        out = torch.func.functional_call(model, i, (x,))
        return torch.stack([l1_loss(out.y, target), tv_loss(out.y), ssim_loss(out.y, target),
                            luminance_loss(out.v)])

    def inner(o, i):
        return (torch.exp(-o["s"]) * losses(i)).sum() + o["s"].sum()

    def outer(o, i):
        return losses(i)[0]

    params = dict(model.named_parameters())
    inner_p = {n: params[n].detach().clone() for n in names}
    return outer, inner, {"s": torch.zeros(4, device=device)}, inner_p


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(problem, products: int, device: str) -> list[dict]:
    outer_loss, inner_loss, outer_p, inner_p = problem
    o = {k: v.detach().requires_grad_() for k, v in outer_p.items()}
    i = {k: v.detach().requires_grad_() for k, v in inner_p.items()}
    n = sum(t.numel() for t in i.values())
    like = next(iter(i.values()))
    v = torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=like.dtype).to(like.device)
    plain = []
    for _ in range(products + 1):
        _sync(device)
        start = time.perf_counter()
        torch.autograd.grad(inner_loss(o, i), list(i.values()))
        _sync(device)
        plain.append(time.perf_counter() - start)
    gradient = min(plain[1:])
    rows, ref = [], None
    for path in ("double_backward", "forward_over_reverse", "finite_difference"):
        try:
            _sync(device)
            start = time.perf_counter()
            op = hvp.build(path, inner_loss, o, i)
            _sync(device)
            setup = time.perf_counter() - start
            hv = op(v)
            times = []
            for _ in range(products):
                _sync(device)
                start = time.perf_counter()
                op(v)
                _sync(device)
                times.append(time.perf_counter() - start)
        except (RuntimeError, NotImplementedError) as exc:
            rows.append({"path": path, "failed": f"{type(exc).__name__}: {str(exc)[:80]}"})
            continue
        ref = hv if ref is None else ref
        err = float(torch.linalg.vector_norm(hv - ref) / torch.linalg.vector_norm(ref))
        product = min(times)
        rows.append({"path": path, "setup": setup, "product": product, "solve20": setup + 20 * product,
                     "error": err, "gradient": gradient, "params": n})
        del op
    hvp.clear_cache()
    auto = hvp.choose(inner_loss, o, i, hvp.AutoHvp())
    hvp.clear_cache()
    with_fd = hvp.choose(inner_loss, o, i, hvp.AutoHvp(allow_finite_difference=True))
    for r in rows:
        r["auto"] = auto.path
        r["auto_fd"] = f"{with_fd.path} (fd error {with_fd.fd_error:.1e})"
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="ridge,logistic,trico")
    ap.add_argument("--products", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--trico-widths", default="small", choices=["small", "paper"])
    ap.add_argument("--trico-crop", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU, {args.threads} thread(s)"
    print(f"torch {torch.__version__}, {dev}")
    print("| problem | params | path | setup ms | ms per product | x gradient | 20-product solve ms | "
          "rel. error vs double backward | auto picks | auto with fd allowed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        if name == "trico":
            problem = trico(args.trico_widths, crop=args.trico_crop, device=args.device)
            label = f"TriCo net ({args.trico_widths} widths, LR crop {args.trico_crop}, batch 2)"
        else:
            problem = regression(name, device=args.device)
            label = f"{name} 500 x 100"
        for r in measure(problem, args.products, args.device):
            if "failed" in r:
                print(f"| {label} | | {r['path']} | failed: {r['failed']} | | | | | | |")
                continue
            print(f"| {label} | {r['params']} | {r['path']} | {1e3 * r['setup']:.2f} | {1e3 * r['product']:.2f} | "
                  f"{r['product'] / r['gradient']:.2f} | {1e3 * r['solve20']:.1f} | {r['error']:.1e} | "
                  f"{r['auto']} | {r['auto_fd']} |", flush=True)


if __name__ == "__main__":
    main()
