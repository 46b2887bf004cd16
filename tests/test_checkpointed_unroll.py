"""Unrolled(checkpoint_every=C): the recomputed trajectory gives the stored trajectory's hypergradient, in less
memory (benchmarks/unroll_memory.py measures the peak in fresh processes)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from _problems import Logistic, Ridge, rel

import hyperlevel as hl
from hyperlevel import solvers
from hyperlevel.errors import InvalidProblemError

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "unroll_memory.py"
_spec = importlib.util.spec_from_file_location("hyperlevel_unroll_memory", _PATH)
um = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = um
_spec.loader.exec_module(um)


@pytest.mark.parametrize("cls", [Ridge, Logistic])
@pytest.mark.parametrize("truncate", [None, 7])
@pytest.mark.parametrize("every", [1, 4, 5, 23, 40])
def test_checkpointed_equals_stored_trajectory(cls, truncate, every):
    prob = cls.make()
    o, w = prob.params()
    w = {"w": w["w"] + 0.3}  # away from the minimiser, so that every step moves
    stored, info0 = hl.hypergradient(prob.outer, prob.inner, o, w, solvers.Unrolled(23, 1e-2, truncate=truncate),
                                     return_info=True)
    g, info = hl.hypergradient(prob.outer, prob.inner, o, w,
                               solvers.Unrolled(23, 1e-2, truncate=truncate, checkpoint_every=every),
                               return_info=True)
    assert rel(g["lam"], stored["lam"]) < 1e-12
    assert info.outer_loss == info0.outer_loss and info.hvp_evals == info0.hvp_evals
    differentiated = truncate or 23
    assert info.extra["checkpoints"] == -(-differentiated // every)
    assert info.extra["recomputed_steps"] == differentiated - info.extra["checkpoints"]


def test_checkpointed_mlp_matches_and_checks_parameters():
    outer_loss, inner_loss, o, w = um.mlp_problem(hidden=16, dtype=torch.float64)
    stored = hl.hypergradient(outer_loss, inner_loss, o, w, solvers.Unrolled(30, 0.05))
    g = hl.hypergradient(outer_loss, inner_loss, o, w, solvers.Unrolled(30, 0.05, checkpoint_every=6))
    assert rel(g["log_decay"], stored["log_decay"]) < 1e-12
    with pytest.raises(InvalidProblemError, match="do not influence inner_loss"):
        hl.hypergradient(outer_loss, inner_loss, o, {**w, "unused": torch.ones(2, dtype=torch.float64)},
                         solvers.Unrolled(5, 0.05, checkpoint_every=2))
    with pytest.raises(InvalidProblemError, match="influence neither"):
        hl.hypergradient(outer_loss, inner_loss, {**o, "unused": torch.ones(1, dtype=torch.float64)}, w,
                         solvers.Unrolled(5, 0.05, checkpoint_every=2))
    with pytest.raises(ValueError, match="checkpoint_every"):
        solvers.Unrolled(5, 0.05, checkpoint_every=0)


@pytest.mark.slow
def test_checkpointed_peak_memory_is_a_fraction_of_the_stored_trajectorys():
    rows = um.compare(steps=150, hidden=128, every=12)
    stored, checkpointed = rows
    assert checkpointed["rel_error"] < 1e-12
    # 150 stored step graphs against 13 checkpoints + a 12-point segment + one step's graph
    assert checkpointed["peak_bytes"] < 0.3 * stored["peak_bytes"], rows
