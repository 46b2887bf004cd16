"""The optimizers and learning-rate schedulers of the phase being run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..level import adam

if TYPE_CHECKING:
    from ..problem import Problem
    from ..schedule import Phase

__all__ = ["PhaseOptimizers"]


class PhaseOptimizers:
    """One optimizer (and optionally one LR scheduler) per level a phase trains, built when the phase starts
    and dropped when it ends, so each phase starts with fresh optimizer state.

    A resumed run that re-enters a phase part-way restores their states from the checkpoint
    (:meth:`restore_on_start`); a run resumed at a phase's first step starts them fresh, as the original run did.
    """

    def __init__(self) -> None:
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self._pending: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        """Whether a phase's optimizers are built (false between phases and before the first)."""
        return bool(self.optimizers)

    def start(self, problem: Problem, phase: Phase, part_way: bool) -> None:
        """Build the optimizers of ``phase``: the phase's factory, else the level's own, else Adam 1e-3. With
        ``part_way`` (the phase already took steps), load the states given to :meth:`restore_on_start`."""
        for name in phase.trained:
            level = problem[name]
            factory = phase.optimizers.get(name) or level.optimizer or adam(1e-3)
            self.optimizers[name] = opt = factory(list(level.named_parameters().values()))
            if name in phase.lr_schedulers:
                self.schedulers[name] = phase.lr_schedulers[name](opt)
        pending, self._pending = self._pending, None
        if pending is not None and part_way:
            for kind, objects in (("optimizers", self.optimizers), ("schedulers", self.schedulers)):
                for name, obj in objects.items():
                    if name in pending[kind]:
                        obj.load_state_dict(pending[kind][name])

    def restore_on_start(self, state: dict[str, Any]) -> None:
        """Drop the current optimizers; the next :meth:`start` loads ``state`` (from :meth:`state_dict`)."""
        self.clear()
        self._pending = state

    def clear(self) -> None:
        self.optimizers, self.schedulers = {}, {}

    def step_schedulers(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    def learning_rates(self) -> dict[str, float]:
        """The first parameter group's learning rate of each level's optimizer, for the logs."""
        return {name: float(opt.param_groups[0]["lr"]) for name, opt in self.optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()}}
