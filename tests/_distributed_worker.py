"""One rank of tests/test_distributed.py, started with torchrun's environment variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Usage: python _distributed_worker.py OUT_DIR PER_RANK_BATCH STOP_AT
RESUME_FROM."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
torch.set_num_threads(1)

from _distributed_problem import build, parameters  # noqa: E402

from hyperlevel.distributed import init_from_env  # noqa: E402


def main() -> None:
    out, batch, stop_at, resume_from = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ctx = init_from_env(timeout=60)
    assert ctx.world_size == 2 and ctx.backend == "gloo", ctx
    results: dict[str, object] = {}

    def make(variant: str, checkpoint_dir=None):
        # rank 1 deliberately starts from other weights: broadcast_parameters must make the replicas identical
        problem, engine = build(variant, batch, rank=ctx.rank, world_size=ctx.world_size, model_seed=ctx.rank,
                                reduce=ctx.reduce, is_main=ctx.is_main, checkpoint_dir=checkpoint_dir)
        ctx.broadcast_parameters(problem)
        return problem, engine

    for variant in ("fd", "cg", "unrolled", "nested"):
        problem, engine = make(variant)
        engine.run()
        results[variant] = parameters(problem)
    # interrupted in the middle of S2; rank 0 alone writes the checkpoint (resumed by the test in one process)
    problem, engine = make("fd", out / f"stopped_rank{ctx.rank}")
    summary = engine.run(stop_after=stop_at)
    results["stopped"] = {"status": summary.status, "phase": summary.phase, "steps": summary.steps}
    # resumed from a checkpoint that one process wrote
    problem, engine = make("fd")
    engine.run(resume=resume_from)
    results["resumed"] = parameters(problem)
    torch.save(results, out / f"rank{ctx.rank}.pt")
    ctx.barrier()
    ctx.cleanup()
    # Leave without running interpreter and C++ static destructors: gloo's background threads can abort a
    # process ("terminate called without an active exception") when the peer has already gone, after all the
    # work is done and saved. Seen once in a loaded full-suite run.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
