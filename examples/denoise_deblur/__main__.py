"""``python -m examples.denoise_deblur demo [--out DIR] [--set KEY=VALUE ...]``."""

import argparse

from .demo import main
from .problem import Settings

parser = argparse.ArgumentParser(prog="python -m examples.denoise_deblur")
parser.add_argument("command", choices=["demo"])
parser.add_argument("--out", default="runs/denoise_deblur_demo")
args = parser.parse_args()
main(args.out, Settings())
