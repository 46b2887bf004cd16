"""``python -m examples.denoise_deblur demo [--out DIR] [--set KEY=VALUE ...]`` (keys: fields of ``Settings``)."""

import argparse

from examples.restoration.config import apply_overrides, from_dict, to_dict

from .demo import main
from .problem import Settings

parser = argparse.ArgumentParser(prog="python -m examples.denoise_deblur")
parser.add_argument("command", choices=["demo"])
parser.add_argument("--out", default="runs/denoise_deblur_demo")
parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
args = parser.parse_args()
main(args.out, from_dict(Settings, apply_overrides(to_dict(Settings()), args.overrides)))
