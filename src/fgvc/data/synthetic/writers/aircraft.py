"""FGVC-Aircraft 2013b: the aircraft domain with its copyright banner and three label levels."""

from __future__ import annotations

from pathlib import Path

from fgvc.data.synthetic.names import unique_words
from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import save_jpeg
from fgvc.data.synthetic.writers.common import domain_images, write_lines


def write_aircraft(out_dir: Path, opts: SynthOptions) -> dict:
    """FGVC-Aircraft 2013b: images/<7-digit id>.jpg with a 20-pixel banner, and the three label levels."""
    data = out_dir / "fgvc-aircraft-2013b" / "data"
    makers = unique_words(opts.seed, "aircraft", "maker", (opts.domain_genera + 1) // 2, 2)
    makers = [f"{m} Aero" if k % 2 else m for k, m in enumerate(makers)]  # some names contain spaces
    family = [f"{makers[g // 2]} {100 * (g + 1) + 20 * (g % 3)}" for g in range(opts.domain_genera)]
    variant, fam_of, maker_of = [], [], []
    for g in range(opts.domain_genera):
        for j in range(opts.domain_species_per_genus):
            variant.append(f"{family[g]}-{10 * (j + 1)}")
            fam_of.append(family[g])
            maker_of.append(makers[g // 2])
    images = domain_images(opts, "aircraft", banner=True)
    per_split: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    boxes = []
    for k, im in enumerate(images):
        image_id = f"{1_000_000 + 37 * k:07d}"
        save_jpeg(data / "images" / f"{image_id}.jpg", im.pixels, opts.jpeg_quality)
        per_split[im.split].append((image_id, im.cls))
        x, y, w, h = im.box
        boxes.append(f"{image_id} {int(x) + 1} {int(y) + 1} {int(x + w)} {int(y + h)}")
    per_split["trainval"] = sorted(per_split["train"] + per_split["val"])
    levels = (("variant", "variants.txt", variant, variant), ("family", "families.txt", fam_of, family),
              ("manufacturer", "manufacturers.txt", maker_of, makers))
    for level, listing_file, names, listing in levels:
        write_lines(data / listing_file, list(dict.fromkeys(listing)))
        for split, rows in per_split.items():
            write_lines(data / f"images_{level}_{split}.txt", [f"{i} {names[c]}" for i, c in rows])
    for split, rows in per_split.items():
        write_lines(data / f"images_{split}.txt", [i for i, _ in rows])
    write_lines(data / "images_box.txt", boxes)
    return {"format": "aircraft", "root": "aircraft/fgvc-aircraft-2013b", "classes": len(variant),
            **{s: len(r) for s, r in per_split.items()}}

