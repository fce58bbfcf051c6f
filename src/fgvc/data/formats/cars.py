"""Stanford Cars (196 classes, 8,144 train / 8,041 test) in either of its two releases.

Devkit release: ``devkit/cars_meta.mat`` (``class_names``), ``devkit/cars_train_annos.mat`` and
``cars_test_annos_withlabels.mat`` (in the root or in ``devkit/``; the devkit's own
``cars_test_annos.mat`` has no labels), each a struct array ``annotations`` with ``bbox_x1 bbox_y1
bbox_x2 bbox_y2 class fname`` (class 1..196); images in ``cars_train/`` and ``cars_test/``.
Single-file release: ``cars_annos.mat`` with ``class_names`` and ``annotations`` (``relative_im_path
class test`` and the boxes). ``root`` may also be the parent of a ``stanford_cars`` folder
(torchvision's layout). Ids are the file names; boxes become ``Sample.box`` (x, y, w, h).
"""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.formats._common import (
    Problems,
    absolute,
    as_int,
    finish,
    image_exists,
    load_mat,
    mat_list,
    mat_records,
    mat_variable,
)
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

_BOX = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def _find_root(root: str | os.PathLike) -> Path:
    for candidate in (Path(root), Path(root) / "stanford_cars"):
        if (candidate / "devkit" / "cars_meta.mat").is_file() or (candidate / "cars_annos.mat").is_file():
            return candidate
    raise DataError(f"{root}: neither devkit/cars_meta.mat nor cars_annos.mat found (Stanford Cars)")


def _box(record: dict) -> tuple[float, float, float, float] | None:
    values = [record.get(k) for k in _BOX]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2 - x1, y2 - y1)


def _annotations(path: Path, fields: tuple[str, ...]) -> list[dict]:
    records = mat_records(mat_variable(load_mat(path), "annotations", path), path, "annotations")
    missing = [f for f in fields if records and f not in records[0]]
    if missing:
        raise DataError(f"{path.name}: annotations have no field '{missing[0]}'")
    return records


def _sample(record: dict, number: int, file: str, image_key: str, image_dir: Path, classes: list[str],
            seen: set[str], name: str, problems: Problems, check_images: bool) -> Sample | None:
    """One annotation as a Sample, or None after reporting why it is bad."""
    image, label = record[image_key], as_int(record["class"])
    where = f"{file}: annotation {number}" + (f" ({image})" if isinstance(image, str) else "")
    if not isinstance(image, str) or not image:
        problems.bad(f"{where}: {image_key} {image!r} is not a file name")
    elif label is None or not 1 <= label <= len(classes):
        problems.bad(f"{where}: class {record['class']!r} is not in 1..{len(classes)}")
    elif image in seen:
        problems.bad(f"{where}: duplicate image {image}")
    else:
        seen.add(image)
        path = absolute(image_dir, image)
        if image_exists(path, where, problems, check_images):
            return Sample(path=path, label=label - 1, dataset=name, id=image, box=_box(record))
    return None


def _read_devkit(root: Path, name: str, problems: Problems, check_images: bool):
    meta = root / "devkit" / "cars_meta.mat"
    classes = [str(c) for c in mat_list(mat_variable(load_mat(meta), "class_names", meta))]
    test_candidates = [root / folder / "cars_test_annos_withlabels.mat" for folder in (".", "devkit")]
    test_file = next((p for p in test_candidates if p.is_file()), None)
    if test_file is None:
        raise DataError(f"{test_candidates[0]}: not found (nor in devkit/); the test labels are in "
                        "cars_test_annos_withlabels.mat, distributed apart from the devkit")
    splits, sources = {}, {}
    for split, file, image_dir in (("train", root / "devkit" / "cars_train_annos.mat", root / "cars_train"),
                                   ("test", test_file, root / "cars_test")):
        records, seen = _annotations(file, ("class", "fname")), set()
        samples = [_sample(r, i, file.name, "fname", image_dir, classes, seen, name, problems, check_images)
                   for i, r in enumerate(records, 1)]
        splits[split], sources[split] = [s for s in samples if s is not None], file.name
    return classes, splits, sources


def _read_single(root: Path, name: str, problems: Problems, check_images: bool):
    file = root / "cars_annos.mat"
    mat = load_mat(file)
    classes = [str(c) for c in mat_list(mat_variable(mat, "class_names", file))]
    records = mat_records(mat_variable(mat, "annotations", file), file, "annotations")
    if records and any(f not in records[0] for f in ("relative_im_path", "class", "test")):
        raise DataError(f"{file.name}: annotations need fields relative_im_path, class and test")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    seen: set[str] = set()
    for i, record in enumerate(records, 1):
        is_test = as_int(record["test"])
        if is_test not in (0, 1):
            problems.bad(f"{file.name}: annotation {i}: test {record['test']!r} is not 0 or 1")
            continue
        sample = _sample(record, i, file.name, "relative_im_path", root, classes, seen, name, problems,
                         check_images)
        if sample is not None:
            splits["test" if is_test else "train"].append(sample)
    return classes, splits, {"train": file.name, "test": file.name}


def read(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
         check_images: bool = True) -> DatasetSource:
    root, problems, name = _find_root(root), Problems(on_bad_record), name or "cars"
    reader = _read_devkit if (root / "devkit" / "cars_meta.mat").is_file() else _read_single
    classes, splits, sources = reader(root, name, problems, check_images)
    return finish(name, classes, splits, ("train", None, "test"), problems, sources)


FORMATS = {"cars": read}
