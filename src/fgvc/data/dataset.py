"""A torch Dataset over ``Sample`` records: decode, trim, augment, and attach encoded metadata."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

# the decoders, also importable from here (their home before fgvc.data.images)
from fgvc.data.images import (DEFAULT_MAX_PIXELS, decode_image_bytes, load_image,  # noqa: F401
                              load_image_tensor)
from fgvc.data.index import as_index
from fgvc.data.records import Sample
from fgvc.errors import DataError


def transform_seeded(transform: Callable, image, seed: int | None):
    """``transform(image)``, under ``seed`` if given, leaving the global RNG as it was."""
    if seed is None:
        return transform(image)
    with torch.random.fork_rng(devices=[]):
        # Only the CPU generator: torch.manual_seed would also queue a lazy CUDA seeding,
        # which records a stack trace per call (a third of a small model's epoch).
        torch.default_generator.manual_seed(seed)
        return transform(image)


class ImageDataset(Dataset):
    """Items are dicts ``image, label, meta, index``; ``meta`` is ``[D]`` (``D = 0`` without metadata).

    Indices may be plain ints (evaluation) or ``(index, aug_seed)`` pairs from ``ResumableSampler``
    (training), in which case the augmentation runs under that seed. With ``skip_bad_images`` an
    unreadable image yields a ``{"skipped": message}`` item; ``collate`` drops it and reports the message
    (which names the file) in ``batch["skipped"]``; an image over ``max_pixels`` pixels is such an unreadable
    image (``fgvc.data.images``). ``tensor_images``: the transform gets ``uint8``
    tensors (``load_image_tensor``: faster decoding and resizing) instead of PIL images.

    The samples are held as a ``SampleIndex`` (columns; a list of ``Sample``s is converted), and a
    ``Sample`` is built only for the item asked: workers that read the dataset copy no Python objects.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable,
                 metadata: Sequence[str] = (), on_bad_metadata: str = "missing",
                 skip_bad_images: bool = False, tensor_images: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.samples = as_index(samples)
        self.transform = transform
        self.skip_bad_images = skip_bad_images
        self.tensor_images = tensor_images
        self.max_pixels = max_pixels
        self.meta, self.missing_metadata = self.samples.encode(tuple(metadata), on_bad_metadata) \
            if metadata else (np.zeros((len(self.samples), 0), np.float32), 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        try:
            load = load_image_tensor if self.tensor_images else load_image
            img = load(sample, self.max_pixels)
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
