"""iNaturalist 2017, 2018 and 2021: COCO-style JSON, one file per split, image paths relative to root.

Each split file has ``images`` [{id, file_name, ...}], ``annotations`` [{id, image_id, category_id}]
and ``categories`` [{id, name, supercategory, ...}]; labels follow the sorted category ids.

- 2017 / 2018: ``train2017.json`` / ``val2017.json`` (``...2018...``). Geo-temporal metadata lives in
  ``train2017_locations.json`` etc.: a list of {id (image id), lat, lon, date_c, user_id, ...}, any
  null; ``date_c`` is the date as a fraction of the year and is kept as a float in ``Sample.date``.
  Without a locations file the samples have no metadata. For 2018 an optional ``categories.json``
  (the taxonomy released apart) supplies the names and ranks. Papers report on the public val:
  ``default_splits`` = ("train", None, "val").
- 2021: ``train.json``, ``train_mini.json``, ``val.json``; each image carries ``latitude``,
  ``longitude``, ``date`` ("YYYY-MM-DD HH:MM:SS...", may be null); categories carry the taxonomy.
  ``default_splits`` = ("train_mini", None, "val"), or "train" when train_mini.json is absent.

Only the split files present (or those named in ``splits``) are read: ``train.json`` of 2021 is
2.7 M images, so pass ``splits=("train_mini", "val")`` to skip it. The taxonomy of each class is in
``DatasetSource.taxonomy`` (rank -> value per label), e.g. ``taxonomy["genus"]``.

A 2021 file is decoded into only the fields read (msgspec skips ``width``, ``license``,
``rights_holder``... without building them) and turned into columns with NumPy (``SampleIndex``);
a file with anything unexpected (a missing key, a duplicate id, an id that is not an integer, a
value of the wrong type) is read again the general way, record by record, so that every problem is
named as before.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from fgvc.data.columns import StringColumn
from fgvc.data.formats._common import Problems, absolute, finish, image_exists, load_json, number, require
from fgvc.data.index import SampleIndex
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

SPLIT_FILES = {
    "2017": {"train": "train2017.json", "val": "val2017.json"},
    "2018": {"train": "train2018.json", "val": "val2018.json"},
    "2021": {"train": "train.json", "train_mini": "train_mini.json", "val": "val.json"},
}
RANKS = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet",
         "common_name")


class _Image(msgspec.Struct):  # the fields read, typed as the release writes them
    id: int
    file_name: str
    latitude: float | None = None
    longitude: float | None = None
    date: str | None = None


class _Annotation(msgspec.Struct):
    image_id: int
    category_id: int


class _File(msgspec.Struct):
    images: list[_Image]
    annotations: list[_Annotation]
    categories: Any


def _lean(path: Path) -> _File | None:
    """A 2021 split file decoded into the fields read, or None if any record is not as the release
    writes them (a missing key, a value of another type): the general path then names it."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return msgspec.json.decode(data, type=_File)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError, OSError):  # ValueError: an empty file
        return None


def _is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _records(data: object, key: str, file: str) -> list:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"{file}: missing key '{key}' (a list)")
    return data[key]


def _categories(data: object, file: str, categories: dict, problems: Problems) -> None:
    """Merge a file's categories into {id: category}; one id with two names is fatal."""
    for i, cat in enumerate(_records(data, "categories", file)):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or "name" not in cat:
            problems.bad(f"{file}: category {i}: missing key 'id' or 'name'")
        elif cat["id"] in categories and categories[cat["id"]]["name"] != cat["name"]:
            raise DataError(f"{file}: category {cat['id']}: named {cat['name']!r} here but "
                            f"{categories[cat['id']]['name']!r} in another file")
        else:
            categories.setdefault(cat["id"], cat)


def _locations(root: Path, split_file: str, problems: Problems) -> dict:
    """{image id: (lat, lon, date_c)} from ``<split>_locations.json``; {} when the file is absent."""
    path = root / split_file.replace(".json", "_locations.json")
    if not path.is_file():
        return {}
    records = load_json(path)
    if not isinstance(records, list):
        raise DataError(f"{path.name}: expected a list of location records")
    locations = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not _is_id(rec.get("id")):
            problems.bad(f"{path.name}: record {i}: missing key 'id'")
            continue
        where = f"{path.name}: image {rec['id']}"
        if rec["id"] in locations:
            problems.bad(f"{where}: duplicate image id")
            continue
        locations[rec["id"]] = tuple(number(rec.get(k), k, where, problems) for k in ("lat", "lon", "date_c"))
    return locations


def _split(data: object, file: str, root: Path, year: str, label_of: dict, locations: dict, name: str,
           problems: Problems, check_images: bool) -> list[Sample]:
    """The samples of one split file: each image with its one annotation and its metadata."""
    images = {}
    for i, img in enumerate(_records(data, "images", file)):
        if not isinstance(img, dict) or not _is_id(img.get("id")) or "file_name" not in img:
            problems.bad(f"{file}: image {i}: missing key 'id' or 'file_name'")
        elif img["id"] in images:
            problems.bad(f"{file}: image {img['id']}: duplicate image id")
        else:
            images[img["id"]] = img
    label_of_image = {}
    for i, ann in enumerate(_records(data, "annotations", file)):
        where = f"{file}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict) or not _is_id(ann.get("image_id")) or not _is_id(ann.get("category_id")):
            problems.bad(f"{where}: missing key 'image_id' or 'category_id'")
        elif ann["image_id"] not in images:
            problems.bad(f"{where}: image_id {ann['image_id']!r} is not in images")
        elif ann["category_id"] not in label_of:
            problems.bad(f"{where}: category_id {ann['category_id']!r} is not in categories")
        elif ann["image_id"] in label_of_image:
            problems.bad(f"{where}: image {ann['image_id']} has a second annotation")
        else:
            label_of_image[ann["image_id"]] = label_of[ann["category_id"]]

    samples = []
    for image_id, img in images.items():
        where = f"{file}: image {image_id}"
        if image_id not in label_of_image:
            problems.bad(f"{where}: no annotation")
            continue
        path = absolute(root, str(img["file_name"]))
        if not image_exists(path, where, problems, check_images):
            continue
        if year == "2021":
            lat = number(img.get("latitude"), "latitude", where, problems)
            lon = number(img.get("longitude"), "longitude", where, problems)
            date = img.get("date")
            if date is not None and not isinstance(date, str):
                problems.bad(f"{where}: date {date!r} is not a string")
                date = None
        else:
            lat, lon, date = locations.get(image_id, (None, None, None))
        samples.append(Sample(path=path, label=label_of_image[image_id], lat=lat, lon=lon, date=date,
                              dataset=name, id=str(image_id)))
    return samples


def _wanted(root: Path, year: str, splits: Sequence[str] | None, name: str) -> dict[str, str]:
    """{split: file} of the splits to read: those asked, else those whose file is present."""
    files = SPLIT_FILES[year]
    unknown = [s for s in (splits or ()) if s not in files]
    if unknown:
        raise DataError(f"{name}: unknown split {unknown[0]!r}; splits are {', '.join(files)}")
    wanted = {s: f for s, f in files.items() if (s in splits if splits else (root / f).is_file())}
    if not any(s.startswith("train") for s in wanted) or "val" not in wanted:
        need = " or ".join(f for s, f in files.items() if s != "val")
        raise DataError(f"{root}: {name} needs {need} and {files['val']}")
    return wanted


def annotation_files(root: Path, year: str, splits: Sequence[str] | None = None, name: str | None = None,
                     **_options) -> list[Path]:
    """The files ``read`` parses: the split files, their locations files and 2018's categories.json."""
    root = require(root)
    files = [root / f for f in _wanted(root, str(year), splits, name or f"inat{year}").values()]
    extra = [f.with_name(f.name.replace(".json", "_locations.json")) for f in files] + [root / "categories.json"]
    return files + [f for f in extra if str(year) != "2021" and f.is_file()]


def _as_dict(lean: _File) -> dict:
    return {"categories": lean.categories}


def _columns(lean: _File, root: Path, label_of: dict, name: str, check_images: bool) -> SampleIndex | None:
    """The split as columns when the records are as the release writes them (types checked by the
    decoder; here: unique image ids, one annotation per image, known categories, every image present
    when ``check_images``); None otherwise."""
    images, annotations = lean.images, lean.annotations
    if not images or len(annotations) != len(images):
        return None
    ids = np.array([i.id for i in images], np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    annotated = np.array([a.image_id for a in annotations], np.int64)
    where = np.clip(np.searchsorted(sorted_ids, annotated), 0, len(ids) - 1)
    if ((np.diff(sorted_ids) == 0).any() or (sorted_ids[where] != annotated).any()
            or np.bincount(where, minlength=len(ids)).max() > 1):
        return None  # a duplicate image, an annotation of no image, or an image annotated twice
    try:
        labels = np.empty(len(ids), np.int32)
        labels[order[where]] = [label_of[a.category_id] for a in annotations]
    except KeyError:  # a category not in categories
        return None
    paths = _absolute_paths(root, [i.file_name for i in images])
    if check_images and not all(os.path.isfile(p) for p in paths.to_list()):
        return None
    lat = np.array([i.latitude for i in images], np.float64)  # None -> NaN
    lon = np.array([i.longitude for i in images], np.float64)
    return SampleIndex.from_columns(labels, paths, ids, lat, lon,
                                    StringColumn.from_strings([i.date for i in images]), name)


def _absolute_paths(root: Path, names: list[str]) -> StringColumn:
    """``absolute(root, name)`` of each name. Names already in normal form (no "." or ".." part, no
    doubled or edge "/") are appended to the root as they are: checked on all names at once."""
    prefix = os.path.join(os.path.abspath(root), "")
    joined = "\n" + "\n".join(names) + "\n"
    odd = ("//", "/.", "\n.", "\n/", "/\n", "\n\n")  # "/." also flags ".hidden" names: then the slow way
    if joined.count("\n") == len(names) + 1 and not any(pattern in joined for pattern in odd):
        return StringColumn.from_strings([prefix + n for n in names])
    return StringColumn.from_strings([absolute(root, n) for n in names])


def read(root: str | os.PathLike, year: str | int, splits: Sequence[str] | None = None,
         name: str | None = None, on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    year = str(year)
    if year not in SPLIT_FILES:
        raise DataError(f"inat: year must be one of {', '.join(SPLIT_FILES)}, not {year!r}")
    root, problems, name = require(root), Problems(on_bad_record), name or f"inat{year}"
    wanted = _wanted(root, year, splits, name)

    data = {split: (year == "2021" and _lean(root / file)) or load_json(root / file) for split, file in wanted.items()}
    categories: dict = {}
    for split, file in wanted.items():
        _categories(_as_dict(data[split]) if isinstance(data[split], _File) else data[split], file, categories,
                    problems)
    if year == "2018" and (root / "categories.json").is_file():
        extra = {"categories": load_json(root / "categories.json")}
        named = {}
        _categories(extra, "categories.json", named, problems)
        categories.update({k: {**categories[k], **v} for k, v in named.items() if k in categories})
    ids = sorted(categories, key=lambda c: (not isinstance(c, int), c if isinstance(c, int) else str(c)))
    label_of = {c: i for i, c in enumerate(ids)}

    samples = {}
    for split, file in wanted.items():
        split_data = data.pop(split)
        if isinstance(split_data, _File):
            samples[split] = _columns(split_data, root, label_of, name, check_images)
            if samples[split] is not None:
                continue
            split_data = load_json(root / file)  # something unexpected: record by record, to name it
        locations = _locations(root, file, problems) if year != "2021" else {}
        samples[split] = _split(split_data, file, root, year, label_of, locations, name, problems,
                                check_images)
    taxonomy = {rank: [str(categories[c].get(rank, "")) for c in ids]
                for rank in RANKS if any(rank in categories[c] for c in ids)}
    train = "train_mini" if "train_mini" in wanted else "train"
    return finish(name, [str(categories[c]["name"]) for c in ids], samples, (train, None, "val"), problems,
                  dict(wanted), taxonomy=taxonomy)


def options_from_config(fmt: str, data_cfg) -> dict:
    """Parse only the JSON files the run uses (train.json of 2021 is 2.7 M images): the configured
    splits, or the defaults (train_mini for 2021, train before; val)."""
    default_train = "train_mini" if fmt == "inat2021" else "train"
    wanted = {data_cfg.train_split or default_train, data_cfg.test_split or "val", data_cfg.val_split}
    return {"splits": tuple(sorted(s for s in wanted if s not in (None, "holdout")))}


YEARS = ("2017", "2018", "2021")
FORMATS = {f"inat{year}": partial(read, year=year) for year in YEARS}
ANNOTATION_FILES = {f"inat{year}": partial(annotation_files, year=year) for year in YEARS}
