"""Prediction rows on disk: ``.csv``, ``.jsonl`` or ``.json``, appended batch by batch and resumable.

A run killed at any moment is resumed by running it again with the same ``--out``: the images
already in the file are skipped and none is written twice. CSV columns: ``image, status, error, lat,
lon, date, metadata_source``, then ``class_i, probability_i`` for the final top-k, ``raw_class_i,
raw_probability_i`` when a prior or an allow-list re-ranked them, the taxonomy of the top class
(iNaturalist models) and ``rollup_*`` with an allow-list. JSON rows nest the same fields.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from fgvc.deploy.predictor import Predictor
from fgvc.errors import FgvcError


def csv_columns(predictor: Predictor) -> list[str]:
    k = predictor.topk
    cols = ["image", "status", "error", "lat", "lon", "date", "metadata_source"]
    cols += [f"{what}_{i}" for i in range(1, k + 1) for what in ("class", "probability")]
    if predictor.reranks:
        cols += [f"raw_{what}_{i}" for i in range(1, k + 1) for what in ("class", "probability")]
    if predictor.ranks:
        cols += list(predictor.taxonomy(0))
    if predictor.allowed is not None:
        cols += ["rollup_raw_class", "rollup_allowed_class", "rollup_genus"]
    return cols


def flat_row(row: dict, columns: Sequence[str]) -> dict:
    """The CSV cells of a JSON row (empty where absent)."""
    flat = {k: row.get(k) for k in ("image", "status", "error", "lat", "lon", "date", "metadata_source")}
    for prefix, key in (("", "top"), ("raw_", "raw_top")):
        for i, t in enumerate(row.get(key) or [], 1):
            flat[f"{prefix}class_{i}"], flat[f"{prefix}probability_{i}"] = t["class"], t["probability"]
    flat |= row.get("taxonomy") or {}
    for k, v in (row.get("rollup") or {}).items():
        flat[f"rollup_{k}"] = v
    return {c: "" if flat.get(c) is None else flat[c] for c in columns}


class ResultFile:
    """Rows appended batch by batch to ``.csv``, ``.jsonl`` or ``.json``; what is already there is skipped.

    CSV and JSONL grow in place (one write and flush per batch; a torn last line from a killed run is
    cut off when resuming). A ``.json`` array cannot grow in place: rows go to ``<out>.partial.jsonl``
    and the array is written (atomically) when the run completes.
    """

    def __init__(self, path: str | Path, columns: list[str]):
        self.path = Path(path)
        self.kind = self.path.suffix.lower().lstrip(".")
        if self.kind not in ("csv", "jsonl", "json"):
            raise FgvcError(f"--out {path}: expected a .csv, .jsonl or .json file")
        self.columns = columns
        self.stream = self.path.with_name(self.path.name + ".partial.jsonl") if self.kind == "json" else self.path
        self.done: set[str] = set()
        self.previous: list[dict] = []  # .json: rows of an earlier complete file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._resume()
            self.handle = open(self.stream, "a", encoding="utf-8", newline="")
            if self.kind == "csv" and self.stream.stat().st_size == 0:
                self._write(self._csv_text([dict(zip(columns, columns))]))
        except OSError as exc:
            raise FgvcError(f"--out {path}: cannot write ({exc.strerror or exc})") from None

    def _resume(self) -> None:
        if self.kind == "json" and self.path.is_file():
            try:
                self.previous = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise FgvcError(f"{self.path}: not a JSON array written by fgvc predict ({exc.msg}); "
                                "use another --out") from None
            self.done |= {r["image"] for r in self.previous}
        if not self.stream.is_file():
            return
        data = self.stream.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]  # a killed run may have torn the last line
        if len(complete) != len(data):
            with open(self.stream, "r+b") as f:
                f.truncate(len(complete))
        text = complete.decode("utf-8")
        if self.kind == "csv":
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != self.columns:
                raise FgvcError(f"{self.path} has other columns than this run writes (another --topk, prior, "
                                "species list or model?): use another --out or remove the file")
            self.done |= {r[0] for r in rows[1:] if r}
        else:
            self.done |= {json.loads(line)["image"] for line in text.splitlines() if line.strip()}

    def _csv_text(self, flats: list[dict]) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writerows(flats)
        return buffer.getvalue()

    def _write(self, text: str) -> None:
        self.handle.write(text)
        self.handle.flush()

    def write(self, rows: list[dict]) -> None:
        if self.kind == "csv":
            text = self._csv_text([flat_row(r, self.columns) for r in rows])
        else:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        self._write(text)
        self.done |= {r["image"] for r in rows}

    def close(self, complete: bool = True) -> None:
        """Close the file; a completed ``.json`` run turns its partial rows into the array."""
        self.handle.close()
        if self.kind == "json" and complete:
            rows = self.previous + [json.loads(line) for line in
                                    self.stream.read_text(encoding="utf-8").splitlines() if line.strip()]
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
            self.stream.unlink()
