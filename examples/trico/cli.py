"""Command line of the TriCo example: ``python -m examples.trico COMMAND`` (train, enhance, evaluate, ...).

- ``train --config FILE [--resume [PATH] | --overwrite] [--out DIR] [--set key=value ...]``: tri-level training
  (train.py); ``--resume`` without a path continues from ``OUT/checkpoints/last.pt`` (or, if that file is
  unreadable, the newest loadable ``step_*.pt``). Ctrl-C (SIGINT) or SIGTERM stops after the current step and
  writes a checkpoint (exit status 130 / 143); ``--resume`` continues exactly there. ``OUT`` belongs to one run:
  a second training into it fails at once, and a new run into a folder holding one needs ``--overwrite``.
- ``enhance``, ``evaluate``, ``profile``, ``export`` (checkpoint -> shipped safetensors + measured card): see those
  modules.
- ``demo``: the short end-to-end demo behind ``make demo`` (demo.py).
- ``study``: the paper's ablations over seeds with confidence intervals (study.py).
- ``select`` / ``average``: a run's best checkpoint on its held-out photos, or the mean of its late checkpoints'
  weights (select.py, average.py); ``exposure-prior``: a model whose output exposure leans toward what its
  input's darkness predicts (exposure_prior.py).

Errors are one line naming the file or key and the fix, with the exit statuses of ``cli_errors.py``
(``--debug``, before or after the command: the traceback instead).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .cli_errors import UsageError, handle_errors, one_line_warnings

__all__ = ["build_parser", "main"]


def _add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True,
                        help="YAML config file (or the name of one in examples/trico/configs, e.g. demo)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                        help="resume from PATH (default OUT/checkpoints/last.pt)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run into OUT although it holds one (deletes its checkpoints and logs)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set algorithm.lr.gamma_u=1e-3 (repeatable)")
    parser.add_argument("--device", default="cpu")
    return parser


def _run_train(args: argparse.Namespace) -> int:
    return handle_errors(lambda: _train(args), debug=getattr(args, "debug", False))


def _train(args: argparse.Namespace) -> int:
    import logging

    from hyperlevel import checkpoint as ckpt

    from .config import load_config
    from .train import resolve_resume, train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.resume is not None and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other: continue the run, or start it over")
    config = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    resume = resolve_resume(out, args.resume)
    if resume is not None and not resume.is_file() and not (
            resume.name == "last.pt" and ckpt.numbered_checkpoints(resume.parent)):
        raise ckpt.CheckpointError(f"nothing to resume: {resume} does not exist; start a new run without "
                                   "--resume, or give the checkpoint (--resume PATH)")
    from hyperlevel.distributed import distributed

    # under torchrun: one data-parallel process per GPU (or CPU shard), see docs/distributed.md; else a plain run
    with distributed(device=args.device) as ctx:
        result = train(config, out, resume=resume, device=ctx.device, rank=ctx.rank, world_size=ctx.world_size,
                       overwrite=args.overwrite, **ctx.engine_kwargs())
    s = result.summary
    if not ctx.is_main:
        return s.exit_status
    print(f"{s.status}: {s.steps} steps (phase {s.phase or 'done'}), {s.skipped_steps} skipped; "
          f"checkpoint {s.checkpoint}")
    print("loss weights: " + ", ".join(f"{k}={v:.4f}" for k, v in result.setup.loss_weights.weights().items()))
    return s.exit_status


def build_parser() -> argparse.ArgumentParser:
    from . import average, demo, enhance, evaluate, export, exposure_prior, profile, select, study

    parser = argparse.ArgumentParser(prog="python -m examples.trico",
                                     description="TriCo: low-light super-resolution trained as a tri-level problem")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train with a YAML config (tri-level PGR, Alg. 1)")
    _add_train_arguments(p).set_defaults(func=_run_train)
    _add_debug(p)
    for name, module, text in (("enhance", enhance, "brighten and upscale images with a checkpoint"),
                               ("evaluate", evaluate, "measure a checkpoint or a baseline on test data"),
                               ("profile", profile, "parameters, MACs and latency of the network"),
                               ("demo", demo, "short end-to-end demo on the embedded data (make demo)"),
                               ("export", export, "write the shipped model (safetensors) and its measured card"),
                               ("study", study, "ablations over seeds with confidence intervals"),
                               ("select", select, "pick a run's checkpoint on its held-out validation photos"),
                               ("average", average, "average a run's late checkpoints (weight averaging)"),
                               ("exposure-prior", exposure_prior,
                                "give a model an exposure prior fitted on its training photos")):
        p = sub.add_parser(name, help=text, description=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
        _add_debug(p)
    return parser


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the command as well (SUPPRESS: an absent one keeps the top-level value)."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks instead of one-line errors")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.debug:
        one_line_warnings()
    return handle_errors(lambda: int(args.func(args) or 0), debug=args.debug)
