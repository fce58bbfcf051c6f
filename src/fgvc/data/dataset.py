"""A torch Dataset over ``Sample`` records: decode, trim, augment, and attach encoded metadata."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, default_collate
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from fgvc.data.formats.cifar import image_at
from fgvc.data.index import as_index
from fgvc.data.records import Sample
from fgvc.errors import DataError

# torchvision 0.29 deprecates its decoders for TorchCodec (not installed here); its JPEG decoder is
# still the faster path of the training pipeline (benchmarks/dataloader.py).
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def load_image(sample: Sample) -> Image.Image:
    """Decode fully (so truncated files fail here, naming the file) and apply the format's trim.
    A sample with a ``row`` is a row of an array file (CIFAR pickles), loaded once per process."""
    try:
        if sample.row is not None:
            img = Image.fromarray(image_at(sample.path, sample.row))
        else:
            with Image.open(sample.path) as img:
                img = img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError) as exc:  # PIL's decoders raise these too on damaged files
        raise DataError(f"{sample.path}: unreadable image (record {sample.id or '?'}): {exc}") from None
    if sample.trim_bottom:
        img = img.crop((0, 0, img.width, max(1, img.height - sample.trim_bottom)))
    return img


def decode_image_bytes(data: bytes, trim_bottom: int = 0) -> torch.Tensor:
    """An encoded image as an RGB ``uint8 [3, H, W]`` tensor, fully decoded (truncation fails here)
    and trimmed. JPEGs go through torchvision's libjpeg-turbo decoder (the same pixels as PIL, and
    the tensor path of the transforms is faster: ``benchmarks/dataloader.py``); other formats through
    PIL. Raises ``ValueError`` with the decoder's reason."""
    try:
        if data[:3] == b"\xff\xd8\xff":
            image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        else:
            with Image.open(io.BytesIO(data)) as img:
                image = pil_to_tensor(img.convert("RGB"))
    except RuntimeError as exc:  # torchvision: "decode_jpeg, <source>.cpp:171, <reason>"
        raise ValueError(str(exc).split(".cpp:")[-1].partition(", ")[2] or str(exc)) from None
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(str(exc)) from None
    if trim_bottom:
        image = image[:, : max(1, image.shape[1] - trim_bottom)]
    return image


def load_image_tensor(sample: Sample) -> torch.Tensor:
    """``load_image`` as an RGB ``uint8 [3, H, W]`` tensor, JPEG files through ``decode_image_bytes``."""
    if sample.row is not None:  # a row of an array file: no encoded bytes
        return pil_to_tensor(load_image(sample))
    try:
        return decode_image_bytes(Path(sample.path).read_bytes(), sample.trim_bottom)
    except (OSError, ValueError) as exc:
        raise DataError(f"{sample.path}: unreadable image (record {sample.id or '?'}): {exc}") from None


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
    (which names the file) in ``batch["skipped"]``. ``tensor_images``: the transform gets ``uint8``
    tensors (``load_image_tensor``: faster decoding and resizing) instead of PIL images.

    The samples are held as a ``SampleIndex`` (columns; a list of ``Sample``s is converted), and a
    ``Sample`` is built only for the item asked: workers that read the dataset copy no Python objects.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable,
                 metadata: Sequence[str] = (), on_bad_metadata: str = "missing",
                 skip_bad_images: bool = False, tensor_images: bool = False):
        self.samples = as_index(samples)
        self.transform = transform
        self.skip_bad_images = skip_bad_images
        self.tensor_images = tensor_images
        self.meta, self.missing_metadata = self.samples.encode(tuple(metadata), on_bad_metadata) \
            if metadata else (np.zeros((len(self.samples), 0), np.float32), 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        try:
            img = load_image_tensor(sample) if self.tensor_images else load_image(sample)
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
