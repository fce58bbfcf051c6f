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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fgvc.data.formats._common import Problems, absolute, finish, image_exists, load_json, number, require
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

SPLIT_FILES = {
    "2017": {"train": "train2017.json", "val": "val2017.json"},
    "2018": {"train": "train2018.json", "val": "val2018.json"},
    "2021": {"train": "train.json", "train_mini": "train_mini.json", "val": "val.json"},
}
RANKS = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet",
         "common_name")


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


def read(root: str | os.PathLike, year: str | int, splits: Sequence[str] | None = None,
         name: str | None = None, on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    year = str(year)
    if year not in SPLIT_FILES:
        raise DataError(f"inat: year must be one of {', '.join(SPLIT_FILES)}, not {year!r}")
    root, problems, name = require(root), Problems(on_bad_record), name or f"inat{year}"
    files = SPLIT_FILES[year]
    unknown = [s for s in (splits or ()) if s not in files]
    if unknown:
        raise DataError(f"{name}: unknown split {unknown[0]!r}; splits are {', '.join(files)}")
    wanted = {s: f for s, f in files.items() if (s in splits if splits else (root / f).is_file())}
    if not any(s.startswith("train") for s in wanted) or "val" not in wanted:
        need = " or ".join(f for s, f in files.items() if s != "val")
        raise DataError(f"{root}: {name} needs {need} and {files['val']}")

    data = {split: load_json(root / file) for split, file in wanted.items()}
    categories: dict = {}
    for split, file in wanted.items():
        _categories(data[split], file, categories, problems)
    if year == "2018" and (root / "categories.json").is_file():
        extra = {"categories": load_json(root / "categories.json")}
        named = {}
        _categories(extra, "categories.json", named, problems)
        categories.update({k: {**categories[k], **v} for k, v in named.items() if k in categories})
    ids = sorted(categories, key=lambda c: (not isinstance(c, int), c if isinstance(c, int) else str(c)))
    label_of = {c: i for i, c in enumerate(ids)}

    samples = {}
    for split, file in wanted.items():
        locations = _locations(root, file, problems) if year != "2021" else {}
        samples[split] = _split(data.pop(split), file, root, year, label_of, locations, name, problems,
                                check_images)
    taxonomy = {rank: [str(categories[c].get(rank, "")) for c in ids]
                for rank in RANKS if any(rank in categories[c] for c in ids)}
    train = "train_mini" if "train_mini" in wanted else "train"
    return finish(name, [str(categories[c]["name"]) for c in ids], samples, (train, None, "val"), problems,
                  dict(wanted), taxonomy=taxonomy)
