"""`fgvc data synth | verify | shard`: the synthetic benchmark, dataset checks, WebDataset shards."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from fgvc.cli.common import add_config
from fgvc.errors import FgvcError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
    data = sub.add_parser("data", help="write the synthetic benchmark, verify a dataset, or shard it")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data_sub.add_parser("synth", help="write the procedural benchmark in the real on-disk formats",
                            description="Write the procedural benchmark: OUT_DIR/inat (iNaturalist-2021 "
                            "layout, with location and date) and OUT_DIR/multi/<domain> (CUB, Cars, "
                            "FGVC-Aircraft, Flowers-102 layouts), and OUT_DIR/synth.json; nothing is "
                            "rewritten when synth.json already matches. docs/synthetic.md describes it.")
    p.add_argument("out_dir")
    _add_synth_options(p)
    p.set_defaults(func=cmd_data_synth)
    p = data_sub.add_parser("verify", help="counts per split/class, metadata and every bad file or record")
    add_config(p)
    p.add_argument("--no-images", action="store_true", help="check the annotations alone: no image file is "
                   "looked at (their existence nor their decoding)")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    p.set_defaults(func=cmd_data_verify)
    p = data_sub.add_parser("shard", help="write the splits as WebDataset tar shards (+ <split>.json indices)",
                            description="Resolve CONFIG's splits as training would (hold-outs included) and "
                            "write OUT_DIR/<split>-NNNNNN.tar (original image bytes + a JSON of label and "
                            "metadata per sample) and OUT_DIR/<split>.json (shards, counts, classes). Train "
                            "or evaluate from them with data.format=shards data.root=OUT_DIR. Unreadable "
                            "images stop with the file named, or are skipped and counted with "
                            "data.bad_images=skip.")
    add_config(p, "experiment YAML whose data section names the dataset to shard",
               "config overrides, e.g. data.root=PATH",
               between=(("out_dir", "folder for the tar shards and the <split>.json indices"),))
    p.add_argument("--max-per-shard", type=int, default=1000, metavar="N",
                   help="samples per tar file (default: 1000)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"],
                   help="which splits (default: train val test)")
    p.add_argument("--workers", type=int, default=4, help="threads reading and checking images (default: 4)")
    p.set_defaults(func=cmd_data_shard)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from fgvc.data.synthetic import SynthOptions, write_benchmark

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthOptions)}
    summary = write_benchmark(Path(args.out_dir), SynthOptions(**values))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.data.verify import format_summary, verify

    cfg = load_config(args.config, args.overrides)
    summary = verify(cfg.data, check_images=not args.no_images)
    print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if summary["problems"] else 0


def cmd_data_shard(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.data.shards import write_shards
    from fgvc.data.splits import prepare_splits

    cfg = load_config(args.config, args.overrides)
    if cfg.data.format == "shards":
        raise FgvcError(f"{cfg.data.root}: already shards; point the config at the original dataset")
    written = write_shards(prepare_splits(cfg.data), args.out_dir, bad_images=cfg.data.bad_images,
                           max_pixels=cfg.data.max_image_pixels, max_per_shard=args.max_per_shard,
                           roles=args.splits, workers=args.workers)
    for role, index in written.items():
        print(f"{role}: {index['count']} images in {len(index['shards'])} shards, {len(index['skipped'])} "
              f"skipped ({index['source']}) -> {Path(args.out_dir) / (role + '.json')}")
    print(f"train from them with: fgvc train {args.config} data.format=shards data.root={args.out_dir}")
    return 0


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field of ``SynthOptions``, with the field's help and default."""
    from fgvc.data.synthetic import SynthOptions

    for field in dataclasses.fields(SynthOptions):
        default, help = field.default, field.metadata.get("help", "")
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):  # --flag / --no-flag
            parser.add_argument(flag, dest=field.name, default=default, action=argparse.BooleanOptionalAction,
                                help=f"{help} (default: {'on' if default else 'off'})")
        elif isinstance(default, tuple):
            parser.add_argument(flag, dest=field.name, default=default, nargs="+", metavar="NAME",
                                help=f"{help} (default: {' '.join(default)})")
        else:
            shown = f"{default:g}" if isinstance(default, float) else default if default != "" else "off"
            parser.add_argument(flag, dest=field.name, default=default, type=type(default),
                                help=f"{help} (default: {shown})")
