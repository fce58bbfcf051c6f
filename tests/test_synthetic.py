"""The procedural benchmark: real on-disk layouts, determinism, metadata structure, caching.

The files are parsed directly (not through fgvc.data.formats) so these tests pin the formats
themselves, as an official-format reader would see them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fgvc.data.synthetic import (BANNER_HEIGHT, DOMAINS, SynthOptions, make_genus, render, write_benchmark,
                                 write_inat, write_multidomain)
from fgvc.data.synthetic.seeds import image_rng
from fgvc.errors import ConfigError

SMALL = {"size": 32, "genera": 3, "species_per_genus": 2, "train_per_class": 4, "train_mini_per_class": 2,
         "val_per_class": 2, "domain_genera": 2, "domain_species_per_genus": 2, "domain_images_per_class": 6}

INAT_IMAGE_KEYS = {"id", "file_name", "width", "height", "license", "rights_holder", "date", "latitude",
                   "longitude", "location_uncertainty"}
TAXA = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")
INAT_CATEGORY_KEYS = {"id", "name", "common_name", "supercategory", "image_dir_name", *TAXA}


def small(**overrides) -> SynthOptions:
    return SynthOptions(**{**SMALL, **overrides})


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def inat(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inat")
    write_inat(root, small())
    return root


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multi")
    write_multidomain(root, small())
    return root


# ---- iNaturalist 2021


def test_inat_json_has_the_2021_schema(inat):
    for name, per_class in (("train", 4), ("train_mini", 2), ("val", 2)):
        data = json.loads((inat / f"{name}.json").read_text())
        assert {"info", "licenses", "images", "annotations", "categories"} <= data.keys()
        assert len(data["categories"]) == 6
        assert len(data["images"]) == len(data["annotations"]) == 6 * per_class
        for im in data["images"]:
            assert INAT_IMAGE_KEYS <= im.keys()
            assert isinstance(im["id"], int)
            assert im["file_name"].startswith("train/" if name != "val" else "val/")
            assert im["file_name"].endswith(".jpg") and (inat / im["file_name"]).is_file()
            if im["date"] is not None:
                assert im["date"].endswith("+00:00") and len(im["date"]) == len("2016-01-01 00:00:00+00:00")
        for cat in data["categories"]:
            assert INAT_CATEGORY_KEYS <= cat.keys()
            assert cat["name"] == f"{cat['genus']} {cat['specific_epithet']}"
            assert cat["image_dir_name"] == f"{cat['id']:05d}_" + "_".join(cat[k] for k in TAXA)
        ids = {im["id"] for im in data["images"]}
        assert all(a["image_id"] in ids and 0 <= a["category_id"] < 6 for a in data["annotations"])


def test_inat_mini_is_a_per_class_subset_of_train(inat):
    train = json.loads((inat / "train.json").read_text())
    mini = json.loads((inat / "train_mini.json").read_text())
    assert {im["file_name"] for im in mini["images"]} <= {im["file_name"] for im in train["images"]}
    assert np.bincount([a["category_id"] for a in mini["annotations"]]).tolist() == [2] * 6


def test_inat_images_are_jpegs_in_their_class_folder(inat):
    data = json.loads((inat / "val.json").read_text())
    dirs = {c["id"]: c["image_dir_name"] for c in data["categories"]}
    for im, ann in zip(data["images"], data["annotations"], strict=True):
        assert im["file_name"].split("/")[1] == dirs[ann["category_id"]]
        with Image.open(inat / im["file_name"]) as img:
            assert img.format == "JPEG" and img.size == (im["width"], im["height"]) == (32, 32)


def test_missing_metadata_fraction_holds(tmp_path):
    opts = small(train_per_class=40, val_per_class=1, train_mini_per_class=0, missing_metadata_fraction=0.3)
    images = json.loads((_written(tmp_path, opts) / "train.json").read_text())["images"]
    missing = [im["latitude"] is None or im["date"] is None for im in images]
    assert 0.2 < np.mean(missing) < 0.4
    assert any(im["latitude"] is None and im["date"] is not None for im in images)
    assert any(im["date"] is None and im["latitude"] is not None for im in images)
    assert all((im["latitude"] is None) == (im["longitude"] is None) for im in images)
    complete = _written(tmp_path / "none", small(missing_metadata_fraction=0.0))
    none = json.loads((complete / "train.json").read_text())
    assert all(im["latitude"] is not None and im["date"] is not None for im in none["images"])


def _written(root: Path, opts: SynthOptions) -> Path:
    write_inat(root, opts)
    return root


def _by_class(data: dict) -> dict[int, list[dict]]:
    label = {a["image_id"]: a["category_id"] for a in data["annotations"]}
    out: dict[int, list[dict]] = {}
    for im in data["images"]:
        out.setdefault(label[im["id"]], []).append(im)
    return out


def _mean_direction(images: list[dict]) -> np.ndarray:
    v = [[math.cos(math.radians(i["latitude"])) * math.cos(math.radians(i["longitude"])),
          math.cos(math.radians(i["latitude"])) * math.sin(math.radians(i["longitude"])),
          math.sin(math.radians(i["latitude"]))] for i in images if i["latitude"] is not None]
    m = np.mean(v, axis=0)
    return m / np.linalg.norm(m)


def _mean_season(images: list[dict]) -> complex:
    days = [int(np.datetime64(i["date"][:10]).astype("datetime64[D]").astype(int)
                - np.datetime64(i["date"][:4] + "-01-01").astype("datetime64[D]").astype(int))
            for i in images if i["date"] is not None]
    return np.mean(np.exp(2j * np.pi * np.array(days) / 365.25))


def test_siblings_differ_in_place_or_season(tmp_path):
    opts = small(genera=3, species_per_genus=2, train_per_class=30, missing_metadata_fraction=0.0, size=16)
    data = json.loads((_written(tmp_path, opts) / "train.json").read_text())
    classes = _by_class(data)
    for g in range(3):
        a, b = classes[2 * g], classes[2 * g + 1]
        apart_deg = math.degrees(math.acos(np.clip(_mean_direction(a) @ _mean_direction(b), -1, 1)))
        season_gap = abs(np.angle(_mean_season(a) / _mean_season(b))) / (2 * np.pi) * 365
        assert apart_deg > 20 or season_gap > 60, (g, apart_deg, season_gap)


def test_dates_span_the_years_including_leap_years(inat):
    data = json.loads((inat / "train.json").read_text())
    years = {int(im["date"][:4]) for im in data["images"] if im["date"]}
    assert years <= set(range(2016, 2021)) and len(years) >= 3


def test_species_of_a_genus_share_a_palette(tmp_path):
    """With nuisances off the object sits centred: its median colour is shared within a genus."""
    opts = small(genera=3, species_per_genus=2, train_per_class=6, nuisance=0.0, size=48)
    data = json.loads((_written(tmp_path, opts) / "train.json").read_text())
    centre = {c: np.median(np.concatenate([pixels(tmp_path / im["file_name"])[18:30, 18:30].reshape(-1, 3)
                                           for im in ims]), axis=0)
              for c, ims in _by_class(data).items()}
    within = np.mean([np.linalg.norm(centre[2 * g] - centre[2 * g + 1]) for g in range(3)])
    across = np.mean([np.linalg.norm(centre[a] - centre[b])
                      for a in range(6) for b in range(6) if a // 2 != b // 2])
    assert within < across / 3


# ---- Multi-domain formats


def _lines(path: Path) -> list[list[str]]:
    return [line.split(" ", 1) for line in path.read_text().splitlines()]


def test_cub_layout(multi):
    root = multi / "cub" / "CUB_200_2011"
    images = dict(_lines(root / "images.txt"))
    labels = {k: int(v) for k, v in _lines(root / "image_class_labels.txt")}
    split = {k: int(v) for k, v in _lines(root / "train_test_split.txt")}
    classes = dict(_lines(root / "classes.txt"))
    boxes = {k: [float(x) for x in v.split()] for k, v in _lines(root / "bounding_boxes.txt")}
    assert images.keys() == labels.keys() == split.keys() == boxes.keys()
    assert sorted(int(k) for k in classes) == list(range(1, 5)) and set(labels.values()) == {1, 2, 3, 4}
    assert set(split.values()) == {0, 1}
    for image_id, rel in images.items():
        assert rel.split("/")[0] == classes[str(labels[image_id])]
        assert classes[str(labels[image_id])][:4] == f"{labels[image_id]:03d}."
        assert (root / "images" / rel).is_file()
        x, y, w, h = boxes[image_id]
        assert w > 0 and h > 0 and x + w <= 32 and y + h <= 32


def test_cars_mat_files_have_the_devkit_layout(multi):
    root = multi / "cars"
    meta = scipy.io.loadmat(root / "devkit" / "cars_meta.mat")
    assert meta["class_names"].shape == (1, 4)
    names = [str(n[0]) for n in meta["class_names"][0]]
    assert len(set(names)) == 4
    for mat, folder in (("devkit/cars_train_annos.mat", "cars_train"),
                        ("devkit/cars_test_annos_withlabels.mat", "cars_test")):
        ann = scipy.io.loadmat(root / mat)["annotations"]
        assert ann.shape[0] == 1 and ann.shape[1] > 0
        assert {"bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"} <= set(ann.dtype.names)
        for a in ann[0]:
            assert 1 <= int(a["class"][0, 0]) <= 4
            assert (root / folder / str(a["fname"][0])).is_file()
            assert 1 <= int(a["bbox_x1"][0, 0]) < int(a["bbox_x2"][0, 0]) <= 32
        assert str(ann[0, 0]["fname"][0]) == "00001.jpg"
    train = scipy.io.loadmat(root / "devkit" / "cars_train_annos.mat")["annotations"]
    assert train.shape[1] == 16  # 4 classes x (6 - 2 test)


def test_aircraft_layout_and_banner(multi):
    data = multi / "aircraft" / "fgvc-aircraft-2013b" / "data"
    variants = (data / "variants.txt").read_text().splitlines()
    assert len(variants) == 4 and any(" " in v for v in variants)
    levels = (("variant", "variants"), ("family", "families"), ("manufacturer", "manufacturers"))
    for level, listing in levels:
        names = set((data / f"{listing}.txt").read_text().splitlines())
        rows = {s: _lines(data / f"images_{level}_{s}.txt") for s in ("train", "val", "trainval", "test")}
        assert {i for i, _ in rows["trainval"]} == {i for i, _ in rows["train"] + rows["val"]}
        assert not {i for i, _ in rows["trainval"]} & {i for i, _ in rows["test"]}
        for image_id, name in functools.reduce(operator.iadd, rows.values(), []):
            assert len(image_id) == 7 and image_id.isdigit() and name in names
    image_id = _lines(data / "images_variant_test.txt")[0][0]
    img = pixels(data / "images" / f"{image_id}.jpg").astype(float)
    assert img.shape == (32 + BANNER_HEIGHT, 32, 3)
    banner, photo = img[-BANNER_HEIGHT:], img[:-BANNER_HEIGHT]
    assert banner[:3].mean() < 60 and photo.mean() > 90  # a dark strip under a sky-lit photo
    assert banner.std() > 40  # it carries 'text'


def test_flowers_mat_files(multi):
    root = multi / "flowers"
    labels = scipy.io.loadmat(root / "imagelabels.mat")["labels"]
    setid = scipy.io.loadmat(root / "setid.mat")
    n = labels.shape[1]
    assert labels.shape == (1, 24) and set(labels[0].tolist()) == {1, 2, 3, 4}
    ids = np.concatenate([setid[k][0] for k in ("trnid", "valid", "tstid")])
    assert all(setid[k].shape[0] == 1 for k in ("trnid", "valid", "tstid"))
    assert sorted(ids.tolist()) == list(range(1, n + 1))
    assert all((root / "jpg" / f"image_{i:05d}.jpg").is_file() for i in ids)


def test_domains_look_different(multi):
    """Mean colours of the four domains differ clearly (shape families differ too, by construction)."""
    folders = {"cub": next((multi / "cub").rglob("*.jpg")).parent, "cars": multi / "cars" / "cars_train",
               "aircraft": next((multi / "aircraft").rglob("*.jpg")).parent,
               "flowers": multi / "flowers" / "jpg"}
    means = {d: np.mean([pixels(p)[:32].reshape(-1, 3).mean(0) for p in sorted(folder.glob("*.jpg"))[:6]], 0)
             for d, folder in folders.items()}
    names = list(means)
    gaps = [np.linalg.norm(means[a] - means[b]) for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 10


def test_domain_selection(tmp_path):
    summary = write_multidomain(tmp_path, small(domains=("flowers",)))
    assert list(summary["domains"]) == ["flowers"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers"]


# ---- Determinism and caching


def _inat_snapshot(root: Path) -> tuple[dict[str, bytes], list[np.ndarray]]:
    files = {name: (root / f"{name}.json").read_bytes() for name in ("train", "train_mini", "val")}
    images = json.loads(files["val"])["images"]
    return files, [pixels(root / im["file_name"]) for im in images]


def test_same_seed_same_bytes_and_pixels(tmp_path):
    write_inat(tmp_path / "a", small())
    write_inat(tmp_path / "b", small())
    (ja, pa), (jb, pb) = _inat_snapshot(tmp_path / "a"), _inat_snapshot(tmp_path / "b")
    assert ja == jb
    assert all(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))
    write_multidomain(tmp_path / "ma", small(domains=("cars", "flowers")))
    write_multidomain(tmp_path / "mb", small(domains=("cars", "flowers")))
    for rel in ("cars/devkit/cars_train_annos.mat", "flowers/setid.mat", "flowers/imagelabels.mat"):
        assert (tmp_path / "ma" / rel).read_bytes() == (tmp_path / "mb" / rel).read_bytes()
        assert b"Created on" not in (tmp_path / "ma" / rel).read_bytes()[:116]  # no time stamp in the header
    same = "cars/cars_test/00002.jpg"
    assert np.array_equal(pixels(tmp_path / "ma" / same), pixels(tmp_path / "mb" / same))


def test_other_seed_differs(tmp_path):
    write_inat(tmp_path / "a", small())
    write_inat(tmp_path / "b", small(seed=1))
    (ja, pa), (jb, pb) = _inat_snapshot(tmp_path / "a"), _inat_snapshot(tmp_path / "b")
    assert ja["train"] != jb["train"]
    assert not any(np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))


def test_more_images_keep_the_existing_ones(tmp_path):
    """Images are keyed by (seed, domain, class, split, index): growing a split does not reshuffle."""
    write_inat(tmp_path / "a", small())
    write_inat(tmp_path / "b", small(train_per_class=6))
    a = json.loads((tmp_path / "a" / "train.json").read_text())["images"]
    b = {im["file_name"]: im for im in json.loads((tmp_path / "b" / "train.json").read_text())["images"]}
    for im in a:
        assert im["file_name"] in b and b[im["file_name"]]["latitude"] == im["latitude"]
        assert np.array_equal(pixels(tmp_path / "a" / im["file_name"]),
                              pixels(tmp_path / "b" / im["file_name"]))


def test_write_benchmark_is_idempotent(tmp_path):
    opts = small(domains=("aircraft",))
    first = write_benchmark(tmp_path, opts)
    assert (tmp_path / "inat" / "train.json").is_file() and (tmp_path / "multi" / "aircraft").is_dir()
    assert json.loads((tmp_path / "synth.json").read_text()) == first
    assert first["inat"]["classes"] == 6 and first["multi"]["domains"]["aircraft"]["classes"] == 4
    stamp = (tmp_path / "inat" / "train.json").stat().st_mtime_ns
    (tmp_path / "inat" / "marker").write_text("kept")
    assert write_benchmark(tmp_path, opts) == first
    assert (tmp_path / "inat" / "train.json").stat().st_mtime_ns == stamp
    changed = write_benchmark(tmp_path, small(domains=("aircraft",), seed=3))
    assert changed["options"]["seed"] == 3 and (tmp_path / "inat" / "train.json").stat().st_mtime_ns != stamp
    assert not (tmp_path / "inat" / "marker").exists()  # the previous benchmark's folders were replaced


@pytest.mark.parametrize("bad", [{"size": 4}, {"seed": -1}, {"genera": 0}, {"missing_metadata_fraction": 1.5},
                                 {"domains": ("cub", "dogs")}, {"train_mini_per_class": 99},
                                 {"last_year": 2000}])
def test_bad_options_are_one_line_errors(bad):
    with pytest.raises(ConfigError, match="synthetic option"):
        small(**bad)


# ---- The bytes themselves: pinned, so that a refactoring or a new (off by default) option cannot
# change what an existing seed writes. JPEG bytes depend on the encoder's version, so the pixels are
# pinned before encoding and the annotation files (which name every image) as written.

PINNED = {"size": 32, "genera": 3, "species_per_genus": 3, "train_per_class": 3, "train_mini_per_class": 2,
          "val_per_class": 2, "domain_genera": 2, "domain_species_per_genus": 2, "domain_images_per_class": 6,
          "seed": 7}
PINNED_ANNOTATIONS = "fa432b47ac51ac29dc3128ddd7f5741f550ddf82bf0b59f0c63526c658f923e1"
PINNED_PIXELS = "c37a8ecd870611fa0dbf35598bca5999093f9488d1dbfa7a4ff346504ae35cb6"


def test_annotation_files_of_a_seed_are_pinned(tmp_path):
    write_benchmark(tmp_path, SynthOptions(**PINNED))
    digest = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.suffix in (".json", ".txt"):
            digest.update(str(path.relative_to(tmp_path)).encode())
            digest.update(path.read_bytes())
    assert digest.hexdigest() == PINNED_ANNOTATIONS


def test_rendered_pixels_of_a_seed_are_pinned():
    digest = hashlib.sha256()
    for domain in DOMAINS:
        genus = make_genus(7, domain, 1, 3)
        for species in range(3):
            pixels, box = render(domain, genus, genus.look(species), image_rng(7, domain, species, "train", 0), 40)
            digest.update(pixels.tobytes())
            digest.update(repr(box).encode())
    assert digest.hexdigest() == PINNED_PIXELS
