"""``fgvc data verify``: every check of the data a run would make, without training.

Reads the annotation files with ``on_bad_record="skip"`` so that *all* bad records are listed (not
just the first), checks that every listed image file exists and decodes it (under
``data.max_image_pixels``), counts missing/invalid metadata, and for shards checks that every tar an
index names holds what the index says. With ``check_images=False`` (``--no-images``) the annotations alone are
checked: no image file is looked at, so a dataset whose images are not there yet still reports its
figures.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from fgvc.data.images import load_image
from fgvc.data.index import SampleIndex, as_index
from fgvc.data.metadata import INVALID, MISSING, check_metadata
from fgvc.data.records import Sample
from fgvc.data.section import DataConfig
from fgvc.data.shards import ShardDataset, ShardIndex, check_shards
from fgvc.data.splits import prepare_splits
from fgvc.errors import DataError


def _unreadable(sample: Sample, max_pixels: int) -> str | None:
    try:
        load_image(sample, max_pixels)
    except DataError as exc:
        return str(exc)
    return None


def verify(cfg: DataConfig, check_images: bool = True, workers: int = 4, progress: bool = True) -> dict:
    """Returns counts per split and class, metadata counts and the list of problems found."""
    checks = {"bad_records": "skip", "check_images": "all" if check_images else "none"}
    splits = prepare_splits(cfg.model_copy(update=checks))
    problems = list(splits.source.problems)
    summary: dict = {"dataset": splits.source.name, "classes": len(splits.classes), "splits": {}}
    use = tuple(cfg.metadata) or ("geo", "temporal")
    for role in ("train", "val", "test"):
        samples = splits.samples(role)
        shard_problems = check_shards(samples) if isinstance(samples, ShardIndex) else []
        problems += shard_problems  # every tar a shard index names holds what it says
        try:
            index = samples if isinstance(samples, SampleIndex) else as_index(list(samples))
        except DataError as exc:  # a tar that cannot be read at all: its records are not counted
            problems += [] if str(exc) in shard_problems else [str(exc)]
            index = as_index([])
        counts = np.bincount(index.labels) if len(index) else np.zeros(0, np.int64)
        per_class = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}  # classes with samples only
        verdicts = index.scaled().verdicts(use)
        status = {"missing": int((verdicts == MISSING).sum()), "invalid": int((verdicts == INVALID).sum())}
        for i in np.flatnonzero(verdicts == INVALID):
            s = index[int(i)]
            problems.append(f"{s.dataset}: record {s.id or s.path}: {check_metadata(s, use)}")
        unreadable = []
        if check_images and len(index) and isinstance(samples, ShardIndex):  # the shards' own bytes
            items = ShardDataset(samples, transform=lambda image: image, skip_bad_images=True,
                                 max_pixels=cfg.max_image_pixels)
            unreadable = [item["skipped"] for item in tqdm(items, total=len(samples), desc=f"decode {role}",
                                                           leave=False, disable=None if progress else True)
                          if "skipped" in item]
        elif check_images:
            with ThreadPoolExecutor(workers) as pool:
                results = pool.map(functools.partial(_unreadable, max_pixels=cfg.max_image_pixels), samples)
                unreadable = [r for r in tqdm(results, total=len(samples), desc=f"decode {role}",
                                              leave=False, disable=None if progress else True) if r]
        problems += unreadable
        summary["splits"][role] = {
            "source": splits.names[role], "images": len(samples), "classes_present": len(per_class),
            "min_per_class": min(per_class.values(), default=0), "max_per_class": max(per_class.values(), default=0),
            "metadata_missing": status["missing"], "metadata_invalid": status["invalid"],
            "unreadable_images": len(unreadable), "per_class": {splits.classes[k]: v for k, v in sorted(per_class.items())}}
    summary["metadata_checked"] = list(use)
    summary["problems"] = problems
    return summary


def format_summary(summary: dict, show_classes: int = 20) -> str:
    lines = [f"dataset {summary['dataset']}: {summary['classes']} classes "
             f"(metadata checked: {', '.join(summary['metadata_checked'])})", "",
             f"{'split':6} {'images':>8} {'classes':>8} {'min/cls':>8} {'max/cls':>8} {'meta-missing':>13} "
             f"{'meta-invalid':>13} {'unreadable':>11}  source"]
    for role, s in summary["splits"].items():
        lines.append(f"{role:6} {s['images']:8d} {s['classes_present']:8d} {s['min_per_class']:8d} "
                     f"{s['max_per_class']:8d} {s['metadata_missing']:13d} {s['metadata_invalid']:13d} "
                     f"{s['unreadable_images']:11d}  {s['source']}")
    train = summary["splits"]["train"]["per_class"]
    lines += ["", f"train images per class (first {min(show_classes, len(train))} of {len(train)}):"]
    lines += [f"  {name}: {n}" for name, n in list(train.items())[:show_classes]]
    lines += ["", f"{len(summary['problems'])} problem(s)" + (":" if summary["problems"] else "")]
    lines += [f"  {p}" for p in summary["problems"]]
    return "\n".join(lines)
