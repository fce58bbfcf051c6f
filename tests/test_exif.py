"""Place and date from photos' EXIF (Pillow writes the JPEGs, fgvc reads them back), and photo decoding."""

from __future__ import annotations

import io
from fractions import Fraction

import pytest
import torch
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from fgvc.deploy.exif import read_exif, read_photo
from fgvc.errors import DataError


def dms(degrees: Fraction) -> tuple:
    """Degrees as EXIF (degrees, minutes, seconds) rationals, seconds to 1/100."""
    d = int(degrees)
    m = int((degrees - d) * 60)
    s = Fraction(round((degrees - d - Fraction(m, 60)) * 3600 * 100), 100)
    return IFDRational(d, 1), IFDRational(m, 1), IFDRational(s.numerator, s.denominator)


def photo(gps: dict | None = None, original: str | None = None, changed: str | None = None,
          size=(48, 32), orientation: int | None = None, fmt: str = "JPEG") -> bytes:
    exif = Image.Exif()
    if gps is not None:
        exif[ExifTags.IFD.GPSInfo] = gps
    if changed is not None:
        exif[ExifTags.Base.DateTime] = changed
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if original is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = original
    img = Image.new("RGB", size, (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, size[0] // 2, size[1] // 2))  # a blue top-left quarter
    buffer = io.BytesIO()
    img.save(buffer, fmt, exif=exif)
    return buffer.getvalue()


def gps_of(lat_ref: str, lat: tuple, lon_ref: str, lon: tuple) -> dict:
    return {ExifTags.GPS.GPSLatitudeRef: lat_ref, ExifTags.GPS.GPSLatitude: lat,
            ExifTags.GPS.GPSLongitudeRef: lon_ref, ExifTags.GPS.GPSLongitude: lon}


@pytest.mark.parametrize("lat_ref,lon_ref,sign", [("N", "E", (1, 1)), ("S", "W", (-1, -1)),
                                                  ("N", "W", (1, -1)), ("S", "E", (-1, 1))])
def test_gps_round_trip_every_hemisphere(lat_ref, lon_ref, sign):
    lat, lon = Fraction("33.859853"), Fraction("151.2130556")  # fractional seconds: 35.47 s, 47.00 s
    lat_dms, lon_dms = dms(lat), dms(lon)
    data = photo(gps_of(lat_ref, lat_dms, lon_ref, lon_dms), original="2021:06:01 10:11:12")
    meta = read_exif(data)
    exact = [sum(Fraction(r.numerator, r.denominator) / 60 ** i for i, r in enumerate(x)) for x in (lat_dms, lon_dms)]
    assert meta.lat == sign[0] * float(exact[0]) and meta.lon == sign[1] * float(exact[1])
    assert abs(meta.lat) == pytest.approx(float(lat), abs=1 / 3600 / 100)  # seconds kept to 1/100
    assert meta.date == "2021-06-01 10:11:12" and meta.problems == ()


def test_date_falls_back_to_datetime_and_prefers_original():
    assert read_exif(photo(changed="2019:12:31 23:59:59")).date == "2019-12-31 23:59:59"
    both = read_exif(photo(original="2020:02:29 08:00:00", changed="2021:01:01 00:00:00"))
    assert both.date == "2020-02-29 08:00:00"
    garbage_original = read_exif(photo(original="0000:00:00 00:00:00", changed="2021:01:01 00:00:00"))
    assert garbage_original.date == "2021-01-01 00:00:00" and len(garbage_original.problems) == 1


def test_no_exif_is_missing_without_problems():
    meta = read_exif(photo())
    assert (meta.lat, meta.lon, meta.date, meta.problems) == (None, None, None, ())


GOOD = (IFDRational(10, 1), IFDRational(0, 1), IFDRational(0, 1))


@pytest.mark.parametrize("gps,what", [
    (gps_of("N", (IFDRational(10, 0), IFDRational(0, 1), IFDRational(0, 1)), "E", GOOD), "latitude"),  # 10/0
    (gps_of("N", (IFDRational(10, 1), IFDRational(75, 1), IFDRational(0, 1)), "E", GOOD), "latitude"),  # 75 min
    (gps_of("N", (IFDRational(95, 1), IFDRational(0, 1), IFDRational(0, 1)), "E", GOOD), "latitude"),  # > 90
    (gps_of("N", GOOD, "E", (IFDRational(190, 1), IFDRational(0, 1), IFDRational(0, 1))), "longitude"),
    (gps_of("X", GOOD, "E", GOOD), "latitude"),  # unknown reference
    ({ExifTags.GPS.GPSLatitude: GOOD, ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: GOOD},
     "latitude"),  # no N/S
])
def test_malformed_gps_is_missing_and_named(gps, what):
    meta = read_exif(photo(gps, original="2021:06:01 10:00:00"))
    assert meta.lat is None and meta.lon is None  # a location is both coordinates or nothing
    assert meta.date == "2021-06-01 10:00:00"  # the rest of the EXIF still counts
    assert len(meta.problems) == 1 and what in meta.problems[0]


def test_the_poles_and_the_antimeridian_are_places_and_a_hundredth_of_a_second_beyond_is_not():
    zero = IFDRational(0, 1)
    edge = read_exif(photo(gps_of("S", (IFDRational(90, 1), zero, zero), "W", (IFDRational(180, 1), zero, zero))))
    assert (edge.lat, edge.lon, edge.problems) == (-90.0, -180.0, ())
    beyond = read_exif(photo(gps_of("N", (IFDRational(90, 1), zero, IFDRational(1, 100)), "E", GOOD)))
    assert beyond.lat is None and beyond.problems == ("GPS latitude 90.0000028 is beyond 90",)


@pytest.mark.parametrize("text", ["2021:13:01 10:00:00", "yesterday", "2021:02:30 10:00:00", ""])
def test_garbage_dates_are_missing(text):
    meta = read_exif(photo(original=text))
    assert meta.date is None
    assert len(meta.problems) == (1 if text else 0)


def test_read_photo_applies_orientation_and_matches_pil():
    upright = read_photo(photo(size=(48, 32)))[0]
    assert upright.shape == (3, 32, 48) and upright.dtype == torch.uint8
    assert upright[2, 2, 2] > 150 and upright[0, 2, 2] < 100  # blue top-left
    turned, _ = read_photo(photo(size=(48, 32), orientation=6))  # "rotate 90° clockwise to view"
    assert turned.shape == (3, 48, 32)
    assert turned[2, 2, -3] > 150  # the blue quarter is now top-right
    png, _ = read_photo(photo(size=(48, 32), orientation=6, fmt="PNG"))
    assert png.shape == (3, 48, 32) and png[2, 2, -3] > 150


def test_read_photo_refuses_bombs_and_non_images(monkeypatch):
    with pytest.raises(DataError, match="not an image"):
        read_photo(b"GIF89a-not-really", "x.gif")
    with pytest.raises(DataError, match="x.jpg"):
        read_photo(photo()[:200], "x.jpg")  # truncated
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="48x32 pixels is over the limit of 1000"):
        read_photo(photo(size=(48, 32)), "big.jpg")
