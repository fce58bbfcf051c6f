"""A user's image folders: ``root/<class>/<image>`` (one split, "train") or ``root/<split>/<class>/<image>``.

The second layout is used when root's sub-folders are named train / val / test; mixing split folders
with other folders is an error (a class may not be called "train"). Images are files ending in .jpg,
.jpeg, .png, .bmp or .webp (any case), found recursively under each class folder; other files and
hidden entries are ignored. Classes are the sorted folder names and every split must have the same
class folders. Ids are the paths relative to root. ``default_splits``: see ``user_default_splits``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fgvc.data.formats._common import Problems, finish, is_image, require, user_default_splits
from fgvc.data.records import DatasetSource, Sample
from fgvc.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if is_image(f)]
    return found


def _layout(root: Path) -> dict[str, Path]:
    top = _subdirs(root)
    split_dirs = [d for d in top if d in SPLIT_NAMES]
    if not split_dirs:
        return {"train": root}
    others = [d for d in top if d not in SPLIT_NAMES]
    if others:
        raise DataError(f"{root}: has split folders ({', '.join(split_dirs)}) and other folders "
                        f"({others[0]}); use root/<class>/<image> or root/<split>/<class>/<image>")
    return {s: root / s for s in SPLIT_NAMES if s in split_dirs}


def read(root: str | os.PathLike, name: str | None = None, on_bad_record: str = "error",
         check_images: bool = True) -> DatasetSource:
    """``check_images`` is accepted for a uniform API: listed files exist by construction."""
    root, problems, name = require(root).resolve(), Problems(on_bad_record), name or "folder"
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    layout = _layout(root)
    first = next(iter(layout))
    classes = _subdirs(layout[first])
    if not classes:
        raise DataError(f"{layout[first]}: no class folders")
    for split, folder in layout.items():
        have = _subdirs(folder)
        missing, extra = sorted(set(classes) - set(have)), sorted(set(have) - set(classes))
        if missing or extra:
            what = f"lacks class folder {missing[0]!r}" if missing else f"has class folder {extra[0]!r}"
            raise DataError(f"{folder}: {what} that '{first}' {'has' if missing else 'lacks'}; "
                            "every split needs the same class folders")

    splits: dict[str, list[Sample]] = {}
    for split, folder in layout.items():
        samples = splits[split] = []
        for label, class_name in enumerate(classes):
            images = _images(folder / class_name)
            if not images:
                problems.bad(f"{folder / class_name}: no images (.jpg, .jpeg, .png, .bmp, .webp)")
            samples += [Sample(path=str(p), label=label, dataset=name, id=p.relative_to(root).as_posix())
                        for p in images]
    return finish(name, classes, splits, user_default_splits(splits), problems,
                  {s: str(f) for s, f in layout.items()})


FORMATS = {"folder": read}
