"""The geo-temporal encoding of docs/formats.md, checked against values computed by hand."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgvc.data.metadata import check_metadata, date_fraction, encode_batch, encode_metadata, metadata_dim
from fgvc.data.records import Sample
from fgvc.errors import DataError


def expected(*xs: float) -> np.ndarray:
    return np.array([math.sin(math.pi * x) for x in xs] + [math.cos(math.pi * x) for x in xs], np.float32)


def test_known_values_leap_year():
    # lat 45 -> 0.5, lon -90 -> -0.5; 2020-07-01 is day 183 of 366 -> exactly 0.
    out = encode_metadata(45, -90, "2020-07-01")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [1, -1, 0, 0, 0, 1], atol=1e-6)


def test_known_values_common_year():
    # 2021-07-01 is day 182 of 365.
    np.testing.assert_allclose(encode_metadata(45, -90, "2021-07-01"), expected(0.5, -0.5, 182 / 365 * 2 - 1),
                               atol=1e-6)


def test_day_of_year_is_one_based_like_the_official_code():
    assert date_fraction("2021-01-01") == pytest.approx(1 / 365 * 2 - 1)
    assert date_fraction("2020-12-31") == pytest.approx(1.0)  # day 366 of a leap year
    assert date_fraction("2021-12-31") == pytest.approx(1.0)
    assert date_fraction("2020-12-30") == pytest.approx(365 / 366 * 2 - 1)
    assert date_fraction("2020-03-01") == pytest.approx(61 / 366 * 2 - 1)  # after Feb 29
    assert date_fraction("2021-03-01") == pytest.approx(60 / 365 * 2 - 1)
    assert date_fraction("1900-12-30") == pytest.approx(364 / 365 * 2 - 1)  # 1900 is not a leap year
    assert date_fraction("2000-12-30") == pytest.approx(365 / 366 * 2 - 1)  # 2000 is one


@pytest.mark.parametrize("date", ["2021-06-01 10:00:00+00:00", "2021-06-01T23:59:59", "2021-06-01",
                                  dt.date(2021, 6, 1), dt.datetime(2021, 6, 1, 23, 30)])
def test_date_forms_agree(date):
    assert date_fraction(date) == pytest.approx(152 / 365 * 2 - 1)


def test_year_fraction_float():
    np.testing.assert_allclose(encode_metadata(0, 0, 0.5), expected(0, 0, 0), atol=1e-6)
    np.testing.assert_allclose(encode_metadata(None, None, 0.25, use="temporal"), expected(-0.5), atol=1e-6)
    assert date_fraction(0.0) == -1 and date_fraction(1) == 1


def test_dims_and_component_selection():
    assert metadata_dim(("geo", "temporal")) == 6
    assert metadata_dim(("geo",)) == metadata_dim("geo") == 4
    assert metadata_dim(("temporal",)) == 2
    assert metadata_dim(()) == 0
    np.testing.assert_allclose(encode_metadata(45, -90, None, use=("geo",)), [1, -1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(encode_metadata(None, None, "2020-07-01", use="temporal"), [0, 1], atol=1e-6)
    with pytest.raises(ValueError, match="unknown metadata"):
        metadata_dim(("geo", "altitude"))


@pytest.mark.parametrize("lat, lon, date", [(None, 10, "2021-01-01"), (10, float("nan"), "2021-01-01"),
                                            (10, 10, None), (10, 10, ""), (10, 10, "  "), ("", 10, 0.3)])
def test_missing_gives_zeros(lat, lon, date):
    out = encode_metadata(lat, lon, date, on_invalid="error")  # missing is never an error
    assert out.shape == (6,) and not out.any()
    assert check_metadata(Sample("x.jpg", 0, lat=lat, lon=lon, date=date), ("geo", "temporal")) == "missing"


def test_unused_missing_component_does_not_matter():
    assert encode_metadata(10, 20, None, use=("geo",)).any()
    assert check_metadata(Sample("x.jpg", 0, lat=10, lon=20), ("geo",)) is None


@pytest.mark.parametrize("lat, lon, date, word", [
    (95, 0, "2021-01-01", "latitude 95"), (-90.5, 0, "2021-01-01", "latitude -90.5"),
    (0, 180.01, "2021-01-01", "longitude 180.01"), (0, float("inf"), "2021-01-01", "longitude inf"),
    (0, 0, "2021-13-01", "2021-13-01"), (0, 0, "2021-02-29", "2021-02-29"), (0, 0, "abc", "'abc'"),
    (0, 0, "2021/06/01", "2021/06/01"), (0, 0, 1.5, "1.5"), (0, 0, -0.1, "-0.1"),
    ("abc", 0, 0.5, "latitude 'abc'"), (True, 0, 0.5, "latitude True"),
])
def test_invalid_values(lat, lon, date, word):
    assert not encode_metadata(lat, lon, date).any()
    with pytest.raises(DataError, match="invalid metadata") as info:
        encode_metadata(lat, lon, date, on_invalid="error")
    assert word in str(info.value) and "\n" not in str(info.value)
    status = check_metadata(Sample("x.jpg", 0, lat=lat, lon=lon, date=date), ("geo", "temporal"))
    assert status.startswith("invalid: ") and word in status


def test_limits_are_valid():
    np.testing.assert_allclose(encode_metadata(90, -180, 0.0), expected(1, -1, -1), atol=1e-6)


def test_invalid_is_reported_even_when_another_value_is_missing():
    sample = Sample("x.jpg", 0, lat=None, lon=500, date="2021-01-01")
    assert check_metadata(sample, ("geo", "temporal")).startswith("invalid")


def test_on_invalid_must_be_known():
    with pytest.raises(ValueError):
        encode_metadata(0, 0, 0.5, on_invalid="ignore")


def test_encode_batch_counts_and_names_the_record():
    samples = [Sample("a.jpg", 0, lat=45, lon=-90, date="2020-07-01", dataset="inat2021", id="1"),
               Sample("b.jpg", 0, lat=None, lon=3, date="2020-07-01", dataset="inat2021", id="2"),
               Sample("c.jpg", 0, lat=100, lon=3, date="2020-07-01", dataset="inat2021", id="3")]
    out, n_missing = encode_batch(samples, ("geo", "temporal"))
    assert out.shape == (3, 6) and out.dtype == np.float32 and n_missing == 2
    np.testing.assert_allclose(out[0], [1, -1, 0, 0, 0, 1], atol=1e-6)
    with pytest.raises(DataError, match=r"^inat2021: record 3: latitude 100"):
        encode_batch(samples, ("geo",), on_invalid="error")
    out, n_missing = encode_batch(samples, ("temporal",))
    assert out.shape == (3, 2) and n_missing == 0


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-90, 90), lon=st.floats(-180, 180),
       day=st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31)))
def test_valid_values_lie_on_the_unit_circle(lat, lon, day):
    out = encode_metadata(lat, lon, day).astype(np.float64)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:3] ** 2 + out[3:] ** 2, 1, atol=1e-5)
    assert -1 < date_fraction(day) <= 1
