"""Command line of the TriCo example: ``python -m examples.trico {train,enhance,evaluate,profile,demo,study}``.

- ``train --config FILE [--resume [PATH]] [--out DIR] [--set key=value ...]``: tri-level training (train.py);
  ``--resume`` without a path continues from ``OUT/checkpoints/last.pt``. Ctrl-C stops after the current step and
  writes a checkpoint; ``--resume`` continues exactly there.
- ``enhance``, ``evaluate``, ``profile``: see those modules.
- ``demo``: the short end-to-end demo behind ``make demo`` (demo.py).
- ``study``: the paper's ablations over seeds with confidence intervals (study.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]


def _add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True,
                        help="YAML config file (or the name of one in examples/trico/configs, e.g. demo)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<config name>)")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="PATH",
                        help="resume from PATH (default OUT/checkpoints/last.pt)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set algorithm.lr.gamma_u=1e-3 (repeatable)")
    parser.add_argument("--device", default="cpu")
    return parser


def _run_train(args: argparse.Namespace) -> int:
    from .config import load_config_for_cli
    from .train import resolve_resume, train

    config = load_config_for_cli(args.config, args.overrides)
    if config is None:
        return 2
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    resume = resolve_resume(out, args.resume)
    if resume is not None and not resume.is_file():
        print(f"error: nothing to resume: {resume} does not exist", file=sys.stderr)
        return 2
    from hyperlevel.distributed import distributed

    # under torchrun: one data-parallel process per GPU (or CPU shard), see docs/distributed.md; else a plain run
    with distributed(device=args.device) as ctx:
        result = train(config, out, resume=resume, device=ctx.device, rank=ctx.rank, world_size=ctx.world_size,
                       **ctx.engine_kwargs())
    s = result.summary
    if not ctx.is_main:
        return 130 if s.status == "interrupted" else 0
    print(f"{s.status}: {s.steps} steps (phase {s.phase or 'done'}), {s.skipped_steps} skipped; "
          f"checkpoint {s.checkpoint}")
    print("loss weights: " + ", ".join(f"{k}={v:.4f}" for k, v in result.setup.loss_weights.weights().items()))
    return 130 if s.status == "interrupted" else 0


def build_parser() -> argparse.ArgumentParser:
    from . import demo, enhance, evaluate, profile, study

    parser = argparse.ArgumentParser(prog="python -m examples.trico",
                                     description="TriCo: low-light super-resolution trained as a tri-level problem")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train with a YAML config (tri-level PGR, Alg. 1)")
    _add_train_arguments(p).set_defaults(func=_run_train)
    for name, module, text in (("enhance", enhance, "brighten and upscale images with a checkpoint"),
                               ("evaluate", evaluate, "measure a checkpoint or a baseline on test data"),
                               ("profile", profile, "parameters, MACs and latency of the network"),
                               ("demo", demo, "short end-to-end demo on the embedded data (make demo)"),
                               ("study", study, "ablations over seeds with confidence intervals")):
        p = sub.add_parser(name, help=text, description=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
