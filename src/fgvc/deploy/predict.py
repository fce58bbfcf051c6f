"""``fgvc predict``: species identification over folders of photos, each with its own place and date.

Inputs are files, folders (recursive), globs and a manifest; batches go through DataLoader workers
(reading, decoding, EXIF and preprocessing happen there); the rule is ``Predictor``'s and the rows go
to a resumable ``ResultFile``. Batches keep their composition when a run is resumed (``fixed_batches``),
so a resumed run computes the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fgvc.deploy.exif import read_photo
from fgvc.deploy.predictor import Given, Predictor, error_row, resolve_metadata
from fgvc.deploy.results import ResultFile, csv_columns
from fgvc.errors import DataError, FgvcError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


# ------------------------------------------------------------------------------------------ inputs


def expand_inputs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Files, folders (recursive, image suffixes only), globs -> (image paths in order, warnings).

    A path that does not exist is kept (it becomes an "unreadable" row naming it); a glob or folder
    that yields nothing gives a warning. Each image appears once, at its first mention.
    """
    paths, warnings = [], []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            warnings += [] if found else [f"{item}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"]
        elif not p.exists() and glob.has_magic(item):
            found = sorted(f for f in glob.glob(str(p), recursive=True) if Path(f).is_file())
            warnings += [] if found else [f"{item}: the pattern matches no file"]
        else:
            found = [str(p) if item.startswith("~") else item]
        paths += found
    return list(dict.fromkeys(paths)), warnings


def read_manifest(path: str | Path) -> dict[str, Given]:
    """A CSV (header with ``path`` and optionally ``lat``, ``lon``, ``date``) or JSONL (one object per
    line, same keys) -> {image path: given metadata}, paths relative to the manifest's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs write a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from None
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{n}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{n}: expected an object with a 'path' key")
                records.append((n, record))
    else:
        reader = csv.DictReader(io.StringIO(text))
        if "path" not in (reader.fieldnames or []):
            raise DataError(f"{path}: the CSV header must name a 'path' column (and optionally lat, lon, date); "
                            f"found {reader.fieldnames}")
        records = [(n, row) for n, row in enumerate(reader, 2)]
    out = {}
    for n, record in records:
        image = str(record.get("path") or "").strip()
        if not image:
            raise DataError(f"{path}:{n}: empty path")
        full = Path(image).expanduser()
        key = str(full if full.is_absolute() else path.parent / full)
        out[key] = Given(record.get("lat", record.get("latitude")), record.get("lon", record.get("longitude")),
                         record.get("date"))
    return out


# ----------------------------------------------------------------------------------------- loading


class PhotoDataset(Dataset):
    """Items: ``{"index", "image": [3,S,S], "exif": PhotoMetadata}``, or ``{"index", "error"}``."""

    def __init__(self, paths: Sequence[str], preprocess):
        self.paths, self.preprocess = list(paths), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            return {"index": index, "error": f"{path}: cannot read ({exc.strerror or exc})"}
        try:
            pixels, exif = read_photo(data, path)
        except DataError as exc:
            return {"index": index, "error": str(exc)}
        return {"index": index, "image": self.preprocess(pixels), "exif": exif}


def collate_photos(items: list[dict]) -> dict:
    good = [item for item in items if "image" in item]
    return {"index": [item["index"] for item in good], "exif": [item["exif"] for item in good],
            "image": torch.stack([item["image"] for item in good]) if good else None,
            "errors": [(item["index"], item["error"]) for item in items if "error" in item]}


def fixed_batches(todo: Iterable[int], batch_size: int) -> list[list[int]]:
    """Batches of the positions not yet done, each within its block ``[k·B, (k+1)·B)`` of the whole
    input: a resumed run computes every image in the same company as an uninterrupted one."""
    batches: dict[int, list[int]] = {}
    for i in todo:
        batches.setdefault(i // batch_size, []).append(i)
    return list(batches.values())


# --------------------------------------------------------------------------------------------- run


@dataclass
class PredictSummary:
    """What a run did: counts for the user, the rows when they are kept in memory (no ``--out``)."""

    predicted: int = 0
    skipped_done: int = 0
    unreadable: list[str] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    metadata_problems: Counter = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)


def batch_rows(predictor: Predictor, batch: dict, paths: Sequence[str], summary: PredictSummary, *,
               cli: Given | None, given: dict[str, Given], ignore_location: bool, ignore_date: bool) -> list[dict]:
    """The rows of one collated batch, in input order (unreadable files included); counts go to ``summary``."""
    rows = {i: error_row(paths[i], reason) for i, reason in batch["errors"]}
    summary.unreadable += [reason for _, reason in batch["errors"]]
    if batch["image"] is None:
        return [rows[i] for i in sorted(rows)]
    metas = []
    for i, exif in zip(batch["index"], batch["exif"]):
        meta, problems = resolve_metadata({"cli": cli, "csv": given.get(paths[i]), "exif": exif},
                                          ignore_location, ignore_date)
        summary.metadata_problems.update(source for source, _ in problems)
        if exif.problems:
            summary.metadata_problems["exif"] += len(exif.problems)
        metas.append(meta)
    for i, row in zip(batch["index"], predictor.rows([paths[i] for i in batch["index"]], batch["image"], metas)):
        rows[i] = row
        summary.sources[row["metadata_source"]] += 1
    summary.predicted += len(batch["index"])
    return [rows[i] for i in sorted(rows)]


def predict_files(predictor: Predictor, inputs: Sequence[str], *, manifest: str | None = None,
                  cli: Given | None = None, ignore_location: bool = False, ignore_date: bool = False,
                  out: str | None = None, batch_size: int = 32, workers: int = 2,
                  progress: bool = True) -> PredictSummary:
    """Predict every image of ``inputs`` (files, folders, globs) and of ``manifest``; rows go to ``out``
    (resumed if it exists) or, without ``out``, into the summary's ``rows``."""
    summary = PredictSummary()
    paths, summary.warnings = expand_inputs(inputs)
    given = read_manifest(manifest) if manifest else {}
    paths = list(dict.fromkeys(paths + list(given)))
    if not paths:
        raise FgvcError("no images to predict: give files, folders, globs or --manifest")
    result = ResultFile(out, csv_columns(predictor)) if out else None
    todo = [i for i, p in enumerate(paths) if result is None or p not in result.done]
    summary.skipped_done = len(paths) - len(todo)
    dataset = PhotoDataset(paths, predictor.model.preprocess)
    loader = DataLoader(dataset, batch_sampler=fixed_batches(todo, batch_size), num_workers=workers,
                        collate_fn=collate_photos, prefetch_factor=4 if workers else None)
    bar = tqdm(total=len(todo), desc="predict", unit="img", dynamic_ncols=True, disable=None if progress else True)
    complete = False
    try:
        for batch in loader:
            rows = batch_rows(predictor, batch, paths, summary, cli=cli, given=given,
                              ignore_location=ignore_location, ignore_date=ignore_date)
            if result is not None:
                result.write(rows)
            else:
                summary.rows += rows
            bar.update(len(rows))
        complete = True
    finally:
        bar.close()
        if result is not None:
            result.close(complete)
    return summary
