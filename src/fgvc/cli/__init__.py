"""The ``fgvc`` command line. Every error a user can cause ends as one line: ``fgvc: error: ...``.

Each command group lives in its own module (``train``, ``data``, ``analyze``, ``deploy``,
``experiments``) and registers its subcommands; a command imports its code only when it runs, so
``fgvc --help`` answers without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fgvc import __version__
from fgvc.cli import analyze, data, deploy, experiments, train
from fgvc.cli.threads import thread_policy
from fgvc.console import log_to_console
from fgvc.errors import FgvcError, one_line, os_error_line

EPILOG = """examples:
  fgvc demo                                         synthetic data, train, evaluate, report
  fgvc data synth ~/data/synth                      write the synthetic benchmark
  fgvc data verify configs/quickstart.yaml          check a dataset without training
  fgvc train configs/quickstart.yaml optim.lr=0.02  train (key=value overrides any config key)
  fgvc evaluate configs/quickstart.yaml checkpoint=runs/quickstart/checkpoints/best.pt
  fgvc predict --checkpoint runs/quickstart/checkpoints/best.pt photo.jpg --lat 45.5 --lon -73.6 --date 2021-06-01
  fgvc analyze cam --checkpoint runs/quickstart/checkpoints/best.pt a.jpg b.jpg   Grad-CAM grid
  fgvc export --checkpoint runs/quickstart/checkpoints/best.pt --format onnx   ONNX + parity check
  fgvc export --checkpoint best.pt --quantize int8  8-bit ONNX, calibrated on training images
  fgvc export --checkpoint best.pt --format hub --out birds   safetensors + config.json + model card
  fgvc push birds alice/birds                       upload the folder to the Hugging Face Hub
  fgvc predict --checkpoint best.pt photos/ --out results.csv   each photo's own EXIF place and date
  fgvc serve --checkpoint best.pt                   API and web page on http://127.0.0.1:8000/
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgvc", description="Fine-grained visual classification: train, evaluate and analyse "
        "Dynamic MLP, RMG-PMSI, the erudite model and CTC on real or synthetic data.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fgvc {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, deploy, experiments, analyze, data):
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    thread_policy()  # before any command imports torch
    args = build_parser().parse_args(argv)
    log_to_console(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.func(args)
    except FgvcError as exc:
        print(f"fgvc: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a missing or read-only location, a full disk: which file and what failed
        print(f"fgvc: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fgvc: interrupted", file=sys.stderr)
        return 130
