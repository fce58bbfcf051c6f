"""A user's list of images: a CSV file (header required) or JSONL, one image per row.

Columns/keys: ``path,label[,lat,lon,date][,split]``; others are ignored. Paths are relative to the
manifest's folder unless absolute. Labels are class names; classes are sorted by name (numerically
when every label is an integer, so "2" < "10") and numbered from 0. Without a ``split`` column every
row is "train". Empty lat/lon/date cells are None; a date is an ISO "YYYY-MM-DD[ time]" string or a
number in [0, 1] (fraction of the year). ``root`` is the manifest file, or a folder holding
``manifest.csv`` or ``manifest.jsonl``. Ids are the line numbers. ``default_splits``: see
``user_default_splits``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.formats._common import (
    Problems,
    absolute,
    finish,
    image_exists,
    integer_text,
    number,
    numbered_lines,
    parse_json_line,
    read_csv,
    require,
    user_default_splits,
)
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

NAMES = ("manifest.csv", "manifest.jsonl")


def _find(root: str | os.PathLike) -> Path:
    path = require(root)
    if path.is_file():
        return path
    for candidate in NAMES:
        if (path / candidate).is_file():
            return path / candidate
    raise DataError(f"{path}: no {' or '.join(NAMES)} in this folder")


def annotation_files(root: Path, **_options) -> list[Path]:
    return [_find(root)]


def _rows(path: Path, problems: Problems) -> tuple[list[tuple[int, dict]], bool]:
    """(line number, row) pairs and whether the file has a split column."""
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for line_number, line in numbered_lines(path):
            row = parse_json_line(line)
            if isinstance(row, dict):
                rows.append((line_number, row))
            else:
                problems.bad(f"{path.name}: line {line_number}: not a JSON object")
        return rows, any("split" in row for _, row in rows)
    header, rows = read_csv(path, ("path", "label"))
    return rows, "split" in header


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _date(value: object, where: str, problems: Problems) -> str | float | None:
    """An ISO string as is (metadata.py judges it), a number (or numeric text) as a year fraction."""
    if isinstance(value, str):
        value = value.strip()
        try:
            return float(value) if value else None
        except ValueError:
            return value
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range
            pass
    problems.bad(f"{where}: date {value!r} is not a string or a number")
    return None


def read(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
         check_images: bool = True) -> DatasetSource:
    path, problems, name = _find(root), Problems(on_bad_record), name or "manifest"
    rows, has_split = _rows(path, problems)

    records, first_line_of = [], {}
    for line_number, row in rows:
        where = f"{path.name}: line {line_number}"
        image, label = _text(row.get("path")), _text(row.get("label"))
        split = _text(row.get("split")) if has_split else "train"
        if not image or not label or not split:
            problems.bad(f"{where}: empty {'path' if not image else 'label' if not label else 'split'}")
        elif image in first_line_of:
            problems.bad(f"{where}: duplicate path {image} (also line {first_line_of[image]})")
        else:
            first_line_of[image] = line_number
            records.append((line_number, where, row, image, label, split))
    labels = {label for *_, label, _ in records}
    numeric = all(integer_text(c) for c in labels)
    classes = sorted(labels, key=int if numeric else None)
    label_of = {c: i for i, c in enumerate(classes)}

    splits: dict[str, list[Sample]] = {}
    for line_number, where, row, image, label, split in records:
        lat = number(row.get("lat"), "lat", where, problems)
        lon = number(row.get("lon"), "lon", where, problems)
        date = _date(row.get("date"), where, problems)
        full = absolute(path.parent, image)
        samples = splits.setdefault(split, [])
        if image_exists(full, where, problems, check_images):
            samples.append(Sample(path=full, label=label_of[label], lat=lat, lon=lon, date=date,
                                  dataset=name, id=str(line_number)))
    if not splits:
        raise DataError(f"{path.name}: no valid rows")
    if "train" not in splits:
        raise DataError(f"{path.name}: no 'train' split (splits: {', '.join(sorted(splits))})")
    return finish(name, classes, splits, user_default_splits(splits), problems,
                  {s: path.name for s in splits})


FORMATS = {"manifest": read}
ANNOTATION_FILES = {"manifest": annotation_files}
