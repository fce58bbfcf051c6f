"""Oxford Flowers-102: ``jpg/image_00001.jpg``.., labels and splits in two .mat files.

``imagelabels.mat`` ``labels`` gives the class (1..102) of image n at position n-1; ``setid.mat``
``trnid``, ``valid``, ``tstid`` list 1-based image numbers (1,020 / 1,020 / 6,149). The papers train
on train+val, so the reader adds ``trainval`` and ``default_splits`` is ("trainval", None, "test").

The release has no class names: they are "class_001".."class_102" (the 1-based release label),
unless ``names`` gives a text file with one name per line, or a list, in label order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from fgvc.data.formats._common import (
    Problems,
    absolute,
    as_int,
    finish,
    image_exists,
    load_mat,
    mat_list,
    mat_variable,
    numbered_lines,
)
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}


def _class_names(names: str | os.PathLike | Sequence[str] | None, labels: list[int | None]) -> list[str]:
    if names is None:  # a class number above the image count is a bad label, not 10^9 classes
        n = max((v for v in labels if v is not None and v <= len(labels)), default=0)
        return [f"class_{k:03d}" for k in range(1, n + 1)]
    if isinstance(names, (str, os.PathLike)):
        return [line for _, line in numbered_lines(names)]
    return [str(n) for n in names]


def read(root: str | os.PathLike, names: str | os.PathLike | Sequence[str] | None = None,
         name: str | None = None, on_bad_record: str = "error", check_images: bool = True) -> DatasetSource:
    root, problems, name = Path(root), Problems(on_bad_record), name or "flowers"
    labels_path, setid_path = root / "imagelabels.mat", root / "setid.mat"
    raw_labels = mat_list(mat_variable(load_mat(labels_path), "labels", labels_path))
    labels = [as_int(v) for v in raw_labels]
    setid = load_mat(setid_path)
    classes = _class_names(names, labels)
    if not classes:
        raise DataError(f"{labels_path.name}: 'labels' holds no class number")

    samples_of: dict[int, Sample] = {}  # image number -> sample (train and val share them in trainval)
    for number, (raw, label) in enumerate(zip(raw_labels, labels), 1):
        if label is None or not 1 <= label <= len(classes):
            shown = raw if label is None else label
            problems.bad(f"{labels_path.name}: image {number}: label {shown!r} is not in 1..{len(classes)}")
            continue
        image_id = f"image_{number:05d}"
        samples_of[number] = Sample(path=absolute(root / "jpg", f"{image_id}.jpg"), label=label - 1,
                                    dataset=name, id=image_id)

    splits: dict[str, list[Sample]] = {}
    for split, key in SPLIT_KEYS.items():
        seen, samples = set(), splits.setdefault(split, [])
        for raw in mat_list(mat_variable(setid, key, setid_path)):
            number = as_int(raw)
            where = f"{setid_path.name}: {key}: image {raw if number is None else number!r}"
            if number is not None and number in seen:
                problems.bad(f"{where}: listed twice")
            elif number is None or not 1 <= number <= len(labels):
                problems.bad(f"{where}: has no label in {labels_path.name} (1..{len(labels)})")
            elif number in samples_of:  # else its label was already reported
                sample = samples_of[number]
                if image_exists(sample.path, where, problems, check_images):
                    samples.append(sample)
            seen.add(number)
    splits["trainval"] = splits["train"] + splits["val"]
    sources = {split: setid_path.name for split in splits}
    return finish(name, classes, splits, ("trainval", None, "test"), problems, sources)


FORMATS = {"flowers": read}
