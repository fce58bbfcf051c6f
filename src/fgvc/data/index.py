"""A split's samples as columns (``SampleIndex``), and the cache that parses a dataset once.

``SampleIndex`` holds N samples as arrays: labels ``int32``, paths / ids / text dates in
``StringColumn``s (one byte buffer each), lat / lon ``float64`` (NaN for none), the encoded metadata
``float32 [N, 6]`` (sin and cos of lat, lon, date) with each value's status (``uint8 [N, 3]``:
ok, missing, invalid), and the rarer fields (box, trim, array row) only when some sample has them.
A ``Sample`` is built only when asked for (``index[i]``), so a DataLoader worker reading it touches
no Python object per sample and its memory stays flat (PyTorch issue 13246).

The cache (``read_cached``): the reader's whole output — every split's index, the classes, the
taxonomy, the bad records — written once to ``<cache_dir>/<format>-<key>.idx`` and memory-mapped
on later starts. The file records what it was built from: the format version, the reader and its
options, the dataset root, and per annotation file its size, modification time and a hash of its
first and last MiB; any difference means the annotations changed and they are read again. A file
that does not check out (wrong magic, truncated, CRC mismatch, inconsistent arrays) is rebuilt,
never trusted. Under ``torchrun`` rank 0 reads and writes while the others wait at a barrier, then
every rank maps the same file (one copy in the page cache for all of them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fgvc.data.columns import StringColumn
from fgvc.data.metadata import INVALID, OK, Scaled, USES, _columns, check_metadata, record_name, scale_columns
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"FGVCIDX1"
ALIGN = 64
# date_kind: how Sample.date is rebuilt (the encoding already holds its value)
NO_DATE, TEXT_DATE, NUMBER_DATE, DATE_OBJECT, DATETIME_OBJECT = range(5)


class SampleIndex(Sequence):
    """N samples as columns; ``index[i]`` is a ``Sample``, ``index[rows]`` (a slice or an index
    array) a ``SampleIndex`` sharing the columns' bytes."""

    def __init__(self, columns: dict[str, np.ndarray], datasets: Sequence[str]):
        self.columns = columns
        self.datasets = list(datasets)  # names; column "dataset" holds each sample's position here
        self.labels = columns["label"]
        self.paths = _strings(columns, "path")
        self.ids = _strings(columns, "id") if "id.data" in columns else None  # else "id_number"
        self.dates = _strings(columns, "date")

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def from_samples(cls, samples: Sequence[Sample]) -> SampleIndex:
        """The index of records a reader built one by one (the small formats)."""
        dates = [s.date for s in samples]
        kinds = np.array([_date_kind(d) for d in dates], np.uint8)
        text = [d.isoformat() if isinstance(d, dt.date) else d if isinstance(d, str) else None for d in dates]
        numbers = np.array([d if kinds[i] == NUMBER_DATE else np.nan for i, d in enumerate(dates)], np.float64)
        return cls.from_columns(
            labels=np.array([s.label for s in samples], np.int32), paths=[s.path for s in samples],
            ids=[s.id for s in samples], lat=[s.lat for s in samples], lon=[s.lon for s in samples],
            dates=StringColumn.from_strings(text), date_numbers=numbers, date_kinds=kinds,
            datasets=[s.dataset for s in samples], trim_bottom=[s.trim_bottom for s in samples],
            boxes=[s.box for s in samples], rows=[s.row for s in samples],
            scaled=scale_columns([s.lat for s in samples], [s.lon for s in samples], dates))

    @classmethod
    def from_columns(cls, labels: np.ndarray, paths: Sequence[str], ids: Sequence[str] | np.ndarray,
                     lat: Sequence | np.ndarray, lon: Sequence | np.ndarray, dates: StringColumn,
                     datasets: Sequence[str] | str, date_numbers: np.ndarray | None = None,
                     date_kinds: np.ndarray | None = None, trim_bottom: Sequence[int] = (),
                     boxes: Sequence = (), rows: Sequence = (), scaled: Scaled | None = None) -> SampleIndex:
        """Columns of a reader that builds no ``Sample`` (iNat: millions of records). ``ids``: strings,
        or an int64 array when every id is an integer; ``datasets``: one name per sample, or one for all."""
        n = len(labels)
        lat = _floats(lat)
        lon = _floats(lon)
        if date_kinds is None:
            date_kinds = np.where(dates.null, NO_DATE, TEXT_DATE).astype(np.uint8)
        if date_numbers is None:
            date_numbers = np.full(n, np.nan)
        if scaled is None:
            texts_or_numbers = dates if not (date_kinds == NUMBER_DATE).any() else None
            scaled = scale_columns(lat, lon, texts_or_numbers if texts_or_numbers is not None
                                   else _date_values(dates, date_numbers, date_kinds))
        names = [datasets] if isinstance(datasets, str) else list(dict.fromkeys(datasets))
        columns = {"label": np.asarray(labels, np.int32), "lat": lat, "lon": lon,
                   "date_number": np.asarray(date_numbers, np.float64), "date_kind": date_kinds,
                   "meta": _encoded(scaled), "meta_status": scaled.status,
                   "dataset": (np.zeros(n, np.uint16) if isinstance(datasets, str)
                               else np.array([names.index(d) for d in datasets], np.uint16)
                               if len(names) > 1 else np.zeros(n, np.uint16))}
        columns |= _string_arrays("path", paths if isinstance(paths, StringColumn) else StringColumn.from_strings(paths))
        if isinstance(ids, np.ndarray):
            columns["id_number"] = ids.astype(np.int64)
        else:
            columns |= _string_arrays("id", ids if isinstance(ids, StringColumn) else StringColumn.from_strings(ids))
        columns |= _string_arrays("date", dates)
        if any(trim_bottom):
            columns["trim_bottom"] = np.asarray(trim_bottom, np.int32)
        if any(b is not None for b in boxes):
            columns["box"] = np.array([b if b is not None else (np.nan,) * 4 for b in boxes], np.float32)
        if any(r is not None for r in rows):
            columns["row"] = np.array([-1 if r is None else r for r in rows], np.int64)
        return cls(columns, names)

    # --- reading ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key):
        if isinstance(key, (slice, np.ndarray, list)):
            return self.take(np.arange(len(self))[key] if isinstance(key, slice) else np.asarray(key))
        i = int(key)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {key} of {len(self)}")
        c = self.columns
        box = tuple(float(v) for v in c["box"][i]) if "box" in c and not np.isnan(c["box"][i, 0]) else None
        row = int(c["row"][i]) if "row" in c and c["row"][i] >= 0 else None
        return Sample(path=self.paths[i], label=int(self.labels[i]), lat=_number(c["lat"][i]),
                      lon=_number(c["lon"][i]), date=self._date(i), dataset=self.datasets[c["dataset"][i]],
                      id=self.ids[i] if self.ids is not None else str(c["id_number"][i]),
                      trim_bottom=int(c["trim_bottom"][i]) if "trim_bottom" in c else 0, box=box, row=row)

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same samples in the same order (splits were lists before)."""
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable columns, compared by content

    def _date(self, i: int):
        kind = self.columns["date_kind"][i]
        if kind == NUMBER_DATE:
            return float(self.columns["date_number"][i])
        if kind == NO_DATE:
            return None
        text = self.dates[i]
        if kind == DATE_OBJECT:
            return dt.date.fromisoformat(text)
        return dt.datetime.fromisoformat(text) if kind == DATETIME_OBJECT else text

    def take(self, rows: np.ndarray) -> SampleIndex:
        """The samples at ``rows`` (indices or a bool mask), in that order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
        taken = {name: array if name.endswith(".data") else array[rows]  # string bytes are shared
                 for name, array in self.columns.items() if name != "holdout_order"}
        return SampleIndex(taken, self.datasets)

    def scaled(self) -> Scaled:
        """The status of every sample's lat, lon and date (the values are not kept: see ``encoded``)."""
        return Scaled(np.zeros((len(self), 3)), self.columns["meta_status"])

    def encoded(self, use: str | Iterable[str] = USES) -> tuple[np.ndarray, np.ndarray]:
        """The columns of ``columns["meta"]`` that ``use`` needs (sin of each used value, then their
        cos) and the bool [N] rows that are all-zero because a used value is missing or invalid."""
        selected = _columns(use)
        meta = self.columns["meta"][:, [*selected, *(3 + c for c in selected)]]
        zero = self.scaled().verdicts(use) != OK
        meta[zero] = 0
        return meta, zero

    def encode(self, use: str | Iterable[str] = USES, on_invalid: str = "missing") -> tuple[np.ndarray, int]:
        """``encode_batch`` of the index: (float32 [N, D], number of all-zero rows)."""
        if on_invalid not in ("missing", "error"):
            raise ValueError(f"on_invalid must be 'missing' or 'error', not {on_invalid!r}")
        if not _columns(use):
            return np.zeros((len(self), 0), np.float32), 0
        if on_invalid == "error":
            self.raise_first_invalid(use)
        meta, zero = self.encoded(use)
        return meta, int(zero.sum())

    def invalid_rows(self, use: str | Iterable[str] = USES) -> np.ndarray:
        return np.flatnonzero(self.scaled().verdicts(use) == INVALID)

    def raise_first_invalid(self, use: str | Iterable[str]) -> None:
        invalid = self.invalid_rows(use)
        if len(invalid):
            sample = self[int(invalid[0])]
            raise DataError(f"{record_name(sample)}: {check_metadata(sample, use).removeprefix('invalid: ')}")

    def dataset_codes(self) -> np.ndarray:
        return self.columns["dataset"]

    def holdout_order(self) -> np.ndarray:
        """Positions sorted by (label, path, id): the order ``stratified_holdout`` draws from (paths
        compare as Python strings do: UTF-8 bytes sort in code-point order)."""
        if "holdout_order" not in self.columns:
            paths = self.paths.to_list()
            by_path = np.array(sorted(range(len(self)), key=paths.__getitem__), np.int64)
            order = by_path[np.argsort(self.labels[by_path], kind="stable")]
            if len(set(paths)) < len(paths):  # a path listed twice: (label, path, id), as the list path sorts
                ids = self.ids.to_list() if self.ids is not None else [str(i) for i in self.columns["id_number"]]
                key = [(self.labels[i], paths[i], ids[i]) for i in range(len(self))]
                order = np.array(sorted(range(len(self)), key=key.__getitem__), np.int64)
            self.columns["holdout_order"] = order
        return self.columns["holdout_order"]


def as_index(samples: Sequence[Sample]) -> SampleIndex:
    return samples if isinstance(samples, SampleIndex) else SampleIndex.from_samples(samples)


def _strings(columns: dict, name: str) -> StringColumn:
    return StringColumn(columns[f"{name}.data"], columns[f"{name}.starts"], columns[f"{name}.ends"],
                        columns[f"{name}.null"])


def _string_arrays(name: str, column: StringColumn) -> dict[str, np.ndarray]:
    return {f"{name}.data": column.data, f"{name}.starts": column.starts, f"{name}.ends": column.ends,
            f"{name}.null": column.null}


def _floats(values) -> np.ndarray:
    """float64 with NaN for None (readers give floats or None; ``number()`` judged the rest)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64)
    return np.fromiter((np.nan if v is None else v for v in values), np.float64, len(values))


def _number(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _date_kind(date) -> int:
    if date is None:
        return NO_DATE
    if isinstance(date, str):
        return TEXT_DATE
    if isinstance(date, dt.datetime):
        return DATETIME_OBJECT
    if isinstance(date, dt.date):
        return DATE_OBJECT
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return NUMBER_DATE
    raise DataError(f"date {date!r}: expected text, a date or a year fraction")


def _date_values(dates: StringColumn, numbers: np.ndarray, kinds: np.ndarray) -> list:
    return [float(numbers[i]) if k == NUMBER_DATE else dates[i] for i, k in enumerate(kinds)]


def _encoded(scaled: Scaled) -> np.ndarray:
    """sin and cos of all three values, float32 [N, 6] (what ``encode_metadata`` casts to)."""
    x = scaled.values
    return np.concatenate([np.sin(np.pi * x), np.cos(np.pi * x)], axis=1).astype(np.float32)


# --- the source as a whole, and its cache file ---------------------------------------------------

def index_source(source: DatasetSource) -> DatasetSource:
    """The source with every split as a ``SampleIndex``."""
    source.splits = {name: as_index(samples) for name, samples in source.splits.items()}
    return source


def write_source(source: DatasetSource, path: Path, key: dict) -> None:
    """Write atomically (a temporary file renamed), with a CRC of everything before the header."""
    arrays = {f"{split}/{name}": array for split, index in source.splits.items()
              for name, array in index.columns.items()}
    header = {"format_version": FORMAT_VERSION, "key": key, "arrays": {}, "source": {
        "name": source.name, "classes": source.classes, "default_splits": list(source.default_splits),
        "problems": source.problems, "taxonomy": source.taxonomy,
        "datasets": {split: index.datasets for split, index in source.splits.items()}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    crc = 0
    with open(tmp, "wb") as f:
        def put(data: bytes | memoryview) -> None:
            nonlocal crc
            crc = zlib.crc32(data, crc)
            f.write(data)

        put(MAGIC)
        for name, array in arrays.items():
            put(b"\0" * (-f.tell() % ALIGN))
            array = np.ascontiguousarray(array)
            header["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape), "offset": f.tell()}
            put(memoryview(array).cast("B") if array.size else b"")
        header["data_end"], header["crc32"] = f.tell(), crc
        blob = json.dumps(header).encode()
        f.write(blob)
        f.write(len(blob).to_bytes(8, "little") + MAGIC)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_source_file(path: Path, key: dict, verify: bool = True) -> DatasetSource | None:
    """The source in ``path`` memory-mapped, or None if it is absent, of another key, or not sound."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(size - 16)
            tail = f.read(16)
            if size < 32 or tail[8:] != MAGIC:
                raise ValueError("no end marker")
            length = int.from_bytes(tail[:8], "little")
            f.seek(size - 16 - length)
            header = json.loads(f.read(length))
            if header.get("format_version") != FORMAT_VERSION or header.get("key") != key:
                return None
            end = header["data_end"]
            if end != size - 16 - length or (verify and _crc(f, end) != header["crc32"]):
                raise ValueError("checksum")
        arrays = {}
        for name, spec in header["arrays"].items():
            dtype, shape, offset = np.dtype(spec["dtype"]), tuple(spec["shape"]), spec["offset"]
            if offset < len(MAGIC) or offset + dtype.itemsize * int(np.prod(shape)) > end:
                raise ValueError(f"array {name} outside the file")
            arrays[name] = (np.memmap(path, dtype, "r", offset=offset, shape=shape)
                            if np.prod(shape) else np.zeros(shape, dtype))
        meta = header["source"]
        splits = {}
        for split, datasets in meta["datasets"].items():
            columns = {name.split("/", 1)[1]: a for name, a in arrays.items() if name.split("/", 1)[0] == split}
            splits[split] = _checked(SampleIndex(columns, datasets), len(meta["classes"]))
        return DatasetSource(meta["name"], meta["classes"], splits, tuple(meta["default_splits"]),
                             meta["problems"], meta["taxonomy"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("%s: index cache is damaged (%s); reading the annotations again", path, exc)
        return None


def _crc(f, end: int) -> int:
    f.seek(0)
    crc, left = 0, end
    while left:
        block = f.read(min(left, 1 << 24))
        if not block:
            raise ValueError("truncated")
        crc, left = zlib.crc32(block, crc), left - len(block)
    return crc


def _checked(index: SampleIndex, num_classes: int) -> SampleIndex:
    """Arrays of one length, string bounds inside their buffers, labels inside the class list."""
    n = len(index.labels)
    if any(len(a) != n for name, a in index.columns.items() if not name.endswith(".data")):
        raise ValueError("columns of different lengths")
    for column in (index.paths, index.dates, index.ids):
        if column is not None and n and (column.starts.min() < 0 or column.ends.max() > len(column.data)
                                         or (column.ends < column.starts).any()):
            raise ValueError("string bounds outside their buffer")
    if n and (index.labels.min() < 0 or index.labels.max() >= num_classes):
        raise ValueError("labels outside the class list")
    return index


def file_key(paths: Iterable[Path]) -> list[dict]:
    """What identifies the annotation files: size, modification time, hash of the first and last MiB."""
    out = []
    for path in paths:
        stat = path.stat()
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            if stat.st_size > 1 << 20:
                f.seek(max(stat.st_size - (1 << 20), 1 << 20))
                digest.update(f.read())
        out.append({"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "head_tail": digest.hexdigest()})
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("FGVC_CACHE_DIR") or Path.home() / ".cache" / "fgvc")


def read_cached(fmt: str, root: Path, options: dict, files: list[Path] | None, read: Callable[[], DatasetSource],
                cache_dir: Path | None) -> DatasetSource:
    """``read()`` (the reader, every split a ``SampleIndex``), through the cache in ``cache_dir``
    when the format names its ``files`` and a cache folder is given."""
    if files is None or cache_dir is None:
        return index_source(read())
    key = json.loads(json.dumps({"reader": fmt, "root": os.path.abspath(root), "options": options,
                                 "files": file_key(files)}))  # as read back from the file: lists, not tuples
    name = hashlib.sha256(json.dumps([fmt, key["root"], options], sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"{fmt}-{name}.idx"
    rank, world_size = _rank()
    if rank == 0:
        source = read_source_file(path, key)
        if source is None:
            source = _build(path, key, read)
        _barrier(world_size)
        return source
    _barrier(world_size)  # rank 0 has written (or checked) the file: map it, without checking it again
    return read_source_file(path, key, verify=False) or index_source(read())


def _build(path: Path, key: dict, read: Callable[[], DatasetSource]) -> DatasetSource:
    source = index_source(read())
    for index in source.splits.values():
        index.holdout_order()  # sorted once, kept in the cache
    try:
        write_source(source, path, key)
    except OSError as exc:
        log.warning("%s: cannot write the index cache (%s); the annotations will be parsed again next time",
                    path, exc.strerror or exc)
        return source
    log.info("indexed %s into %s", ", ".join(Path(f["path"]).name for f in key["files"]), path)
    return read_source_file(path, key, verify=False) or source  # mapped: the parsed arrays are freed


def _rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


SAMPLE_CHECKS = 3000  # images looked at by data.check_images=sample, per split


def missing_images(index: SampleIndex, mode: str, seed: int = 0, workers: int = 8) -> tuple[np.ndarray, int]:
    """(positions of listed images that are not files, how many were looked at): all of them, a seeded
    sample of ``SAMPLE_CHECKS``, or none (``mode``: all | sample | none)."""
    n = len(index)
    if mode == "none" or n == 0:
        return np.zeros(0, np.int64), 0
    if mode == "all" or n <= SAMPLE_CHECKS:
        rows = np.arange(n)
    else:
        rows = np.sort(np.random.default_rng(seed).choice(n, SAMPLE_CHECKS, replace=False))
    with ThreadPoolExecutor(workers) as pool:  # stat calls release the GIL
        present = np.fromiter(pool.map(os.path.isfile, (index.paths[int(i)] for i in rows), chunksize=256),
                              bool, len(rows))
    return rows[~present], len(rows)
