"""Readers of the on-disk dataset formats (docs/formats.md): each ``read(root, **options) -> DatasetSource``.

Common options: ``name`` (shown in reports; default the format name), ``on_bad_record`` ("error":
raise a one-line ``DataError`` naming file and record; "skip": list it in ``DatasetSource.problems``
and go on) and ``check_images`` (test that each listed image exists; default True). Format options:
``level`` and ``crop_banner`` (aircraft), ``level`` (cifar100), ``names`` (flowers), ``splits`` (iNat),
``image_dir`` and ``split_file`` (yfcc).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from fgvc.data.formats import aircraft, cars, cifar, cinic, cub, flowers, folder, inat, manifest, yfcc
from fgvc.data.records import DatasetSource
from fgvc.errors import DataError

FORMATS: dict[str, Callable[..., DatasetSource]] = {
    "inat2017": partial(inat.read, year="2017"),
    "inat2018": partial(inat.read, year="2018"),
    "inat2021": partial(inat.read, year="2021"),
    "yfcc": yfcc.read,
    "cub": cub.read,
    "cars": cars.read,
    "aircraft": aircraft.read,
    "flowers": flowers.read,
    "cifar10": cifar.read_cifar10,
    "cifar100": cifar.read_cifar100,
    "cinic10": cinic.read,
    "folder": folder.read,
    "manifest": manifest.read,
}


def format_options(fmt: str) -> list[str]:
    """The options ``read_dataset(fmt, root, ...)`` accepts."""
    return [p for p in inspect.signature(FORMATS[fmt]).parameters if p not in ("root", "year")]


def annotation_files(fmt: str, root: str | os.PathLike, **options) -> list[Path] | None:
    """The files a reader parses for ``options`` (what the index cache is keyed on), or None for a
    format whose records are the folder itself or that is small enough to read each time."""
    module = {"inat2017": inat, "inat2018": inat, "inat2021": inat, "manifest": manifest}.get(fmt)
    if module is None:
        return None
    if fmt.startswith("inat"):
        options["year"] = fmt.removeprefix("inat")
    return module.annotation_files(Path(root), **options)


def read_dataset(fmt: str, root: str | os.PathLike, **options) -> DatasetSource:
    """Read the dataset at ``root`` in format ``fmt`` (a key of ``FORMATS``) with its ``options``."""
    if fmt not in FORMATS:
        raise DataError(f"unknown dataset format {fmt!r}; formats are {', '.join(FORMATS)}")
    unknown = [k for k in options if k not in format_options(fmt)]
    if unknown:
        raise DataError(f"{fmt}: unknown option {unknown[0]!r}; options are {', '.join(format_options(fmt))}")
    return FORMATS[fmt](root, **options)
