"""`fgvc predict` for real batches: metadata per photo (EXIF, manifest, command line), CSV/JSONL/JSON
rows equal to the model's own forward pass, resume after SIGKILL, priors, allow-lists and roll-up,
and the hostile cases (`--lat nan`, unreadable files, `--topk 0`)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from fgvc.cli import main
from fgvc.data.metadata import encode_metadata
from fgvc.deploy.exif import PhotoMetadata, read_photo
from fgvc.deploy.model import load_inference_model
from fgvc.deploy.predict import expand_inputs, predict_files, read_manifest
from fgvc.deploy.predictor import Given, Metadata, Predictor, load_prior, read_species_list, resolve_metadata
from fgvc.errors import FgvcError


def _rational(value: float) -> tuple:
    f = Fraction(str(value))
    return (IFDRational(abs(f.numerator), f.denominator), IFDRational(0, 1), IFDRational(0, 1))


def save_with_exif(src: Path, dst: Path, lat: float | None, lon: float | None, date: str | None) -> None:
    """Re-save a JPEG with GPS (decimal degrees as one exact rational) and DateTimeOriginal."""
    exif = Image.Exif()
    if lat is not None:
        exif[ExifTags.IFD.GPSInfo] = {1: "N" if lat >= 0 else "S", 2: _rational(lat),
                                      3: "E" if lon >= 0 else "W", 4: _rational(lon)}
    if date is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = date.replace("-", ":")[:19]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as img:
        img.save(dst, "JPEG", quality=95, exif=exif)


@pytest.fixture(scope="module")
def photos(deploy_models, tmp_path_factory):
    """The val images as field photos: GPS and date in their EXIF (from val.json), in two folders."""
    root = tmp_path_factory.mktemp("photos")
    info = json.loads((deploy_models.data / "val.json").read_text())
    for n, image in enumerate(info["images"]):
        folder = "a" if n % 2 else "b/deeper"
        save_with_exif(deploy_models.data / image["file_name"], root / folder / f"{n:03d}.jpg",
                       image["latitude"], image["longitude"], image["date"])
    return root


def run(*args: str) -> int:
    return main(["-q", "predict", *map(str, args)])


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def expected_probabilities(model, path: str, meta: PhotoMetadata) -> torch.Tensor:
    pixels, _ = read_photo(Path(path).read_bytes(), path)
    encoded = torch.from_numpy(encode_metadata(meta.lat, meta.lon, meta.date, model.metadata))[None]
    return model(model.preprocess(pixels)[None], encoded).softmax(1)[0]


# --- rows against the model ---------------------------------------------------------------------------


def test_rows_equal_the_models_forward_pass_with_exif_metadata(deploy_models, photos, tmp_path):
    model = load_inference_model(deploy_models.dynamic_mlp)
    out_csv, out_jsonl = tmp_path / "r.csv", tmp_path / "r.jsonl"
    assert run("--checkpoint", deploy_models.dynamic_mlp, photos, "--out", out_csv, "--topk", 3) == 0
    assert run("--checkpoint", deploy_models.dynamic_mlp, photos, "--out", out_jsonl, "--topk", 3,
               "--batch-size", 5, "--workers", 0) == 0
    rows, jsonl = read_csv(out_csv), [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert len(rows) == len(jsonl) == 12 and [r["image"] for r in rows] == [r["image"] for r in jsonl]
    assert [r["image"] for r in rows] == sorted(str(p) for p in photos.rglob("*.jpg"))  # recursive, once each
    for row, record in zip(rows, jsonl):
        exif = read_photo(Path(row["image"]).read_bytes())[1]
        assert exif.lat is not None and exif.date is not None
        probs = expected_probabilities(model, row["image"], exif)
        top = probs.topk(3)
        assert [t["class"] for t in record["top"]] == [model.classes[i] for i in top.indices]
        assert [row[f"class_{i}"] for i in (1, 2, 3)] == [t["class"] for t in record["top"]]
        for i, (p, t) in enumerate(zip(top.values.tolist(), record["top"]), 1):
            assert t["probability"] == pytest.approx(p, rel=1e-5, abs=1e-7)
            assert float(row[f"probability_{i}"]) == pytest.approx(p, rel=1e-5, abs=1e-7)
        assert record["metadata_source"] == row["metadata_source"] == "exif"
        assert (record["lat"], record["lon"], record["date"]) == (exif.lat, exif.lon, exif.date)
        assert float(row["lat"]) == exif.lat and row["date"] == exif.date
        cls = record["top"][0]["class"]
        assert record["taxonomy"]["species"] == row["species"] == cls
        assert record["taxonomy"]["genus"] == row["genus"] == cls.split()[0]
        assert row["kingdom"] == "Animalia" and row["common_name"].endswith("Beetle")
        assert "raw_class_1" not in row  # nothing re-ranks: one set of scores


def test_metadata_decides_the_scores_and_ignore_flags_drop_it(deploy_models, photos, tmp_path):
    model = load_inference_model(deploy_models.dynamic_mlp)
    image = sorted(photos.rglob("*.jpg"))[0]
    assert run("--checkpoint", deploy_models.dynamic_mlp, image, "--ignore-location", "--ignore-date",
               "--out", tmp_path / "none.jsonl") == 0
    [row] = [json.loads(line) for line in (tmp_path / "none.jsonl").read_text().splitlines()]
    assert row["metadata_source"] == "none" and row["lat"] is None and row["date"] is None
    probs = expected_probabilities(model, str(image), PhotoMetadata())
    assert row["top"][0]["probability"] == pytest.approx(probs.max().item(), rel=1e-5)
    # only the location ignored: the model reads geo+temporal, so it gets nothing (the training rule)
    assert run("--checkpoint", deploy_models.dynamic_mlp, image, "--ignore-location",
               "--out", tmp_path / "date.jsonl") == 0
    [row] = [json.loads(line) for line in (tmp_path / "date.jsonl").read_text().splitlines()]
    assert row["metadata_source"] == "none" and row["date"] is None
    # the command line for every image wins over EXIF
    assert run("--checkpoint", deploy_models.dynamic_mlp, image, "--lat", -12.5, "--lon", 130,
               "--date", "2020-01-15", "--out", tmp_path / "cli.jsonl") == 0
    [row] = [json.loads(line) for line in (tmp_path / "cli.jsonl").read_text().splitlines()]
    assert (row["lat"], row["lon"], row["date"], row["metadata_source"]) == (-12.5, 130.0, "2020-01-15", "cli")
    given = PhotoMetadata(-12.5, 130.0, "2020-01-15")
    probs = expected_probabilities(model, str(image), given)
    assert row["top"][0]["probability"] == pytest.approx(probs.max().item(), rel=1e-5)


def test_precedence_is_cli_then_file_then_exif_field_by_field():
    exif = PhotoMetadata(10.0, 20.0, "2021-06-01 10:00:00")
    meta, problems = resolve_metadata({"cli": None, "csv": Given(None, None, "2020-02-02"), "exif": exif})
    assert meta == Metadata(10.0, 20.0, "2020-02-02", "exif", "csv") and problems == []
    meta, _ = resolve_metadata({"cli": Given(1.0, 2.0, None), "csv": Given(3, 4, "2020-02-02"), "exif": exif})
    assert meta == Metadata(1.0, 2.0, "2020-02-02", "cli", "csv")
    meta, _ = resolve_metadata({"csv": Given("3.5", "4", None), "exif": exif})
    assert meta == Metadata(3.5, 4.0, "2021-06-01 10:00:00", "csv", "exif")
    # a bad value from the file: counted, and the next source is used
    meta, problems = resolve_metadata({"csv": Given(95, 4, "2021-02-30"), "exif": exif})
    assert meta == Metadata(10.0, 20.0, "2021-06-01 10:00:00", "exif", "exif")
    assert [source for source, _ in problems] == ["csv", "csv"]
    assert resolve_metadata({"csv": Given(float("nan"), 4.0, None), "exif": None})[0] == Metadata()
    assert resolve_metadata({"csv": Given("", " ", ""), "exif": exif}) == (  # empty cells: not given
        Metadata(10.0, 20.0, "2021-06-01 10:00:00", "exif", "exif"), [])
    meta, _ = resolve_metadata({"cli": Given(1.0, 2.0, "2020-01-01"), "exif": exif}, ignore_location=True)
    assert meta == Metadata(None, None, "2020-01-01", None, "cli")
    meta, _ = resolve_metadata({"exif": exif}, ignore_date=True)
    assert meta == Metadata(10.0, 20.0, None, "exif", None)


def test_manifest_csv_with_bom_and_jsonl(deploy_models, photos, tmp_path):
    images = sorted(photos.rglob("*.jpg"))[:3]
    manifest = tmp_path / "m" / "list.csv"
    manifest.parent.mkdir()
    lines = ["path,lat,lon,date", f"{os.path.relpath(images[0], manifest.parent)},-33.5,151.25,2019-07-04",
             f"{images[1]},,,", f"{images[2]},999,0,not a date"]
    manifest.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # as spreadsheets write it
    given = read_manifest(manifest)
    assert list(given) == [str(manifest.parent / os.path.relpath(images[0], manifest.parent)), str(images[1]),
                           str(images[2])]
    out = tmp_path / "r.json"
    assert run("--checkpoint", deploy_models.dynamic_mlp, "--manifest", manifest, "--out", out) == 0
    rows = json.loads(out.read_text())
    assert [r["metadata_source"] for r in rows] == ["csv", "exif", "exif"]
    assert (rows[0]["lat"], rows[0]["lon"], rows[0]["date"]) == (-33.5, 151.25, "2019-07-04")
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(images[0]), "latitude": 1.5, "longitude": 2.5}) + "\n")
    assert read_manifest(jsonl) == {str(images[0]): Given(1.5, 2.5, None)}
    (tmp_path / "bad.csv").write_text("file,lat\nx.jpg,1\n")
    with pytest.raises(FgvcError, match="'path' column"):
        read_manifest(tmp_path / "bad.csv")


def test_inputs_folders_globs_and_missing_files(photos, tmp_path):
    paths, warnings = expand_inputs([str(photos / "a"), str(photos / "b" / "**" / "*.jpg"),
                                     str(photos / "a" / "001.jpg"), str(tmp_path / "absent.jpg"),
                                     str(tmp_path / "*.png")])
    assert len(paths) == 13 and paths[-1] == str(tmp_path / "absent.jpg")  # duplicates once, absent kept
    assert warnings == [f"{tmp_path / '*.png'}: the pattern matches no file"]


# --- resume ------------------------------------------------------------------------------------------


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "fgvc", "-q", "predict", *map(str, args)]


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    """A writer for the named pipe, so a run reading it gets ``data``."""
    def write():
        with open(fifo, "wb") as f:
            f.write(data)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_resume_after_sigkill_equals_an_uninterrupted_run(deploy_models, photos, tmp_path):
    """The run is killed while it waits on a named pipe in the middle of its inputs (batches before it
    are written); a torn last line is added as a crash mid-write would leave; rerunning completes it."""
    images = sorted(str(p) for p in photos.rglob("*.jpg"))
    fifo = tmp_path / "slow.jpg"
    os.mkfifo(fifo)
    inputs = images[:6] + [str(fifo)] + images[6:]
    common = ["--checkpoint", deploy_models.dynamic_mlp, *inputs, "--batch-size", 4, "--workers", 0,
              "--prior", deploy_models.prior_run, "--topk", 3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    reference = tmp_path / "reference.csv"
    feeder = _feed(fifo, Path(images[0]).read_bytes())
    subprocess.run(_cli(*common, "--out", reference), env=env, check=True, timeout=300)
    feeder.join()

    out = tmp_path / "resumed.csv"
    proc = subprocess.Popen(_cli(*common, "--out", out), env=env)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.05)
    time.sleep(0.3)
    assert proc.poll() is None, "the run should be blocked on the pipe"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(read_csv(out)) == 4  # the first batch; the second waits on the pipe
    with open(out, "a") as f:
        f.write(f"{images[4]},ok,,12.5,")  # torn
    feeder = _feed(fifo, Path(images[0]).read_bytes())
    subprocess.run(_cli(*common, "--out", out), env=env, check=True, timeout=300)
    feeder.join()
    assert out.read_bytes() == reference.read_bytes()
    rows = read_csv(out)
    assert len(rows) == 13 and len({r["image"] for r in rows}) == 13
    subprocess.run(_cli(*common, "--out", out), env=env, check=True, timeout=300)  # nothing left to do
    assert out.read_bytes() == reference.read_bytes()


def test_json_array_resumes_from_its_partial_rows(deploy_models, photos, tmp_path, monkeypatch):
    predictor = Predictor(load_inference_model(deploy_models.image_only), topk=2)
    kwargs = {"batch_size": 4, "workers": 0, "progress": False}
    predict_files(predictor, [str(photos)], out=str(tmp_path / "reference.json"), **kwargs)

    from fgvc.deploy import predict as module

    original, calls = module.PhotoDataset.__getitem__, []

    def interrupted(self, index):
        calls.append(index)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(module.PhotoDataset, "__getitem__", interrupted)
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        predict_files(predictor, [str(photos)], out=str(out), **kwargs)
    assert not out.exists() and len((tmp_path / "r.json.partial.jsonl").read_text().splitlines()) == 4
    monkeypatch.setattr(module.PhotoDataset, "__getitem__", original)
    summary = predict_files(predictor, [str(photos)], out=str(out), **kwargs)
    assert summary.skipped_done == 4 and summary.predicted == 8
    assert json.loads(out.read_text()) == json.loads((tmp_path / "reference.json").read_text())
    assert not (tmp_path / "r.json.partial.jsonl").exists()


def test_other_columns_are_not_mixed_into_an_existing_file(deploy_models, photos, tmp_path):
    out = tmp_path / "r.csv"
    assert run("--checkpoint", deploy_models.image_only, photos / "a", "--out", out, "--topk", 2) == 0
    predictor = Predictor(load_inference_model(deploy_models.image_only), topk=3)
    with pytest.raises(FgvcError, match="other columns"):
        predict_files(predictor, [str(photos)], out=str(out), progress=False)


# --- priors, allow-lists, roll-up ---------------------------------------------------------------------


def test_prior_rerank_equals_the_hand_computation(deploy_models, photos, tmp_path):
    model = load_inference_model(deploy_models.image_only)
    prior = load_prior(deploy_models.prior_run, model)
    out = tmp_path / "r.jsonl"
    assert run("--checkpoint", deploy_models.image_only, photos, "--prior", deploy_models.prior_run,
               "--topk", 4, "--out", out) == 0
    for row in map(json.loads, out.read_text().splitlines()):
        pixels, exif = read_photo(Path(row["image"]).read_bytes())
        image_p = model(model.preprocess(pixels)[None]).softmax(1)[0]
        loc = torch.from_numpy(encode_metadata(exif.lat, exif.lon, exif.date, prior.use))[None]
        with torch.no_grad():
            presence = torch.sigmoid(prior(loc))[0]
        by_hand = image_p * presence / (image_p * presence).sum()
        assert [t["class"] for t in row["top"]] == [model.classes[i] for i in by_hand.argsort(descending=True)]
        assert [t["probability"] for t in row["top"]] == pytest.approx(by_hand.sort(descending=True).values.tolist(),
                                                                        rel=1e-5)
        assert [t["probability"] for t in row["raw_top"]] == pytest.approx(
            image_p.sort(descending=True).values.tolist(), rel=1e-5)
        assert row["metadata_source"] == "exif" and row["lat"] == exif.lat  # used by the prior


def test_species_list_rolls_up_to_the_shared_genus(deploy_models, photos, tmp_path):
    model = load_inference_model(deploy_models.image_only)
    image = str(sorted(photos.rglob("*.jpg"))[0])
    probs = model(model.preprocess(read_photo(Path(image).read_bytes())[0])[None]).softmax(1)[0]
    best = int(probs.argmax())
    genus = model.taxonomy["genus"]
    mate = next(c for c in range(4) if c != best and genus[c] == genus[best])
    other = [c for c in range(4) if genus[c] != genus[best]]
    species = tmp_path / "list.txt"
    species.write_text(f"# what lives here\n{model.classes[mate].upper()}\n{model.classes[other[0]]}\nNo such bird\n")
    allowed, unknown = read_species_list(species, model)
    assert allowed == {mate, other[0]} and unknown == ["No such bird"]
    out = tmp_path / "r.csv"
    assert run("--checkpoint", deploy_models.image_only, image, "--species-list", species, "--out", out) == 0
    [row] = read_csv(out)
    final = max((mate, other[0]), key=lambda c: probs[c])
    assert row["class_1"] == model.classes[final] and row["raw_class_1"] == model.classes[best]
    assert row["class_3"] == ""  # only the two allowed classes are ranked
    assert float(row["probability_1"]) == pytest.approx((probs[final] / probs[[mate, other[0]]].sum()).item(),
                                                        rel=1e-5)
    assert row["rollup_raw_class"] == model.classes[best] and row["rollup_allowed_class"] == model.classes[final]
    assert row["rollup_genus"] == (genus[best] if final == mate else "")
    # a genus name allows its species; the best raw class allowed: no roll-up
    species.write_text(genus[best] + "\n")
    assert read_species_list(species, model)[0] == {best, mate}
    assert run("--checkpoint", deploy_models.image_only, image, "--species-list", species, "--out",
               tmp_path / "g.jsonl") == 0
    row = json.loads((tmp_path / "g.jsonl").read_text())
    assert row["rollup"] is None and row["top"][0]["class"] == model.classes[best]
    species.write_text("Nothing we know\n")
    with pytest.raises(FgvcError, match="none of its 1 names"):
        read_species_list(species, model)


def test_region_allows_the_classes_seen_inside_the_box(deploy_models, photos, tmp_path, capsys):
    model = load_inference_model(deploy_models.image_only)
    label, lat, lon = (model.occurrences[k][0].item() for k in ("label", "lat10", "lon10"))
    box = f"{lat / 10 - 0.05},{lat / 10 + 0.05},{lon / 10 - 0.05},{lon / 10 + 0.05}"
    out = tmp_path / "r.jsonl"
    assert run("--checkpoint", deploy_models.image_only, photos / "a", f"--region={box}", "--out", out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inside = {model.classes[c] for c in set(model.occurrences["label"][
        (model.occurrences["lat10"] == lat) & (model.occurrences["lon10"] == lon)].tolist())}
    assert model.classes[label] in inside
    assert all({t["class"] for t in r["top"]} <= inside and r["top"][0]["probability"] > 0 for r in rows)
    assert main(["predict", "--checkpoint", str(deploy_models.image_only), str(photos), "--region=89.9,90,0,0.1"]) == 2
    assert "no class was observed inside this box" in capsys.readouterr().err


# --- hostile inputs (unreadable files, bad flags) ---------------------------------------------------------


def test_unreadable_files_are_listed_and_the_rest_predicted(deploy_models, photos, tmp_path, capsys):
    bad, truncated = tmp_path / "bad.jpg", tmp_path / "cut.jpg"
    bad.write_bytes(b"not an image")
    good = sorted(photos.rglob("*.jpg"))
    truncated.write_bytes(good[0].read_bytes()[:300])
    out = tmp_path / "r.csv"
    assert run("--checkpoint", deploy_models.image_only, good[0], bad, tmp_path / "gone.jpg", truncated, good[1],
               "--out", out) == 0
    rows = read_csv(out)
    assert [r["status"] for r in rows] == ["ok", "unreadable", "unreadable", "unreadable", "ok"]
    assert "bad.jpg: not an image" in rows[1]["error"] and "gone.jpg: cannot read" in rows[2]["error"]
    assert "cut.jpg: unreadable image" in rows[3]["error"] and rows[4]["class_1"]
    captured = capsys.readouterr()
    assert captured.err.count("fgvc: unreadable:") == 3 and "Traceback" not in captured.err
    assert "2 images predicted, 3 unreadable" in captured.out
    # nothing readable: listed, and a non-zero exit
    assert run("--checkpoint", deploy_models.image_only, bad, "--json") == 1
    assert "bad.jpg: not an image" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--lat", "nan", "--lon", "10"], "--lat nan: expected a number in -90..90"),
    (["--lat", "10", "--lon", "inf"], "--lon inf: expected a number in -180..180"),
    (["--lat", "95", "--lon", "10"], "--lat 95.0: expected a number"),
    (["--lat", "10"], "--lat and --lon go together"),
    (["--date", "2021-02-30"], "--date: date '2021-02-30' is not a calendar date"),
    (["--topk", "0"], "--topk 0: must be at least 1"),
    (["--ignore-location", "--lat", "1", "--lon", "2"], "choose one"),
])
def test_bad_flags_are_refused_in_one_line(deploy_models, photos, args, message, capsys):
    assert main(["predict", "--checkpoint", str(deploy_models.dynamic_mlp), str(photos), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_terminal_output_names_the_metadata_used(deploy_models, photos, capsys):
    image = sorted(photos.rglob("*.jpg"))[0]
    assert run("--checkpoint", deploy_models.dynamic_mlp, image, "--topk", 2) == 0
    out = capsys.readouterr().out
    assert "from exif" in out and "1. " in out and "2. " in out and "3. " not in out
    assert run("--checkpoint", deploy_models.image_only, image, "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["metadata_source"] == "none" and row["lat"] is None  # the model reads no metadata
