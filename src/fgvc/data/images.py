"""Decoding images to 8-bit RGB: one pixel limit and one mode conversion for every decode path.

Training, evaluation, ``fgvc data verify``, ``fgvc data shard`` and reading shards all decode here,
through PIL or (JPEG bytes, the faster path of the training pipeline) torchvision's libjpeg-turbo
decoder. Two rules hold on every path:

- **Pixel limit.** An image whose header announces more than ``max_pixels`` pixels
  (``data.max_image_pixels``; default PIL's ``MAX_IMAGE_PIXELS``, about 89 M) is a bad image, refused
  before a byte of it is decoded: a 20000² JPEG would otherwise decode to a 1.2 GB tensor.
- **Modes.** Every PIL mode becomes 8-bit RGB with its values scaled, not clipped: 16-bit and 32-bit
  integer greyscale (``I;16``, ``I``) map 0..65535 to 0..255; float greyscale (``F``) maps 0..1 to
  0..255 when every value lies in [0, 1], else 0..255 as it is; transparent images (``RGBA``, ``LA``,
  ``PA``, ``P``/``L``/``RGB`` with a transparent colour) are composited on white, as a viewer shows
  them; the rest (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ...) through PIL's own conversion.

Failures are ``ValueError`` with the decoder's reason (``decode_image_bytes``) or ``DataError``
naming the file and record (``load_image``, ``load_image_tensor``).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from fgvc.data.formats.cifar import image_at
from fgvc.data.records import Sample
from fgvc.errors import DataError

DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS  # PIL's own limit, the default of data.max_image_pixels

# torchvision 0.29 deprecates its decoders for TorchCodec (not installed here); its JPEG decoder is
# still the faster path of the training pipeline (benchmarks/dataloader.py).
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
# PIL warns between 1x and 2x its limit and refuses above; the limit here is checked on every path.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# What PIL's decoders raise on damaged files, besides OSError.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def check_pixels(img: Image.Image, max_pixels: int) -> Image.Image:
    """``img`` if its header's size is within ``max_pixels``, else ``ValueError`` (nothing decoded yet)."""
    width, height = img.size
    if width * height > max_pixels:
        raise ValueError(f"{width} x {height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
                         "(data.max_image_pixels; a decompression bomb or an image to downscale first)")
    return img


def _let_pil_open(max_pixels: int) -> None:
    """PIL refuses images over twice its own limit by itself: lift that to a larger configured limit."""
    if Image.MAX_IMAGE_PIXELS is not None and 2 * Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB of any PIL mode, values scaled to 0..255 (see the module docstring)."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I: 16-bit range
        values = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else 1.0
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in TRANSPARENT_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _unidentified(exc: Exception) -> ValueError:
    # PIL names the file object (<_io.BytesIO object at 0x...>); the caller names the file.
    return ValueError("not an image file PIL can identify (unknown format or damaged header)")


def decode_image_bytes(data: bytes, trim_bottom: int = 0,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """An encoded image as an RGB ``uint8 [3, H, W]`` tensor, fully decoded (truncation fails here)
    and trimmed. JPEGs go through torchvision's libjpeg-turbo decoder (the same pixels as PIL, and the
    tensor path of the transforms is faster: ``benchmarks/dataloader.py``); other formats through PIL.
    Raises ``ValueError`` with the decoder's reason."""
    _let_pil_open(max_pixels)
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            check_pixels(img, max_pixels)
            if data[:3] == b"\xff\xd8\xff" and img.mode in ("RGB", "L", "CMYK"):
                encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                image = decode_jpeg(encoded, mode=ImageReadMode.RGB)
            else:
                image = pil_to_tensor(to_rgb(img))
    except RuntimeError as exc:  # torchvision: "decode_jpeg, <source>.cpp:171, <reason>"
        raise ValueError(str(exc).split(".cpp:")[-1].partition(", ")[2] or str(exc)) from None
    except UnidentifiedImageError as exc:
        raise _unidentified(exc) from None
    except DECODE_ERRORS as exc:
        raise ValueError(str(exc)) from None
    if trim_bottom:
        image = image[:, : max(1, image.shape[1] - trim_bottom)]
    return image


def _unreadable(sample: Sample, reason: object) -> DataError:
    return DataError(f"{sample.path}: unreadable image (record {sample.id or '?'}): {reason}")


def load_image(sample: Sample, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode fully (so truncated files fail here, naming the file) to RGB and apply the format's
    trim. A sample with a ``row`` is a row of an array file (CIFAR pickles), loaded once per process."""
    _let_pil_open(max_pixels)
    try:
        if sample.row is not None:
            img = Image.fromarray(image_at(sample.path, sample.row))
        else:
            with Image.open(sample.path) as img:
                img = to_rgb(check_pixels(img, max_pixels))
                img.load()
    except UnidentifiedImageError as exc:
        raise _unreadable(sample, _unidentified(exc)) from None
    except DECODE_ERRORS as exc:
        raise _unreadable(sample, exc) from None
    if sample.trim_bottom:
        img = img.crop((0, 0, img.width, max(1, img.height - sample.trim_bottom)))
    return img


def load_image_tensor(sample: Sample, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """``load_image`` as an RGB ``uint8 [3, H, W]`` tensor, JPEG files through ``decode_image_bytes``."""
    if sample.row is not None:  # a row of an array file: no encoded bytes
        return pil_to_tensor(load_image(sample))
    try:
        return decode_image_bytes(Path(sample.path).read_bytes(), sample.trim_bottom, max_pixels)
    except (OSError, ValueError) as exc:
        raise _unreadable(sample, exc) from None
