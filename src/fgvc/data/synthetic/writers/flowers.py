"""Flowers-102: the flower domain with its two ``.mat`` files (labels and split ids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import save_jpeg
from fgvc.data.synthetic.writers.common import domain_images, savemat, uint_dtype


def write_flowers(out_dir: Path, opts: SynthOptions) -> dict:
    """Flowers-102: jpg/image_NNNNN.jpg, imagelabels.mat (labels) and setid.mat (trnid, valid, tstid)."""
    images = domain_images(opts, "flowers")
    ids: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for k, im in enumerate(images, start=1):
        save_jpeg(out_dir / "jpg" / f"image_{k:05d}.jpg", im.pixels, opts.jpeg_quality)
        ids[im.split].append(k)
    labels = np.array([[im.cls + 1 for im in images]])
    labels = labels.astype(uint_dtype(int(labels.max())))
    savemat(out_dir / "imagelabels.mat", {"labels": labels})
    setid = {"trnid": ids["train"], "valid": ids["val"], "tstid": ids["test"]}
    dtype = uint_dtype(len(images))
    savemat(out_dir / "setid.mat", {k: np.array([v], dtype=dtype) for k, v in setid.items()})
    classes = opts.domain_genera * opts.domain_species_per_genus
    return {"format": "flowers", "root": "flowers", "classes": classes, **{s: len(v) for s, v in ids.items()}}

