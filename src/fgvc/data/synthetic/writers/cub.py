"""CUB-200-2011: the bird domain in its release layout."""

from __future__ import annotations

from pathlib import Path

from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import save_jpeg
from fgvc.data.synthetic.writers.common import domain_class_names, domain_images, split_counts, write_lines


def write_cub(out_dir: Path, opts: SynthOptions) -> dict:
    """CUB-200-2011: ``CUB_200_2011/`` with images/<NNN.Name>/ and the five id-keyed text files.

    CUB has no validation split: val-share images are training images (1 in train_test_split.txt).
    """
    root = out_dir / "CUB_200_2011"
    names = [f"{i + 1:03d}.{adj.replace(' ', '_')}_{word}"
             for i, (word, adj, _) in enumerate(domain_class_names(opts, "cub", "wren"))]
    images = domain_images(opts, "cub")
    rows = {k: [] for k in ("images", "labels", "split", "boxes")}
    for image_id, im in enumerate(images, start=1):
        rel = f"{names[im.cls]}/{names[im.cls][4:]}_{im.index + 1:04d}_{image_id}.jpg"
        save_jpeg(root / "images" / rel, im.pixels, opts.jpeg_quality)
        rows["images"].append(f"{image_id} {rel}")
        rows["labels"].append(f"{image_id} {im.cls + 1}")
        rows["split"].append(f"{image_id} {0 if im.split == 'test' else 1}")
        rows["boxes"].append(f"{image_id} " + " ".join(f"{v:.1f}" for v in im.box))
    write_lines(root / "images.txt", rows["images"])
    write_lines(root / "image_class_labels.txt", rows["labels"])
    write_lines(root / "train_test_split.txt", rows["split"])
    write_lines(root / "bounding_boxes.txt", rows["boxes"])
    write_lines(root / "classes.txt", [f"{i + 1} {n}" for i, n in enumerate(names)])
    counts = split_counts(images)
    return {"format": "cub", "root": "cub/CUB_200_2011", "classes": len(names),
            "train": counts.get("train", 0) + counts.get("val", 0), "test": counts.get("test", 0)}

