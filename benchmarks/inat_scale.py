"""iNaturalist 2021 at full size: start time and memory of fgvc against a plain loader, same run.

Writes ``train.json`` and ``val.json`` in the release format (COCO-style ``images`` with
``file_name``, ``date``, ``latitude``, ``longitude``, ``location_uncertainty``...; ``annotations``;
``categories`` with the taxonomy) for ``--images`` training images of ``--classes`` species — no
image files, or empty ones with ``--touch`` — then measures, each in a fresh process, one after the
other:

- **baseline**: the way the authors' release reads it — ``json.loads`` of each file, a list of
  ``(path, label, {date, latitude, longitude})`` tuples, the geo-temporal encoding computed per
  sample in ``__getitem__`` (``strptime`` of the date);
- **fgvc first start**: ``prepare_splits`` (reading, the stratified hold-out) and the train and
  val datasets as training builds them, with an empty index cache;
- **fgvc cached start**: the same again, the index now read from the cache.

For each: the time to build the index (wall and CPU), the wall time from process launch to the
first training batch ("step 0": imports, index, DataLoader with 2 workers, first batch), peak
RSS and the memory the index keeps (RSS after it is built minus RSS after the imports). Image
decoding is replaced by a fixed tensor and augmentation by nothing, in both, so only the sample
index is measured. Then **worker memory**: ``--samples`` shuffled samples drawn through the
DataLoader (``num_workers=2``, batch 256); each worker's growth from its first batch to the last
in resident memory (RSS, which also counts pages of a memory-mapped file the worker reads, shared
with every other process and held once in the page cache) and in private dirty memory (pages the
worker copied: the copy-on-read growth of Python objects, PyTorch issue 13246).

**Evaluation memory**: ``--eval-images`` × ``--eval-classes`` scores from a linear layer, batch
500: fgvc's ``evaluate`` (counts per batch) against keeping all the scores and computing the same
metrics at the end; peak RSS above the process after the model and data are built.

Ratios are fgvc / baseline. The 1-minute load average is printed before and after: the machine may
be shared.

    python benchmarks/inat_scale.py --images 100000 --classes 1000            # a quick check
    python benchmarks/inat_scale.py --images 2686843 --classes 10000          # iNat 2021 (~1 GB JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 256
DAYS = [str(np.datetime64("2010-01-01") + d) for d in range(365 * 12)]  # observation dates, 2010-2021
KINGDOMS = ("Animalia", "Plantae", "Fungi", "Protozoa", "Chromista", "Bacteria")


# --- the annotation files ------------------------------------------------------------------------

def categories(classes: int, rng: np.random.Generator) -> list[dict]:
    out = []
    for c in range(classes):
        ranks = [KINGDOMS[c % len(KINGDOMS)], f"Phylum{c % 31}", f"Class{c % 97}", f"Order{c % 331}",
                 f"Family{c % 1103}", f"Genus{c // 3}", f"epithet{c}"]
        out.append({"id": c, "name": f"{ranks[5]} {ranks[6]}", "common_name": f"Common species {c}",
                    "supercategory": ranks[0], "kingdom": ranks[0], "phylum": ranks[1], "class": ranks[2],
                    "order": ranks[3], "family": ranks[4], "genus": ranks[5], "specific_epithet": ranks[6],
                    "image_dir_name": f"{c:05d}_" + "_".join(ranks)})
    return out


def write_split(path: Path, split: str, labels: np.ndarray, cats: list[dict], first_id: int,
                rng: np.random.Generator, touch_root: Path | None) -> None:
    """One release-format file. ~1 % of the records lack a location, ~1 % a date."""
    n = len(labels)
    with open(path, "w") as f:
        f.write('{"info": {"year": 2021, "version": "2021", "description": "iNat2021 layout, synthetic"}, '
                '"licenses": [{"id": 1, "name": "CC BY-NC 4.0"}], "images": [')
        dirs = [c["image_dir_name"] for c in cats]
        for begin in range(0, n, 100_000):
            end = min(begin + 100_000, n)
            m = end - begin
            columns = zip(range(begin + first_id, end + first_id), labels[begin:end].tolist(),
                          rng.uniform(-60, 75, m).round(6).tolist(), rng.uniform(-180, 180, m).round(6).tolist(),
                          (rng.random(m) < 0.01).tolist(), (rng.random(m) < 0.01).tolist(),
                          rng.integers(0, len(DAYS), m).tolist(), rng.integers(0, 24, m).tolist(),
                          rng.integers(200, 501, m).tolist(), rng.integers(200, 501, m).tolist())
            uuids = rng.bytes(16 * m).hex()
            records = []
            for k, (i, label, lat, lon, no_place, no_date, day, hour, width, height) in enumerate(columns):
                name = f"{split}/{dirs[label]}/{uuids[32 * k:32 * k + 32]}.jpg"
                date = "null" if no_date else f'"{DAYS[day]} {hour:02d}:00:00+00:00"'
                place = '"latitude": null, "longitude": null' if no_place else f'"latitude": {lat}, "longitude": {lon}'
                records.append(f'{{"id": {i}, "width": {width}, "height": {height}, "file_name": "{name}", '
                               f'"license": 1, "rights_holder": "observer {i % 9973}", "date": {date}, {place}, '
                               f'"location_uncertainty": {day % 500}}}')
                if touch_root is not None:
                    file = touch_root / name
                    file.parent.mkdir(parents=True, exist_ok=True)
                    file.touch()
            f.write(("," if begin else "") + ",".join(records))
        f.write('], "annotations": [')
        for begin in range(0, n, 100_000):
            end = min(begin + 100_000, n)
            f.write(("," if begin else "") + ",".join(
                f'{{"id": {i + first_id}, "image_id": {i + first_id}, "category_id": {labels[i]}}}'
                for i in range(begin, end)))
        f.write('], "categories": ')
        f.write(json.dumps(cats))
        f.write("}")


def write_dataset(root: Path, images: int, classes: int, val: int, touch: bool) -> None:
    rng = np.random.default_rng(0)
    cats = categories(classes, rng)
    weights = rng.uniform(0.5, 1.0, classes)  # uneven classes, every class present
    train = np.concatenate([np.arange(classes), rng.choice(classes, images - classes, p=weights / weights.sum())])
    rng.shuffle(train)
    val_labels = np.arange(val) % classes
    write_split(root / "train.json", "train", train, cats, 0, rng, root if touch else None)
    write_split(root / "val.json", "val", val_labels, cats, images, rng, root if touch else None)


# --- measuring a child process --------------------------------------------------------------------

def rss_mb(pid: int | str = "self") -> float:
    return _smaps(pid)["Rss"]


def _smaps(pid: int | str) -> dict[str, float]:
    """The process's memory totals in MB (``/proc/<pid>/smaps_rollup``)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        out[key] = int(value.split()[0]) / 1024
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_growth(loader, samples: int, rebatch) -> dict:
    """Iterate ``samples`` samples; each worker's RSS and private-dirty growth from its first batch on."""
    iterator = iter(loader)
    next(iterator)
    pids = [w.pid for w in iterator._workers]
    start = {pid: _smaps(pid) for pid in pids}
    seen, epoch = BATCH, 0
    while seen < samples:
        try:
            next(iterator)
            seen += BATCH
        except StopIteration:  # a small dataset: more epochs (persistent workers keep their memory)
            epoch += 1
            rebatch(epoch)
            iterator = iter(loader)
    end = {pid: _smaps(pid) for pid in pids}
    growth = {key: [end[p][key] - start[p][key] for p in pids] for key in ("Rss", "Private_Dirty")}
    return {"samples": seen, "rss_growth_mb": growth["Rss"], "private_growth_mb": growth["Private_Dirty"]}


FIXED = None  # the decoded "image" every sample gets


def child_baseline(root: Path, samples: int, launched: float) -> dict:
    import datetime
    import math

    import torch
    import torchvision  # noqa: F401 - the release imports it for its transforms
    from torch.utils.data import DataLoader, Dataset

    def scaled_date(date_time) -> float:
        days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        total = 365
        if date_time.year % 4 == 0 and (date_time.year % 100 != 0 or date_time.year % 400 == 0):
            days[1] += 1
            total += 1
        return (sum(days[: date_time.month - 1]) + date_time.day) / total * 2 - 1

    class ReleaseDataset(Dataset):
        """As the released training code reads iNat 2021: the whole file, then a list of tuples."""

        def __init__(self, json_path: Path):
            with open(json_path) as f:
                annotations = json.loads(f.read())
            self.samples = []
            for img, ann in zip(annotations["images"], annotations["annotations"]):
                extra = {"date": img["date"], "latitude": img["latitude"], "longitude": img["longitude"]}
                self.samples.append((os.path.join(root, img["file_name"]), int(ann["category_id"]), extra))

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, idx):
            path, label, extra = self.samples[idx]
            date, lat, lng = extra["date"], extra["latitude"], extra["longitude"]
            if lat is not None and lng is not None and date is not None:
                x = np.array([lat / 90, lng / 180,
                              scaled_date(datetime.datetime.strptime(date[:10], "%Y-%m-%d"))])
                loc = np.concatenate((np.sin(math.pi * x), np.cos(math.pi * x)))
            else:
                loc = np.zeros(6)
            return FIXED, label, loc

    global FIXED
    FIXED = torch.zeros(3, 32, 32, dtype=torch.uint8)
    rss_imports, cpu, wall = rss_mb(), time.process_time(), time.perf_counter()
    train, val = ReleaseDataset(root / "train.json"), ReleaseDataset(root / "val.json")
    index = {"index_wall_s": time.perf_counter() - wall, "index_cpu_s": time.process_time() - cpu,
             "kept_mb": rss_mb() - rss_imports, "train": len(train), "val": len(val)}
    loader = DataLoader(train, batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True,
                        generator=torch.Generator().manual_seed(0))
    next(iter(loader))
    index |= {"step0_s": time.time() - launched, "peak_mb": peak_mb(), "imports_mb": rss_imports}
    return index | worker_growth(loader, samples, lambda epoch: None)


def child_fgvc(root: Path, samples: int, launched: float, cache: Path, check_images: str) -> dict:
    import torch

    import fgvc.data.dataset as dataset_module
    from fgvc.config import DataConfig
    from fgvc.data.loader import make_dataset, make_loader, set_epoch
    from fgvc.data.splits import prepare_splits

    options = {"cache_dir": str(cache), "check_images": check_images}
    cfg = DataConfig(format="inat2021", root=str(root), train_split="train", metadata=["geo", "temporal"],
                     batch_size=BATCH, num_workers=2,
                     **{k: v for k, v in options.items() if k in DataConfig.model_fields})
    fixed = torch.zeros(3, 32, 32, dtype=torch.uint8)
    dataset_module.load_image_tensor = lambda sample, *limit: fixed  # decoding replaced by a fixed tensor
    rss_imports, cpu, wall = rss_mb(), time.process_time(), time.perf_counter()
    splits = prepare_splits(cfg)
    train, val = make_dataset(cfg, splits.train, train=True), make_dataset(cfg, splits.val, train=False)
    index = {"index_wall_s": time.perf_counter() - wall, "index_cpu_s": time.process_time() - cpu,
             "kept_mb": rss_mb() - rss_imports, "train": len(train), "val": len(val), "test": len(splits.test)}
    train.transform = val.transform = lambda image: image  # no augmentation either
    loader = make_loader(cfg, train, train=True, seed=0)
    make_loader(cfg, val, train=False)
    next(iter(loader))
    index |= {"step0_s": time.time() - launched, "peak_mb": peak_mb(), "imports_mb": rss_imports}
    if not samples:
        return index
    return index | worker_growth(loader, samples, lambda epoch: set_epoch(loader, epoch))


def child_eval(images: int, classes: int, keep_all: bool) -> dict:
    import torch
    from torch.utils.data import DataLoader, Dataset

    from fgvc.metrics import classification_metrics
    from fgvc.engine.evaluate import evaluate

    torch.manual_seed(0)
    features = torch.randn(images, 64)
    labels = torch.randint(0, classes, (images,))

    class Features(Dataset):
        def __len__(self):
            return images

        def __getitem__(self, i):
            return {"image": features[i], "label": labels[i]}

    class Plain:
        def predict(self, model, batch):
            return model(batch["image"])

    model = torch.nn.Linear(64, classes)
    loader = DataLoader(Features(), batch_size=500)
    next(iter(loader))
    rss_model, wall = rss_mb(), time.perf_counter()
    if keep_all:  # every batch's scores kept, then the same metrics on the whole matrix
        with torch.no_grad():
            scores = torch.cat([model(batch["image"]) for batch in loader])
        metrics = classification_metrics(scores, labels, classes)
    else:
        metrics = evaluate(model, Plain(), loader, torch.device("cpu"), classes, progress=False)
    return {"peak_above_model_mb": peak_mb() - rss_model, "wall_s": time.perf_counter() - wall,
            "top1": metrics["top1"], "model_mb": rss_model}


def run_child(*args: str) -> dict:
    launched = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", *args, "--launched", repr(launched)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the report ------------------------------------------------------------------------------------

def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report(base: dict, first: dict, cached: dict, eval_fgvc: dict, eval_all: dict, args) -> None:
    rows = [("index build, wall (s)", "index_wall_s", 1), ("index build, CPU (s)", "index_cpu_s", 1),
            ("launch to step 0 (s)", "step0_s", 1), ("peak RSS (MB)", "peak_mb", 0),
            ("index kept in memory (MB)", "kept_mb", 0)]
    print(f"\n{args.images:,} training images, {args.classes:,} classes, {args.val:,} val images; "
          f"fgvc: data.check_images={args.check_images}")
    print("\n| measure | baseline | fgvc first start | ratio | fgvc cached start | ratio |\n|---|---|---|---|---|---|")
    for name, key, digits in rows:
        b, f, c = base[key], first[key], cached[key]
        print(f"| {name} | {b:.{digits}f} | {f:.{digits}f} | {ratio(f, b)} | {c:.{digits}f} | {ratio(c, b)} |")
    print(f"\nworker memory growth over {base['samples']:,} shuffled samples (2 workers, MB per worker):")
    print("\n| loader | RSS growth | private dirty growth |\n|---|---|---|")
    for name, r in (("baseline", base), ("fgvc cached start", cached)):
        print(f"| {name} | {' / '.join(f'{g:.0f}' for g in r['rss_growth_mb'])} | "
              f"{' / '.join(f'{g:.0f}' for g in r['private_growth_mb'])} |")
    print(f"\nevaluation of {args.eval_images:,} x {args.eval_classes:,} scores, peak RSS above the model:")
    print("\n| evaluation | peak above model (MB) | wall (s) | top-1 |\n|---|---|---|---|")
    for name, r in (("all scores kept, then metrics", eval_all), ("fgvc evaluate (counts per batch)", eval_fgvc)):
        print(f"| {name} | {r['peak_above_model_mb']:.0f} | {r['wall_s']:.1f} | {r['top1']:.4f} |")
    print(f"\nratio fgvc / all scores kept: {ratio(eval_fgvc['peak_above_model_mb'], eval_all['peak_above_model_mb'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000, help="training images (iNat 2021: 2686843)")
    parser.add_argument("--classes", type=int, default=1000, help="species (iNat 2021: 10000)")
    parser.add_argument("--val", type=int, help="val.json images (default: 100,000 at full size, scaled)")
    parser.add_argument("--samples", type=int, help="shuffled samples drawn for worker memory "
                        "(default: min(1,000,000, images))")
    parser.add_argument("--eval-images", type=int, default=100_000)
    parser.add_argument("--eval-classes", type=int, default=10_000)
    parser.add_argument("--touch", action="store_true", help="also write an empty file per image")
    parser.add_argument("--check-images", choices=("all", "sample", "none"),
                        help="fgvc's data.check_images (default: sample with --touch, else none)")
    parser.add_argument("--dir", help="folder for the annotation files and the cache (default: a temporary one)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_as_child(args)
    args.val = args.val or max(args.classes, round(args.images * 100_000 / 2_686_843))
    args.samples = args.samples or min(1_000_000, args.images)
    args.check_images = args.check_images or ("sample" if args.touch else "none")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    work = Path(args.dir or tempfile.mkdtemp(prefix="inat_scale-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_dataset(work, args.images, args.classes, args.val, args.touch)
        size = (work / "train.json").stat().st_size / 1e9
        print(f"wrote {work / 'train.json'} ({size:.2f} GB) and val.json in {time.perf_counter() - start:.0f} s")
        shutil.rmtree(work / "cache", ignore_errors=True)
        common = [str(work), str(args.samples)]
        base = run_child("baseline", *common)
        first = run_child("fgvc", str(work), "0", str(work / "cache"), args.check_images)  # no worker loop
        cached = run_child("fgvc", *common, str(work / "cache"), args.check_images)
        eval_all = run_child("eval", str(args.eval_images), str(args.eval_classes), "all")
        eval_fgvc = run_child("eval", str(args.eval_images), str(args.eval_classes), "counts")
        report(base, first, cached, eval_fgvc, eval_all, args)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0


def run_as_child(args) -> int:
    what, *rest = args.child
    if what == "baseline":
        result = child_baseline(Path(rest[0]), int(rest[1]), args.launched)
    elif what == "fgvc":
        result = child_fgvc(Path(rest[0]), int(rest[1]), args.launched, Path(rest[2]), rest[3])
    else:
        result = child_eval(int(rest[0]), int(rest[1]), keep_all=rest[2] == "all")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
