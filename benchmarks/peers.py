"""hyperlevel side by side with TorchOpt, Betty, BOAT and higher: one hypergradient at a given inner point.

Install recipe that worked (venv pip 23.2.1, torch 2.14.1 CPU pinned; none of these steps touches torch):

    .venv/bin/python -m pip install --dry-run -c constraints.txt torchopt pandas   # check: torch is not replaced
    .venv/bin/python -m pip install -c constraints.txt -e '.[bench]'
        # -> torchopt 0.7.3, optree 0.20.0, graphviz 0.21, pandas 3.1.1 (matplotlib 3.11.2 already pinned)
    .venv/bin/python -m pip install -c constraints.txt --no-deps betty-ml boat-torch higher
        # -> betty-ml 0.1.1, boat-torch 1.1.1 (imports as ``boat_torch``), higher 0.2.1
    # pip >= 24.1 refuses betty-ml 0.1.1's metadata ("torch>=1.6.*"); pip 23.2.1 only warns. Never install the
    # PyPI ``functorch`` package (it replaces torch); boat-torch needs ``higher`` and ``matplotlib`` at import.

Usage: ``python benchmarks/peers.py --quick --out DIR`` writes DIR/peers.csv, DIR/peers.md and DIR/peers.png.
Full sizes (no ``--quick``): ridge up to 10^5 inner parameters (at p = 10^5 at most 3 timed calls per
configuration) and the CNN at a true inner minimum (``cnn_min``) at two sizes; ``--sizes`` picks some of them.

What is measured, per (library, method, problem, size), all in float64 with fixed seeds and equal settings
(CG: 50 iterations, relative tolerance 1e-10 where the library has one; Neumann: 100 terms, the same alpha = 1/L;
finite differences: the same inner step and probe length 0.01; unrolled: the same steps and step size):

* ``rel_error``: ||g - ref|| / ||ref|| against the exact quantity the method approximates (``reference`` column;
  see benchmarks/_problems.py); ``rel_error_ift`` against the implicit hypergradient (for the CNN: the 20-step
  unrolled hypergradient).
* ``ms_median``: median wall time (time.perf_counter; ``--clock cpu``: the timing thread's CPU time,
  time.thread_time) of one complete hypergradient call, after one warm-up call,
  the configurations of one (problem, size) timed round-robin (A B C A B C ...) so drift hits all alike; torch uses
  one thread (``--threads``) because the machine is shared.
* ``peak_mb``: in a fresh subprocess per configuration that loads the pickled problem and builds the solver, the
  peak growth of the *anonymous* resident set during its first hypergradient call: resident minus file-backed pages
  (/proc/self/statm), sampled every 0.2 ms by a thread, minus the level just before the call. It counts what the
  call allocates (tensors, autograd graph, Python objects, one-time lazy allocations such as torch.func's first
  use), not shared-library code that torch maps on first use of a kernel (~33 MB for the first torch.dot: that is
  why ru_maxrss deltas were not used). glibc reuses memory freed earlier in the process, so small calls read ~0;
  spikes shorter than 0.2 ms can be missed. The child calls once (``first_call_mb``: includes one-time costs such
  as BLAS work buffers, ~32 MB on the first torch.dot, and torch.func's set-up), then collects garbage, returns
  freed heap to the OS (malloc_trim) and reports the growth during a second call as ``peak_mb``. tracemalloc does not see torch's allocations, and torch has no CPU allocator stats.
* ``ratio_to_hyperlevel``: ms_median / hyperlevel's ms_median for the same method, problem and size.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _problems  # noqa: E402
from _plotting import finish_scatter_figure  # noqa: E402
from _problems import Problem, make_problem, rel_error  # noqa: E402
from _timing import round_robin  # noqa: E402

CG_ITERS, CG_TOL = 50, 1e-10
NEUMANN_ITERS = 100
FD_EPSILON = 0.01

LIBRARIES = ("hyperlevel", "torchopt", "betty", "boat", "higher")
METHODS = {
    "hyperlevel": ("cg", "neumann", "finite_difference", "unrolled", "first_order"),
    "torchopt": ("cg", "neumann", "unrolled"),
    "betty": ("cg", "neumann", "finite_difference"),
    "boat": ("cg", "neumann", "finite_difference", "unrolled"),
    "higher": ("unrolled",),
}
QUICK_SIZES = {"ridge": [100], "logistic": [50], "hypercleaning": [200], "cnn": [128], "cnn_min": [128]}
FULL_SIZES = {"ridge": [100, 1000, 10_000, 100_000], "logistic": [50, 200], "hypercleaning": [200, 1000],
              "cnn": [128, 512], "cnn_min": [128, 512]}
#: from this many inner parameters on, at most ``LARGE_REPEATS`` timed calls per configuration (one call of an
#: unrolled or Neumann hypergradient at ridge p = 10^5 takes seconds)
LARGE_SIZE, LARGE_REPEATS = 100_000, 3
COLUMNS = ["library", "method", "problem", "size", "rel_error", "ms_median", "peak_mb", "ratio_to_hyperlevel",
           "rel_error_ift", "reference", "first_call_mb", "repeats", "error"]

Grad = dict[str, torch.Tensor]
# torchopt 0.7.3 calls functorch.vjp, deprecated since torch 2.0: one warning per call would flood the output
warnings.filterwarnings("ignore", message="We've integrated functorch into PyTorch")


def _leaves(d: Grad) -> Grad:
    return {k: v.detach().clone().requires_grad_(True) for k, v in d.items()}


class ParamModule(torch.nn.Module):
    """An nn.Module that only holds a dict of tensors as parameters (for the module-based libraries)."""

    def __init__(self, params: Grad):
        super().__init__()
        self.names = list(params)
        for k, v in params.items():
            self.register_parameter(k, torch.nn.Parameter(v.detach().clone()))

    def as_dict(self, params=None) -> Grad:
        return dict(zip(self.names, self.parameters() if params is None else params))


# ---------------------------------------------------------------------------------------------------------------
# adapters: adapter(problem, method) -> a zero-argument callable computing one hypergradient (dict like outer)
# ---------------------------------------------------------------------------------------------------------------
#: the Nystrom rank, and its rho as a fraction of the largest Hessian eigenvalue L (= 1 / neumann_alpha)
NYSTROM_RANK, NYSTROM_RHO = 50, 1e-1
#: zero-order: antithetic pairs, smoothing radius, inner steps per evaluation
ES_SAMPLES, ES_SIGMA, ES_STEPS = 32, 1e-3, 10


def hyperlevel_options(method: str, P: Problem) -> dict:
    """The benchmark settings of each registered hyperlevel solver (a solver not listed runs with its defaults)."""
    steps, lr = P.unroll_steps, P.inner_lr
    iterative = dict(tol=CG_TOL, on_nonconvergence="ignore")
    return {
        "cg": dict(iterations=CG_ITERS, **iterative),
        "neumann": dict(iterations=NEUMANN_ITERS, alpha=P.neumann_alpha, **iterative),
        "finite_difference": dict(inner_lr=lr, epsilon=FD_EPSILON),
        "unrolled": dict(steps=steps, inner_lr=lr),
        "first_order": {},
        "nystrom": dict(rank=NYSTROM_RANK, rho=NYSTROM_RHO / P.neumann_alpha),
        "zero_order": dict(samples=ES_SAMPLES, sigma=ES_SIGMA, steps=ES_STEPS, inner_lr=lr),
        "fixed_point": dict(iterations=NEUMANN_ITERS, step=lr, **iterative),
        "gmres": dict(iterations=CG_ITERS, restart=CG_ITERS, **iterative),
        "cg_normal": dict(iterations=CG_ITERS, **iterative),
        "unrolled_recompute": dict(steps=steps, inner_lr=lr),
        "ptt": dict(steps=steps, inner_lr=lr),
        "gda": dict(steps=steps, inner_lr=lr),
        "iad": dict(steps=steps, inner_lr=lr),
    }.get(method, {})


def hyperlevel_adapter(P: Problem, method: str) -> Callable[[], Grad]:
    import hyperlevel
    from hyperlevel import solvers

    solver = solvers.get(method, **hyperlevel_options(method, P))
    point = P.point(method)

    def run():
        return hyperlevel.hypergradient(P.outer_loss, P.inner_loss, P.outer, point, solver=solver)

    return run


def torchopt_adapter(P: Problem, method: str) -> Callable[[], Grad]:
    import torchopt

    o_names, point = list(P.outer), P.point(method)
    w_names = list(point)
    if method == "unrolled":

        def run():  # MetaSGD: differentiable SGD on an nn.Module, reverse mode through the steps
            net = ParamModule(point)
            opt = torchopt.MetaSGD(net, lr=P.inner_lr)
            o = _leaves(P.outer)
            for _ in range(P.unroll_steps):
                opt.step(P.inner_loss(o, dict(net.named_parameters())))
            g = torch.autograd.grad(P.outer_loss(o, dict(net.named_parameters())), list(o.values()))
            return dict(zip(o_names, g))

        return run

    if method == "cg":
        solve = torchopt.linear_solve.solve_cg(maxiter=CG_ITERS, rtol=CG_TOL, atol=0.0)
    else:  # Neumann series alpha * sum_{j<=K} (I - alpha H)^j b, like the others
        solve = torchopt.linear_solve.solve_inv(ns=True, maxiter=NEUMANN_ITERS, alpha=P.neumann_alpha)

    def optimality(w, o):  # stationarity of the inner problem; torchopt differentiates it with torch.func.vjp
        return torch.func.grad(lambda wt: P.inner_loss(dict(zip(o_names, o)), dict(zip(w_names, wt))))(w)

    @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solve)
    def inner_solution(w, o):  # the given inner point is the solution
        return tuple(t.detach() for t in w)

    w_point = tuple(point.values())

    def run():
        o = tuple(t.detach().clone().requires_grad_(True) for t in P.outer.values())
        w = inner_solution(w_point, o)
        g = torch.autograd.grad(P.outer_loss(dict(zip(o_names, o)), dict(zip(w_names, w))), o, allow_unused=True)
        return {k: (torch.zeros_like(v) if gk is None else gk) for (k, v), gk in zip(P.outer.items(), g)}

    return run


def betty_adapter(P: Problem, method: str) -> Callable[[], Grad]:
    """Betty's own hypergradient functions (betty.hypergradient.get_grads -> cg / neumann / darts) on duck-typed
    stand-ins for its Problem objects: exactly what ``Problem.backward`` does (direct gradient + get_grads),
    without the Engine's data loading and optimizer steps."""
    from betty.configs import Config
    from betty.hypergradient import get_grads

    config = {
        "cg": Config(type="cg", cg_iterations=CG_ITERS, cg_alpha=1.0),
        "neumann": Config(type="neumann", neumann_iterations=NEUMANN_ITERS, neumann_alpha=P.neumann_alpha),
        "finite_difference": Config(type="darts", darts_alpha=FD_EPSILON),
    }[method]
    point = P.point(method)

    class Level:
        def __init__(self, params, loss=None, config=None):
            self.params, self.loss, self.config = params, loss, config
            self.cur_batch, self.paths = None, []

        def training_step_exec(self, batch):
            return self.loss()

        def trainable_parameters(self):
            return list(self.params.values())

        def parameters(self):
            return list(self.params.values())

    def run():
        o, w = _leaves(P.outer), _leaves(point)
        outer = Level(o)
        inner = Level(w, loss=lambda: P.inner_loss(o, w), config=config)
        loss = P.outer_loss(o, w)
        direct = torch.autograd.grad(loss, list(o.values()), retain_graph=True, allow_unused=True)
        implicit = get_grads(loss, [outer, inner, outer], retain_graph=False)
        return {k: (0 if d is None else d) + (0 if i is None else i)
                for k, d, i in zip(o, direct, implicit)}

    return run


def boat_adapter(P: Problem, method: str) -> Callable[[], Grad]:
    """BOAT's operators built alone (CG, NS, FD, RAD (+ its NGD dynamics for unrolling)), asked for one hypergradient.
    They *add* into ``.grad`` of the upper variables: the adapter clears ``.grad`` before each call."""
    import boat_torch  # noqa: F401  (registers the operators; imports higher and matplotlib)
    from boat_torch.gm_ol.ngd import NGD
    from boat_torch.na_ol.cg import CG
    from boat_torch.na_ol.fd import FD
    from boat_torch.na_ol.ns import NS
    from boat_torch.na_ol.rad import RAD

    point = P.point(method)
    ll_model, ul_model = ParamModule(point), ParamModule(P.outer)
    ll_var, ul_var = list(ll_model.parameters()), list(ul_model.parameters())

    def ll_objective(feed, ul, ll, params=None):
        return P.inner_loss(ul.as_dict(), dict(zip(ll_model.names, ll.parameters() if params is None else params)))

    def ul_objective(feed, ul, ll, params=None):
        return P.outer_loss(ul.as_dict(), dict(zip(ll_model.names, ll.parameters() if params is None else params)))

    ll_opt = torch.optim.SGD(ll_model.parameters(), lr=P.inner_lr)
    # NS reads its iteration count from the "CG" settings; its alpha is the lower-level optimizer's lr
    k = CG_ITERS if method == "cg" else NEUMANN_ITERS
    config = {"gm_op": ["NGD"], "na_op": ["RAD" if method == "unrolled" else method], "lower_level_opt": ll_opt,
              "CG": {"tolerance": CG_TOL if method == "cg" else 0.0, "k": k},
              "GDA": {"alpha_init": 0.0, "alpha_decay": 1.0}, "FD": {"r": FD_EPSILON}, "RGT": {"truncate_iter": 0}}
    if method == "neumann":
        config["lower_level_opt"] = torch.optim.SGD(ll_model.parameters(), lr=P.neumann_alpha)
    cls = {"cg": CG, "neumann": NS, "finite_difference": FD, "unrolled": RAD}[method]
    op = cls(ll_objective, ul_objective, ll_model, ul_model, ll_var, ul_var, config)

    def read():
        g = {k: p.grad.clone() for k, p in zip(P.outer, ul_var)}
        for p in ul_var:
            p.grad = None
        return g

    if method in ("cg", "neumann"):

        def run():
            for p in ul_var:
                p.grad = None
            op.compute_gradients({}, {}, ll_model)
            return read()

    elif method == "finite_difference":

        def run():  # BOAT's DARTS: the one SGD step is taken outside the operator (its NGD does the same)
            for p in ul_var:
                p.grad = None
            o = ul_model.as_dict()
            g = torch.autograd.grad(P.inner_loss(o, ll_model.as_dict()), ll_var)
            w_hat = [(w - P.inner_lr * gi).detach().requires_grad_(True) for w, gi in zip(ll_var, g)]
            op.compute_gradients({}, {}, ll_model, lower_model_params=w_hat)
            return read()

    else:
        import higher

        dynamics = NGD(ll_objective, ul_objective, ll_model, ul_model, P.unroll_steps, config)

        def run():  # BOAT's NGD dynamics through higher (track_higher_grads=True), then RAD
            for p in ul_var:
                p.grad = None
            with higher.innerloop_ctx(ll_model, ll_opt, copy_initial_weights=False,
                                      track_higher_grads=True) as (fmodel, diffopt):
                dynamics.optimize({}, {}, fmodel, diffopt, 0)
                op.compute_gradients({}, {}, fmodel)
            return read()

    return run


def higher_adapter(P: Problem, method: str) -> Callable[[], Grad]:
    import higher

    point = P.point(method)
    net = ParamModule(point)
    opt = torch.optim.SGD(net.parameters(), lr=P.inner_lr)

    def run():
        o = _leaves(P.outer)
        with higher.innerloop_ctx(net, opt, copy_initial_weights=True) as (fnet, diffopt):
            for _ in range(P.unroll_steps):
                diffopt.step(P.inner_loss(o, net.as_dict(fnet.parameters())))
            g = torch.autograd.grad(P.outer_loss(o, net.as_dict(fnet.parameters())), list(o.values()))
        return dict(zip(P.outer, g))

    return run


ADAPTERS = {"hyperlevel": hyperlevel_adapter, "torchopt": torchopt_adapter, "betty": betty_adapter,
            "boat": boat_adapter, "higher": higher_adapter}
IMPORT_NAMES = {"hyperlevel": "hyperlevel", "torchopt": "torchopt", "betty": "betty", "boat": "boat_torch",
                "higher": "higher"}


def library_versions() -> dict[str, str]:
    from importlib import metadata

    dists = {"hyperlevel": "hyperlevel", "torchopt": "torchopt", "betty": "betty-ml", "boat": "boat-torch",
             "higher": "higher", "torch": "torch"}
    out = {}
    for lib, dist in dists.items():
        try:
            out[lib] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def import_errors(libraries) -> dict[str, str]:
    import importlib

    errors = {}
    for lib in libraries:
        try:
            importlib.import_module(IMPORT_NAMES[lib])
        except Exception as e:  # noqa: BLE001 - any failure is reported, never dropped
            errors[lib] = f"{type(e).__name__}: {e}".splitlines()[0]
    return errors


# ---------------------------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------------------------
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    """Anonymous resident memory (resident minus file-backed/shared pages): heap, tensors, Python objects, but not
    the code pages of shared libraries that torch maps lazily on first use of a kernel."""
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    return (int(fields[1]) - int(fields[2])) * _PAGE_MB


def peak_rss_growth(fn: Callable[[], object], interval: float = 2e-4) -> float:
    """MB by which the anonymous resident set grows during ``fn()`` above its level just before: a thread samples
    /proc/self/statm every ``interval`` seconds (torch ops release the GIL). Spikes shorter than the interval can
    be missed."""
    import threading

    gc.collect()
    base = _rss_mb()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        fn()
        peak[0] = max(peak[0], _rss_mb())
    finally:
        done.set()
        t.join()
    return max(peak[0] - base, 0.0)


def memory_child(lib: str, method: str, spec: str) -> None:
    """Entry point of the fresh process that measures one configuration's peak-memory growth."""
    torch.set_num_threads(1)
    P = _problems.from_spec(spec)
    run = ADAPTERS[lib](P, method)
    first = peak_rss_growth(run)  # includes one-time costs: BLAS buffers, torch.func set-up, lazy imports
    gc.collect()
    try:  # hand freed heap back to the OS so the second call's growth is visible
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    print(json.dumps({"peak_mb": peak_rss_growth(run), "first_call_mb": first, "base_mb": _rss_mb()}))


def measure_memory(lib: str, method: str, spec: str, timeout: float = 300) -> dict | str:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", lib, method, spec]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "memory child timed out"
    for line in reversed(r.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return (r.stderr.strip().splitlines() or ["memory child failed"])[-1]


def benchmark_problem(P: Problem, configs, repeats: int, budget_s: float, memory: bool, jobs: int,
                      clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    rows, runs = [], []
    for lib, method in configs:
        row = {"library": lib, "method": method, "problem": P.name, "size": P.size, "error": ""}
        ref_name, ref = P.reference(method)
        row["reference"] = ref_name
        try:
            run = ADAPTERS[lib](P, method)
            g = run()  # warm-up, and the value whose error is reported
            row["rel_error"] = rel_error(g, ref)
            row["rel_error_ift"] = rel_error(g, P.reference("cg")[1])
            runs.append((row, run, []))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            traceback.print_exc(limit=3, file=sys.stderr)
        rows.append(row)
    timings = round_robin([run for _, run, _ in runs], repeats, budget_s, clock=clock)
    for (row, _, _), (median, samples) in zip(runs, timings):
        row["ms_median"] = 1e3 * median
        row["repeats"] = samples
    hl = {row["method"]: row.get("ms_median") for row in rows if row["library"] == "hyperlevel"}
    for row in rows:
        base = hl.get(row["method"])
        if base and row.get("ms_median"):
            row["ratio_to_hyperlevel"] = row["ms_median"] / base
    if memory:
        from concurrent.futures import ThreadPoolExecutor

        spec = P.spec()
        todo = [row for row in rows if not row["error"]]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(lambda row: measure_memory(row["library"], row["method"], spec), todo))
        for row, res in zip(todo, results):
            if isinstance(res, dict):
                row["peak_mb"], row["first_call_mb"] = res["peak_mb"], res["first_call_mb"]
            else:
                row["error"] = (row["error"] + "; " if row["error"] else "") + f"memory: {res}"[:200]
    return rows


# ---------------------------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------------------------
def _fmt(v, col):
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        return ""
    if col in ("rel_error", "rel_error_ift", "rel_error_target"):
        return f"{v:.1e}"
    if col in ("ms_median", "peak_mb", "first_call_mb"):
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"
    if col == "ratio_to_hyperlevel":
        return f"{v:.2f}"
    return str(v)


def markdown_table(rows, columns) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return "\n".join(lines)


def write_csv(rows, path, columns):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in columns})


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys((r["problem"], r["size"]) for r in rows))
    markers = {"hyperlevel": "o", "torchopt": "s", "betty": "^", "boat": "D", "higher": "v"}
    colors = {"cg": "C0", "neumann": "C1", "finite_difference": "C2", "unrolled": "C3", "first_order": "C4"}
    ncol = min(2, len(problems))
    nrow = math.ceil(len(problems) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6 * ncol, 4.2 * nrow), squeeze=False)
    for ax, (prob, size) in zip(axes.flat, problems):
        for r in rows:
            if (r["problem"], r["size"]) != (prob, size) or r.get("ms_median") is None:
                continue
            ax.scatter(r["ms_median"], max(r["rel_error"], 1e-17), marker=markers.get(r["library"], "x"),
                       color=colors.get(r["method"], "k"), s=50, edgecolors="k", linewidths=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{prob} (size {size})")
        ax.set_xlabel("median ms per hypergradient")
        ax.set_ylabel("relative error vs its reference")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(problems):]:
        ax.axis("off")
    finish_scatter_figure(fig, path, title, markers, colors, ncol=5)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one small size per problem (under 10 minutes)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--problems", default="ridge,logistic,hypercleaning,cnn,cnn_min")
    ap.add_argument("--sizes", default=None, help="only these sizes (comma-separated), of the chosen size set")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: time.thread_time, the CPU time of the timing thread (one-thread runs on a machine "
                         "loaded beyond its cores, where wall time mostly measures the scheduler)")
    ap.add_argument("--libraries", default=",".join(LIBRARIES))
    ap.add_argument("--methods", default=None, help="only these methods (comma-separated), e.g. cg,neumann")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per configuration (5 quick, 20 full)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per configuration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration memory subprocesses")
    ap.add_argument("--jobs", type=int, default=2, help="memory subprocesses run at once")
    ap.add_argument("--memory-child", nargs=3, metavar=("LIB", "METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (5 if args.quick else 20)
    budget = args.budget or (3.0 if args.quick else 20.0)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    libraries = [x for x in args.libraries.split(",") if x]
    only_sizes = {int(x) for x in args.sizes.split(",")} if args.sizes else set()
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    versions = library_versions()
    errors = import_errors(libraries)
    print("versions:", ", ".join(f"{k} {v}" for k, v in versions.items()))
    for lib, err in errors.items():
        print(f"  {lib} unavailable: {err}")
    rows = []
    for lib, err in errors.items():
        for method in METHODS[lib]:
            rows.append({"library": lib, "method": method, "problem": "*", "size": "", "error": err})
    methods = set(args.methods.split(",")) if args.methods else None
    configs = [(lib, m) for lib in libraries if lib not in errors for m in METHODS[lib] if not methods or m in methods]
    t_start = time.perf_counter()
    for name in [x for x in args.problems.split(",") if x]:
        for size in sizes[name]:
            if only_sizes and size not in only_sizes:
                continue
            t0 = time.perf_counter()
            P = make_problem(name, size)
            print(f"\n== {P.description}: lr=1/L={P.inner_lr:.3g}, unrolled {P.unroll_steps} steps", flush=True)
            n_rep = min(repeats, LARGE_REPEATS) if size >= LARGE_SIZE else repeats
            prows = benchmark_problem(P, configs, n_rep, budget, not args.no_memory, args.jobs, clock)
            print(markdown_table(prows, COLUMNS[:-1] + ["error"]))
            print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)
            rows += prows
    write_csv(rows, out / "peers.csv", COLUMNS)
    header = (f"torch {versions['torch']}, {torch.get_num_threads()} thread(s), float64, clock {args.clock}; "
              + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "torch"))
    (out / "peers.md").write_text(header + "\n\n" + markdown_table(rows, COLUMNS) + "\n")
    plot([r for r in rows if r.get("ms_median") is not None], out / "peers.png",
         "time vs error per hypergradient (marker: library, colour: method)")
    print(f"\nwrote {out / 'peers.csv'}, {out / 'peers.md'}, {out / 'peers.png'} "
          f"in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    assert _problems.PROBLEMS  # the children unpickle problems from this module
    main()
