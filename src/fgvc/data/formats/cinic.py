"""CINIC-10: ``train/``, ``valid/`` and ``test/``, each with the 10 class folders of 32×32 PNGs.

The classes are CIFAR-10's, in CIFAR-10's label order (which is also their sorted order), so a model
of one dataset reads the other's labels. Every split must hold every class folder; images are the
PNG (and other image) files in it. Ids are the paths relative to root. ``default_splits`` is
("train", "valid", "test"): the release's own validation split selects the model.
"""

from __future__ import annotations

import os

from fgvc.data.formats._common import Problems, finish, is_image, require
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLITS = ("train", "valid", "test")


def read(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
         check_images: bool = True) -> DatasetSource:
    """``check_images`` is accepted for a uniform API: listed files exist by construction."""
    root = require(root, "download and extract CINIC-10.tar.gz").resolve()
    problems, name = Problems(on_bad_record), name or "cinic10"
    splits: dict[str, list[Sample]] = {}
    for split in SPLITS:
        folder = require(root / split, "root must be the CINIC-10 folder that holds train/, valid/ and test/")
        extra = sorted(e.name for e in os.scandir(folder) if e.is_dir() and e.name not in CLASSES
                       and not e.name.startswith("."))
        if extra:
            raise DataError(f"{folder}: folder {extra[0]!r} is not a CINIC-10 class ({', '.join(CLASSES)})")
        samples = splits[split] = []
        for label, class_name in enumerate(CLASSES):
            images = sorted(p for p in require(folder / class_name).iterdir() if is_image(p.name))
            if not images:
                problems.bad(f"{folder / class_name}: no images")
            samples += [Sample(path=str(p), label=label, dataset=name, id=p.relative_to(root).as_posix())
                        for p in images]
    return finish(name, list(CLASSES), splits, ("train", "valid", "test"), problems, {s: s for s in SPLITS})


FORMATS = {"cinic10": read}
