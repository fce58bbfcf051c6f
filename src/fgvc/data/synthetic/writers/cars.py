"""Stanford Cars: the car domain in the devkit layout (MATLAB struct arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import save_jpeg
from fgvc.data.synthetic.writers.common import (DomainImage, domain_class_names, domain_images, savemat,
                                                uint_dtype)


def _cars_annotations(images: list[DomainImage], with_class: bool) -> np.ndarray:
    """A 1xN struct array exactly as the devkit's: scalar fields as 1x1 arrays, fname a string."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_class else []) + ["fname"]
    arr = np.zeros((1, len(images)), dtype=[(f, "O") for f in fields])
    for k, im in enumerate(images):
        x, y, w, h = im.box
        values = [int(x) + 1, int(y) + 1, int(x + w), int(y + h)] + ([im.cls + 1] if with_class else [])
        for f, v in zip(fields, values, strict=False):  # fname is set below
            arr[0, k][f] = np.array([[v]], dtype=uint_dtype(v))
        arr[0, k]["fname"] = f"{k + 1:05d}.jpg"
    return arr


def write_cars(out_dir: Path, opts: SynthOptions) -> dict:
    """Stanford Cars: devkit/*.mat (class_names, annotations struct arrays), cars_train/, cars_test/."""
    names = [f"{word} {latin.capitalize()} {('Sedan', 'Coupe', 'Hatchback')[j % 3]} {2008 + 2 * j}"
             for j, (word, adj, latin) in enumerate(domain_class_names(opts, "cars", "o"))]
    images = domain_images(opts, "cars")
    train = [im for im in images if im.split != "test"]
    test = [im for im in images if im.split == "test"]
    for folder, subset in (("cars_train", train), ("cars_test", test)):
        for k, im in enumerate(subset):
            save_jpeg(out_dir / folder / f"{k + 1:05d}.jpg", im.pixels, opts.jpeg_quality)
    devkit = out_dir / "devkit"
    devkit.mkdir(parents=True, exist_ok=True)
    class_names = np.empty((1, len(names)), dtype=object)
    class_names[0, :] = names
    savemat(devkit / "cars_meta.mat", {"class_names": class_names})
    savemat(devkit / "cars_train_annos.mat", {"annotations": _cars_annotations(train, True)})
    savemat(devkit / "cars_test_annos.mat", {"annotations": _cars_annotations(test, False)})
    savemat(out_dir / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(test, True)})
    savemat(devkit / "cars_test_annos_withlabels.mat", {"annotations": _cars_annotations(test, True)})
    return {"format": "cars", "root": "cars", "classes": len(names), "train": len(train), "test": len(test)}

