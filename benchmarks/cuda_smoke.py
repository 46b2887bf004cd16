"""CUDA smoke run: the library and TriCo on a GPU, checked against the CPU, with a few GPU timings.

    python benchmarks/cuda_smoke.py [--quick]

Prints one line per check (``[name] OK ...`` or ``[name] FAIL ...``) and exits non-zero if any failed:

* every two-level solver and the three-level nested hypergradient on CUDA (float32 and float64) against the CPU;
* the engine on CUDA: a short TriCo S1 + S2 run, stopped inside S1 and resumed (convergence test active);
* ``enhance`` on CUDA with tiling, against the untiled CPU result;
* timings: ``profile`` (ms per 128 x 128 image, the paper's Table 2 setting) and one S1 / S2 / plain step;
* issue 17 (large networks): the Hessian-vector product paths and ``hvp="auto"``'s choice (ridge, logistic, the
  paper-sized TriCo network), the TriCo S1 step with an implicit solver per path against the finite-difference
  step (target: within 2x), mixed precision accuracy and speed, checkpointed unrolls' peak GPU memory against the
  stored trajectory, and ``torch.compile`` of the products.
Tests never depend on a GPU; this script is what a session with one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # lets deterministic cuBLAS be switched on later
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
warnings.simplefilter("ignore")
FAILED: list[str] = []


ONLY: list[str] = []


def check(name):
    def wrap(fn):
        if ONLY and not any(key in name for key in ONLY):
            return fn
        start = time.perf_counter()
        try:
            msg = fn() or ""
            print(f"[{name}] OK {msg} ({time.perf_counter() - start:.1f} s)", flush=True)
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            FAILED.append(name)
            print(f"[{name}] FAIL {type(exc).__name__}: {str(exc)[:400]}", flush=True)
            traceback.print_exc(limit=-4)
        return fn

    return wrap


def rel(a, b) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda", help="cuda; 'cpu' only dry-runs this script's own logic")
    ap.add_argument("--only", nargs="*", default=[], help="run the checks whose names contain these words")
    args = ap.parse_args()
    ONLY.extend(args.only)
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to smoke-test")
        return 1
    from _problems import Logistic, Ridge  # tests/_problems.py: closed-form problems

    import hyperlevel

    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU (dry run)"
    print(f"torch {torch.__version__}, {name}", flush=True)
    S = hyperlevel.solvers

    @check("solvers cuda vs cpu")
    def _():
        out = []
        for cls in (Ridge, Logistic):
            for dtype in (torch.float64, torch.float32):
                prob = cls.make(dtype=dtype)
                o, w = prob.params()
                for solver in (S.ConjugateGradient(60, on_nonconvergence="ignore"), S.Neumann(3000, 0.005, on_nonconvergence="ignore"),
                               S.FiniteDifference(1e-2), S.Unrolled(5, 1e-2), S.FirstOrder()):
                    cpu = hyperlevel.hypergradient(prob.outer, prob.inner, o, w, solver)["lam"]
                    gpu_prob = cls(*(t.to(dev) for t in (prob.X, prob.y, prob.Xv, prob.yv, prob.lam)))
                    go, gw = {"lam": o["lam"].to(dev)}, {"w": w["w"].to(dev)}
                    gpu = hyperlevel.hypergradient(gpu_prob.outer, gpu_prob.inner, go, gw, solver)["lam"]
                    assert gpu.device.type == torch.device(dev).type and gpu.dtype == dtype
                    err = rel(gpu, cpu)
                    tol = 1e-9 if dtype == torch.float64 else 1e-3
                    assert err < tol, f"{cls.__name__} {dtype} {type(solver).__name__}: {err:.2e}"
                    out.append(err)
        return f"max relative difference {max(out):.1e} over {len(out)} cases"

    @check("nested cuda vs cpu")
    def _():
        g = torch.Generator().manual_seed(0)
        A = torch.randn(3, 2, generator=g, dtype=torch.float64)

        def losses(dev):
            a = A.to(dev)
            return [
                lambda x, y, z: ((z["z"] - 1) ** 2).sum() + (y["y"] ** 2).sum() + 0.1 * (x["x"] ** 4).sum(),
                lambda x, y, z: ((y["y"] - a @ x["x"]) ** 2).sum() + 0.5 * ((z["z"] + y["y"]) ** 2).sum(),
                lambda x, y, z: ((z["z"] - torch.tanh(y["y"])) ** 2).sum() + 0.1 * (z["z"] ** 4).sum(),
            ]

        ps = [{"x": torch.randn(2, dtype=torch.float64)}, {"y": torch.randn(3, dtype=torch.float64)},
              {"z": torch.randn(3, dtype=torch.float64)}]
        cpu = hyperlevel.nested_hypergradient(losses("cpu"), ps)["x"]
        gpu = hyperlevel.nested_hypergradient(losses(dev), [{k: v.to(dev) for k, v in p.items()} for p in ps])["x"]
        err = rel(gpu, cpu)
        assert err < 1e-9, err
        return f"relative difference {err:.1e}"

    @check("trico train + resume on cuda")
    def _():
        from test_trico_train import tiny_config

        from examples.trico.train import train

        cfg = tiny_config(s1={"max_steps": 3, "converge_tol": 1e-12, "converge_window": 1}, s2={"max_steps": 2})

        def params(result):
            return torch.cat([p.detach().reshape(-1) for p in result.setup.model.trainable_parameters()])

        def runs(d: Path):
            full = train(cfg, d / "full", device=dev)
            train(cfg, d / "part", device=dev, stop_after=2)
            resumed = train(cfg, d / "part", resume=d / "part" / "checkpoints" / "last.pt", device=dev)
            again = train(cfg, d / "again", device=dev)
            assert resumed.summary.status == "finished" and params(full).device.type == torch.device(dev).type
            return (float((params(full) - params(resumed)).abs().max()),
                    float((params(full) - params(again)).abs().max()))

        with tempfile.TemporaryDirectory() as d:
            fast_resume, fast_repeat = runs(Path(d) / "default")
            # GPU kernels (cuDNN convolution backward, atomics) are not bitwise reproducible by default; with
            # deterministic algorithms the resumed run must equal the uninterrupted one exactly
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            try:
                det_resume, det_repeat = runs(Path(d) / "deterministic")
            finally:
                torch.use_deterministic_algorithms(False)
        assert det_resume <= det_repeat + 1e-7, (det_resume, det_repeat)
        return (f"max |resumed - uninterrupted|: {fast_resume:.1e} by default (two identical uninterrupted runs "
                f"differ by {fast_repeat:.1e}); with deterministic algorithms {det_resume:.1e} "
                f"(repeat {det_repeat:.1e})")

    @check("enhance on cuda (tiled) vs cpu (untiled)")
    def _():
        from examples.trico import build_model
        from examples.trico.enhance import enhance_image

        torch.manual_seed(0)
        model = build_model(scale=2).eval()
        x = torch.rand(3, 200, 260)
        cpu = enhance_image(model, x, 0, 32, "cpu")
        gpu = enhance_image(model.to(dev), x, 128, 32, dev)
        diff = float((gpu.cpu() - cpu).abs().mean())
        assert diff < 0.02, diff
        return f"mean |difference| {diff:.2e} (tiling changes whole-tile statistics: see docs/trico_model.md)"

    @check("profile on cuda (Table 2 setting)")
    def _():
        res = {}
        for semantic in ("none",) if args.quick else ("none", "sam_vit_b"):
            out = subprocess.run([sys.executable, "-m", "examples.trico", "profile", "--scale", "2", "--size", "128",
                                  "--json", "--device", dev, "--repeats", "20", "--semantic", semantic],
                                 capture_output=True, text=True, cwd=ROOT, timeout=300)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            assert line, out.stderr[-800:]
            res[semantic] = json.loads(line[-1])
            print("   ", line[-1][:300], flush=True)
        return "; ".join(f"{k}: {v['ms_per_image']} ms/image" for k, v in res.items())

    @check("pgr step on cuda (paper-sized network)")
    def _():
        out = subprocess.run([sys.executable, "benchmarks/pgr_step.py", "--device", dev, "--model", "paper",
                              "--crop", "64", "--batch", "8", "--repeats", "5"],
                             capture_output=True, text=True, cwd=ROOT, timeout=400)
        table = [ln for ln in out.stdout.splitlines() if ln.startswith(("|", "TriCo"))]
        assert table, out.stderr[-800:]
        print("\n".join(table), flush=True)

    def table_lines(out, what):
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("|", "TriCo", "hvp=", "torch", "MLP"))]
        assert lines, f"{what}: no table\n{out.stderr[-800:]}"
        print("\n".join(lines), flush=True)
        return lines

    @check("hvp paths on cuda (ridge, logistic, paper-sized TriCo network)")
    def _():
        out = subprocess.run([sys.executable, "benchmarks/hvp_path.py", "--device", dev, "--trico-widths", "paper",
                              "--trico-crop", "32", "--products", "5"],
                             capture_output=True, text=True, cwd=ROOT, timeout=400)
        lines = table_lines(out, "hvp_path")
        assert not any("failed" in ln for ln in lines if "double_backward" in ln)

    @check("pgr step on cuda: S1 implicit per hvp path vs finite difference")
    def _():
        out = subprocess.run([sys.executable, "benchmarks/pgr_step.py", "--device", dev, "--model", "paper",
                              "--crop", "64", "--batch", "8", "--repeats", "3", "--implicit"],
                             capture_output=True, text=True, cwd=ROOT, timeout=500)
        lines = table_lines(out, "pgr_step --implicit")
        ms = {ln.split("|")[1].strip(): float(ln.split("|")[2]) for ln in lines
              if ln.startswith("| S1") or ln.startswith("| plain")}
        fd, auto = ms["S1 finite difference"], ms["S1 implicit Neumann(5), hvp=auto"]
        return f"S1 implicit (auto) / S1 finite difference = {auto / fd:.2f} (target <= 2)"

    @check("mixed precision on cuda (closed forms: relative error; TriCo step: speed)")
    def _():
        errs = []
        for cls in (Ridge, Logistic):
            p64 = cls.make()
            p32 = cls(*(t.float().to(dev) for t in (p64.X, p64.y, p64.Xv, p64.yv, p64.lam)))
            o, w = p64.params()
            o, w = {k: v.float().to(dev) for k, v in o.items()}, {k: v.float().to(dev) for k, v in w.items()}
            ref = hyperlevel.hypergradient(p64.outer, p64.inner, *p64.params(), S.ConjugateGradient(50))["lam"]
            for prec in (None, "bfloat16", "float16"):
                g = hyperlevel.hypergradient(p32.outer, p32.inner, o, w,
                                             S.ConjugateGradient(50, on_nonconvergence="ignore"), precision=prec)
                errs.append(f"{cls.__name__} {prec or 'float32'}: {rel(g['lam'], ref):.1e}")
        print("    " + "; ".join(errs), flush=True)
        for prec in ("bfloat16", "float16"):
            out = subprocess.run([sys.executable, "benchmarks/pgr_step.py", "--device", dev, "--model", "paper",
                                  "--crop", "64", "--batch", "8", "--repeats", "3", "--precision", prec],
                                 capture_output=True, text=True, cwd=ROOT, timeout=400)
            table_lines(out, f"pgr_step --precision {prec}")

    @check("checkpointed unroll: peak cuda memory vs stored trajectory")
    def _():
        from benchmarks.unroll_memory import mlp_problem

        res = {}
        for every in (None, 32):
            outer_loss, inner_loss, o, w = mlp_problem(256, torch.float64)
            o, w = {k: v.to(dev) for k, v in o.items()}, {k: v.to(dev) for k, v in w.items()}
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            g = hyperlevel.hypergradient(outer_loss, inner_loss, o, w, S.Unrolled(1000, 0.05, checkpoint_every=every))
            torch.cuda.synchronize()
            res[every] = (torch.cuda.max_memory_allocated() - base, time.perf_counter() - start, g["log_decay"])
        ratio = res[32][0] / res[None][0]
        err = rel(res[32][2], res[None][2])
        assert ratio <= 0.2 and err < 1e-12, (ratio, err)
        return (f"1000 steps, 86,544 params, float64: stored {res[None][0] / 2**20:.0f} MiB {res[None][1]:.1f} s, "
                f"checkpoint_every=32 {res[32][0] / 2**20:.0f} MiB {res[32][1]:.1f} s (ratio {ratio:.3f}), "
                f"relative difference {err:.1e}")

    @check("torch.compile of the products on cuda")
    def _():
        out = subprocess.run([sys.executable, "benchmarks/compile_products.py", "--device", dev, "--products", "20"],
                             capture_output=True, text=True, cwd=ROOT, timeout=500)
        table_lines(out, "compile_products")

    print(f"{len(FAILED)} failed: {FAILED}" if FAILED else "all CUDA checks passed", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    raise SystemExit(main())
