"""TriCo's tri-level problem (Sec. 3.2, Eq. 5) and its PGR training schedule (Alg. 1), in hyperlevel terms.

Levels, outermost first (all objectives are pure functions of ``params[level][name]`` and a batch):

- ``"upper"``: the loss weights ``s`` (:class:`hyperlevel.LossWeights` over the candidate set ``losses.candidates``); objective
  ``Phi^ul`` = the regularised weighted total ``sum_u L_u / (2 s_u) + ln(1 + s_u^2)`` on ``D_ul`` batches.
- ``"middle"``: ``w_i`` = ``model.illumination`` (``N_ir``); objective ``Phi^ul`` on ``D_ul`` (its own loader).
- ``"lower"``: ``w_s`` = ``model.refinement`` (``N_fr`` + IHEM + upsampler); objective ``Phi^ll`` = the same
  regularised total on ``D_ll`` batches.

Schedules (``build_schedule``):

- ``trico``: **S1** ``outer=["upper"], inner=["middle", "lower"]`` (one joint inner level, Eq. 5), until the
  weights converge (:class:`hyperlevel.Converged` on ``"upper"``) or ``s1.max_steps``; **S2** ``upper`` frozen,
  ``outer=["middle"], inner=["lower"]`` (Eq. 4) for ``s2.max_steps``.
- ``naive``: fixed ``s = 1`` (the regularised total with unit weights, i.e. half the plain sum plus a constant),
  ``w_i`` and ``w_s`` trained jointly as one level on *all* training data, ``s1 + s2`` steps.
- ``no_s1``: weights stay at their initial value; S2 only, for ``s1 + s2`` steps.
- ``no_s2``: S1, then ``w_i`` and ``w_s`` trained jointly with the frozen learned weights for ``s2`` steps.

The hypergradient solver defaults to ``FiniteDifference(inner_lr=gamma_l)`` in S1 and ``(inner_lr=o_l)`` in S2:
the DARTS one-step approximation of Alg. 1. Its probe direction is the *upper* objective's gradient at the
unrolled point (the DARTS derivation), not ``dPhi^ll/dw`` as Alg. 1 writes it; see docs/trico.md.

Only ``hyperlevel``'s public API is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

import hyperlevel
from hyperlevel import (
    Converged,
    Level,
    LossWeights,
    Phase,
    Problem,
    ResumableLoader,
    adam,
    cosine_restarts,
    prefixed,
)

from .config import SolverConfig, TrainConfig
from .data import collate_samples, split_upper_lower
from .losses import CandidateLosses

__all__ = ["LEVELS", "TriCoSetup", "make_objective", "build_solver", "build_train_data", "build_setup",
           "build_schedule"]

log = logging.getLogger(__name__)

LEVELS = ("upper", "middle", "lower")
ILLUMINATION_PREFIX = "illumination."
REFINEMENT_PREFIX = "refinement."


def make_objective(model: torch.nn.Module, loss_weights: LossWeights, losses: Callable[..., Mapping[str, Tensor]]
                   ) -> Callable[[Mapping[str, Mapping[str, Tensor]], Any], Tensor]:
    """``objective(params, batch)``: the regularised weighted total of the candidate losses of the model
    evaluated at ``params["middle"]`` (``w_i``) and ``params["lower"]`` (``w_s``), weighted by
    ``params["upper"]`` (``s``). Pure: the model is evaluated with ``torch.func.functional_call``."""
    device = next(model.parameters()).device

    def objective(params: Mapping[str, Mapping[str, Tensor]], batch: Any) -> Tensor:
        weights = {**prefixed(params["middle"], ILLUMINATION_PREFIX), **prefixed(params["lower"], REFINEMENT_PREFIX)}
        x = batch["input"].to(device)
        target = batch["target"].to(device)
        kwargs = {}
        if "scene_luminance" in batch:  # data.scene_exposure: the gain of the whole photo, as at inference
            kwargs["gain"] = model.gain_for_luminance(torch.as_tensor(batch["scene_luminance"], device=device,
                                                                      dtype=x.dtype))
        out = torch.func.functional_call(model, weights, (x,), kwargs)
        return loss_weights.total(params["upper"], losses(out.y, target, out.v))

    return objective


#: TriCo's defaults for any registered solver that accepts them and whose config leaves them out: Alg. 1 takes
#: one inner step, of the phase's inner learning rate (``inner_lr`` is filled in by :func:`build_solver`).
TRICO_SOLVER_DEFAULTS: dict[str, Any] = {"steps": 1}


def build_solver(cfg: SolverConfig, inner_lr: float) -> hyperlevel.solvers.Solver:
    """The configured hyperlevel solver, by name from hyperlevel's registry (an unknown name is an error listing
    the available ones); ``inner_lr`` (the phase's inner learning rate) and :data:`TRICO_SOLVER_DEFAULTS` fill
    the options the solver accepts and the config leaves out."""
    accepted = hyperlevel.solvers.options(cfg.name)
    p = {k: v for k, v in {**TRICO_SOLVER_DEFAULTS, "inner_lr": inner_lr}.items() if k in accepted}
    for k, v in cfg.params.items():  # YAML reads 1e-2 as a string: follow the type of the option's default
        default = accepted.get(k)
        p[k] = float(v) if isinstance(default, float) and isinstance(v, str | int) and not isinstance(v, bool) else v
    return hyperlevel.solvers.get(cfg.name, **p)


def build_train_data(config: TrainConfig) -> torch.utils.data.Dataset:
    """The whole training set ``D`` (items keyed by ``(index, epoch)``), from TriCo's data-source registry."""
    from .data.sources import SOURCES

    d = config.data
    degradation = d.build_degradation() if SOURCES.get(d.source).synthetic else None
    return SOURCES.build(d.source, "train", root=d.root, scale=config.model.scale, crop=d.crop, seed=d.seed,
                         ev_range=tuple(d.ev_range), samples_per_epoch=d.samples_per_epoch, degradation=degradation,
                         holdout=tuple(d.holdout), more_photos=tuple(d.more_photos), exposures=d.exposures,
                         scene_exposure=d.scene_exposure)


@dataclass
class TriCoSetup:
    """Everything the trainer needs: the model, the weights, the losses, the problem and its data."""

    model: torch.nn.Module
    loss_weights: LossWeights
    losses: CandidateLosses
    problem: Problem
    objective: Callable[..., Tensor]
    data_sizes: dict[str, int]


def build_setup(config: TrainConfig, model: torch.nn.Module | None = None, losses: CandidateLosses | None = None,
                *, rank: int = 0, world_size: int = 1, device: str | torch.device = "cpu") -> TriCoSetup:
    """Build model, weights, losses and the three-level :class:`hyperlevel.Problem` with one
    :class:`hyperlevel.ResumableLoader` per level (``rank``/``world_size`` shard them for data parallelism)."""
    from .model import build_model

    if model is None:
        torch.manual_seed(config.seed)
        m = config.model
        model = build_model(scale=m.scale, semantic=m.semantic, checkpoint=m.checkpoint, ihem=m.ihem, **m.widths)
    model = model.to(device)
    if losses is None:
        losses = CandidateLosses(vgg_weights=config.losses.vgg_weights,
                                 allow_random_init=config.losses.allow_random_init,
                                 ssim_kernel_size=config.losses.ssim_kernel_size,
                                 ssim_sigma=config.losses.ssim_sigma, device=device,
                                 names=config.losses.candidates)
    loss_weights = LossWeights(list(losses.names), init=config.losses.weights_init).to(device)
    objective = make_objective(model, loss_weights, losses)

    full = build_train_data(config)
    d_ul, d_ll = split_upper_lower(full, ratio=tuple(config.data.split_ratio), seed=config.data.split_seed)
    bs = config.data.batch_size
    base_seed = config.data.seed if config.data.loader_seed is None else config.data.loader_seed

    def loader(dataset, stream: int) -> ResumableLoader:
        return ResumableLoader(dataset, bs, seed=base_seed * 1000 + stream, collate_fn=collate_samples,
                               rank=rank, world_size=world_size, pass_epoch=True)

    naive = config.algorithm.variant == "naive"
    # the naive baseline is single-level training on all of D; the tri-level variants split D = D_ul + D_ll
    lower_data = full if naive else d_ll
    b = config.algorithm.betas
    lr = config.algorithm.lr
    problem = Problem([
        Level("upper", loss_weights, objective, optimizer=adam(lr.gamma_u, betas=(b[0], b[1])),
              data=loader(d_ul, 1)),
        Level("middle", model.illumination, objective, optimizer=adam(lr.gamma_l, betas=(b[0], b[1])),
              data=loader(d_ul, 2)),
        Level("lower", model.refinement, objective, optimizer=adam(lr.gamma_l, betas=(b[0], b[1])),
              data=loader(lower_data, 3)),
    ])
    sizes = {"D": len(full), "D_ul": len(d_ul), "D_ll": len(d_ll), "lower": len(lower_data)}
    return TriCoSetup(model, loss_weights, losses, problem, objective, sizes)


def build_schedule(config: TrainConfig) -> list[Phase]:
    """The phases of ``config.algorithm.variant`` (see the module docstring)."""
    a = config.algorithm
    b = (a.betas[0], a.betas[1])
    lr = a.lr

    def opt(value: float):
        return adam(value, betas=b)

    def sched(names):
        if not a.scheduler.enabled:
            return {}
        c = a.scheduler
        return {n: cosine_restarts(c.period, c.period_mult, c.eta_min) for n in names}

    def s1(max_steps: int) -> Phase:
        until = None
        if a.s1.converge_tol is not None:
            until = Converged("upper", tol=a.s1.converge_tol, window=a.s1.converge_window)
        return Phase("S1", outer=["upper"], inner=["middle", "lower"], solver=build_solver(a.solver, lr.gamma_l),
                     inner_steps=a.s1.inner_steps, max_steps=max_steps, until=until,
                     optimizers={"upper": opt(lr.gamma_u), "middle": opt(lr.gamma_l), "lower": opt(lr.gamma_l)},
                     lr_schedulers=sched(["upper", "middle", "lower"]), outer_objective="upper",
                     inner_objective="lower", reuse_inner_gradient=a.reuse_inner_gradient)

    def s2(max_steps: int) -> Phase:
        return Phase("S2", outer=["middle"], inner=["lower"], frozen=["upper"], solver=build_solver(a.solver, lr.o_l),
                     inner_steps=a.s2.inner_steps, max_steps=max_steps,
                     optimizers={"middle": opt(lr.o_u), "lower": opt(lr.o_l)},
                     lr_schedulers=sched(["middle", "lower"]), outer_objective="middle", inner_objective="lower",
                     reuse_inner_gradient=a.reuse_inner_gradient)

    def joint(name: str, max_steps: int, rate: float) -> Phase:
        return Phase(name, outer=[], inner=["middle", "lower"], frozen=["upper"], max_steps=max_steps,
                     optimizers={"middle": opt(rate), "lower": opt(rate)}, lr_schedulers=sched(["middle", "lower"]),
                     inner_objective="lower")

    total = a.s1.max_steps + a.s2.max_steps
    if a.variant == "trico":
        return [s1(a.s1.max_steps), s2(a.s2.max_steps)]
    if a.variant == "no_s1":
        return [s2(total)]
    if a.variant == "no_s2":
        return [s1(a.s1.max_steps), joint("joint", a.s2.max_steps, lr.o_l)]
    return [joint("naive", total, lr.gamma_l)]

