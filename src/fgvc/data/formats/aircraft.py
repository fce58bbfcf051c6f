"""FGVC-Aircraft 2013b: ``images/<7-digit id>.jpg`` with one list file per level and split.

``root`` is ``fgvc-aircraft-2013b``, its ``data/`` folder (where the files are) or its parent.

``images_<level>_<split>.txt`` holds "<image_id> <name, may contain spaces>" for level variant (100
classes), family (70) or manufacturer (30), split train / val / trainval / test. Class names and
their order (= labels) come from ``variants.txt`` / ``families.txt`` / ``manufacturers.txt``.

The papers train on trainval (6,667) and test on test (3,333), so ``default_splits`` is
("trainval", None, "test") although an official val exists (choose it with ``data.val_split=val``
and ``data.train_split=train``). The bottom 20 pixels are a copyright banner: every Sample carries
``trim_bottom=20`` unless ``crop_banner=False``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.formats._common import Problems, absolute, finish, image_exists, numbered_lines, read_pairs
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
SPLITS = ("train", "val", "trainval", "test")
BANNER_HEIGHT = 20


def _find_root(root: str | os.PathLike) -> Path:
    """Accept ``fgvc-aircraft-2013b``, its ``data/`` folder or its parent."""
    for candidate in (Path(root), Path(root) / "data", Path(root) / "fgvc-aircraft-2013b" / "data"):
        if (candidate / "variants.txt").is_file():
            return candidate
    raise DataError(f"{Path(root) / 'variants.txt'}: not found (nor in data/ or fgvc-aircraft-2013b/data/)")


def read(root: str | os.PathLike, level: str = "variant", crop_banner: bool = True,
         name: str | None = None, on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    if level not in CLASS_FILES:
        raise DataError(f"aircraft: level must be one of {', '.join(CLASS_FILES)}, not {level!r}")
    root, problems, name = _find_root(root), Problems(on_bad_record), name or "aircraft"
    class_file = root / CLASS_FILES[level]
    classes = [line for _, line in numbered_lines(class_file)]
    if len(set(classes)) != len(classes):
        duplicate = next(c for c in classes if classes.count(c) > 1)
        raise DataError(f"{class_file.name}: class {duplicate!r} is listed twice")
    label_of = {c: i for i, c in enumerate(classes)}
    trim = BANNER_HEIGHT if crop_banner else 0

    splits, sources = {}, {}
    for split in SPLITS:
        list_file = root / f"images_{level}_{split}.txt"
        if not list_file.is_file():
            continue
        sources[split] = list_file.name
        samples = splits[split] = []
        for image_id, class_name in read_pairs(list_file, problems, "<image_id> <class name>").items():
            where = f"{list_file.name}: image {image_id}"
            if class_name not in label_of:
                problems.bad(f"{where}: class {class_name!r} is not in {class_file.name}")
                continue
            path = absolute(root / "images", f"{image_id}.jpg")
            if image_exists(path, where, problems, check_images):
                samples.append(Sample(path=path, label=label_of[class_name], dataset=name, id=image_id,
                                      trim_bottom=trim))
    for split in ("trainval", "test"):
        if split not in splits:
            raise DataError(f"{root / f'images_{level}_{split}.txt'}: not found")
    return finish(name, classes, splits, ("trainval", None, "test"), problems, sources)


LEVELS = tuple(CLASS_FILES)  # data.level values it takes
FORMATS = {"aircraft": read}
