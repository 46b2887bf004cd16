"""``python -m examples.trico profile``: parameters, multiply-accumulates and latency of the TriCo network.

Conventions (printed in the JSON line too):

- ``params``: trainable parameters (``w_i`` + ``w_s``), the frozen semantic encoder excluded (as in the paper).
- ``gflops``: giga multiply-accumulates of one forward pass at ``1 x 3 x size x size``, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; it counts 2 FLOPs per
  multiply-accumulate, so its total is halved, the thop/ptflops/paper convention) with the semantic encoder's
  share removed. Element-wise operations (activations, norms, softmax, A2U's reassembly sum) are not counted.
- ``gflops_semantic``: the same for the frozen encoder alone at ``encoder_size`` (0 for ``none``; random weights
  unless ``--sam-checkpoint`` is given: the count does not depend on the weights).
- ``ms_per_image``: median wall time of a ``torch.inference_mode`` forward of the whole model (encoder
  included) over ``--repeats`` runs after one warm-up, on ``--device``, float32, batch 1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["add_arguments", "run", "measure"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    parser.add_argument("--size", type=int, default=128, help="input height and width (default 128)")
    parser.add_argument("--semantic", default="none", choices=["none", "sam_vit_b", "sam_vit_l", "sam_vit_h"])
    parser.add_argument("--encoder-size", type=int, default=1024, help="SAM encoder input size (default 1024)")
    parser.add_argument("--sam-checkpoint", default=None, help="SAM checkpoint (optional; random weights otherwise)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes (default 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON line")


def _count(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def measure(model: torch.nn.Module, size: int, repeats: int = 3, device: str = "cpu") -> dict:
    model = model.to(device).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    params = sum(p.numel() for p in model.trainable_parameters())
    with torch.inference_mode():
        total = _count(model, x)
        sem = 0
        if model.semantic is not None:
            sem = _count(model.semantic, model(x).v)  # the encoder resizes v: its count is size-independent
        model(x)  # warm-up
        times = []
        for _ in range(max(1, repeats)):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return {
        "params": params,
        "gflops": round((total - sem) / 2e9, 4),
        "gflops_semantic": round(sem / 2e9, 4),
        "ms_per_image": round(1000 * statistics.median(times), 1),
    }


def run(args: argparse.Namespace) -> int:
    from .model import build_model

    model = build_model(
        scale=args.scale, semantic=args.semantic, checkpoint=args.sam_checkpoint, encoder_size=args.encoder_size
    )
    result = measure(model, args.size, args.repeats, args.device)
    result.update(
        {
            "input": [1, 3, args.size, args.size],
            "scale": args.scale,
            "semantic": args.semantic,
            "encoder_size": args.encoder_size if args.semantic != "none" else None,
            "flops_convention": "multiply-accumulates (torch.utils.flop_counter total / 2); "
            "element-wise ops not counted; gflops excludes the frozen semantic encoder",
            "params_convention": "trainable parameters, frozen semantic encoder excluded",
            "timing": f"median of {max(1, args.repeats)} float32 forward passes, batch 1, "
            f"{args.device}, {torch.get_num_threads()} threads, encoder included",
        }
    )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m examples.trico.profile", description=__doc__)
    add_arguments(p)
    raise SystemExit(run(p.parse_args()))
