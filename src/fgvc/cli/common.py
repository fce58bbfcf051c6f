"""What several commands share: the config positional with its ``key=value`` overrides, run folders,
``--out``, the class choice, and the parsing of ``checkpoint=`` / ``split=`` among the overrides."""

from __future__ import annotations

import argparse

from fgvc.errors import FgvcError

CLASSES_HELP = "class names as in the dataset (quote names with spaces); default: the first 10 classes"


def add_config(parser: argparse.ArgumentParser, config_help: str | None = None,
               overrides_help: str | None = None, between: tuple[tuple[str, str], ...] = ()) -> None:
    """``CONFIG [key=value ...]``; ``between``: positionals (name, help) that come after CONFIG."""
    parser.add_argument("config", help=config_help)
    for name, help_text in between:
        parser.add_argument(name, help=help_text)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)


def add_runs(parser: argparse.ArgumentParser) -> None:
    """One or more finished run folders (``runs/<name>/``)."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")


def add_out(parser: argparse.ArgumentParser, help_text: str, default: str | None = None) -> None:
    parser.add_argument("--out", default=default, help=help_text)


def add_classes(parser: argparse.ArgumentParser) -> None:
    """``--classes NAME...`` or ``--genus PREFIX``: which classes an analysis shows."""
    parser.add_argument("--classes", nargs="+", metavar="NAME", help=CLASSES_HELP)
    parser.add_argument("--genus", metavar="PREFIX", help="the classes whose name starts with PREFIX (e.g. a genus)")


def split_overrides(items: list[str], *extra_keys: str) -> tuple[list[str], dict[str, str]]:
    """Separate command keys (e.g. ``checkpoint=``) from config overrides; a repeated key's values are
    joined with commas (``checkpoint=a.pt checkpoint=b.pt`` is ``checkpoint=a.pt,b.pt``)."""
    overrides, extra = [], {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key in extra_keys:
            extra[key] = f"{extra[key]},{value}" if key in extra else value
        else:
            overrides.append(item)
    return overrides, extra


def config_checkpoint_split(args: argparse.Namespace, *extra_keys: str):
    """The config, ``checkpoint=`` (default: the run's best.pt), ``split=`` (default test), other keys."""
    from fgvc.config import load_config

    overrides, extra = split_overrides(args.overrides, "checkpoint", "split", *extra_keys)
    cfg = load_config(args.config, overrides)
    checkpoint = extra.get("checkpoint") or str(cfg.run_dir / "checkpoints" / "best.pt")
    split = extra.get("split", "test")
    if split not in ("train", "val", "test"):
        raise FgvcError(f"split={split}: expected one of train, val, test")
    return cfg, checkpoint, split, extra
