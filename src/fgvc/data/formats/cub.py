"""CUB-200-2011: id-keyed text tables, images under ``images/``, 5,994 train / 5,794 test.

``images.txt`` "<image_id> <path under images/>", ``image_class_labels.txt`` "<image_id> <class_id>"
(1..200), ``train_test_split.txt`` "<image_id> <1=train|0=test>", ``classes.txt`` "<class_id> <name>",
optional ``bounding_boxes.txt`` "<image_id> <x> <y> <w> <h>" (kept in ``Sample.box``). Labels follow
the sorted class ids. The papers train on train and report on test: no official val.
"""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.formats._common import Problems, absolute, finish, image_exists, integer_text, read_pairs
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError


def _find_root(root: str | os.PathLike) -> Path:
    """Accept the ``CUB_200_2011`` folder itself or its parent."""
    for candidate in (Path(root), Path(root) / "CUB_200_2011"):
        if (candidate / "images.txt").is_file():
            return candidate
    raise DataError(f"{Path(root) / 'images.txt'}: not found (nor in {Path(root) / 'CUB_200_2011'})")


def _boxes(path: Path, problems: Problems) -> dict[str, tuple[float, float, float, float]]:
    boxes = {}
    for image_id, rest in read_pairs(path, problems, "<image_id> <x> <y> <w> <h>").items():
        try:
            x, y, w, h = (float(v) for v in rest.split())
            boxes[image_id] = (x, y, w, h)
        except ValueError:
            problems.bad(f"{path.name}: image {image_id}: expected 4 numbers, got {rest!r}")
    return boxes


def read(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
         check_images: bool = True) -> DatasetSource:
    root, problems, name = _find_root(root), Problems(on_bad_record), name or "cub"
    classes_txt = read_pairs(root / "classes.txt", problems, "<class_id> <name>")
    class_ids = sorted(classes_txt, key=lambda c: (not integer_text(c), int(c) if integer_text(c) else 0, c))
    label_of = {c: i for i, c in enumerate(class_ids)}
    paths = read_pairs(root / "images.txt", problems, "<image_id> <path>")
    labels = read_pairs(root / "image_class_labels.txt", problems, "<image_id> <class_id>")
    is_train = read_pairs(root / "train_test_split.txt", problems, "<image_id> <is_training_image>")
    boxes_path = root / "bounding_boxes.txt"
    boxes = _boxes(boxes_path, problems) if boxes_path.is_file() else {}

    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for image_id, rel in paths.items():
        where = f"image {image_id}"
        if image_id not in labels:
            problems.bad(f"image_class_labels.txt: {where}: no label")
        elif labels[image_id] not in label_of:
            problems.bad(f"image_class_labels.txt: {where}: class {labels[image_id]} is not in classes.txt")
        elif is_train.get(image_id) not in ("0", "1"):
            problems.bad(f"train_test_split.txt: {where}: expected 0 or 1, got {is_train.get(image_id)!r}")
        else:
            path = absolute(root / "images", rel)
            if image_exists(path, f"images.txt: {where}", problems, check_images):
                split = "train" if is_train[image_id] == "1" else "test"
                splits[split].append(Sample(path=path, label=label_of[labels[image_id]], dataset=name,
                                            id=image_id, box=boxes.get(image_id)))
    classes = [classes_txt[c] for c in class_ids]
    return finish(name, classes, splits, ("train", None, "test"), problems,
                  sources={"train": "train_test_split.txt", "test": "train_test_split.txt"})


FORMATS = {"cub": read}
