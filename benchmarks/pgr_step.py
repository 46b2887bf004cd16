"""The cost of one TriCo S1 and S2 step against one plain training step of the same networks.

    python benchmarks/pgr_step.py [--config demo] [--model demo|paper] [--crop 32] [--batch 4] [--repeats 5]

Every variant runs on the same batches of the embedded data set, after a warm-up, through hyperlevel's Engine
(the code TriCo trains with). The time of each step is broken down by instrumenting the calls it makes:

* forward: evaluations of the level objectives (network + candidate losses, building the autograd graph);
* backward: ``torch.autograd.grad`` calls (the solvers' and the inner steps' gradients);
* optimizer: ``Optimizer.step`` (global step hooks);
* other: what remains (solver vector arithmetic, data, bookkeeping).

"passes" counts forward evaluations and backward calls per step. Alg. 1's S1 needs, per step: the inner gradient
at w (1 forward + 1 backward), the outer gradients at the probed point w_hat (1 + 1), the two finite-difference
probes d_s Phi^ll(w +- eps v) and the inner update (1 + 1). Because the loss weights enter Phi^ll only through the
weighted sum, the probes' gradients with respect to s need no backward pass through the networks: autograd records
only the weighted sum when the probed network weights are constants, so a probe costs one forward.

Variants:

* ``plain``: one Adam step of N_ir and N_fr on the D_ll batch (the naive baseline's step).
* ``S1 finite difference`` / ``S2 finite difference``: TriCo's default (Alg. 1).
* ``... + reuse``: ``Phase(reuse_inner_gradient=True)``: the inner update reuses the solver's inner gradient.
* ``S1 unrolled(1)``: the exact one-step hypergradient by double backward (generic: no structure used).
* ``S1 weighted-sum jvp``: the exact one-step hypergradient that uses the weighted-sum structure: the mixed
  derivative ``(d_s d_w Phi^ll) v`` is ``-(grad L_u . v) / (2 s_u)`` per loss u (in log-weights), i.e. the five
  directional derivatives of the candidate losses along v, all from ONE forward-mode pass (``torch.func.jvp``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hyperlevel  # noqa: E402
from hyperlevel import Callback, Engine, Phase  # noqa: E402
from hyperlevel.solvers import Solver, SolverInfo  # noqa: E402


class Meter:
    """Times and counts forward evaluations, autograd.grad calls and optimizer steps."""

    def __init__(self) -> None:
        self.reset()
        self._grad = torch.autograd.grad
        self.cuda = False  # on a GPU every timed region ends with a synchronisation, or it times launches

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset(self) -> None:
        self.t = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        self.n = {"forward": 0, "backward": 0}

    def install(self) -> None:
        meter = self
        original = self._grad

        def timed_grad(*args, **kwargs):
            meter._sync()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                meter._sync()
                meter.t["backward"] += time.perf_counter() - start
                meter.n["backward"] += 1

        torch.autograd.grad = timed_grad
        self._opt_start = 0.0

        def pre(opt, args, kwargs):
            meter._sync()
            meter._opt_start = time.perf_counter()

        def post(opt, args, kwargs):
            meter._sync()
            meter.t["optimizer"] += time.perf_counter() - meter._opt_start

        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._hooks = (register_optimizer_step_pre_hook(pre), register_optimizer_step_post_hook(post))

    def wrap(self, objective):
        meter = self

        def timed(params, batch):
            meter._sync()
            start = time.perf_counter()
            try:
                return objective(params, batch)
            finally:
                meter._sync()
                meter.t["forward"] += time.perf_counter() - start
                meter.n["forward"] += 1

        return timed


METER = Meter()


class Steps(Callback):
    def __init__(self, warmup: int):
        self.warmup = warmup
        self.rows: list[dict[str, float]] = []

    def on_step_end(self, engine, record) -> None:
        METER._sync()
        if record.phase_step > self.warmup:
            self.rows.append({"total": record.seconds, **METER.t, **{f"n_{k}": v for k, v in METER.n.items()}})
        METER.reset()


class WeightedSumOneStep(Solver):
    """Exact one-step (DARTS) hypergradient for loss weights entering as TriCo's regularised weighted sum.

    Needs the structure the generic solvers cannot see: a function giving the candidate losses' vector at given
    network weights on the inner batch. Built per step by the benchmark (``bind``)."""

    method = "weighted_sum_jvp"

    def __init__(self, inner_lr: float):
        self.inner_lr = inner_lr
        self.loss_vector = None  # set by the benchmark: (inner params dict) -> (5,) tensor on the inner batch

    def solve(self, outer_loss, inner_loss, outer, inner, reduce=None):
        names = list(inner)
        g = torch.autograd.grad(inner_loss(outer, inner), list(inner.values()))
        w_hat = {n: (p - self.inner_lr * gi).detach().requires_grad_() for (n, p), gi in zip(inner.items(), g)}
        f = outer_loss(outer, w_hat)
        d = torch.autograd.grad(f, list(outer.values()) + list(w_hat.values()))
        direct, v = d[: len(outer)], d[len(outer):]
        base = {n: p.detach() for n, p in inner.items()}
        tangents = {n: t.detach() for n, t in zip(names, v)}
        _, directional = torch.func.jvp(self.loss_vector, (base,), (tangents,))  # grad L_u . v for all u
        (key,) = list(outer)  # the loss weights' log_s
        s = torch.exp(outer[key].detach())
        mixed = -directional.detach() / (2 * s)  # d/dlog_s_u of (grad_w Phi . v)
        return [direct[0] - self.inner_lr * mixed], SolverInfo(solver="WeightedSumOneStep", gradient_evals=2,
                                                               outer_loss=float(f.detach()))


def build(config_name: str, model_size: str, crop: int, batch: int, device: str = "cpu"):
    from examples.trico.config import load_config
    from examples.trico.problem import build_schedule, build_setup

    overrides = [f"data.crop={crop}", f"data.batch_size={batch}"]
    config = load_config(config_name, overrides)
    if model_size == "paper":  # build_model's defaults: the size budget of the paper's Table 2
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, widths={}))
    setup = build_setup(config, device=device)
    for level in setup.problem.levels:
        level.objective = METER.wrap(level.objective)
    phases = {p.name: p for p in build_schedule(config)}
    return config, setup, phases


def run_phase(setup, phase: Phase, steps: int, warmup: int) -> list[dict[str, float]]:
    collect = Steps(warmup)
    phase = dataclasses.replace(phase, max_steps=steps + warmup, until=None)
    METER.reset()
    Engine(setup.problem, [phase], callbacks=[collect], check_objectives=False).run()
    return collect.rows


def run_plain(setup, steps: int, warmup: int) -> list[dict[str, float]]:
    lower = setup.problem["lower"]
    params = list(setup.model.illumination.parameters()) + list(setup.model.refinement.parameters())
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    rows = []
    for k in range(steps + warmup):
        METER.reset()
        start = time.perf_counter()
        batch = lower.next_batch()
        P = setup.problem.detached()
        P["middle"] = setup.problem["middle"].named_parameters()
        P["lower"] = setup.problem["lower"].named_parameters()
        loss = lower.objective(P, batch)
        grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        METER._sync()
        total = time.perf_counter() - start
        if k >= warmup:
            rows.append({"total": total, **METER.t, **{f"n_{k2}": v for k2, v in METER.n.items()}})
    return rows


def summarise(name: str, rows: list[dict[str, float]]) -> dict[str, float]:
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["other"] = max(med["total"] - med["forward"] - med["backward"] - med["optimizer"], 0.0)
    med["name"] = name
    return med


def check_structured_solver(setup, inner_lr: float) -> dict[str, float]:
    """The weighted-sum solver against Unrolled(1) (exact) and FiniteDifference on one S1 hypergradient."""
    from hyperlevel import prefixed

    upper = setup.problem["upper"]
    lower = setup.problem["lower"]
    b_ul, b_ll = upper.next_batch(), lower.next_batch()
    model, losses = setup.model, setup.losses
    b_ll_device = next(model.parameters()).device
    P = setup.problem.detached()

    def outer_loss(o, i):
        params = {"upper": {"log_s": o["upper/log_s"]}, **split(i)}
        return upper.objective(params, b_ul)

    def inner_loss(o, i):
        params = {"upper": {"log_s": o["upper/log_s"]}, **split(i)}
        return lower.objective(params, b_ll)

    def split(i):
        out = {"middle": {}, "lower": {}}
        for key, t in i.items():
            lv, n = key.split("/", 1)
            out[lv][n] = t
        return out

    def loss_vector(i):
        p = split(i)
        net = {**prefixed(p["middle"], "illumination."), **prefixed(p["lower"], "refinement.")}
        out = torch.func.functional_call(model, net, (b_ll["input"].to(b_ll_device),))
        return torch.stack(list(losses(out.y, b_ll["target"].to(b_ll_device), out.v).values()))

    o = {"upper/log_s": P["upper"]["log_s"]}
    i = {f"{lv}/{n}": t for lv in ("middle", "lower") for n, t in P[lv].items()}
    structured = WeightedSumOneStep(inner_lr)
    structured.loss_vector = loss_vector
    out = {}
    ref = hyperlevel.hypergradient(outer_loss, inner_loss, o, i, hyperlevel.solvers.Unrolled(1, inner_lr))["upper/log_s"]
    for name, solver in (("weighted-sum jvp", structured),
                         ("finite difference", hyperlevel.solvers.FiniteDifference(inner_lr, 1e-2))):
        g = hyperlevel.hypergradient(outer_loss, inner_loss, o, i, solver)["upper/log_s"]
        out[name] = float((g - ref).norm() / ref.norm())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo")
    ap.add_argument("--model", choices=["demo", "paper"], default="demo")
    ap.add_argument("--crop", type=int, default=32, help="LR crop size in pixels")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (timed regions then end with a synchronisation)")
    ap.add_argument("--out", type=Path, default=None, help="write pgr_step.json and pgr_step.md here")
    ap.add_argument("--implicit", action="store_true",
                    help="also time S1 with an implicit solver (Neumann, 5 products) per Hessian-vector product path")
    ap.add_argument("--precision", default=None, choices=["bfloat16", "float16"],
                    help="run every level's objective under autocast (hyperlevel.precision)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    METER.cuda = args.device.startswith("cuda")
    METER.install()

    results = []
    config, setup, phases = build(args.config, args.model, args.crop, args.batch, args.device)
    gamma_l = config.algorithm.lr.gamma_l
    if args.precision:
        from hyperlevel.precision import Precision

        for level in setup.problem.levels:
            level.precision = Precision(args.precision)
    n_params = sum(p.numel() for p in setup.model.trainable_parameters())
    results.append(summarise("plain step", run_plain(setup, args.repeats, args.warmup)))
    s1, s2 = phases["S1"], phases["S2"]
    variants = [
        ("S1 finite difference", s1),
        ("S1 finite difference + reuse", dataclasses.replace(s1, reuse_inner_gradient=True)),
        ("S1 unrolled(1) (exact, generic)", dataclasses.replace(s1, solver=hyperlevel.solvers.Unrolled(1, gamma_l))),
        ("S2 finite difference", s2),
        ("S2 finite difference + reuse", dataclasses.replace(s2, reuse_inner_gradient=True)),
    ]
    if args.implicit:  # a fixed number of products (Neumann, tiny alpha): the path's cost, not CG's stopping point
        for path in ("double_backward", "forward_over_reverse", "finite_difference", "auto"):
            solver = hyperlevel.solvers.Neumann(5, alpha=1e-4, tol=1e-30, on_nonconvergence="ignore", hvp=path)
            variants.append((f"S1 implicit Neumann(5), hvp={path}", dataclasses.replace(s1, solver=solver)))
    for name, phase in variants:
        results.append(summarise(name, run_phase(setup, phase, args.repeats, args.warmup)))

    # the structured solver needs the losses' vector on the step's inner batch: bind it per step
    structured = WeightedSumOneStep(gamma_l)
    lower = setup.problem["lower"]
    original_next = lower.next_batch

    def next_and_bind():
        batch = original_next()
        from hyperlevel import prefixed

        def loss_vector(i):
            p = {"middle": {}, "lower": {}}
            for key, t in i.items():
                lv, n = key.split("/", 1)
                p[lv][n] = t
            net = {**prefixed(p["middle"], "illumination."), **prefixed(p["lower"], "refinement.")}
            device = next(setup.model.parameters()).device
            out = torch.func.functional_call(setup.model, net, (batch["input"].to(device),))
            return torch.stack(list(setup.losses(out.y, batch["target"].to(device), out.v).values()))

        structured.loss_vector = loss_vector
        return batch

    lower.next_batch = next_and_bind
    results.append(summarise("S1 weighted-sum jvp (exact)", run_phase(setup, dataclasses.replace(s1, solver=structured),
                                                                  args.repeats, args.warmup)))
    lower.next_batch = original_next
    accuracy = check_structured_solver(setup, gamma_l)

    plain = results[0]["total"]
    if args.precision:
        where_precision = f", objectives under autocast {args.precision}"
    else:
        where_precision = ""
    where = torch.cuda.get_device_name() if METER.cuda else f"CPU, {args.threads} thread(s)"
    header = (f"TriCo step cost, model {args.model} ({n_params:,} trainable params), LR crop {args.crop}, batch "
              f"{args.batch}, {where}{where_precision}, median of {args.repeats} after {args.warmup} warm-up")
    lines = [header, "",
             "| step | ms | x plain | forward ms | backward ms | optimizer ms | other ms | forwards | backwards |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['name']} | {1e3 * r['total']:.1f} | {r['total'] / plain:.2f} | {1e3 * r['forward']:.1f} | "
            f"{1e3 * r['backward']:.1f} | {1e3 * r['optimizer']:.1f} | {1e3 * r['other']:.1f} | "
            f"{r['n_forward']:.0f} | {r['n_backward']:.0f} |")
    lines += ["", "One-step hypergradient of S1, relative error against the exact Unrolled(1) (double backward):",
              "", "| solver | relative error |", "|---|---|"]
    lines += [f"| {k} | {v:.2e} |" for k, v in accuracy.items()]
    if args.implicit:
        from hyperlevel import hvp

        for choice in hvp._CHOICES.values():
            timing = ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in choice.seconds.items())
            lines += ["", f"hvp='auto' chose {choice.path} (estimated solve costs: {timing})"]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "pgr_step.md").write_text(text + "\n")
        (args.out / "pgr_step.json").write_text(json.dumps({"results": results, "accuracy": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
