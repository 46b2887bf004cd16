"""The nested problem: loss weights learned on a validation split (upper level) over the restorer (lower).

The restorer trains on a weighted sum of candidate losses; which mix helps depends on the data (an edge loss
sharpens, L1 is robust to Poisson outliers, MSE is what PSNR measures), so the weights are hyper-parameters
judged by the validation MSE on photos the restorer never trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import hyperlevel as hl

from .degrade import SOURCES
from .model import Restorer

LOSSES = ("l1", "mse", "edge")


@dataclass
class Settings:
    """What a run varies: sizes, steps and rates (the demo's defaults fit 5 CPU minutes)."""

    patch: int = 48
    batch: int = 8
    train_samples: int = 4096
    val_samples: int = 512
    warmup_steps: int = 150
    bilevel_steps: int = 150
    lr: float = 2e-3
    weights_lr: float = 2e-2
    width: int = 32
    depth: int = 5
    seed: int = 0


def candidate_losses(out: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three candidate training losses of a restored batch."""
    def grads(x):
        return x[..., 1:, :] - x[..., :-1, :], x[..., 1:] - x[..., :-1]
    edge = sum((a - b).abs().mean() for a, b in zip(grads(out), grads(clean)))
    return {"l1": (out - clean).abs().mean(), "mse": ((out - clean) ** 2).mean(), "edge": edge}


def build(s: Settings) -> tuple[hl.Problem, list[hl.Phase], Restorer, hl.LossWeights]:
    """The two-level problem and its schedule: plain warm-up of the restorer, then the bilevel phase."""
    torch.manual_seed(s.seed)
    net, weights = Restorer(s.width, s.depth), hl.LossWeights(list(LOSSES))

    def restore(P, batch):
        out = torch.func.functional_call(net, P["restorer"], (batch["input"], batch["kernel"], batch["sigma"]))
        return out, batch["target"]

    def validation_mse(P, batch):
        out, clean = restore(P, batch)
        return ((out - clean) ** 2).mean()

    def training_loss(P, batch):
        return weights.total(P["weights"], candidate_losses(*restore(P, batch)))

    train = SOURCES.build("photos", "train", n=s.train_samples, size=s.patch, seed=s.seed + 1)
    val = SOURCES.build("photos", "val", n=s.val_samples, size=s.patch, seed=s.seed + 2)
    problem = hl.Problem([
        hl.Level("weights", weights, validation_mse, hl.adam(s.weights_lr),
                 hl.ResumableLoader(val, s.batch, seed=s.seed + 3)),
        hl.Level("restorer", net, training_loss, hl.adam(s.lr), hl.ResumableLoader(train, s.batch, seed=s.seed + 4, pass_epoch=True)),
    ])
    phases = [hl.Phase("warm-up", outer=[], inner=["restorer"], frozen=["weights"], max_steps=s.warmup_steps),
              hl.Phase("learn weights", outer=["weights"], inner=["restorer"], max_steps=s.bilevel_steps,
                       solver=hl.solvers.FiniteDifference(inner_lr=s.lr))]
    return problem, phases, net, weights
