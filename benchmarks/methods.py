"""Convergence of the bilevel algorithms (``hyperlevel.optimize`` methods), benchopt-style.

Usage: ``python benchmarks/methods.py --out DIR [--seeds 5] [--calls 6000] [--problems quadratic,hypercleaning]``
writes DIR/methods.csv (every recorded point), DIR/methods.md (the table) and docs-ready plots
DIR/methods_<problem>.png (metric against wall time and against oracle calls: median over seeds, 20-80% band).

Problems (float64, seeded; the seed draws the problem *and* nothing else, the methods are deterministic):

* ``quadratic``: d = 100 inner and outer variables, n = 1 024 samples. Inner
  ``G(x, y) = 1/(2n) |Z y|^2 - y'B x`` with ``Z'Z / n = A`` (eigenvalues evenly spaced in [1, 10], random
  eigenvectors), outer ``F(x, y) = 0.5 |y - c|^2 + 0.5 mu |x|^2``, ``mu = 0.1``, ``B`` Gaussian / sqrt(d). Metric:
  the norm of the exact hypergradient ``mu x + B'A^-1 (A^-1 B x - c)`` at the method's current ``x``.
* ``hypercleaning``: digits (scikit-learn), 500 training examples of which half get a wrong label, 300 clean
  validation and 997 test examples. Outer: one logit per training example (weight = sigmoid); inner: weighted
  multinomial logistic regression (65 x 10) + 1e-2/2 |W|^2; outer loss: validation cross-entropy. Metric: test
  accuracy of the method's current inner ``W``.

Every method runs with the same ``outer_lr`` / ``inner_lr`` per problem and its documented default options, for
the same budget of oracle calls (``--calls``: gradient evaluations + Hessian-vector products, as counted by
``hyperlevel.algorithms.Oracle``). The methods are *interleaved*: each one advances by one chunk of steps in
turn (A B C ... A B C ...), so that a change in machine load hits all of them alike. Wall time counts the
methods' steps only, not the metric.

BOAT (boat-torch 1.1.1) implements PGDO, MESO and VFO under the same names; ``--boat`` runs its three classes
beside ours where it can (see docs/benchmarks.md for what it needs and what happened).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as nnf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperlevel.algorithms import Oracle, available, get  # noqa: E402

DT = torch.float64
COLUMNS = ["problem", "method", "seed", "step", "seconds", "oracle_calls", "metric", "metric_name"]


class Quadratic:
    metric_name = "hypergradient norm"
    lower_is_better = True
    outer_lr, inner_lr = 0.05, 0.1

    def __init__(self, seed: int, d: int = 100, n: int = 1024, mu: float = 0.1):
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
        u, _ = torch.linalg.qr(torch.randn(n, d, generator=g, dtype=DT))
        eig = torch.linspace(1, 10, d, dtype=DT)
        self.Z = math.sqrt(n) * u @ torch.diag(eig.sqrt()) @ q.T  # Z'Z / n = A
        self.A = q @ torch.diag(eig) @ q.T
        self.B = torch.randn(d, d, generator=g, dtype=DT) / math.sqrt(d)
        self.c = torch.randn(d, generator=g, dtype=DT)
        self.mu, self.n = mu, n
        self.A_inv = torch.linalg.inv(self.A)
        self.start = ({"x": torch.zeros(d, dtype=DT)}, {"y": torch.zeros(d, dtype=DT)})

    def outer_loss(self, x, y):
        return 0.5 * ((y["y"] - self.c) ** 2).sum() + 0.5 * self.mu * (x["x"] ** 2).sum()

    def inner_loss(self, x, y):
        return 0.5 * ((self.Z @ y["y"]) ** 2).sum() / self.n - y["y"] @ self.B @ x["x"]

    def metric(self, x, y) -> float:
        y_star = self.A_inv @ (self.B @ x["x"])
        return float(torch.linalg.vector_norm(self.mu * x["x"] + self.B.T @ (self.A_inv @ (y_star - self.c))))


class HyperCleaning:
    metric_name = "test accuracy"
    lower_is_better = False
    outer_lr, inner_lr = 50.0, 0.2  # inner L <= 0.5 * lambda_max(X'X / n) + mu ~ 6 on digits

    def __init__(self, seed: int, n_train: int = 500, n_val: int = 300, corruption: float = 0.5, mu: float = 1e-2):
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        X = torch.cat([torch.tensor(X, dtype=DT)[perm] / 16.0, torch.ones(len(y), 1, dtype=DT)], 1)
        y = torch.tensor(y, dtype=torch.long)[perm]
        self.X, self.Xv, self.Xt = X[:n_train], X[n_train:n_train + n_val], X[n_train + n_val:]
        self.y, self.yv, self.yt = y[:n_train].clone(), y[n_train:n_train + n_val], y[n_train + n_val:]
        flip = torch.rand(n_train, generator=g) < corruption
        self.y[flip] = (self.y[flip] + torch.randint(1, 10, (n_train,), generator=g)[flip]) % 10
        self.mu = mu
        self.start = ({"u": torch.zeros(n_train, dtype=DT)}, {"W": torch.zeros(X.shape[1], 10, dtype=DT)})

    def outer_loss(self, x, y):
        return nnf.cross_entropy(self.Xv @ y["W"], self.yv)

    def inner_loss(self, x, y):
        ce = nnf.cross_entropy(self.X @ y["W"], self.y, reduction="none")
        return (torch.sigmoid(x["u"]) * ce).mean() + 0.5 * self.mu * (y["W"] ** 2).sum()

    def metric(self, x, y) -> float:
        return float(((self.Xt @ y["W"]).argmax(1) == self.yt).double().mean())


PROBLEMS = {"quadratic": Quadratic, "hypercleaning": HyperCleaning}
BOAT_METHODS = ("pgdo", "meso", "vfo")


class _Holder(torch.nn.Module):
    """BOAT optimises ``nn.Module`` parameters: one module per level holding the problem's tensors."""

    def __init__(self, tensors: dict):
        super().__init__()
        self.names = list(tensors)
        for k, v in tensors.items():
            self.register_parameter(k, torch.nn.Parameter(v.clone()))

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.names}


class Run:
    """One method on one problem instance, advanced chunk by chunk; records (step, seconds, calls, metric)."""

    def __init__(self, problem, method: str, seed: int, problem_name: str):
        self.problem, self.method, self.seed, self.problem_name = problem, method, seed, problem_name
        self.algorithm = get(method, outer_lr=problem.outer_lr, inner_lr=problem.inner_lr)
        self.oracle = Oracle(problem.outer_loss, problem.inner_loss)
        self.x, self.y = ({k: v.clone() for k, v in d.items()} for d in problem.start)
        self.algorithm.reset(self.x, self.y)
        self.step, self.seconds, self.rows, self.failed = 0, 0.0, [], ""
        self.record()

    def record(self) -> None:
        self.rows.append({"problem": self.problem_name, "method": self.method, "seed": self.seed, "step": self.step,
                          "seconds": self.seconds, "oracle_calls": self.calls(),
                          "metric": self.problem.metric(self.x, self.y), "metric_name": self.problem.metric_name})

    def calls(self) -> int:
        return self.oracle.calls

    def advance(self, calls: int) -> None:
        """Steps until ``calls`` more oracle calls are spent (at least one step)."""
        target = self.oracle.calls + calls
        start = time.perf_counter()
        while self.oracle.calls < target:
            self.x, self.y = self.algorithm.step(self.oracle, self.x, self.y)
            self.step += 1
        self.seconds += time.perf_counter() - start
        if not all(bool(torch.isfinite(t).all()) for t in (*self.x.values(), *self.y.values())):
            self.failed = f"non-finite at step {self.step}"
        self.record()


class BoatRun(Run):
    """BOAT 1.1.1's implementation of the same method (``boat_torch.fo_ol``), driven as BOAT's own loop does: its
    ``optimize`` sets the outer gradient and steps the inner optimizer, then an outer SGD step. Oracle calls:
    every evaluation of either objective counts one (BOAT differentiates each evaluation once). Options map to
    ours: PGDO ``gamma_init = gamma_max = 200``, ``lower_loop = 1``; MESO ``eta = y_hat_lr = inner_lr``,
    ``gamma_1 = 1`` (our ``gamma = 1``), ``c0 = 10``; VFO ``lower_loop = 10``, ``u1 = 1`` (BOAT's form: y pre-steps).
    """

    def __init__(self, problem, method: str, seed: int, problem_name: str):
        import boat_torch.fo_ol as fo

        self.problem, self.method, self.seed, self.problem_name = problem, f"boat-{method}", seed, problem_name
        self.ul, self.ll = _Holder(problem.start[0]), _Holder(problem.start[1])
        self.counter = [0]

        def ll_objective(feed, ul, ll):
            self.counter[0] += 1
            return problem.inner_loss(ul.as_dict(), ll.as_dict())

        def ul_objective(feed, ul, ll):
            self.counter[0] += 1
            return problem.outer_loss(ul.as_dict(), ll.as_dict())

        lr_in, lr_out = problem.inner_lr, problem.outer_lr
        config = {"lower_level_opt": torch.optim.SGD(self.ll.parameters(), lr=lr_in), "device": "cpu",
                  "PGDO": {"y_hat_lr": lr_in, "gamma_init": 200.0, "gamma_max": 200.0, "gamma_argmax_step": 1,
                           "update_y_ahead": False, "penalty": "difference"},
                  "MESO": {"eta": lr_in, "gamma_1": 1.0, "c0": 10.0, "y_hat_lr": lr_in},
                  "VFO": {"y_hat_lr": lr_in, "eta": lr_in, "u1": 1.0}}
        cls = {"pgdo": fo.PGDO, "meso": fo.MESO, "vfo": fo.VFO}[method]
        loop = {"pgdo": 1, "meso": 1, "vfo": 10}[method]
        self.boat = cls(ll_objective, loop, self.ul, ul_objective, self.ll, list(self.ll.parameters()),
                        list(self.ul.parameters()), config)
        self.ul_opt = torch.optim.SGD(self.ul.parameters(), lr=lr_out)
        self.step, self.seconds, self.rows, self.failed = 0, 0.0, [], ""
        self.sync()
        self.record()

    def sync(self) -> None:
        self.x = {k: v.detach().clone() for k, v in self.ul.as_dict().items()}
        self.y = {k: v.detach().clone() for k, v in self.ll.as_dict().items()}

    def calls(self) -> int:
        return self.counter[0]

    def advance(self, calls: int) -> None:
        target = self.counter[0] + calls
        start = time.perf_counter()
        while self.counter[0] < target:
            self.ul_opt.zero_grad(set_to_none=True)
            self.boat.optimize({}, {}, self.step)
            self.ul_opt.step()
            self.step += 1
        self.seconds += time.perf_counter() - start
        self.sync()
        if not all(bool(torch.isfinite(t).all()) for t in (*self.x.values(), *self.y.values())):
            self.failed = f"non-finite at step {self.step}"
        self.record()


def run_problem(name: str, seeds: int, calls: int, chunks: int, methods: list[str], boat: bool = False
                ) -> list[dict]:
    rows = []
    for seed in range(seeds):
        problem = PROBLEMS[name](seed)
        runs = [Run(problem, m, seed, name) for m in methods]
        if boat:
            runs += [BoatRun(problem, m, seed, name) for m in methods if m in BOAT_METHODS]
        for _ in range(chunks):
            for run in runs:  # interleaved: A B C ... A B C ...
                if not run.failed:
                    run.advance(calls // chunks)
        for run in runs:
            rows += run.rows
            if run.failed:
                print(f"{name} seed {seed} {run.method}: {run.failed}", flush=True)
        print(f"{name} seed {seed} done", flush=True)
    return rows


def curves(rows: list[dict], problem: str, method: str, axis: str) -> tuple[list[float], list[float], list[float],
                                                                              list[float]]:
    """Median and 20/80% quantiles over seeds of the metric, at each record index (same budget per record)."""
    by_seed: dict[int, list[dict]] = {}
    for r in rows:
        if r["problem"] == problem and r["method"] == method:
            by_seed.setdefault(r["seed"], []).append(r)
    n = min(len(v) for v in by_seed.values())
    xs, med, lo, hi = [], [], [], []
    for i in range(n):
        at = [v[i] for v in by_seed.values()]
        xs.append(statistics.median(float(a[axis]) for a in at))
        vals = sorted(float(a["metric"]) for a in at)
        q = statistics.quantiles(vals, n=10, method="inclusive") if len(vals) > 1 else vals * 9
        med.append(statistics.median(vals))
        lo.append(q[1])
        hi.append(q[7])
    return xs, med, lo, hi


def plot(rows: list[dict], problem: str, methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cls = PROBLEMS[problem]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, axis, label in ((axes[0], "seconds", "wall time (s)"), (axes[1], "oracle_calls", "oracle calls")):
        for m in methods:
            xs, med, lo, hi = curves(rows, problem, m, axis)
            (line,) = ax.plot(xs, med, label=m)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(label)
        ax.set_ylabel(cls.metric_name)
        if cls.lower_is_better:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{problem}: median and 20-80% band over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict], problems: list[str], methods: list[str]) -> str:
    lines = ["| problem | method | final metric (median) | 20% | 80% | oracle calls | seconds (median) | steps |",
             "|---|---|---|---|---|---|---|---|"]
    for p in problems:
        for m in methods:
            finals = {}
            for r in rows:
                if r["problem"] == p and r["method"] == m:
                    finals[r["seed"]] = r  # the last record of each seed
            if not finals:
                continue
            vals = sorted(float(r["metric"]) for r in finals.values())
            q = statistics.quantiles(vals, n=10, method="inclusive") if len(vals) > 1 else vals * 9
            sec = statistics.median(float(r["seconds"]) for r in finals.values())
            calls = statistics.median(int(r["oracle_calls"]) for r in finals.values())
            steps = statistics.median(int(r["step"]) for r in finals.values())
            lines.append(f"| {p} | {m} | {statistics.median(vals):.4g} | {q[1]:.4g} | {q[7]:.4g} | {calls:.0f} | "
                         f"{sec:.2f} | {steps:.0f} |")
    return "\n".join(lines)


def render(paths: list[Path], out: Path, tag: str) -> None:
    """Table and plots from saved CSVs (several runs may be combined: each keeps its own rows)."""
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [{**r, "seed": int(r["seed"])} for r in csv.DictReader(f)]
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    labels = list(dict.fromkeys(r["method"] for r in rows))
    for p in problems:
        plot(rows, p, [m for m in labels if any(r["problem"] == p and r["method"] == m for r in rows)],
             out / f"{tag}_{p}.png")
    text = table(rows, problems, labels)
    (out / f"{tag}.md").write_text(text + "\n")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--problems", default="quadratic,hypercleaning")
    ap.add_argument("--methods", default=",".join(available()))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=6000, help="oracle calls per method, seed and problem")
    ap.add_argument("--chunks", type=int, default=30, help="records per run (the interleaving granularity)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--boat", action="store_true", help="also run BOAT's PGDO, MESO and VFO (boat-torch, higher)")
    ap.add_argument("--tag", default="methods", help="output file stem")
    ap.add_argument("--render", nargs="+", type=Path, help="only redraw the table and plots from these CSVs")
    args = ap.parse_args()
    if args.render:
        render(args.render, args.out, args.tag)
        return
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    problems, methods = args.problems.split(","), args.methods.split(",")
    labels = methods + [f"boat-{m}" for m in methods if args.boat and m in BOAT_METHODS]
    rows = []
    for p in problems:
        rows += run_problem(p, args.seeds, args.calls, args.chunks, methods, args.boat)
        with open(args.out / f"{args.tag}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        plot(rows, p, labels, args.out / f"{args.tag}_{p}.png")
    text = table(rows, problems, labels)
    (args.out / f"{args.tag}.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
