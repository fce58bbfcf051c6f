"""YFCC100M-GEO100: 100 classes of geo-tagged Flickr photos, no dates, no official split.

``photo2gps.txt`` lists "<path> <lat> <lon>" with the class as the first path component; the images
are under ``img/`` (the release's layout) or directly under root (``image_dir`` overrides). The
geo-prior work split it at random 75/5/20 into ``train_test_split.csv`` (path, lat, lon, split,
class), which is what ``read`` loads; ``make_split`` writes such a file (seeded, stratified per
class) when it is missing. Classes are the sorted first path components; the ``class`` column,
a label index or a name, must agree with the path.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from fgvc.data.formats._common import (
    Problems,
    absolute,
    finish,
    image_exists,
    number,
    numbered_lines,
    read_csv,
    require,
)
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

SPLIT_FILE = "train_test_split.csv"
COLUMNS = ("path", "lat", "lon", "split", "class")


def _photo2gps(path: str | os.PathLike) -> list[tuple[str, float, float]]:
    rows = []
    for line_number, line in numbered_lines(path):
        parts = line.rsplit(maxsplit=2)
        try:
            rows.append((parts[0], float(parts[1]), float(parts[2])))
        except (IndexError, ValueError):
            raise DataError(f"{Path(path).name}: line {line_number}: expected '<path> <lat> <lon>', "
                            f"got {line!r}") from None
    return rows


def make_split(photo2gps_path: str | os.PathLike, out_csv: str | os.PathLike, seed: int = 0,
               fractions: tuple[float, float, float] = (0.75, 0.05, 0.20)) -> dict[str, int]:
    """Write ``train_test_split.csv``: a seeded train/val/test split, stratified per class.

    Each class (in sorted order, one generator for all) is shuffled and cut by ``fractions``
    (rounded; train keeps the rest), so the file depends only on photo2gps.txt and the seed.
    The ``class`` column holds the label index, as in the geo-prior work. Returns the split sizes.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three numbers >= 0 summing to 1, not {fractions}")
    rows = _photo2gps(photo2gps_path)
    classes = sorted({p.split("/")[0] for p, _, _ in rows})
    label_of = {c: i for i, c in enumerate(classes)}
    split_of = ["train"] * len(rows)
    rng = np.random.default_rng(seed)
    members_of: dict[str, list[int]] = {c: [] for c in classes}
    for i, (path, _, _) in enumerate(rows):
        members_of[path.split("/")[0]].append(i)
    for c in classes:
        members = members_of[c]
        order = rng.permutation(len(members))
        n_val, n_test = (int(len(members) * f + 0.5) for f in fractions[1:])
        for rank, k in enumerate(order):
            if rank < n_test:
                split_of[members[k]] = "test"
            elif rank < n_test + n_val:
                split_of[members[k]] = "val"
    out_csv = Path(out_csv)
    with tempfile.NamedTemporaryFile("w", newline="", dir=out_csv.parent, delete=False, suffix=".tmp") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for (path, lat, lon), split in zip(rows, split_of):
            writer.writerow((path, lat, lon, split, label_of[path.split("/")[0]]))
    os.replace(f.name, out_csv)
    return {s: split_of.count(s) for s in ("train", "val", "test")}


def read(root: str | os.PathLike, image_dir: str | os.PathLike | None = None, split_file: str = SPLIT_FILE,
         name: str | None = None, on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    root, problems, name = Path(root), Problems(on_bad_record), name or "yfcc"
    csv_path = root / split_file
    require(csv_path, hint=f"YFCC100M-GEO100 has no official split: create one with "
                           f"fgvc.data.formats.yfcc.make_split('{root / 'photo2gps.txt'}', '{csv_path}')")
    if image_dir is None:
        image_dir = root / "img" if (root / "img").is_dir() else root
    _, rows = read_csv(csv_path, COLUMNS)
    # classes come from well-formed '<class>/<file>' paths only: a malformed row must not add a
    # class, which would shift the label index every other row's 'class' column is checked against
    classes = sorted({p.split("/")[0] for p in (row["path"] or "" for _, row in rows) if "/" in p} - {""})
    label_of = {c: i for i, c in enumerate(classes)}

    splits: dict[str, list[Sample]] = {}
    seen: set[str] = set()
    for line_number, row in rows:
        where = f"{csv_path.name}: line {line_number}"
        path, split, given = row["path"] or "", row["split"] or "", (row["class"] or "").strip()
        class_name = path.split("/")[0]
        if "/" not in path or not class_name:
            problems.bad(f"{where}: path {path!r} is not '<class>/<file>'")
        elif split not in ("train", "val", "test"):
            problems.bad(f"{where}: split {split!r} is not train, val or test")
        elif given not in (class_name, str(label_of[class_name])):
            problems.bad(f"{where}: class {given!r} disagrees with path {path!r} "
                         f"(label {label_of[class_name]})")
        elif path in seen:
            problems.bad(f"{where}: duplicate path {path}")
        else:
            seen.add(path)
            lat = number(row["lat"], "lat", where, problems)
            lon = number(row["lon"], "lon", where, problems)
            image = absolute(image_dir, path)
            if image_exists(image, where, problems, check_images):
                splits.setdefault(split, []).append(Sample(path=image, label=label_of[class_name], lat=lat,
                                                           lon=lon, dataset=name, id=path))
    for split in ("train", "val", "test"):
        splits.setdefault(split, [])  # an empty split is reported by finish()
    return finish(name, classes, splits, ("train", "val", "test"), problems,
                  {s: csv_path.name for s in splits})


FORMATS = {"yfcc": read}
