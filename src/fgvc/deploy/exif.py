"""What a photo file gives prediction: its pixels, upright, and where and when it was taken (EXIF).

Pixels (``read_photo``): the pixel count is checked from the header before anything is decoded, and
the EXIF orientation is applied, so a phone photo is seen the way the photographer held the phone.

Place and date (``read_exif``, from the header alone): ``GPSLatitude``/``GPSLongitude`` of the GPS
IFD are three rationals, degrees, minutes and seconds, with ``GPSLatitudeRef`` N/S and
``GPSLongitudeRef`` E/W giving the sign; the time is ``DateTimeOriginal`` (Exif IFD, "YYYY:MM:DD
HH:MM:SS"), else ``DateTime`` (IFD0, the file's last change). Cameras write plenty of garbage — zero
denominators, minutes past 60, "0000:00:00 00:00:00", a missing N/S — so every field is checked: a
malformed one is treated as missing and named in ``problems``, never raised.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from dataclasses import dataclass

import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2.functional import pil_to_tensor

from fgvc.data.images import to_rgb
from fgvc.errors import DataError

GPS, EXIF = ExifTags.IFD.GPSInfo, ExifTags.IFD.Exif
LAT, LAT_REF, LON, LON_REF = (ExifTags.GPS.GPSLatitude, ExifTags.GPS.GPSLatitudeRef,
                              ExifTags.GPS.GPSLongitude, ExifTags.GPS.GPSLongitudeRef)
DATE_ORIGINAL, DATE_CHANGED = ExifTags.Base.DateTimeOriginal, ExifTags.Base.DateTime


class NotAnImage(DataError):
    """No decoder recognises the bytes."""


class TooManyPixels(DataError):
    """Over ``Image.MAX_IMAGE_PIXELS``: refused before decoding (a decompression bomb, or just huge)."""


@dataclass(frozen=True)
class PhotoMetadata:
    """``lat``/``lon`` in degrees (both or neither), ``date`` ISO "YYYY-MM-DD HH:MM:SS"; ``problems``
    names each malformed field that was treated as missing."""

    lat: float | None = None
    lon: float | None = None
    date: str | None = None
    problems: tuple[str, ...] = ()


def read_exif(image: Image.Image | bytes) -> PhotoMetadata:
    """The GPS position and observation time of an opened image (or encoded image bytes)."""
    if isinstance(image, bytes):
        try:
            with Image.open(io.BytesIO(image)) as opened:
                return read_exif(opened)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return PhotoMetadata()  # not an image: the decoder will say so
    problems: list[str] = []
    try:
        exif = image.getexif()
        gps, exif_ifd = exif.get_ifd(GPS), exif.get_ifd(EXIF)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on a damaged EXIF block
        return PhotoMetadata(problems=(f"EXIF unreadable ({type(exc).__name__})",))
    lat = _coordinate(gps, LAT, LAT_REF, "NS", 90.0, "latitude", problems) if gps else None
    lon = _coordinate(gps, LON, LON_REF, "EW", 180.0, "longitude", problems) if gps else None
    if lat is None or lon is None:
        lat = lon = None
    date = None
    for ifd, tag, name in ((exif_ifd, DATE_ORIGINAL, "DateTimeOriginal"), (exif, DATE_CHANGED, "DateTime")):
        if tag in ifd:
            date = _datetime(ifd[tag], name, problems)
            if date is not None:
                break
    return PhotoMetadata(lat, lon, date, tuple(problems))


def _coordinate(gps: dict, tag: int, ref_tag: int, refs: str, limit: float, what: str,
                problems: list[str]) -> float | None:
    if tag not in gps:
        return None
    try:
        parts = [_ratio(x) for x in gps[tag]]
        if not 1 <= len(parts) <= 3 or any(n < 0 for n, _ in parts) or any(n >= 60 * d for n, d in parts[1:]):
            raise ValueError
    except (TypeError, ValueError, ZeroDivisionError):
        problems.append(f"GPS {what} {_show(gps[tag])} is not degrees/minutes/seconds")
        return None
    num, den = 0, 1  # degrees + minutes/60 + seconds/3600, exactly, as one fraction of integers
    for i, (n, d) in enumerate(parts):
        num, den = num * d * 60**i + n * den, den * d * 60**i
    value = num / den  # Python divides integers correctly rounded: the float nearest the exact value
    ref = gps.get(ref_tag)
    ref = (ref.decode("ascii", "replace") if isinstance(ref, bytes) else str(ref or "")).strip("\x00 ").upper()
    if len(ref) != 1 or ref not in refs:
        problems.append(f"GPS {what} reference {_show(ref)} is not {' or '.join(refs)}" if ref
                        else f"GPS {what} has no {'/'.join(refs)} reference")
        return None
    if num > int(limit) * den:  # limit is a whole number of degrees: compared exactly
        problems.append(f"GPS {what} {value:.9g} is beyond {limit:g}")
        return None
    return -value if ref == refs[1] else value


def _ratio(x) -> tuple[int, int]:
    """An EXIF rational exactly, as (numerator, positive denominator): Pillow's ``IFDRational`` keeps
    both (integers, not ``Fraction``: this runs for every photo, and ``Fraction`` is slow)."""
    if hasattr(x, "numerator") and hasattr(x, "denominator"):
        n, d = int(x.numerator), int(x.denominator)
        if d == 0:
            raise ZeroDivisionError
        return (n, d) if d > 0 else (-n, -d)
    value = float(x)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError
    return value.as_integer_ratio()


def _datetime(value, name: str, problems: list[str]) -> str | None:
    text = (value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)).strip("\x00 ")
    if not text:  # an empty tag: not set, not malformed
        return None
    try:
        return dt.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        problems.append(f"{name} {_show(text)} is not a date")
        return None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_photo(data: bytes, name: str = "image") -> tuple[torch.Tensor, PhotoMetadata]:
    """Encoded image bytes -> (RGB ``uint8 [3,H,W]`` upright as the camera held it, its EXIF metadata).

    The pixel count is checked from the header before anything is decoded (PIL's
    ``Image.MAX_IMAGE_PIXELS``): a decompression bomb is refused, not decoded. Raises ``DataError``
    (``NotAnImage``, ``TooManyPixels`` or a damaged file) naming ``name`` and the decoder's reason.
    """
    try:
        with warnings.catch_warnings():  # PIL warns between the limit and twice it; refused below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            limit = Image.MAX_IMAGE_PIXELS
            if limit and img.width * img.height > limit:
                raise TooManyPixels(f"{name}: {img.width}x{img.height} pixels is over the limit of {limit} "
                                    "(a decompression bomb?)")
            meta = read_exif(img)
            if img.format == "JPEG":
                pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                                     mode=ImageReadMode.RGB, apply_exif_orientation=True)
            else:
                pixels = pil_to_tensor(to_rgb(ImageOps.exif_transpose(img)))  # 16-bit scaled, alpha on white
    except DataError:
        raise
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name}: {exc}") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"{name}: not an image (no decoder recognises it)") from None
    except (OSError, RuntimeError, ValueError, SyntaxError, EOFError) as exc:
        reason = str(exc).split(".cpp:")[-1].partition(", ")[2] or str(exc)  # torchvision's prefix
        raise DataError(f"{name}: unreadable image: {reason}") from None
    return pixels, meta
