"""Input-pipeline speed: images/s of the training pipeline, torchvision baseline vs fgvc's readers.

Writes ``--images`` synthetic JPEGs (300-500 px a side, smooth colour fields plus noise, quality 90)
to a temporary folder and times, in one run and on the same files, the 224-px training pipeline
(random-resized crop, horizontal flip, float conversion, ImageNet normalisation; batches of 32,
``drop_last``) of:

- ``torchvision ImageFolder``: the baseline, PIL decoding, a plain shuffled DataLoader;
- ``fgvc folder, PIL``: fgvc's folder reader and ImageDataset decoding with PIL (before JPEGs went
  through torchvision's decoder);
- ``fgvc folder``: fgvc's folder reader, ``make_dataset``/``make_loader`` as training uses them;
- ``fgvc shards``: the same split written by ``write_shards`` and streamed (``data.format=shards``).

Every loader gets the same workers, pinned memory when CUDA is present, persistent workers and a
prefetch factor of 4. One untimed epoch each starts the workers and warms the page cache; then
``--epochs`` rounds, each timing one epoch of every pipeline in turn (iterating batches only, no
model), and the median per pipeline. The 1-minute load average is printed before and after, since
the machine may be shared.

    python benchmarks/dataloader.py [--images 320] [--workers 1 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from fgvc.config import DataConfig
from fgvc.data.dataset import ImageDataset
from fgvc.data.loader import make_dataset, make_loader, set_epoch
from fgvc.data.shards import write_shards
from fgvc.data.splits import prepare_splits
from fgvc.data.transforms import train_transform

BATCH, SIZE, CLASSES = 32, 224, 8


def write_jpegs(root: Path, images: int, seed: int = 0) -> None:
    """``root/{train,val,test}/c<k>/<i>.jpg``; val and test hold one image per class (the folder reader
    needs them so that its train split is all of ``train/``, the folder ImageFolder reads)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", CLASSES), ("test", CLASSES)):
        for i in range(count):
            folder = root / split / f"c{i % CLASSES}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = (int(v) for v in rng.integers(300, 501, 2))
            field = Image.fromarray(rng.integers(0, 255, (h // 16 + 2, w // 16 + 2, 3), dtype=np.uint8))
            pixels = np.asarray(field.resize((w, h), Image.BICUBIC), np.int16)
            pixels = np.clip(pixels + rng.integers(-12, 13, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def loader_options(workers: int) -> dict:
    return {"batch_size": BATCH, "num_workers": workers, "pin_memory": torch.cuda.is_available(),
            "drop_last": True, "persistent_workers": workers > 0, "prefetch_factor": 4 if workers else None}


def epoch_rate(loader: DataLoader, epoch: int, fgvc: bool) -> float:
    """Images/s of one pass over ``loader`` (fgvc's loaders are set to ``epoch`` first)."""
    if fgvc:
        set_epoch(loader, epoch)
    start, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch["image"] if isinstance(batch, dict) else batch[0])
    return seen / (time.perf_counter() - start)


def interleaved_rates(pipelines: dict[str, tuple[DataLoader, bool]], rounds: int) -> dict[str, float]:
    """Median images/s per pipeline over ``rounds`` rounds, each round timing one epoch of every
    pipeline in turn (so a change of the machine's load hits them alike), after an untimed epoch."""
    for loader, fgvc in pipelines.values():
        epoch_rate(loader, 0, fgvc)  # start the workers, warm the page cache
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for epoch in range(1, rounds + 1):
        for name, (loader, fgvc) in pipelines.items():
            rates[name].append(epoch_rate(loader, epoch, fgvc))
    return {name: statistics.median(values) for name, values in rates.items()}


def loaders(root: Path, shards: Path, workers: int) -> dict[str, tuple[DataLoader, bool]]:
    transform = train_transform(SIZE)
    cfg = DataConfig(format="folder", root=str(root), image_size=SIZE, batch_size=BATCH, num_workers=workers)
    train = prepare_splits(cfg).train
    shard_cfg = cfg.model_copy(update={"format": "shards", "root": str(shards)})
    pil = ImageDataset(train, transform)  # the PIL decoding path, keys from fgvc's resumable sampler
    pil_loader = make_loader(cfg, pil, train=True)
    return {
        "torchvision ImageFolder": (DataLoader(ImageFolder(str(root / "train"), transform), shuffle=True,
                                               **loader_options(workers)), False),
        "fgvc folder, PIL decode": (pil_loader, True),
        "fgvc folder": (make_loader(cfg, make_dataset(cfg, train, train=True), train=True), True),
        "fgvc shards": (make_loader(shard_cfg, make_dataset(shard_cfg, prepare_splits(shard_cfg).train,
                                                            train=True), train=True), True),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=320, help="training images (default: 320)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="DataLoader workers (default: 1 2)")
    parser.add_argument("--epochs", type=int, default=5, help="timed rounds (one epoch of each pipeline); the "
                        "median is reported (default: 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process only collates; workers decode and augment
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        root, shards = Path(tmp) / "jpegs", Path(tmp) / "shards"
        write_jpegs(root, args.images)
        cfg = DataConfig(format="folder", root=str(root))
        write_shards(prepare_splits(cfg), shards, max_per_shard=100, roles=("train",), progress=False)
        kilobytes = np.mean([p.stat().st_size for p in (root / "train").rglob("*.jpg")]) / 1e3
        print(f"{args.images} JPEGs of 300-500 px, mean {kilobytes:.0f} kB; batch {BATCH}, {SIZE}-px "
              f"random-resized crop + flip + normalise; median of {args.epochs} interleaved epochs")
        print("\n| pipeline | workers | images/s | vs baseline |\n|---|---|---|---|")
        for workers in args.workers:
            rates = interleaved_rates(loaders(root, shards, workers), args.epochs)
            baseline = next(iter(rates.values()))
            for name, rate in rates.items():
                print(f"| {name} | {workers} | {rate:.0f} | {rate / baseline:.2f}x |", flush=True)
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
