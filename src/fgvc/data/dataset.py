"""A torch Dataset over ``Sample`` records: decode, trim, augment, and attach encoded metadata."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate

from fgvc.data.formats.cifar import image_at
from fgvc.data.metadata import encode_batch
from fgvc.data.records import Sample
from fgvc.errors import DataError


def load_image(sample: Sample) -> Image.Image:
    """Decode fully (so truncated files fail here, naming the file) and apply the format's trim.
    A sample with a ``row`` is a row of an array file (CIFAR pickles), loaded once per process."""
    try:
        if sample.row is not None:
            img = Image.fromarray(image_at(sample.path, sample.row))
        else:
            with Image.open(sample.path) as img:
                img = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{sample.path}: unreadable image (record {sample.id or '?'}): {exc}") from None
    if sample.trim_bottom:
        img = img.crop((0, 0, img.width, max(1, img.height - sample.trim_bottom)))
    return img


class ImageDataset(Dataset):
    """Items are dicts ``image, label, meta, index``; ``meta`` is ``[D]`` (``D = 0`` without metadata).

    Indices may be plain ints (evaluation) or ``(index, aug_seed)`` pairs from ``ResumableSampler``
    (training), in which case the augmentation runs under that seed. With ``skip_bad_images`` an
    unreadable image yields a ``{"skipped": message}`` item; ``collate`` drops it and reports the message
    (which names the file) in ``batch["skipped"]``.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable,
                 metadata: Sequence[str] = (), on_bad_metadata: str = "missing",
                 skip_bad_images: bool = False):
        self.samples = list(samples)
        self.transform = transform
        self.skip_bad_images = skip_bad_images
        self.meta, self.missing_metadata = encode_batch(self.samples, tuple(metadata), on_bad_metadata) \
            if metadata else (np.zeros((len(self.samples), 0), np.float32), 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        try:
            img = load_image(sample)
        except DataError as exc:
            if not self.skip_bad_images:
                raise
            return {"skipped": str(exc)}  # logged by the main process, which sees the whole batch
        if seed is None:
            image = self.transform(img)
        else:
            with torch.random.fork_rng(devices=[]):
                # Only the CPU generator: torch.manual_seed would also queue a lazy CUDA seeding,
                # which records a stack trace per call (a third of a small model's epoch).
                torch.default_generator.manual_seed(seed)
                image = self.transform(img)
        return {"image": image, "label": sample.label, "meta": torch.from_numpy(self.meta[index]),
                "index": index}


def collate(items: list[dict]) -> dict:
    """Stack good items; messages about skipped (unreadable) images travel in ``batch["skipped"]``."""
    good = [item for item in items if "skipped" not in item]
    batch = default_collate(good) if good else {}
    batch["skipped"] = [item["skipped"] for item in items if "skipped" in item]
    return batch
