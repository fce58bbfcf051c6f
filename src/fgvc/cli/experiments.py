"""`fgvc demo`, `fgvc protocol erudite` and `fgvc pretrain`: many runs from configs, one report."""

from __future__ import annotations

import argparse
from pathlib import Path

from fgvc.cli.common import add_config
from fgvc.errors import FgvcError

DEMO_SECTIONS = ("dynamic_mlp", "rmg_pmsi", "erudite", "ctc")  # experiments.demo.SECTIONS: --help loads no torch
PRETRAIN_EPOCHS = 12  # experiments.pretrain.PRETRAIN_EPOCHS (a test keeps the two equal)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
    protocol = sub.add_parser("protocol", help="a paper's multi-run protocol (erudite: every dataset mixture vs Single)")
    protocol_sub = protocol.add_subparsers(dest="protocol_command", required=True, metavar="PROTOCOL")
    p = protocol_sub.add_parser("erudite", help="joint variants vs Single on every mixture of data.joint",
                                description="For every mixture (of --sizes) of the config's data.joint: one "
                                "image-only model per dataset plus a coarse dataset classifier (Single), and each "
                                "joint variant; writes <output_dir>/<name>/protocol.md with per-dataset test "
                                "top-1, the mean and Δ against Single.")
    add_config(p)
    p.add_argument("--variants", nargs="+", default=["baseline", "baseline_plus", "baseline_plusplus", "ours"],
                   help="baseline, baseline_plus, baseline_plusplus, ours, ours_pcgrad, ours_pmg, "
                   "hierarchical (default: the first four)")
    p.add_argument("--sizes", nargs="+", type=int, default=[2, 3, 4],
                   help="mixture sizes (default 2 3 4: the 11 mixtures of four datasets)")
    p.set_defaults(func=cmd_protocol_erudite)

    p = sub.add_parser("demo", help="synthetic benchmark on a CPU: Dynamic MLP, RMG-PMSI, the erudite model and CTC "
                       "against their baselines, on the plain set and on each method's mechanism set",
                       description="Each section trains a method and its baselines from the shipped configs "
                       "(configs/<method>/synthetic/) on the plain synthetic benchmark and on the benchmark with "
                       "that method's mechanism switched on, and writes OUT/report.md. The default runs the first "
                       "seed from the shipped synthetic-upstream backbone and each section's main rows (7 minutes "
                       "of CPU time, runs side by side on one thread each); --full is the whole comparison (seeds 0 1 2, random start too, every "
                       "row; about 8 times as long).")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "fgvc" / "synthetic"),
                   help="cache folder for the plain synthetic benchmark (written if absent); the mechanism sets "
                   "go beside it (DATA-regional-appearance, ...)")
    p.add_argument("--out", default="runs/demo", help="folder for the runs and the demo report")
    p.add_argument("--full", action="store_true",
                   help="the whole comparison: seeds 0 1 2 (mean ± std), pretrained and random start, every row")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one run per model and seed; tables give mean ± std (default: 0; with --full 0 1 2)")
    p.add_argument("--start", nargs="+", choices=("pretrained", "random"), default=None,
                   help="the backbone's start: the shipped synthetic-upstream weights and/or random init "
                   "(default: pretrained; with --full both); CTC always trains from scratch, as its paper")
    p.add_argument("--sections", nargs="+", choices=DEMO_SECTIONS, default=list(DEMO_SECTIONS),
                   help="which comparisons to run (default: all)")
    p.add_argument("--epochs", type=int, default=None, help="override every config's epoch count")
    p.add_argument("--quick", action="store_true", help="tiny runs (seconds) to check the installation")
    p.add_argument("--workers", type=int, default=None,
                   help="runs side by side, each a process on one torch thread; changes the wall time, never "
                   "a figure (default: the cores this process may use)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pretrain", help="train the demo backbone offline on a large synthetic upstream set "
                       "(the shipped model.pretrained=synthetic weights)",
                       description="Write the upstream set (the synthetic benchmark with its own seed and "
                       "many more genera, none of them a downstream class), train one image-only model on all "
                       "its species, and save the backbone without its classifier as OUT/<backbone>-synthetic"
                       ".safetensors, the command in its metadata. Deterministic: the same command writes the "
                       "same bytes on the same kind of machine. To ship the result, copy it into "
                       "src/fgvc/models/weights/.")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "fgvc" / "upstream"),
                   help="cache folder for the upstream set (written if absent)")
    p.add_argument("--out", default="runs/pretrain", help="folder for the run and the weights file")
    p.add_argument("--backbone", default="test_resnet", help="timm model name (default: test_resnet)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs over the upstream set (default: {PRETRAIN_EPOCHS}, 1 with --tiny)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads; part of the result, as float sums split differently (default: 2)")
    p.add_argument("--tiny", action="store_true",
                   help="a tiny upstream set at 32 px: checks the command and its reproducibility in seconds")
    p.set_defaults(func=cmd_pretrain)


def cmd_protocol_erudite(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.experiments.protocol import VARIANTS, run_protocol

    cfg = load_config(args.config, args.overrides)
    if len(cfg.data.joint) < 2:
        raise FgvcError(f"{args.config}: the protocol needs data.joint with at least 2 datasets")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise FgvcError(f"--variants: unknown {', '.join(unknown)} (one of {', '.join(VARIANTS)})")
    print(f"protocol report: {run_protocol(cfg, args.variants, tuple(args.sizes))}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fgvc.experiments.demo import Plan, run_demo
    from fgvc.experiments.jobs import available_cores

    seeds = tuple(args.seeds or ((0, 1, 2) if args.full else (0,)))
    starts = tuple(args.start or (("pretrained", "random") if args.full else ("pretrained",)))
    plan = Plan(seeds=seeds, starts=starts, full=args.full, epochs=args.epochs, quick=args.quick,
                workers=args.workers or available_cores())
    run_demo(Path(args.data), Path(args.out), plan, tuple(args.sections))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from fgvc.experiments.pretrain import PretrainSettings, pretrain, sha256

    epochs = args.epochs or (1 if args.tiny else PRETRAIN_EPOCHS)
    settings = PretrainSettings(args.backbone, epochs, args.seed, args.threads, args.tiny)
    path = pretrain(Path(args.data), Path(args.out), settings)
    print(f"pretrained backbone: {path}\nsha256 {sha256(path)}\nreproduce: {settings.command()}")
    return 0
