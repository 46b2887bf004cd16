"""A small three-level problem built with the public API (loss weights / middle net / lower net)."""

from __future__ import annotations

import torch
from torch import nn

import hyperlevel as hl


class TwoStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.middle = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 4))
        self.lower = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))

    def forward(self, x):
        return self.lower(x + self.middle(x))


def make_data(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    W = torch.randn(4, 2, generator=g)
    Y = torch.tanh(X @ W) + 0.05 * torch.randn(n, 2, generator=g)
    return [(X[i], Y[i]) for i in range(n)]


def build(seed=0, batch=8, s1_steps=6, s2_steps=6, solver_s1=None, solver_s2=None, nan_at=None, until=None):
    torch.manual_seed(seed)
    model = TwoStage()
    weights = hl.LossWeights(["mse", "l1", "smooth"])
    data = make_data()
    upper_data, lower_data = data[:40], data[40:]
    calls = {"n": 0}

    def losses(P, batch):
        x, y = batch
        params = {**hl.prefixed(P["middle"], "middle."), **hl.prefixed(P["lower"], "lower.")}
        out = torch.func.functional_call(model, params, (x,))
        return {
            "mse": ((out - y) ** 2).mean(),
            "l1": (out - y).abs().mean(),
            "smooth": nn.functional.smooth_l1_loss(out, y),
        }

    def total(P, batch):
        calls["n"] += 1
        value = weights.total(P["upper"], losses(P, batch))
        if nan_at is not None and calls["n"] >= nan_at:
            value = value * float("nan")
        return value

    problem = hl.Problem([
        hl.Level("upper", weights, total, hl.adam(5e-2), hl.ResumableLoader(upper_data, batch, seed=1)),
        hl.Level("middle", model.middle, total, hl.adam(1e-2), hl.ResumableLoader(upper_data, batch, seed=2)),
        hl.Level("lower", model.lower, total, hl.adam(1e-2), hl.ResumableLoader(lower_data, batch, seed=3)),
    ])
    schedule = hl.Schedule([
        hl.Phase("S1", outer=["upper"], inner=["middle", "lower"],
                 solver=solver_s1 or hl.solvers.FiniteDifference(inner_lr=1e-2), max_steps=s1_steps, until=until,
                 lr_schedulers={"upper": hl.cosine_restarts(3)}),
        hl.Phase("S2", outer=["middle"], inner=["lower"], frozen=["upper"],
                 solver=solver_s2 or hl.solvers.FiniteDifference(inner_lr=1e-2), max_steps=s2_steps,
                 optimizers={"middle": hl.adam(5e-3), "lower": hl.adam(5e-3)},
                 lr_schedulers={"middle": hl.cosine_restarts(4), "lower": hl.cosine_restarts(4)}),
    ])
    return model, weights, problem, schedule


def flat_state(model, weights):
    return torch.cat([p.detach().reshape(-1) for p in list(model.parameters()) + list(weights.parameters())])
