"""A small 3-level problem for tests/test_distributed.py, built only with the public API; shared by the test
process (single-process references) and by the worker processes it launches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import hyperlevel as hl

DIM, HIDDEN, N = 4, 6, 64
STEPS_S1, STEPS_S2 = 3, 4


def dataset(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, DIM, generator=g, dtype=torch.float64)
    y = torch.sin(x @ torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=torch.float64)) + 0.1 * torch.randn(
        N, generator=g, dtype=torch.float64
    )
    return [(x[i], y[i]) for i in range(N)]


def solvers(variant: str) -> tuple[hl.solvers.Solver, hl.solvers.Solver]:
    fd = hl.solvers.FiniteDifference(inner_lr=0.05, epsilon=0.01)
    if variant == "fd":
        return fd, hl.solvers.FiniteDifference(inner_lr=0.05, epsilon=0.01)
    if variant == "cg":
        return fd, hl.solvers.ConjugateGradient(iterations=20, on_nonconvergence="ignore")
    if variant == "nested":  # S1: a three-level nested phase by the joint method (MINRES on the Lagrangian)
        return (hl.solvers.MinimalResidual(iterations=20, on_nonconvergence="ignore"),
                hl.solvers.ConjugateGradient(iterations=20, on_nonconvergence="ignore"))
    if variant == "unrolled":
        return hl.solvers.Unrolled(steps=2, inner_lr=0.05), hl.solvers.Unrolled(steps=2, inner_lr=0.05)
    raise ValueError(variant)


def build(variant: str, batch_size: int, *, rank: int = 0, world_size: int = 1, model_seed: int = 0,
          reduce=None, is_main: bool = True, checkpoint_dir=None) -> tuple[hl.Problem, hl.Engine]:
    """Levels upper (LossWeights over three batch-mean losses), middle (features), lower (head)."""
    torch.manual_seed(model_seed)
    weights = hl.LossWeights(["mse", "huber", "feat"]).double()
    middle = nn.Linear(DIM, HIDDEN).double()
    lower = nn.Linear(HIDDEN, 1).double()

    def losses(p, batch):
        x, y = batch
        h = torch.tanh(functional_call(middle, p["middle"], (x,)))
        pred = functional_call(lower, p["lower"], (h,)).squeeze(-1)
        return {"mse": ((pred - y) ** 2).mean(), "huber": F.smooth_l1_loss(pred, y), "feat": (h**2).mean()}

    def weighted(p, batch):
        return weights.total(p["upper"], losses(p, batch))

    def lower_objective(p, batch):
        return weighted(p, batch) + 1e-2 * sum((t**2).sum() for t in p["lower"].values())

    def loader(seed: int) -> hl.ResumableLoader:
        return hl.ResumableLoader(dataset(seed), batch_size, seed=seed, rank=rank, world_size=world_size)

    problem = hl.Problem([
        hl.Level("upper", weights, weighted, optimizer=hl.adam(0.05), data=loader(1)),
        hl.Level("middle", middle, weighted, optimizer=hl.adam(0.02), data=loader(2)),
        hl.Level("lower", lower, lower_objective, optimizer=hl.adam(0.02), data=loader(3)),
    ])
    s1, s2 = solvers(variant)
    if variant == "nested":
        first = hl.Phase("S1", outer=["upper", "middle"], inner=["lower"], nested=True, solver=s1, inner_steps=2,
                         max_steps=STEPS_S1)
    else:
        first = hl.Phase("S1", outer=["upper"], inner=["middle", "lower"], solver=s1, inner_steps=2,
                         max_steps=STEPS_S1)
    phases = [
        first,
        hl.Phase("S2", outer=["middle"], inner=["lower"], frozen=["upper"], solver=s2, max_steps=STEPS_S2),
    ]
    engine = hl.Engine(problem, phases, reduce=reduce, is_main_process=is_main, checkpoint_dir=checkpoint_dir)
    return problem, engine


def parameters(problem: hl.Problem) -> dict[str, torch.Tensor]:
    return {f"{lv}/{n}": t.detach().clone() for lv, ps in problem.parameters().items() for n, t in ps.items()}
