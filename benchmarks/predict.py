"""Batch prediction speed: images/s of ``fgvc predict`` against a plain PyTorch loop, in one run.

Writes ``--images`` photos of the synthetic benchmark (fgvc's iNat-style renderer at ``--size`` px,
re-saved as JPEGs with their GPS position and date in EXIF) and a model — the shipped synthetic
Dynamic MLP-C config with random weights, or ``--checkpoint`` — then times over the same files:

- ``plain loop`` (the baseline): a torch Dataset reading each file, torchvision's JPEG decoder, the
  model's evaluation transform, a DataLoader with the same batch size and workers, the forward pass
  (metadata all zeros), softmax and top-5 — no EXIF, no metadata, nothing written;
- ``fgvc predict``: ``predict_files`` as the command runs it — EXIF read in the workers, metadata
  precedence and encoding, top-5 rows with taxonomy, written to a CSV;
- ``one at a time``: the loop ``fgvc predict`` ran before it took batches (PIL decode, transform,
  forward of a batch of one, per image).

Each of ``--rounds`` rounds times every path once in turn (after an untimed warm-up of each); the
table gives the median. The 1-minute load average is printed before and after: the machine may be
shared. Goal: ``fgvc predict`` at 0.9x the plain loop or better.

    python benchmarks/predict.py [--images 1000] [--batch-size 32] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from fgvc.cli.threads import thread_policy

thread_policy()  # every path runs as under the fgvc command
import torch  # noqa: E402  (after the thread policy: it is read when OpenMP starts)
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from fgvc.config import load_config
from fgvc.data.dataset import load_image
from fgvc.data.records import Sample
from fgvc.data.synthetic import SynthOptions, write_inat
from fgvc.deploy.model import load_inference_model
from fgvc.deploy.predict import predict_files
from fgvc.deploy.predictor import Predictor
from fgvc.checkpoint import save_atomic
from fgvc.models import build_model

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dynamic_mlp" / "synthetic" / "dynamic_mlp_c.yaml"


def _dms(value: float) -> tuple:
    whole = round(abs(value) * 10**5)
    return IFDRational(whole, 10**5), IFDRational(0, 1), IFDRational(0, 1)


def write_photos(out: Path, images: int, size: int) -> tuple[list[str], list[str]]:
    """The synthetic iNat set with ``images`` training images, re-saved flat with EXIF; (paths, classes)."""
    genera, species = 8, 4
    opts = SynthOptions(size=size, genera=genera, species_per_genus=species,
                        train_per_class=-(-images // (genera * species)), train_mini_per_class=1, val_per_class=1)
    write_inat(out / "inat", opts)
    info = json.loads((out / "inat" / "train.json").read_text())
    paths = []
    for n, image in enumerate(info["images"][:images]):
        exif = Image.Exif()
        if image["latitude"] is not None:
            exif[ExifTags.IFD.GPSInfo] = {1: "N" if image["latitude"] >= 0 else "S", 2: _dms(image["latitude"]),
                                          3: "E" if image["longitude"] >= 0 else "W", 4: _dms(image["longitude"])}
        if image["date"]:
            exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = image["date"][:19].replace("-", ":")
        path = out / "photos" / f"{n:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        with Image.open(out / "inat" / image["file_name"]) as img:
            img.save(path, quality=90, exif=exif)
        paths.append(str(path))
    return paths, [c["name"] for c in info["categories"]]


def random_checkpoint(path: Path, classes: list[str]) -> None:
    cfg = load_config(CONFIG, [])
    model = build_model(cfg, len(classes), load_pretrained=False)
    save_atomic({"model": model.state_dict(), "config": cfg.model_dump(mode="json"), "classes": classes}, path)


class PlainFiles(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        data = torch.frombuffer(bytearray(Path(self.paths[i]).read_bytes()), dtype=torch.uint8)
        return self.transform(decode_jpeg(data, mode=ImageReadMode.RGB))


def plain_loop(model, paths, batch_size, workers) -> int:
    loader = DataLoader(PlainFiles(paths, model.preprocess), batch_size=batch_size, num_workers=workers,
                        prefetch_factor=4 if workers else None)
    net, seen = model.forward, 0
    with torch.inference_mode():
        for images in loader:
            meta = torch.zeros(len(images), model.meta_dim)
            net(images, meta).softmax(1).topk(5)
            seen += len(images)
    return seen


def fgvc_predict(predictor, paths, batch_size, workers, out: Path) -> int:
    out.unlink(missing_ok=True)
    summary = predict_files(predictor, paths, out=str(out), batch_size=batch_size, workers=workers, progress=False)
    return summary.predicted


def one_at_a_time(model, paths) -> int:
    """The loop of ``fgvc predict`` before batching: PIL decode, transform, forward per image."""
    meta = torch.zeros(1, model.meta_dim)
    with torch.no_grad():
        for path in paths:
            image = model.preprocess(load_image(Sample(path=path, label=-1, id=Path(path).name)))[None]
            model.forward(image, meta).float().softmax(dim=1)[0].topk(5)
    return len(paths)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64, help="side of the synthetic photos (the model's is 64)")
    parser.add_argument("--checkpoint", help="time this model instead of a random-weight synthetic Dynamic MLP-C")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-one-at-a-time", action="store_true", help="leave out the slow per-image loop")
    args = parser.parse_args()
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="fgvc-bench-predict-") as tmp:
        tmp = Path(tmp)
        paths, classes = write_photos(tmp, args.images, args.size)
        checkpoint = args.checkpoint or str(tmp / "model.pt")
        if not args.checkpoint:
            random_checkpoint(tmp / "model.pt", classes)
        model = load_inference_model(checkpoint)
        predictor = Predictor(model, topk=5)
        runs = {"plain loop": lambda: plain_loop(model, paths, args.batch_size, args.workers),
                "fgvc predict": lambda: fgvc_predict(predictor, paths, args.batch_size, args.workers,
                                                     tmp / "results.csv")}
        if not args.skip_one_at_a_time:
            runs["one at a time"] = lambda: one_at_a_time(model, paths)
        warm = paths[: 4 * args.batch_size]
        plain_loop(model, warm, args.batch_size, args.workers)
        fgvc_predict(predictor, warm, args.batch_size, args.workers, tmp / "warm.csv")
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                count = run()
                rates[name].append(count / (time.perf_counter() - start))
                assert count == len(paths), f"{name} predicted {count} of {len(paths)} images"
        kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        print(f"{len(paths)} JPEGs of {args.size} px with EXIF GPS/date ({kb:.1f} kB mean); model "
              f"{model.config.model.backbone} + {model.config.model.fusion.name} at {model.image_size} px; "
              f"batch {args.batch_size}, {args.workers} workers; median of {args.rounds} rounds")
        base = statistics.median(rates["plain loop"])
        print("\n| path | images/s | vs plain loop |\n|---|---|---|")
        for name, values in rates.items():
            rate = statistics.median(values)
            print(f"| {name} | {rate:.0f} | {rate / base:.2f}x |")
        if "one at a time" in rates:
            print(f"\nfgvc predict is {statistics.median(rates['fgvc predict']) / statistics.median(rates['one at a time']):.1f}x "
                  "the one-image-at-a-time loop")
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
