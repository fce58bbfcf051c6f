"""Every format reader on tiny copies of the official layouts written to tmp_path.

Each reader is checked for records, labels, splits, paths and metadata, and for the bad inputs of
docs/architecture.md (Reliability): a one-line DataError naming file and record, or with
on_bad_record="skip" a problem line per bad record while every valid record is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fgvc.data.formats import (
    FORMATS,
    _common,
    aircraft,
    cars,
    cub,
    flowers,
    folder,
    inat,
    manifest,
    read_dataset,
    yfcc,
)
from fgvc.data.metadata import check_metadata
from fgvc.errors import DataError


def image(path: Path, fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (200, 30, 30)).save(path, fmt)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_format_table_and_read_dataset(tmp_path):
    assert set(FORMATS) == {"inat2017", "inat2018", "inat2021", "yfcc", "cub", "cars", "aircraft", "flowers",
                            "cifar10", "cifar100", "cinic10", "folder", "manifest"}
    message = one_line_error(read_dataset, "imagenet", tmp_path)
    assert "imagenet" in message and "inat2021" in message and "manifest" in message
    assert "unknown option 'level'" in one_line_error(read_dataset, "cub", tmp_path, level="family")


# --- CUB-200-2011 -------------------------------------------------------------------------------

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def make_cub(parent: Path) -> Path:
    root = parent / "CUB_200_2011"
    write(root / "classes.txt", "".join(f"{i} {c}\n" for i, c in enumerate(CUB_CLASSES, 1)))
    images, labels, split, boxes = [], [], [], []
    for image_id in range(1, 7):
        cls = (image_id - 1) % 3 + 1
        rel = f"{CUB_CLASSES[cls - 1]}/img_{image_id}.jpg"
        image(root / "images" / rel)
        images.append(f"{image_id} {rel}\n")
        labels.append(f"{image_id} {cls}\n")
        split.append(f"{image_id} {int(image_id <= 3)}\n")
        boxes.append(f"{image_id} 1.0 2.0 3.0 {image_id}.0\n")
    write(root / "images.txt", "".join(images))
    write(root / "image_class_labels.txt", "".join(labels))
    write(root / "train_test_split.txt", "".join(split))
    write(root / "bounding_boxes.txt", "".join(boxes))
    return root


def test_cub(tmp_path):
    root = make_cub(tmp_path)
    source = cub.read(tmp_path)
    assert source == cub.read(root)  # the CUB_200_2011 folder or its parent
    assert source.name == "cub" and source.classes == CUB_CLASSES
    assert source.default_splits == ("train", None, "test")
    assert [s.id for s in source.splits["train"]] == ["1", "2", "3"]
    assert [s.label for s in source.splits["test"]] == [0, 1, 2]
    first = source.splits["train"][0]
    assert first.path == str(root / "images" / CUB_CLASSES[0] / "img_1.jpg") and os.path.isabs(first.path)
    assert first.box == (1.0, 2.0, 3.0, 1.0) and first.dataset == "cub" and not source.problems
    assert read_dataset("cub", tmp_path, name="birds").splits["test"][0].dataset == "birds"


def test_cub_without_boxes(tmp_path):
    root = make_cub(tmp_path)
    (root / "bounding_boxes.txt").unlink()
    assert all(s.box is None for s in cub.read(root).splits["train"])


@pytest.mark.parametrize("edit, expected", [
    (lambda r: (r / "images.txt").unlink(), "images.txt: not found"),
    (lambda r: (r / "classes.txt").unlink(), "classes.txt: not found"),
    (lambda r: write(r / "image_class_labels.txt", "1 1\n2 2\n3 9\n4 1\n5 2\n6 3\n"),
     "image_class_labels.txt: image 3: class 9 is not in classes.txt"),
    (lambda r: write(r / "images.txt", (r / "images.txt").read_text() + "2 002.Laysan_Albatross/img_2.jpg\n"),
     "images.txt: line 7: duplicate id 2"),
    (lambda r: write(r / "images.txt", (r / "images.txt").read_text() + "7\n"),
     "images.txt: line 7: expected '<image_id> <path>'"),
    (lambda r: (r / "images" / CUB_CLASSES[1] / "img_5.jpg").unlink(), "images.txt: image 5: file "),
    (lambda r: write(r / "train_test_split.txt", "1 1\n2 1\n3 1\n4 1\n5 1\n6 1\n"),
     "train_test_split.txt: split 'test' has no valid records"),
])
def test_cub_errors(tmp_path, edit, expected):
    root = make_cub(tmp_path)
    edit(root)
    assert expected in one_line_error(cub.read, root)


def test_cub_skip_keeps_valid_records(tmp_path):
    root = make_cub(tmp_path)
    write(root / "image_class_labels.txt", "1 1\n2 2\n3 9\n4 1\n5 2\n6 3\n")
    (root / "images" / CUB_CLASSES[1] / "img_5.jpg").unlink()
    source = cub.read(root, on_bad_record="skip")
    assert len(source.problems) == 2
    assert "image 3: class 9" in source.problems[0] and "img_5.jpg not found" in source.problems[1]
    assert [s.id for s in source.splits["train"]] == ["1", "2"]
    assert [s.id for s in source.splits["test"]] == ["4", "6"]


# --- Stanford Cars ------------------------------------------------------------------------------

CAR_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Volvo XC90 SUV 2007"]


def struct_array(records: list[dict]) -> np.ndarray:
    """A 1 x N MATLAB struct array whose fields are 1x1 arrays, as in the devkit."""
    names = list(records[0])
    array = np.zeros((1, len(records)), dtype=[(n, "O") for n in names])
    for i, record in enumerate(records):
        array[0, i] = tuple(np.array([v]) if isinstance(v, str) else
                            np.array([[v]], dtype=np.uint8 if n in ("class", "test") else np.float64)
                            for n, v in record.items())
    return array


def cell(strings: list[str]) -> np.ndarray:
    out = np.empty((1, len(strings)), dtype=object)
    out[0, :] = [np.array([s]) for s in strings]
    return out


def car_records(labels: list[int]) -> list[dict]:
    return [{"bbox_x1": 1, "bbox_y1": 2, "bbox_x2": 5, "bbox_y2": 6, "class": c, "fname": f"{i:05d}.jpg"}
            for i, c in enumerate(labels, 1)]


def make_cars_devkit(root: Path, test_in_devkit: bool = False, train_labels=(1, 2, 3, 1)) -> Path:
    (root / "devkit").mkdir(parents=True)
    scipy.io.savemat(root / "devkit" / "cars_meta.mat", {"class_names": cell(CAR_CLASSES)})
    train_annotations = struct_array(car_records(list(train_labels)))
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": train_annotations})
    test_dir = root / "devkit" if test_in_devkit else root
    test_annotations = struct_array(car_records([3, 2, 1]))
    scipy.io.savemat(test_dir / "cars_test_annos_withlabels.mat", {"annotations": test_annotations})
    for i in range(1, len(train_labels) + 1):
        image(root / "cars_train" / f"{i:05d}.jpg")
    for i in range(1, 4):
        image(root / "cars_test" / f"{i:05d}.jpg")
    return root


@pytest.mark.parametrize("test_in_devkit", [False, True])
def test_cars_devkit(tmp_path, test_in_devkit):
    root = make_cars_devkit(tmp_path / "stanford_cars", test_in_devkit)
    source = cars.read(tmp_path)  # torchvision's parent folder also works
    assert source.classes == CAR_CLASSES and source.default_splits == ("train", None, "test")
    assert [s.label for s in source.splits["train"]] == [0, 1, 2, 0]
    assert [s.label for s in source.splits["test"]] == [2, 1, 0]
    first = source.splits["test"][0]
    assert first.path == str(root / "cars_test" / "00001.jpg") and first.id == "00001.jpg"
    assert first.box == (1.0, 2.0, 4.0, 4.0)


def test_cars_single_file(tmp_path):
    records = [{"relative_im_path": f"car_ims/{i:06d}.jpg", "bbox_x1": 0, "bbox_y1": 0, "bbox_x2": 4,
                "bbox_y2": 4, "class": c, "test": t}
               for i, (c, t) in enumerate([(1, 0), (2, 0), (3, 1), (1, 1)], 1)]
    scipy.io.savemat(tmp_path / "cars_annos.mat",
                     {"annotations": struct_array(records), "class_names": cell(CAR_CLASSES)})
    for r in records:
        image(tmp_path / r["relative_im_path"])
    source = cars.read(tmp_path)
    assert [s.id for s in source.splits["train"]] == ["car_ims/000001.jpg", "car_ims/000002.jpg"]
    assert [s.label for s in source.splits["test"]] == [2, 0]


def test_mat_helpers_accept_both_shapes(tmp_path):
    path = tmp_path / "a.mat"
    scipy.io.savemat(path, {"annotations": struct_array(car_records([1, 2])), "class_names": cell(["x"]),
                            "labels": np.array([[1.0, 2.0]])})
    for squeeze in (False, True):
        mat = scipy.io.loadmat(path, squeeze_me=squeeze)
        assert _common.mat_records(mat["annotations"], path, "annotations")[1]["fname"] == "00002.jpg"
        assert _common.mat_list(mat["class_names"]) == ["x"]
        assert [_common.as_int(v) for v in _common.mat_list(mat["labels"])] == [1, 2]


@pytest.mark.parametrize("edit, expected", [
    (lambda r: (r / "cars_test_annos_withlabels.mat").unlink(), "cars_test_annos_withlabels.mat: not found"),
    (lambda r: scipy.io.savemat(r / "devkit" / "cars_train_annos.mat",
                                {"annotations": struct_array(car_records([1, 2, 197, 1]))}),
     "cars_train_annos.mat: annotation 3 (00003.jpg): class 197 is not in 1..3"),
    (lambda r: (r / "cars_train" / "00002.jpg").unlink(),
     "cars_train_annos.mat: annotation 2 (00002.jpg): file"),
    (lambda r: write(r / "devkit" / "cars_meta.mat", "not a mat file"),
     "cars_meta.mat: not a readable .mat file"),
])
def test_cars_errors(tmp_path, edit, expected):
    root = make_cars_devkit(tmp_path)
    edit(root)
    assert expected in one_line_error(cars.read, root)


def test_cars_duplicate_and_skip(tmp_path):
    root = make_cars_devkit(tmp_path)
    records = car_records([1, 2, 3, 1])
    records[3]["fname"] = "00001.jpg"
    scipy.io.savemat(root / "devkit" / "cars_train_annos.mat", {"annotations": struct_array(records)})
    assert "annotation 4 (00001.jpg): duplicate image" in one_line_error(cars.read, root)
    source = cars.read(root, on_bad_record="skip")
    assert len(source.problems) == 1 and len(source.splits["train"]) == 3


# --- FGVC-Aircraft ------------------------------------------------------------------------------

VARIANTS = ["707-320", "A300B4", "Cessna 172"]
FAMILY_OF = {"707-320": "Boeing 707", "A300B4": "A300", "Cessna 172": "Cessna 172"}


def make_aircraft(parent: Path) -> Path:
    data = parent / "fgvc-aircraft-2013b" / "data"
    write(data / "variants.txt", "\n".join(VARIANTS) + "\n")
    write(data / "families.txt", "\n".join(sorted(set(FAMILY_OF.values()))) + "\n")
    ids = {"train": ["0000001", "0000002", "0000003"], "val": ["0000004", "0000005", "0000006"],
           "test": ["0000007", "0000008", "0000009"]}
    ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        lines = [f"{i} {VARIANTS[int(i) % 3]}\n" for i in names]
        write(data / f"images_variant_{split}.txt", "".join(lines))
        families = [f"{i} {FAMILY_OF[VARIANTS[int(i) % 3]]}\n" for i in names]
        write(data / f"images_family_{split}.txt", "".join(families))
    for i in range(1, 10):
        image(data / "images" / f"{i:07d}.jpg")
    return data


def test_aircraft(tmp_path):
    data = make_aircraft(tmp_path)
    source = aircraft.read(data.parent)  # fgvc-aircraft-2013b or its data/ folder
    assert source == aircraft.read(data) == aircraft.read(tmp_path)
    assert source.classes == VARIANTS and source.default_splits == ("trainval", None, "test")
    assert set(source.splits) == {"train", "val", "trainval", "test"}
    assert [s.label for s in source.splits["trainval"]] == [1, 2, 0, 1, 2, 0]
    assert [s.label for s in source.splits["test"]] == [1, 2, 0]  # "Cessna 172" has a space
    sample = source.splits["test"][2]
    assert (sample.id, sample.trim_bottom) == ("0000009", 20)
    assert sample.path == str(data / "images" / "0000009.jpg")
    assert all(s.trim_bottom == 0 for s in aircraft.read(data, crop_banner=False).splits["train"])


def test_aircraft_family_level(tmp_path):
    data = make_aircraft(tmp_path)
    source = read_dataset("aircraft", data, level="family")
    assert source.classes == ["A300", "Boeing 707", "Cessna 172"]
    assert [source.classes[s.label] for s in source.splits["test"]] == ["A300", "Cessna 172", "Boeing 707"]
    assert "manufacturers.txt: not found" in one_line_error(aircraft.read, data, level="manufacturer")
    assert "level must be one of" in one_line_error(aircraft.read, data, level="model")


def test_aircraft_errors_and_skip(tmp_path):
    data = make_aircraft(tmp_path)
    write(data / "images_variant_test.txt",
          "0000007 A300B4\n0000008 Concorde\n0000009 Cessna 172\n0000010 A300B4\n")
    expected = "images_variant_test.txt: image 0000008: class 'Concorde' is not in variants.txt"
    assert expected in one_line_error(aircraft.read, data)
    source = aircraft.read(data, on_bad_record="skip")
    assert [s.id for s in source.splits["test"]] == ["0000007", "0000009"]
    assert len(source.problems) == 2 and "0000010.jpg not found" in source.problems[1]
    write(data / "images_variant_test.txt", "0000008 Concorde\n")
    assert "images_variant_test.txt: split 'test' has no valid records" in one_line_error(
        aircraft.read, data, on_bad_record="skip")


# --- Flowers-102 --------------------------------------------------------------------------------

def make_flowers(root: Path, labels=(1, 2, 3, 1, 2, 3, 1, 2, 3), tstid=(7, 8, 9)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "imagelabels.mat", {"labels": np.array([labels], dtype=np.float64)})
    scipy.io.savemat(root / "setid.mat", {"trnid": np.array([[1, 2, 3]], dtype=np.uint16),
                                          "valid": np.array([[4, 5, 6]], dtype=np.uint16),
                                          "tstid": np.array([tstid], dtype=np.uint16)})
    for i in range(1, len(labels) + 1):
        image(root / "jpg" / f"image_{i:05d}.jpg")
    return root


def test_flowers(tmp_path):
    root = make_flowers(tmp_path / "flowers")
    source = flowers.read(root)
    assert source.classes == ["class_001", "class_002", "class_003"]
    assert source.default_splits == ("trainval", None, "test")
    assert [s.id for s in source.splits["trainval"]] == [f"image_{i:05d}" for i in range(1, 7)]
    assert [s.label for s in source.splits["test"]] == [0, 1, 2]
    assert source.splits["train"][0].path == str(root / "jpg" / "image_00001.jpg")
    names = write(tmp_path / "names.txt", "pink primrose\nhard-leaved pocket orchid\ncanterbury bells\n")
    assert flowers.read(root, names=names).classes[1] == "hard-leaved pocket orchid"
    assert flowers.read(root, names=["a", "b", "c", "d"]).classes == ["a", "b", "c", "d"]


def test_flowers_errors_and_skip(tmp_path):
    root = make_flowers(tmp_path / "flowers", tstid=(7, 8, 9, 8, 99))
    assert "setid.mat: tstid: image 8: listed twice" in one_line_error(flowers.read, root)
    source = flowers.read(root, on_bad_record="skip")
    assert "tstid: image 99: has no label in imagelabels.mat" in source.problems[1]
    assert [s.id for s in source.splits["test"]] == ["image_00007", "image_00008", "image_00009"]
    expected = "imagelabels.mat: image 3: label 3 is not in 1..2"
    assert expected in one_line_error(flowers.read, root, names=["a", "b"])
    (root / "jpg" / "image_00002.jpg").unlink()
    assert "setid.mat: trnid: image 2: file" in one_line_error(flowers.read, root)  # trnid is read first
    (root / "setid.mat").unlink()
    assert "setid.mat: not found" in one_line_error(flowers.read, root)


# --- iNaturalist 2017 / 2018 ----------------------------------------------------------------------

def inat_coco(images: list[dict], labels: list[int], categories: list[dict]) -> dict:
    annotations = [{"id": 100 + i, "image_id": img["id"], "category_id": c} for i, (img, c) in
                   enumerate(zip(images, labels))]
    return {"images": images, "annotations": annotations, "categories": categories, "info": {}}


def make_inat_old(root: Path, year: str) -> Path:
    cats = [{"id": 9, "name": "Quercus alba", "supercategory": "Plantae"},
            {"id": 2, "name": "Turdus migratorius", "supercategory": "Aves"},
            {"id": 5, "name": "Bufo bufo", "supercategory": "Amphibia"}]
    split_ids = {"train": [1, 2, 3, 4], "val": [11, 12, 13]}
    for split, ids in split_ids.items():
        images = [{"id": i, "file_name": f"train_val{year}/x/{i}.jpg", "width": 8, "height": 6} for i in ids]
        for img in images:
            image(root / img["file_name"])
        labels = [[9, 2, 5][k % 3] for k in range(len(ids))]
        write(root / f"{split}{year}.json", json.dumps(inat_coco(images, labels, cats)))
    locations = [{"id": 1, "lat": 45.0, "lon": -90.0, "date_c": 0.5, "user_id": 7},
                 {"id": 2, "lat": None, "lon": None, "date_c": None, "user_id": None},
                 {"id": 3, "lat": 95.0, "lon": 10.0, "date_c": 0.25, "user_id": 8}]  # out of range: kept
    write(root / f"train{year}_locations.json", json.dumps(locations))
    return root


@pytest.mark.parametrize("year", ["2017", "2018"])
def test_inat_2017_2018(tmp_path, year):
    root = make_inat_old(tmp_path, year)
    source = read_dataset(f"inat{year}", root)
    assert source.name == f"inat{year}" and source.default_splits == ("train", None, "val")
    assert source.classes == ["Turdus migratorius", "Bufo bufo", "Quercus alba"]  # sorted ids 2, 5, 9
    assert source.taxonomy == {"supercategory": ["Aves", "Amphibia", "Plantae"]}
    train = source.splits["train"]
    assert [s.label for s in train] == [2, 0, 1, 2] and [s.id for s in train] == ["1", "2", "3", "4"]
    assert train[0].path == str(root / f"train_val{year}" / "x" / "1.jpg")
    assert (train[0].lat, train[0].lon, train[0].date) == (45.0, -90.0, 0.5)
    assert (train[1].lat, train[1].date) == (None, None) and train[3].lat is None  # no location record
    assert train[2].lat == 95.0 and check_metadata(train[2], ("geo",)).startswith("invalid")
    assert all(s.lat is None for s in source.splits["val"])  # no val locations file


def test_inat_2018_categories_file(tmp_path):
    root = make_inat_old(tmp_path, "2018")
    write(root / "categories.json", json.dumps([
        {"id": k, "name": n, "kingdom": "K", "genus": g} for k, n, g in
        [(2, "Turdus migratorius", "Turdus"), (5, "Bufo bufo", "Bufo"), (9, "Quercus alba", "Quercus")]]))
    source = inat.read(root, 2018)
    assert source.taxonomy["genus"] == ["Turdus", "Bufo", "Quercus"]
    assert source.taxonomy["supercategory"] == ["Aves", "Amphibia", "Plantae"]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["annotations"][2].update(category_id=99),
     "train2017.json: annotation 102: category_id 99 is not in categories"),
    (lambda d: d["images"][1].update(id=1), "train2017.json: image 1: duplicate image id"),
    (lambda d: d["annotations"][0].update(image_id=555),
     "train2017.json: annotation 100: image_id 555 is not in images"),
    (lambda d: d["annotations"][1].pop("category_id"), "train2017.json: annotation 101: missing key"),
    (lambda d: d["images"][3].update(file_name="nowhere/4.jpg"), "train2017.json: image 4: file "),
    (lambda d: d.pop("annotations"), "train2017.json: missing key 'annotations'"),
])
def test_inat_errors(tmp_path, change, expected):
    root = make_inat_old(tmp_path, "2017")
    edit_json(root / "train2017.json", change)
    assert expected in one_line_error(inat.read, root, 2017)


def test_inat_skip_and_bad_metadata_type(tmp_path):
    root = make_inat_old(tmp_path, "2017")
    edit_json(root / "train2017.json", lambda d: d["annotations"][2].update(category_id=99))
    write(root / "train2017_locations.json", json.dumps([{"id": 1, "lat": "abc", "lon": 3.0, "date_c": 0.5}]))
    source = inat.read(root, 2017, on_bad_record="skip")
    assert [s.id for s in source.splits["train"]] == ["1", "2", "4"]
    assert source.problems == ["train2017_locations.json: image 1: lat 'abc' is not a number",
                               "train2017.json: annotation 102: category_id 99 is not in categories",
                               "train2017.json: image 3: no annotation"]
    first = source.splits["train"][0]
    assert first.lat is None and first.lon == 3.0  # kept, with the bad value as None
    assert "train2017_locations.json: image 1: lat 'abc' is not a number" in one_line_error(
        inat.read, root, 2017, on_bad_record="error")


def test_inat_missing_files(tmp_path):
    root = make_inat_old(tmp_path, "2017")
    (root / "val2017.json").unlink()
    assert "needs train2017.json and val2017.json" in one_line_error(inat.read, root, 2017)
    write(root / "val2017.json", "{not json")
    assert "val2017.json: not valid JSON" in one_line_error(inat.read, root, 2017)


# --- iNaturalist 2021 ---------------------------------------------------------------------------

INAT21_CATEGORIES = [
    {"id": k, "name": f"Quercus {e}", "common_name": f"oak {k}", "supercategory": "Plants",
     "kingdom": "Plantae", "phylum": "Tracheophyta", "class": "Magnoliopsida", "order": "Fagales",
     "family": "Fagaceae", "genus": "Quercus", "specific_epithet": e,
     "image_dir_name": f"{k:05d}_Plantae_Quercus_{e}"}
    for k, e in [(0, "alba"), (1, "robur")]] + [
    {"id": 2, "name": "Turdus merula", "common_name": "blackbird", "supercategory": "Birds",
     "kingdom": "Animalia", "phylum": "Chordata", "class": "Aves", "order": "Passeriformes",
     "family": "Turdidae", "genus": "Turdus", "specific_epithet": "merula",
     "image_dir_name": "00002_Animalia_Turdus_merula"}]


def make_inat21(root: Path, files=("train", "train_mini", "val")) -> Path:
    for split in files:
        images = []
        for k in range(6 if split == "train" else 3):
            cat = INAT21_CATEGORIES[k % 3]
            rel = f"{'val' if split == 'val' else 'train'}/{cat['image_dir_name']}/{split}-{k}.jpg"
            image(root / rel)
            images.append({"id": f"{split}-{k}", "file_name": rel, "width": 8, "height": 6,
                           "latitude": 45.0 - k, "longitude": -90.0,
                           "date": f"2020-07-0{k + 1} 10:00:00+00:00", "location_uncertainty": 10})
        images[-1].update(latitude=None, longitude=None, date=None)
        data = inat_coco(images, [k % 3 for k in range(len(images))], INAT21_CATEGORIES)
        write(root / f"{split}.json", json.dumps(data))
    return root


def test_inat2021(tmp_path):
    root = make_inat21(tmp_path)
    source = read_dataset("inat2021", root)
    assert source.default_splits == ("train_mini", None, "val")
    assert set(source.splits) == {"train", "train_mini", "val"}
    assert source.classes == ["Quercus alba", "Quercus robur", "Turdus merula"]
    genus = source.taxonomy["genus"]
    oaks = [source.classes[i] for i, g in enumerate(genus) if g == "Quercus"]
    assert oaks == ["Quercus alba", "Quercus robur"]
    assert source.taxonomy["kingdom"] == ["Plantae", "Plantae", "Animalia"]
    val = source.splits["val"]
    assert val[0].path == str(root / "val" / "00000_Plantae_Quercus_alba" / "val-0.jpg")
    assert (val[0].lat, val[0].lon, val[0].date) == (45.0, -90.0, "2020-07-01 10:00:00+00:00")
    assert check_metadata(val[0], ("geo", "temporal")) is None
    assert check_metadata(val[2], ("geo", "temporal")) == "missing"
    assert [s.label for s in source.splits["train"]] == [0, 1, 2, 0, 1, 2]


def test_inat2021_split_selection(tmp_path):
    root = make_inat21(tmp_path, files=("train", "val"))
    assert inat.read(root, 2021).default_splits == ("train", None, "val")
    make_inat21(tmp_path / "all")
    source = inat.read(tmp_path / "all", 2021, splits=("train_mini", "val"))
    assert set(source.splits) == {"train_mini", "val"}
    assert "unknown split 'mini'" in one_line_error(inat.read, root, 2021, splits=("mini",))
    edit_json(root / "val.json", lambda d: d["images"][0].update(latitude=[1]))
    assert "val.json: image val-0: latitude [1] is not a number" in one_line_error(inat.read, root, 2021)


# --- YFCC100M-GEO100 ----------------------------------------------------------------------------

def make_yfcc(root: Path, per_class: int = 20) -> Path:
    lines = []
    for c in ("zebra", "apple"):
        for k in range(per_class):
            rel = f"{c}/{k:04d}.jpg"
            image(root / "img" / rel)
            lines.append(f"{rel} {10 + k * 0.5} {-20 - k}\n")
    write(root / "photo2gps.txt", "".join(lines))
    return root


def test_yfcc_make_split_and_read(tmp_path):
    root = make_yfcc(tmp_path)
    assert "make_split" in one_line_error(yfcc.read, root)  # no CSV yet: say how to create it
    counts = yfcc.make_split(root / "photo2gps.txt", root / "train_test_split.csv", seed=0)
    assert counts == {"train": 30, "val": 2, "test": 8}  # per class 15 / 1 / 4
    first = (root / "train_test_split.csv").read_text()
    yfcc.make_split(root / "photo2gps.txt", root / "again.csv", seed=0)
    assert (root / "again.csv").read_text() == first
    yfcc.make_split(root / "photo2gps.txt", root / "other.csv", seed=1)
    assert (root / "other.csv").read_text() != first
    source = read_dataset("yfcc", root)
    assert source.classes == ["apple", "zebra"] and source.default_splits == ("train", "val", "test")
    assert {s: len(v) for s, v in source.splits.items()} == {"train": 30, "val": 2, "test": 8}
    sample = next(s for split in source.splits.values() for s in split if s.id == "apple/0002.jpg")
    assert (sample.label, sample.lat, sample.lon, sample.date) == (0, 11.0, -22.0, None)
    assert sample.path == str(root / "img" / "apple" / "0002.jpg")


def test_yfcc_errors(tmp_path):
    root = make_yfcc(tmp_path, per_class=4)
    write(root / "train_test_split.csv", "path,lat,lon,split,class\nzebra/0000.jpg,1,2,train,1\n"
          "apple/0000.jpg,1,2,val,apple\nzebra/0001.jpg,1,2,test,0\nzebra/0002.jpg,1,2,holdout,1\n"
          "apple/0001.jpg,x,2,train,0\napple/0002.jpg,,,test,0\n")
    expected = "train_test_split.csv: line 4: class '0' disagrees with path 'zebra/0001.jpg'"
    assert expected in one_line_error(yfcc.read, root)
    source = yfcc.read(root, on_bad_record="skip")
    assert len(source.problems) == 3 and "line 5: split 'holdout'" in source.problems[1]
    assert "line 6: lat 'x' is not a number" in source.problems[2]
    assert [s.id for s in source.splits["train"]] == ["zebra/0000.jpg", "apple/0001.jpg"]
    assert source.splits["test"][0].lat is None and source.splits["train"][1].lat is None
    write(root / "photo2gps.txt", "zebra/0000.jpg 1.0\n")
    assert "photo2gps.txt: line 1: expected '<path> <lat> <lon>'" in one_line_error(
        yfcc.make_split, root / "photo2gps.txt", root / "x.csv")


def test_yfcc_empty_split(tmp_path):
    root = make_yfcc(tmp_path, per_class=2)
    write(root / "train_test_split.csv", "path,lat,lon,split,class\nzebra/0000.jpg,1,2,train,1\n"
          "apple/0000.jpg,1,2,val,0\n")
    assert "train_test_split.csv: split 'test' has no valid records" in one_line_error(yfcc.read, root)


# --- Folder -------------------------------------------------------------------------------------

def test_folder_single_split(tmp_path):
    for rel in ("cat/a.jpg", "cat/B.JPG", "cat/sub/c.png", "dog/d.webp", "dog/e.jpeg", "bird/f.bmp"):
        image(tmp_path / rel, {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}[
            rel.rsplit(".", 1)[1].lower()])
    write(tmp_path / "cat" / "notes.txt", "x")
    write(tmp_path / "README", "x")
    source = folder.read(tmp_path)
    assert source.classes == ["bird", "cat", "dog"] and list(source.splits) == ["train"]
    assert source.default_splits == ("train", None, None)
    assert [(s.id, s.label) for s in source.splits["train"]] == [
        ("bird/f.bmp", 0), ("cat/B.JPG", 1), ("cat/a.jpg", 1), ("cat/sub/c.png", 1), ("dog/d.webp", 2),
        ("dog/e.jpeg", 2)]
    assert source.splits["train"][0].path == str((tmp_path / "bird" / "f.bmp").resolve())


def test_folder_split_layout(tmp_path):
    for split in ("train", "val", "test"):
        for c in ("cat", "dog"):
            image(tmp_path / split / c / f"{split}.jpg")
    source = read_dataset("folder", tmp_path)
    assert source.default_splits == ("train", "val", "test")
    assert [s.id for s in source.splits["test"]] == ["test/cat/test.jpg", "test/dog/test.jpg"]
    import shutil
    shutil.rmtree(tmp_path / "test")
    assert folder.read(tmp_path).default_splits == ("train", None, "val")
    image(tmp_path / "val" / "cow" / "x.jpg")
    assert "has class folder 'cow' that 'train' lacks" in one_line_error(folder.read, tmp_path)
    shutil.rmtree(tmp_path / "val" / "cow")
    image(tmp_path / "horse" / "x.jpg")
    assert "split folders (train, val) and other folders (horse)" in one_line_error(folder.read, tmp_path)


def test_folder_empty_class(tmp_path):
    image(tmp_path / "cat" / "a.jpg")
    (tmp_path / "dog").mkdir()
    write(tmp_path / "dog" / "x.txt", "x")
    assert "dog: no images" in one_line_error(folder.read, tmp_path)
    source = folder.read(tmp_path, on_bad_record="skip")
    assert source.classes == ["cat", "dog"] and len(source.problems) == 1
    assert "not found" in one_line_error(folder.read, tmp_path / "missing")


# --- Manifest -----------------------------------------------------------------------------------

def make_manifest_images(root: Path) -> None:
    for name in ("a", "b", "c", "d"):
        image(root / "imgs" / f"{name}.jpg")


def test_manifest_csv(tmp_path):
    make_manifest_images(tmp_path)
    outside = image(tmp_path / "elsewhere" / "e.jpg")
    write(tmp_path / "data.csv", "path,label,lat,lon,date,split,notes\n"
          "imgs/a.jpg,robin,45,-90,2020-07-01,train,x\n"
          "imgs/b.jpg,oak,,,,train,\n"
          f"{outside},robin,1.5,2,0.25,test,\n"
          "imgs/c.jpg,oak,95,0,2021-13-01,val,\n")
    source = read_dataset("manifest", tmp_path / "data.csv")
    assert source.classes == ["oak", "robin"] and source.default_splits == ("train", "val", "test")
    a, b = source.splits["train"]
    assert (a.path, a.label, a.lat, a.lon, a.date, a.id) == (str(tmp_path / "imgs" / "a.jpg"), 1, 45.0, -90.0,
                                                             "2020-07-01", "2")
    assert (b.lat, b.lon, b.date) == (None, None, None)
    assert source.splits["test"][0].path == str(outside) and source.splits["test"][0].date == 0.25
    assert check_metadata(source.splits["val"][0], ("geo",)).startswith("invalid")  # kept raw, judged later


def test_manifest_jsonl_and_defaults(tmp_path):
    make_manifest_images(tmp_path)
    rows = [{"path": "imgs/a.jpg", "label": 10}, {"path": "imgs/b.jpg", "label": 2, "lat": None},
            {"path": "imgs/c.jpg", "label": "2", "date": "2021-06-01 10:00:00"}]
    write(tmp_path / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    source = manifest.read(tmp_path)  # a folder holding manifest.jsonl
    assert source.classes == ["2", "10"]  # integer labels sort numerically
    assert list(source.splits) == ["train"] and source.default_splits == ("train", None, None)
    assert [s.label for s in source.splits["train"]] == [1, 0, 0]
    assert source.splits["train"][2].date == "2021-06-01 10:00:00"


@pytest.mark.parametrize("text, expected", [
    ("imgs/a.jpg,robin\n",
     "data.csv: the header must name columns path,label (line 1 is 'imgs/a.jpg,robin')"),
    ("path,label\nimgs/a.jpg,robin\nimgs/a.jpg,oak\n",
     "data.csv: line 3: duplicate path imgs/a.jpg (also line 2)"),
    ("path,label\nimgs/a.jpg,robin\nimgs/zz.jpg,oak\n", "data.csv: line 3: file "),
    ("path,label\nimgs/a.jpg,robin\nimgs/b.jpg,\n", "data.csv: line 3: empty label"),
    ("path,label,lat\nimgs/a.jpg,robin,north\n", "data.csv: line 2: lat 'north' is not a number"),
    ("path,label,split\nimgs/a.jpg,robin,test\n", "no 'train' split"),
])
def test_manifest_errors(tmp_path, text, expected):
    make_manifest_images(tmp_path)
    write(tmp_path / "data.csv", text)
    assert expected in one_line_error(manifest.read, tmp_path / "data.csv")


def test_manifest_skip(tmp_path):
    make_manifest_images(tmp_path)
    write(tmp_path / "m.jsonl", '{"path": "imgs/a.jpg", "label": "x"}\nnot json\n'
          '{"path": "imgs/q.jpg", "label": "y"}\n{"path": "imgs/b.jpg", "label": "x", "lat": "abc"}\n')
    assert "m.jsonl: line 2: not a JSON object" in one_line_error(manifest.read, tmp_path / "m.jsonl")
    source = manifest.read(tmp_path / "m.jsonl", on_bad_record="skip")
    assert [s.id for s in source.splits["train"]] == ["1", "4"] and source.splits["train"][1].lat is None
    assert len(source.problems) == 3
    assert source.classes == ["x", "y"]  # a skipped image does not change the label space
