"""WebDataset shards (docs/formats.md): ``fgvc data shard`` writes them, ``data.format: shards`` streams them.

A folder of JPEGs stops being practical around iNat21-full (2.7 M files): shards turn it into a few
thousand sequential tar files. ``write_shards`` takes the splits as training resolves them
(``prepare_splits``, hold-outs included) and writes, per split ``<split>``:

- ``<split>-<generation>-000000.tar``, ... (at most ``max_per_shard`` samples each): per sample the original
  encoded image bytes under their extension (``.jpg``, ``.png``, ... — never re-encoded; only images
  held in array files, such as CIFAR's, are written as lossless PNG) and a ``.json`` with the label,
  class name, lat, lon, date, dataset, record id, original path, trim, and index (its position
  among the split's written samples: the original reader's index unless images were skipped);
- ``<split>.json``, the index: shard names, counts and SHA-256 (so epoch lengths are exact before
  reading a byte, and ``fgvc data verify`` can tell a shard of another set), classes, dataset groups,
  where the split came from, skipped images, and the missing/invalid metadata counts that
  ``ImageDataset`` would count.

Writing into a folder that already holds shards never mixes two sets: every write is a new
generation (the previous index's plus one), whose tars have their own names; each index is replaced
atomically (temporary file, rename) only once all the new splits' tars are complete, and only then
are the tars of the index it replaced deleted. Killed at any moment, the folder reads as the old set
or the new one, split by split, never as an index over another set's tars.

Every image is decoded once while writing, so unreadable files follow ``data.bad_images`` there: a
one-line ``DataError`` naming the file, or skipped, logged and counted in the index.

Reading (``ShardDataset``): training streams this rank's contiguous share of the epoch's shard order
(shards shuffled per epoch, then a seeded shuffle buffer), evaluation deals samples round-robin over
ranks in split order, as ``ResumableSampler`` does. Within a rank, batch-sized chunks of the stream
go to the DataLoader workers in turn (chunk c to worker c mod K), which the DataLoader's round-robin
collects back in order: the batches are the same with 0, 1 or K workers, each sample comes once per
epoch, and every worker decodes only its own chunks (the workers read the same tar bytes in lockstep,
so the page cache serves them once).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import io
import json
import logging
import os
import random
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from tqdm import tqdm

from fgvc.data.dataset import transform_seeded
from fgvc.data.formats.cifar import image_at
from fgvc.data.images import DEFAULT_MAX_PIXELS, decode_image_bytes
from fgvc.data.metadata import INVALID, MISSING, USES, check_metadata, encode_metadata, record_name, scale_columns
from fgvc.data.records import DatasetSource, Sample, Splits
from fgvc.data.section import DataConfig
from fgvc.errors import DataError

log = logging.getLogger(__name__)

ROLES = ("train", "val", "test")
IMAGE_KEYS = ("jpg", "jpeg", "png", "bmp", "webp")
METADATA_USES = (("geo",), ("temporal",), ("geo", "temporal"))
INDEX_FORMAT = "fgvc-shards/1"


# --- writing ---------------------------------------------------------------------------------------

def write_shards(splits: Splits, out_dir: str | Path, *, bad_images: str = "error",
                 max_pixels: int = DEFAULT_MAX_PIXELS, max_per_shard: int = 1000,
                 roles: Sequence[str] = ROLES, workers: int = 4, progress: bool = True) -> dict:
    """Shard the splits ``roles`` of prepared ``splits`` (``fgvc.data.splits.prepare_splits``, hold-outs
    included); returns ``{role: index}``. ``bad_images``: ``data.bad_images`` (error or skip);
    ``max_pixels``: ``data.max_image_pixels`` (larger images are bad images)."""
    if max_per_shard < 1:
        raise DataError(f"--max-per-shard must be at least 1, not {max_per_shard}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise DataError(f"split '{unknown[0]}': expected one of {', '.join(ROLES)}")
    if any(isinstance(splits.samples(role), ShardIndex) for role in ROLES):
        raise DataError(f"{splits.source.name}: already shards; point the config at the original dataset")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    skip_bad = bad_images == "skip"
    indices = {}
    try:
        for role in roles:
            generation = _previous_generation(out, role) + 1
            indices[role] = _write_split(splits, role, out, max_per_shard, skip_bad, workers, progress,
                                         generation, max_pixels)
    except BaseException:  # the splits written so far have no index yet: remove their tars
        for index in indices.values():
            for shard in index["shards"]:
                (out / shard["name"]).unlink(missing_ok=True)
        raise
    for role, index in indices.items():  # only once every split is complete: no half-written folder reads
        _replace_index(out, role, index)
    return indices


def _previous_generation(out: Path, role: str) -> int:
    """The generation of the index ``out/<role>.json`` (0 for an index of before generations, -1 for none)."""
    try:
        return int(json.loads((out / f"{role}.json").read_text()).get("generation", 0))
    except (OSError, ValueError, AttributeError):
        return -1


def _replace_index(out: Path, role: str, index: dict) -> None:
    """Swap in the new index atomically, then delete every tar of ``role`` it does not name (those of
    the index it replaced, and any left by a write that was killed)."""
    path = out / f"{role}.json"
    temporary = out / f".{role}.json.tmp"
    with open(temporary, "w") as f:
        f.write(json.dumps(index, indent=1))
        f.flush()
        os.fsync(f.fileno())
    temporary.replace(path)
    keep = {shard["name"] for shard in index["shards"]}
    for old in out.glob(f"{role}-*.tar*"):
        if old.name not in keep and re.fullmatch(rf"{role}-(\d+-)?\d{{6}}\.tar(\.tmp)?", old.name):
            old.unlink()


def _write_split(splits: Splits, role: str, out: Path, max_per_shard: int, skip_bad: bool, workers: int,
                 progress: bool, generation: int, max_pixels: int) -> dict:
    """Write one split's shards; returns its index. A sample's index counts the samples written (so
    it numbers the split's records 0..count-1 even when unreadable images were skipped)."""
    samples, kept, shards, skipped = splits.samples(role), [], [], []
    writer = None
    bar = tqdm(total=len(samples), desc=f"shard {role}", unit="img", leave=False,
               disable=None if progress else True, dynamic_ncols=True)
    check = functools.partial(_checked_bytes, max_pixels=max_pixels)
    try:
        with ThreadPoolExecutor(max(workers, 1)) as pool:
            for start in range(0, len(samples), 256):  # bounded read-ahead: never all images in memory
                chunk = samples[start:start + 256]
                for sample, (image, error) in zip(chunk, pool.map(check, chunk)):
                    bar.update()
                    if error is not None:
                        if not skip_bad:
                            raise DataError(error)
                        log.warning("skipped %s", error)
                        skipped.append(error)
                        continue
                    if writer is None or shards[-1]["count"] == max_per_shard:
                        if writer is not None:
                            _close(writer, out / shards[-1]["name"], shards[-1])
                        shards.append({"name": f"{role}-{generation}-{len(shards):06d}.tar", "count": 0})
                        writer = _open_shard(out / shards[-1]["name"])
                    ext, data = image
                    record = _record(sample, len(kept), splits.classes)
                    writer.write({"__key__": f"{len(kept):09d}", ext: data,
                                  "json": json.dumps(record).encode()})
                    shards[-1]["count"] += 1
                    kept.append(sample)
        if writer is not None:
            _close(writer, out / shards[-1]["name"], shards[-1])
    except BaseException:
        if writer is not None:  # leave no partial shard behind
            _close(writer, out / shards[-1]["name"])
        raise
    finally:
        bar.close()
    if skipped:
        log.warning("%s: skipped %d unreadable images (named above)", role, len(skipped))
    return {"format": INDEX_FORMAT, "split": role, "generation": generation, "source": splits.names[role],
            "dataset": splits.source.name, "count": len(kept), "shards": shards,
            "classes": list(splits.classes), "groups": [list(g) for g in splits.groups],
            "taxonomy": splits.source.taxonomy, "skipped": skipped, "metadata": _metadata_counts(kept)}


class _HashingFile:
    """A file being written that also takes the SHA-256 of every byte written to it."""

    def __init__(self, path: Path):
        self.file, self.sha256 = open(path, "wb"), hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.file.write(data)


def _open_shard(path: Path) -> wds.TarWriter:
    """A tar writer to ``<path>.tmp`` (renamed by ``_close`` once complete)."""
    return wds.TarWriter(_HashingFile(Path(str(path) + ".tmp")), encoder=False, mtime=0.0)


def _close(writer: wds.TarWriter, path: Path, shard: dict | None = None) -> None:
    """Shards appear under their name only once complete; the index records their hash. Without
    ``shard``: abandon the shard (an error or an interrupt while writing it)."""
    writer.close()
    file = writer.stream.file
    if shard is not None:  # on disk before an index can name it
        file.flush()
        os.fsync(file.fileno())
    file.close()
    temporary = Path(str(path) + ".tmp")
    if shard is None:
        temporary.unlink(missing_ok=True)
        return
    shard["sha256"] = writer.stream.sha256.hexdigest()
    temporary.replace(path)


def _checked_bytes(sample: Sample, max_pixels: int) -> tuple[tuple[str, bytes] | None, str | None]:
    """``((extension, encoded bytes), None)`` for a decodable image, else ``(None, one-line error)``."""
    try:
        if sample.row is not None:  # an image held in an array file: no encoded bytes
            buffer = io.BytesIO()
            Image.fromarray(image_at(sample.path, sample.row)).save(buffer, "PNG")
            ext, data = "png", buffer.getvalue()
        else:
            data = Path(sample.path).read_bytes()
            ext = Path(sample.path).suffix.lower().lstrip(".")
            ext = ext if ext in IMAGE_KEYS else "jpg" if data[:3] == b"\xff\xd8\xff" else "png"
        decode_image_bytes(data, max_pixels=max_pixels)
    except (OSError, ValueError) as exc:
        return None, f"{sample.path}: unreadable image (record {sample.id or '?'}): {exc}"
    return (ext, data), None


def _record(sample: Sample, index: int, classes: Sequence[str]) -> dict:
    date = sample.date.isoformat() if isinstance(sample.date, dt.date) else sample.date
    return {"index": index, "label": sample.label, "class": classes[sample.label], "lat": sample.lat,
            "lon": sample.lon, "date": date, "dataset": sample.dataset, "id": sample.id, "path": sample.path,
            "trim_bottom": sample.trim_bottom, "box": list(sample.box) if sample.box else None}


def _metadata_counts(samples: Sequence[Sample]) -> dict:
    """Per metadata choice, what ``encode_batch`` would find: missing and invalid values, the first
    invalid one named as its error would name it."""
    scaled = scale_columns([s.lat for s in samples], [s.lon for s in samples], [s.date for s in samples])
    counts = {}
    for use in METADATA_USES:
        verdicts = scaled.verdicts(use)
        invalid = np.flatnonzero(verdicts == INVALID)
        first = None
        if len(invalid):
            s = samples[int(invalid[0])]
            first = f"{record_name(s)}: {check_metadata(s, use).removeprefix('invalid: ')}"
        counts["+".join(use)] = {"missing": int((verdicts == MISSING).sum()), "invalid": len(invalid),
                                 "first_invalid": first}
    return counts


# --- reading ---------------------------------------------------------------------------------------

class ShardIndex(Sequence):
    """One sharded split: its length and shards come from ``<split>.json``; the records themselves
    (``Sample``s rebuilt from the per-sample JSONs) are read from the tars only when asked for."""

    def __init__(self, root: Path, index: dict):
        self.root, self.index = root, index
        self.shards = [(root / s["name"], int(s["count"])) for s in index["shards"]]
        missing = next((path for path, _ in self.shards if not path.is_file()), None)
        if missing is not None:
            raise DataError(f"{missing}: shard listed in {root / (index['split'] + '.json')} not found; "
                            "write the shards again with `fgvc data shard`")
        self._records: list[Sample] | None = None

    def __len__(self) -> int:
        return int(self.index["count"])

    def __getitem__(self, i):
        return self.records()[i]

    def records(self) -> list[Sample]:
        if self._records is None:
            raws = (json.loads(raw["json"]) for path, _ in self.shards
                    for raw in read_tar(path, select=lambda name: name.endswith(".json")))
            self._records = [_sample(meta) for meta in raws]
        return self._records


def check_shards(samples: ShardIndex) -> list[str]:
    """Problems of the tars an index names: a SHA-256 other than the index's (a tar of another shard
    set, or damaged), other samples than the index says, an unreadable tar."""
    problems, first = [], 0
    for shard, (path, count) in zip(samples.index["shards"], samples.shards):
        problem = _shard_problem(path, shard, first, count, f"{samples.index['split']}.json")
        if problem:
            problems.append(problem)
        first += count
    return problems


def _shard_problem(path: Path, shard: dict, first: int, count: int, index_name: str) -> str | None:
    again = "write the shards again with `fgvc data shard`"
    if "sha256" in shard and _file_sha256(path) != shard["sha256"]:
        return (f"{path}: not the tar {index_name} names (another SHA-256: a tar of another shard set, "
                f"or damaged); {again}")
    try:
        records = read_tar(path, lambda name: name.endswith(".json"))
        positions = [int(json.loads(raw["json"])["index"]) for raw in records]
    except DataError as exc:
        return str(exc)
    except (ValueError, KeyError, TypeError) as exc:
        return f"{path}: a sample without a readable JSON record ({type(exc).__name__}: {exc}); {again}"
    if len(positions) != count:
        return f"{path}: holds {len(positions)} samples, {index_name} says {count}; {again}"
    if positions != list(range(first, first + count)):
        return (f"{path}: holds other samples than {first}..{first + count - 1} of {index_name} (a tar of "
                f"another shard set?); {again}")
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_tar(path: Path, select: Callable[[str], bool] | None = None) -> Iterator[dict]:
    """The samples of one tar shard in order: dicts of ``__key__`` and one bytes value per extension.
    A truncated or damaged tar ends in a ``DataError`` naming it (after the samples before the damage)."""
    streams = wds.tariterators.url_opener([{"url": str(path)}])
    files = wds.tariterators.tar_file_expander(streams, select_files=select)
    try:
        yield from wds.tariterators.group_by_keys(files)
    except tarfile.TarError as exc:
        reason = str(exc.args[0]).split(" @ ")[0] if exc.args else type(exc).__name__  # not the file object
        raise DataError(f"{path}: not a readable tar shard ({reason}; truncated or not a tar file): write "
                        "the shards again with `fgvc data shard`") from None


def _sample(meta: dict) -> Sample:
    box = tuple(meta["box"]) if meta.get("box") else None
    return Sample(path=meta["path"], label=int(meta["label"]), lat=meta.get("lat"), lon=meta.get("lon"),
                  date=meta.get("date"), dataset=meta.get("dataset", ""), id=meta.get("id", ""),
                  trim_bottom=int(meta.get("trim_bottom") or 0), box=box)


def read_shard_splits(cfg: DataConfig) -> Splits:
    """``Splits`` of a shard folder (``data.root``): the splits as they were resolved when written."""
    root = Path(cfg.root).expanduser()
    indices = {}
    for role in ROLES:
        path = root / f"{role}.json"
        if path.is_file():
            try:
                indices[role] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            if indices[role].get("format") != INDEX_FORMAT:
                raise DataError(f"{path}: not an fgvc shard index (format {indices[role].get('format')!r})")
    if not indices:
        raise DataError(f"{root}: no train.json, val.json or test.json; write shards there with "
                        f"`fgvc data shard CONFIG {root}`")
    first = next(iter(indices.values()))
    for role, index in indices.items():
        if index["classes"] != first["classes"]:
            raise DataError(f"{root / (role + '.json')}: other classes than {first['split']}.json; "
                            "shard all splits from one config")
    parts = {role: ShardIndex(root, indices[role]) if role in indices else [] for role in ROLES}
    names = {role: f"{indices[role]['source']} (shards)" if role in indices else
             f"not sharded (no {role}.json in {root})" for role in ROLES}
    name = cfg.name or first["dataset"]
    source = DatasetSource(name, list(first["classes"]), {r: p for r, p in parts.items() if r in indices},
                           ("train", "val", "test"), taxonomy=first.get("taxonomy") or {})
    return Splits(source, parts["train"], parts["val"], parts["test"], names,
                  [tuple(g) for g in first["groups"]])


class ShardDataset(IterableDataset):
    """Streams a sharded split as items like ``ImageDataset``'s: ``image, label, meta, index``.

    ``index`` is the sample's position in its split, the same as the folder reader's. ``make_loader``
    calls ``stream(...)`` for a copy bound to a seed, shuffling, rank and batch (chunk) size;
    ``set_epoch(e, start=k)`` — ``k`` samples drawn by all ranks together, as the trainer's
    ``state.position`` — restarts epoch e's stream and discards this rank's first ``k // world_size``
    samples without decoding them, so a resumed run draws the same batches, with the same augmentation
    seeds, as one never interrupted (on the same number of processes). Epoch and start live in shared
    memory so persistent DataLoader workers see them.
    """

    def __init__(self, samples: ShardIndex, transform: Callable, metadata: Sequence[str] = (),
                 on_bad_metadata: str = "missing", skip_bad_images: bool = False, shuffle_buffer: int = 1000,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.samples, self.transform, self.skip_bad_images = samples, transform, skip_bad_images
        self.max_pixels = max_pixels
        self.metadata, self.shuffle_buffer = tuple(u for u in USES if u in metadata), shuffle_buffer
        self.missing_metadata = self._count_missing(on_bad_metadata)
        self.seed, self.shuffle, self.rank, self.world_size, self.chunk = 0, False, 0, 1, 1
        self._position = torch.zeros(2, dtype=torch.int64).share_memory_()  # epoch, start (this rank's)

    def _count_missing(self, on_bad_metadata: str) -> int:
        if not self.metadata:
            return 0
        counts = self.samples.index["metadata"]["+".join(self.metadata)]
        if counts["invalid"] and on_bad_metadata == "error":
            raise DataError(counts["first_invalid"])
        return counts["missing"] + counts["invalid"]

    def stream(self, *, seed: int = 0, shuffle: bool = False, rank: int = 0, world_size: int = 1,
               chunk: int = 1) -> ShardDataset:
        """A copy that streams rank ``rank``'s share, dealing ``chunk``-sized pieces to the workers."""
        out = copy.copy(self)
        out.seed, out.shuffle, out.rank, out.world_size, out.chunk = seed, shuffle, rank, world_size, chunk
        out._position = torch.zeros(2, dtype=torch.int64).share_memory_()
        return out

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self._position[0], self._position[1] = epoch, start // self.world_size

    def _rank_count(self) -> int:
        """Training: every rank the same count (the last ``N mod W`` samples sit out, as ``drop_last``
        leaves out a short batch); evaluation: every sample exactly once."""
        n = len(self.samples)
        return n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return max(self._rank_count() - int(self._position[1]), 0)

    def _rank_stream(self, epoch: int) -> Iterator[dict]:
        """This rank's raw samples (bytes, undecoded) in the epoch's order."""
        if not self.shuffle:
            everything = (raw for path, _ in self.samples.shards for raw in read_tar(path))
            return islice(everything, self.rank, None, self.world_size)
        epoch_seed = self.seed * 1_000_003 + epoch
        shards = list(self.samples.shards)
        random.Random(epoch_seed).shuffle(shards)
        n, w = len(self.samples), self.world_size
        begin, end = self.rank * n // w, (self.rank + 1) * n // w  # a contiguous share of the shard order
        raw = (sample for path, skip, take in _segments(shards, begin, end)
               for sample in islice(read_tar(path), skip, skip + take))
        rng = random.Random(epoch_seed * 1009 + self.rank)
        return wds.shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=rng)(raw)

    def __iter__(self) -> Iterator[dict]:
        epoch, start = (int(v) for v in self._position)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        base = (self.seed * 1_000_003 + epoch) * 10_000_019  # ResumableSampler's augmentation seeds
        stream = islice(self._rank_stream(epoch), start, self._rank_count())
        for position, raw in enumerate(stream, start):
            if (position - start) // self.chunk % workers == worker:
                seed = (base + position * self.world_size + self.rank) % 2**63 if self.shuffle else None
                yield self._item(raw, seed)

    def _item(self, raw: dict, seed: int | None) -> dict:
        meta = json.loads(raw["json"])
        ext = next((k for k in IMAGE_KEYS if k in raw), None)
        try:
            if ext is None:
                raise ValueError(f"no image in the sample (extensions {', '.join(IMAGE_KEYS)})")
            img = decode_image_bytes(raw[ext], meta.get("trim_bottom") or 0, self.max_pixels)
        except ValueError as exc:
            message = (f"{meta['path']} (sample {raw['__key__']} of {Path(raw['__url__']).name}): unreadable "
                       f"image (record {meta.get('id') or '?'}): {exc}")
            if not self.skip_bad_images:
                raise DataError(message) from None
            return {"skipped": message}
        vector = (encode_metadata(meta.get("lat"), meta.get("lon"), meta.get("date"), self.metadata)
                  if self.metadata else np.zeros(0, np.float32))
        return {"image": transform_seeded(self.transform, img, seed), "label": int(meta["label"]),
                "meta": torch.from_numpy(vector), "index": int(meta["index"])}


def _segments(shards: list[tuple[Path, int]], begin: int, end: int) -> Iterator[tuple[Path, int, int]]:
    """``(shard, skip, take)`` covering positions [begin, end) of the shards laid end to end."""
    offset = 0
    for path, count in shards:
        lo, hi = max(begin, offset), min(end, offset + count)
        if lo < hi:
            yield path, lo - offset, hi - lo
        offset += count
