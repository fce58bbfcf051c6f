"""``fgvc data verify``: every check of the data a run would make, without training.

Reads the annotation files with ``on_bad_record="skip"`` so that *all* bad records are listed (not
just the first), decodes every image of the chosen splits, and counts missing/invalid metadata.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from fgvc.config import DataConfig
from fgvc.data.dataset import load_image
from fgvc.data.metadata import check_metadata
from fgvc.data.records import Sample
from fgvc.data.shards import ShardDataset, ShardIndex
from fgvc.data.splits import prepare_splits
from fgvc.errors import DataError


def _unreadable(sample: Sample) -> str | None:
    try:
        load_image(sample)
    except DataError as exc:
        return str(exc)
    return None


def verify(cfg: DataConfig, check_images: bool = True, workers: int = 4, progress: bool = True) -> dict:
    """Returns counts per split and class, metadata counts and the list of problems found."""
    splits = prepare_splits(cfg.model_copy(update={"bad_records": "skip"}))
    problems = list(splits.source.problems)
    summary: dict = {"dataset": splits.source.name, "classes": len(splits.classes), "splits": {}}
    use = tuple(cfg.metadata) or ("geo", "temporal")
    for role in ("train", "val", "test"):
        samples = splits.samples(role)
        per_class = Counter(s.label for s in samples)
        status = Counter()
        for s in samples:
            verdict = check_metadata(s, use)
            status[(verdict or "ok").split(":")[0]] += 1
            if verdict and verdict.startswith("invalid"):
                problems.append(f"{s.dataset}: record {s.id or s.path}: {verdict}")
        unreadable = []
        if check_images and isinstance(samples, ShardIndex):  # decode the shards' bytes, not the originals
            items = ShardDataset(samples, transform=lambda image: image, skip_bad_images=True)
            unreadable = [item["skipped"] for item in tqdm(items, total=len(samples), desc=f"decode {role}",
                                                           leave=False, disable=None if progress else True)
                          if "skipped" in item]
        elif check_images:
            with ThreadPoolExecutor(workers) as pool:
                results = pool.map(_unreadable, samples)
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
