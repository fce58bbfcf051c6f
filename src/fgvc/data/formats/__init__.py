"""Readers of the on-disk dataset formats (docs/formats.md): each ``read(root, **options) -> DatasetSource``.

Common options: ``name`` (shown in reports; default the format name), ``on_bad_record`` ("error":
raise a one-line ``DataError`` naming file and record; "skip": list it in ``DatasetSource.problems``
and go on) and ``check_images`` (test that each listed image exists; default True). Format options:
``level`` and ``crop_banner`` (aircraft), ``level`` (cifar100), ``names`` (flowers), ``splits`` (iNat),
``image_dir`` and ``split_file`` (yfcc).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path

from fgvc.data.records import DatasetSource
from fgvc.errors import DataError

# Every module of this package (but _common) is a format module: its FORMATS maps format names
# (data.format values) to readers; optional: ANNOTATION_FILES (the files a reader parses, for the
# index cache), LEVELS (the data.level values it takes), options_from_config(fmt, data_cfg) (reader
# options the data section decides beyond data.level, data.crop_banner and data.name).
FORMATS: dict[str, Callable[..., DatasetSource]] = {}
ANNOTATION_FILES: dict[str, Callable[..., list[Path]]] = {}
LEVELS: tuple[str, ...] = ()
_OPTIONS_FROM_CONFIG: dict[str, Callable[..., dict]] = {}
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    FORMATS |= _module.FORMATS
    ANNOTATION_FILES |= getattr(_module, "ANNOTATION_FILES", {})
    LEVELS += tuple(level for level in getattr(_module, "LEVELS", ()) if level not in LEVELS)
    if hasattr(_module, "options_from_config"):
        _OPTIONS_FROM_CONFIG |= dict.fromkeys(_module.FORMATS, _module.options_from_config)


def format_options(fmt: str) -> list[str]:
    """The options ``read_dataset(fmt, root, ...)`` accepts."""
    return [p for p in inspect.signature(FORMATS[fmt]).parameters if p not in ("root", "year")]


def annotation_files(fmt: str, root: str | os.PathLike, **options) -> list[Path] | None:
    """The files a reader parses for ``options`` (what the index cache is keyed on), or None for a
    format whose records are the folder itself or that is small enough to read each time."""
    files = ANNOTATION_FILES.get(fmt)
    return None if files is None else files(Path(root), **options)


def config_options(data_cfg) -> dict:
    """The reader options of a ``data`` section (or a ``data.joint`` source with the shared keys):
    ``data.level`` and ``data.crop_banner`` where the reader takes them, ``data.name``, and what the
    format's own ``options_from_config`` adds (iNaturalist: the split files to parse)."""
    fmt, accepted = data_cfg.format, format_options(data_cfg.format)
    options = {"on_bad_record": data_cfg.bad_records}
    if "level" in accepted and data_cfg.level:
        options["level"] = data_cfg.level
    if "crop_banner" in accepted:
        options["crop_banner"] = data_cfg.crop_banner
    if data_cfg.name:
        options["name"] = data_cfg.name
    if fmt in _OPTIONS_FROM_CONFIG:
        options |= _OPTIONS_FROM_CONFIG[fmt](fmt, data_cfg)
    return options


def read_dataset(fmt: str, root: str | os.PathLike, **options) -> DatasetSource:
    """Read the dataset at ``root`` in format ``fmt`` (a key of ``FORMATS``) with its ``options``."""
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; formats are {', '.join(FORMATS)}")
    unknown = [k for k in options if k not in format_options(fmt)]
    if unknown:
        raise DataError(f"{fmt}: unknown option {unknown[0]!r}; options are {', '.join(format_options(fmt))}")
    return FORMATS[fmt](root, **options)
