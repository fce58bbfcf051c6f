"""iNaturalist 2021: train/val/train_mini JSON (COCO-style, with location and date) and image folders."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np

from fgvc.data.synthetic.domains import Genus, make_genus
from fgvc.data.synthetic.geography import Range, sample_date, sample_place
from fgvc.data.synthetic.mechanisms import inat_ranges, species_look
from fgvc.data.synthetic.names import epithets, unique_words
from fgvc.data.synthetic.options import SynthOptions
from fgvc.data.synthetic.render import render, save_jpeg
from fgvc.data.synthetic.seeds import SPLIT_IDS, key_seed
from fgvc.data.synthetic.writers.common import write_json


_LICENSES = [
    {"id": 0, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},
    {"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
    {"id": 2, "name": "CC BY-NC 4.0", "url": "https://creativecommons.org/licenses/by-nc/4.0/"},
]
_HOLDERS = ["A. Observer", "B. Naturalist", "C. Fieldworker", "D. Hiker", "E. Birder", "F. Botanist"]


def inat_categories(opts: SynthOptions) -> list[dict]:
    """iNat-2021 categories with a full pseudo-taxonomy; ids are genus-major, 0-based."""
    genus_names = unique_words(opts.seed, "inat", "genus-name", opts.genera, 2, "us")
    families = unique_words(opts.seed, "inat", "family", (opts.genera + 1) // 2, 2, "idae")
    orders = unique_words(opts.seed, "inat", "order", (opts.genera + 3) // 4, 2, "ptera")
    cats = []
    for g in range(opts.genera):
        for epithet, adjective in epithets(opts.seed, "inat", g, opts.species_per_genus):
            cid = len(cats)
            taxa = {"kingdom": "Animalia", "phylum": "Arthropoda", "class": "Insecta",
                    "order": orders[g // 4], "family": families[g // 2], "genus": genus_names[g]}
            cats.append({
                "id": cid, "name": f"{genus_names[g]} {epithet}",
                "common_name": f"{adjective} {genus_names[g]} Beetle",
                "supercategory": "Insects", **taxa, "specific_epithet": epithet,
                "image_dir_name": f"{cid:05d}_" + "_".join([*taxa.values(), epithet]),
            })
    return cats


def _inat_image(opts: SynthOptions, genera: list[Genus], ranges: list[Range], cat: dict, split: str,
                index: int, image_id: int, out_dir: Path) -> dict:
    """Render, save and describe one iNat image; the metadata comes from the class' range.

    Pixels and metadata draw from two generators, so drawing the place first (regional appearance
    needs it to choose the look) changes neither.
    """
    g, j = divmod(cat["id"], opts.species_per_genus)
    key = key_seed(opts.seed, "inat", cat["id"], SPLIT_IDS[split], index)
    pixel_rng, meta_rng = (np.random.default_rng(s) for s in key.spawn(2))
    name = uuid.UUID(bytes=meta_rng.bytes(16), version=4)
    blob, lat, lon = sample_place(meta_rng, ranges[cat["id"]])
    look = species_look(opts, "inat", genera[g], j, cat["id"], index, blob)
    pixels, _ = render("inat", genera[g], look, pixel_rng, opts.size, opts.detail_strength, opts.nuisance)
    file_name = f"{split}/{cat['image_dir_name']}/{name}.jpg"
    save_jpeg(out_dir / file_name, pixels, opts.jpeg_quality)
    when = sample_date(meta_rng, ranges[cat["id"]], opts.first_year, opts.last_year)
    uncertainty = int(np.exp(meta_rng.uniform(np.log(5), np.log(5000))))
    missing = meta_rng.integers(3) if meta_rng.random() < opts.missing_metadata_fraction else None
    no_place, no_date = missing in (0, 2), missing in (1, 2)
    return {
        "id": image_id, "width": opts.size, "height": opts.size, "file_name": file_name,
        "license": int(meta_rng.integers(len(_LICENSES))),
        "rights_holder": _HOLDERS[int(meta_rng.integers(len(_HOLDERS)))],
        "date": None if no_date else when.strftime("%Y-%m-%d %H:%M:%S+00:00"),
        "latitude": None if no_place else round(lat, 5), "longitude": None if no_place else round(lon, 5),
        "location_uncertainty": None if no_place else uncertainty,
    }


def _coco(images: list[dict], labels: list[int], categories: list[dict], split: str) -> dict:
    return {
        "info": {"year": 2021, "version": "2021",
                 "description": f"fgvc synthetic benchmark, iNat-2021 layout ({split})",
                 "contributor": "fgvc.data.synthetic", "url": "", "date_created": "2021-01-01 00:00:00"},
        "licenses": _LICENSES,
        "images": images,
        "annotations": [{"id": im["id"], "image_id": im["id"], "category_id": c}
                        for im, c in zip(images, labels, strict=True)],
        "categories": categories,
    }


def write_inat(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write the single-domain benchmark in the iNaturalist-2021 layout; return counts.

    ``train_mini.json`` lists the first ``train_mini_per_class`` train images of each class (the
    same files as train, as the real mini is a per-class subset of train).
    """
    opts = opts or SynthOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cats = inat_categories(opts)
    genera = [make_genus(opts.seed, "inat", g, opts.species_per_genus) for g in range(opts.genera)]
    ranges = inat_ranges(opts)
    files: dict[str, tuple[list[dict], list[int]]] = {s: ([], []) for s in ("train", "train_mini", "val")}
    next_id = 0
    for split, per_class in (("train", opts.train_per_class), ("val", opts.val_per_class)):
        for cat in cats:
            for i in range(per_class):
                image = _inat_image(opts, genera, ranges, cat, split, i, next_id, out)
                next_id += 1
                files[split][0].append(image)
                files[split][1].append(cat["id"])
                if split == "train" and i < opts.train_mini_per_class:
                    files["train_mini"][0].append(image)
                    files["train_mini"][1].append(cat["id"])
    for name, (images, labels) in files.items():
        write_json(out / f"{name}.json", _coco(images, labels, cats, name))
    all_images = files["train"][0] + files["val"][0]
    return {
        "format": "inat2021", "classes": len(cats), "genera": opts.genera,
        **{name: len(images) for name, (images, _) in files.items()},
        "missing_location": sum(im["latitude"] is None for im in all_images),
        "missing_date": sum(im["date"] is None for im in all_images),
    }
