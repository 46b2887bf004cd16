"""The engine's checkpoint format: everything an exact resume needs, as one dict of tensors and plain values.

A checkpoint holds the position in the schedule (phase, phase step, global step), every level's parameters,
the current phase's optimizer and scheduler states, the stop criteria, each level's data position, the solvers'
and algorithms' state, the RNG states, and the skipped-step count. A run that finished its last phase by the
step budget also keeps that phase's optimizer state (``final_phase``), so resuming it with a larger
``max_steps`` continues as if the budget had been larger from the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import checkpoint as ckpt
from ..errors import InvalidProblemError

if TYPE_CHECKING:
    from ..engine import Engine
    from ..problem import Problem
    from ..schedule import Phase

__all__ = ["CHECKPOINT_FORMAT", "check_objectives_on_first_batches", "engine_state", "load_engine_state", "remember_final_phase"]

CHECKPOINT_FORMAT = "hyperlevel-engine-v1"


def engine_state(engine: Engine) -> dict[str, Any]:
    """The engine's complete training state (what :meth:`Engine.state_dict` returns)."""
    phases = engine.schedule.phases
    return {
        "format": CHECKPOINT_FORMAT,
        "global_step": engine.global_step,
        "phase_index": engine.phase_index,
        "phase_step": engine.phase_step,
        "phase_name": engine.phase.name if engine.phase else None,
        "skipped_steps": engine.nonfinite.skipped,
        "levels": engine.problem.state_dict(),
        **engine.optimizers.state_dict(),
        "trackers": {p.name: p.until.state_dict() for p in phases if p.until is not None},
        "data": {lv.name: lv.data_state() for lv in engine.problem.levels},
        "solvers": {p.name: p.solver.state_dict() for p in phases},
        "methods": {p.name: p.method.state_dict() for p in phases if p.method is not None},
        "rng": ckpt.rng_state(),
        "final_phase": engine.final_phase,
    }


def load_engine_state(engine: Engine, state: Mapping[str, Any]) -> None:
    """Put ``engine`` back where ``state`` was taken; the phase's optimizers are rebuilt and loaded on the
    next step. Raises :class:`~hyperlevel.InvalidProblemError` for another schedule,
    :class:`~hyperlevel.checkpoint.CheckpointError` for another problem."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise InvalidProblemError(
            f"not a hyperlevel engine checkpoint (format {state.get('format')!r}, expected {CHECKPOINT_FORMAT!r})"
        )
    phases = engine.schedule.phases
    names = [p.name for p in phases]
    if state["phase_name"] is not None and (
        state["phase_index"] >= len(names) or names[state["phase_index"]] != state["phase_name"]
    ):
        raise InvalidProblemError(
            f"the checkpoint is in phase {state['phase_name']!r} (#{state['phase_index']}), which this "
            f"schedule ({names}) does not have at that position"
        )
    try:
        engine.problem.load_state_dict(state["levels"])
    except (RuntimeError, KeyError, InvalidProblemError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ckpt.CheckpointError(f"the checkpoint does not fit this problem (another model or levels): "
                                   f"{first.rstrip(':.')}") from None
    engine.global_step = int(state["global_step"])
    engine.phase_index = int(state["phase_index"])
    engine.phase_step = int(state["phase_step"])
    engine.nonfinite.skipped = int(state["skipped_steps"])
    for p in phases:
        if p.until is not None and p.name in state["trackers"]:
            p.until.load_state_dict(state["trackers"][p.name])
    for lv in engine.problem.levels:
        lv.load_data_state(state["data"].get(lv.name))
    for p in phases:
        p.solver.load_state_dict(state.get("solvers", {}).get(p.name, {}))
        if p.method is not None:
            p.method.load_state_dict(state.get("methods", {}).get(p.name, {}))
    ckpt.set_rng_state(state["rng"])
    engine.optimizers.restore_on_start({"optimizers": state["optimizers"], "schedulers": state["schedulers"]})
    engine.final_phase = state.get("final_phase")
    _continue_finished_run(engine)


def remember_final_phase(engine: Engine, phase: Phase, converged: bool) -> None:
    """When the last phase ends by its step budget (not ``converged``): keep what continuing it would need."""
    if converged or engine.phase_index != len(engine.schedule) - 1:
        return
    engine.final_phase = {"phase_name": phase.name, "phase_step": engine.phase_step,
                          **engine.optimizers.state_dict()}


def _continue_finished_run(engine: Engine) -> None:
    """A finished run whose last phase ended at its step budget continues when that budget grew."""
    final = engine.final_phase
    if engine.phase is not None or final is None:
        return
    last = engine.schedule.phases[-1]
    if final["phase_name"] != last.name or final["phase_step"] >= last.max_steps:
        return
    engine.phase_index, engine.phase_step = len(engine.schedule) - 1, int(final["phase_step"])
    engine.optimizers.restore_on_start({"optimizers": final["optimizers"], "schedulers": final["schedulers"]})
    engine.final_phase = None


def check_objectives_on_first_batches(problem: Problem) -> None:
    """:meth:`Problem.check_objectives` on each level's first batch, then rewind the resumable loaders, so
    that the first step trains on those batches as an unchecked run would."""
    positions = {lv.name: lv.data_state() for lv in problem.levels}
    problem.check_objectives({lv.name: lv.next_batch() for lv in problem.levels})
    for lv in problem.levels:
        if positions[lv.name] is not None:
            lv.load_data_state(positions[lv.name])
