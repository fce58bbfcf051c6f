"""One model, any file it ships as: evaluate, predict, serve and ``fgvc.load`` on exported ONNX files
(FP32 and INT8), hub folders and ``hf://`` ids give the figures and the scores of the tool that measured
them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _deploy import KINDS
from fastapi.testclient import TestClient
from test_predict import expected_probabilities, photos, read_csv  # noqa: F401  (photos: a fixture)

import fgvc
from fgvc.cli import main
from fgvc.checkpoint import load_checkpoint
from fgvc.deploy.exif import read_photo
from fgvc.deploy.export import example_inputs, export_onnx, read_export_info
from fgvc.deploy.hub import export_hub
from fgvc.deploy.model import load_inference_model
from fgvc.deploy.onnx_model import OnnxModel
from fgvc.deploy.predict import predict_files
from fgvc.deploy.predictor import Predictor
from fgvc.deploy.quantize import export_quantized
from fgvc.deploy.serve import create_app
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError


@pytest.fixture(scope="module")
def exported(trained_runs, tmp_path_factory) -> dict:
    """Per kind of model: its FP32 file and the static INT8 file quantised from it (with validation
    figures)."""
    out = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp(f"exported_{kind}")
        _, checkpoint = trained_runs[kind]
        int8 = export_quantized(checkpoint, folder / "model.int8.onnx", calibration=24,
                                keep_fp32=folder / "model.onnx")
        out[kind] = (folder / "model.onnx", int8)
    return out


def evaluate_cli(cfg, model_file: Path, split: str) -> dict:
    assert main(["-q", "evaluate", str(cfg.run_dir / "config.yaml"), f"checkpoint={model_file}",
                 f"split={split}"]) == 0
    stem = model_file.stem.replace(".", "_")
    return json.loads((cfg.run_dir / f"report_{split}_{stem}.json").read_text())


@pytest.mark.parametrize("kind", list(KINDS))
def test_evaluate_on_the_files_gives_the_figures_the_export_measured(kind, trained_runs, exported):
    """``fgvc evaluate`` of the FP32 and the INT8 file on the validation split gives exactly the top-1 that
    ``fgvc export --quantize int8`` wrote into the file (same images, same batches, same runtime: the
    tolerance is zero)."""
    cfg, _ = trained_runs[kind]
    fp32, int8 = exported[kind]
    measured = read_export_info(int8)["quantization"]["validation"]
    assert measured["images"] > 0
    assert evaluate_cli(cfg, fp32, "val")["val"]["top1"] == measured["fp32_top1"]
    assert evaluate_cli(cfg, int8, "val")["val"]["top1"] == measured["int8_top1"]


def test_evaluate_on_test_leaves_the_runs_own_report(trained_runs, exported):
    """The FP32 file's test top-1 is the checkpoint's within one image (the file's logits are within 1e-4 of
    PyTorch's, so only a near-tie can flip); its report goes beside the run's, which stays as it was."""
    cfg, _ = trained_runs["pmsi"]
    fp32, _ = exported["pmsi"]
    own = (cfg.run_dir / "report.json").read_bytes()
    report = evaluate_cli(cfg, fp32, "test")
    checkpoint_top1 = json.loads(own)["test"]["top1"]
    assert abs(report["test"]["top1"] - checkpoint_top1) <= 100 / report["test"]["num_samples"]
    assert (cfg.run_dir / "report.json").read_bytes() == own
    assert report["protocol"]["checkpoint"].endswith("model.onnx")
    assert report["params_m"] == json.loads(own)["params_m"] > 0  # the exported model's own count


def test_evaluate_refuses_a_file_of_other_classes(trained_runs, species_files, capsys):
    cfg, _ = trained_runs["image_only"]  # colour classes; the file names insect species
    config, int8 = cfg.run_dir / "config.yaml", species_files["int8"]
    assert main(["-q", "evaluate", str(config), f"checkpoint={int8}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the 4 classes of this dataset" in err[0]


@pytest.mark.parametrize("kind", ["image_only", "fusion"])
def test_load_from_a_hub_folder_gives_bit_identical_logits(kind, trained_runs, tmp_path):
    cfg, checkpoint = trained_runs[kind]
    folder = export_hub(checkpoint, tmp_path / "model")
    ckpt = load_checkpoint(checkpoint)
    _, original = model_from_checkpoint(ckpt, len(ckpt["classes"]))
    inputs = example_inputs(cfg, 4, cfg.data.image_size, seed=7)
    with torch.no_grad():
        expected = original.eval()(*inputs)
    model = fgvc.load(str(folder))
    meta = inputs[1] if len(inputs) > 1 else None
    assert torch.equal(model(inputs[0], meta), expected)
    assert model.classes == ckpt["classes"]
    assert model.metadata == tuple(cfg.data.metadata if kind == "fusion" else ())
    assert torch.equal(fgvc.load(checkpoint)(inputs[0], meta), expected)


def test_load_an_hf_id_from_the_cache(trained_runs, tmp_path, monkeypatch):
    from test_hub import hub_cache

    cfg, checkpoint = trained_runs["image_only"]
    cache = hub_cache(tmp_path, export_hub(checkpoint, tmp_path / "model"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    image = example_inputs(cfg, 2, cfg.data.image_size, seed=3)[0]
    assert torch.equal(fgvc.load("hf://alice/birds")(image), fgvc.load(checkpoint)(image))


def test_load_an_onnx_file(trained_runs, exported):
    cfg, _ = trained_runs["fusion"]
    _, int8 = exported["fusion"]
    model = fgvc.load(int8)
    image, meta = example_inputs(cfg, 3, cfg.data.image_size, seed=4)
    assert torch.equal(model(image, meta), OnnxModel(int8)(image, meta))
    assert model.metadata == ("geo", "temporal") and model.image_size == cfg.data.image_size
    with pytest.raises(FgvcError, match="runs in ONNX Runtime on the CPU"):
        fgvc.load(int8, device="meta")


def test_import_fgvc_stays_light():
    code = "import sys, fgvc; print(sorted(m for m in ('torch', 'timm', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- predict and serve on exported files and folders (the synthetic iNat-format models) ---------------

@pytest.fixture(scope="module")
def species_files(deploy_models, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("species_files")
    checkpoint = deploy_models.dynamic_mlp
    return {"int8": export_quantized(checkpoint, root / "model.int8.onnx", calibration=16),
            "fp32": export_onnx(checkpoint, root / "model.onnx"),
            "hub": export_hub(checkpoint, root / "hub")}


def test_predict_on_an_int8_file_equals_the_files_forward_pass(species_files, photos, tmp_path):  # noqa: F811
    out = tmp_path / "rows.jsonl"
    assert main(["-q", "predict", "--checkpoint", str(species_files["int8"]), str(photos), "--out", str(out),
                 "--topk", "3", "--workers", "0"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = load_inference_model(species_files["int8"])
    assert len(rows) == 12 and model.taxonomy["genus"]  # the taxonomy travels in the file
    for row in rows:
        probs = expected_probabilities(model, row["image"], read_photo(Path(row["image"]).read_bytes())[1])
        top = probs.topk(3)
        assert [t["class"] for t in row["top"]] == [model.classes[i] for i in top.indices]
        probabilities = [t["probability"] for t in row["top"]]
        assert probabilities == pytest.approx(top.values.tolist(), rel=1e-5, abs=1e-7)
        assert row["metadata_source"] == "exif"
        assert row["taxonomy"]["genus"] == row["top"][0]["class"].split()[0]


def test_predict_on_a_hub_folder_equals_the_checkpoint(deploy_models, species_files,
                                                      photos, tmp_path):  # noqa: F811
    for name, source in (("checkpoint", deploy_models.dynamic_mlp), ("hub", species_files["hub"])):
        assert main(["-q", "predict", "--checkpoint", str(source), str(photos), "--out",
                     str(tmp_path / f"{name}.csv"), "--workers", "0"]) == 0
    # every probability, as text
    assert read_csv(tmp_path / "checkpoint.csv") == read_csv(tmp_path / "hub.csv")


def test_serve_an_onnx_file(species_files, photos, tmp_path):  # noqa: F811
    predictor = Predictor(load_inference_model(species_files["fp32"]), topk=3)
    photo = sorted(photos.rglob("*.jpg"))[0]
    with TestClient(create_app(predictor, max_upload_bytes=200_000)) as client:
        info = client.get("/v1/model").json()
        answer = client.post("/v1/predict", files={"image": ("p.jpg", photo.read_bytes(), "image/jpeg")},
                             data={"topk": "3"}).json()
    assert info["classes"] == predictor.model.classes and info["metadata"] == ["geo", "temporal"]
    predict_files(predictor, [str(photo)], out=str(tmp_path / "r.jsonl"), workers=0, progress=False)
    expected = json.loads((tmp_path / "r.jsonl").read_text())
    assert answer["top"] == expected["top"] and answer["taxonomy"] == expected["taxonomy"]


def test_a_hub_folder_exports_again(trained_runs, tmp_path, capsys):
    """A folder (as fetched from the Hub) is a source for export: ONNX (parity-checked against the folder's
    model) and a hub folder again, whose card keeps the run's figures."""
    _, checkpoint = trained_runs["image_only"]
    folder = export_hub(checkpoint, tmp_path / "model")
    again = export_hub(folder, tmp_path / "again")
    first, second = (json.loads((f / "config.json").read_text()) for f in (folder, again))
    assert second["results"] == first["results"] and first["results"]["test"]["top1"] is not None
    assert (again / "README.md").read_text() == (folder / "README.md").read_text()
    assert main(["-q", "export", "--checkpoint", str(folder), "--out", str(tmp_path / "m.onnx")]) == 0
    assert read_export_info(tmp_path / "m.onnx")["parity"]["top1_agree"] == "3/3"


def test_a_hub_folder_carries_the_training_locations(deploy_models, species_files):
    """--region works on a folder as on the checkpoint: the occurrence table travels with it."""
    from fgvc.deploy.predictor import region_classes

    original = load_inference_model(deploy_models.dynamic_mlp)
    folder = load_inference_model(species_files["hub"])
    assert set(folder.occurrences) == set(original.occurrences) and len(original.occurrences["label"]) > 0
    assert all(torch.equal(folder.occurrences[k], original.occurrences[k]) for k in original.occurrences)
    for box in ("-90,0,-180,180", "0,90,-180,180"):
        assert region_classes(box, folder) == region_classes(box, original)


def test_evaluate_a_hub_folder_equals_the_checkpoint(trained_runs, tmp_path):
    cfg, checkpoint = trained_runs["fusion"]
    folder = export_hub(checkpoint, tmp_path / "model")
    config = str(cfg.run_dir / "config.yaml")
    assert main(["-q", "evaluate", config, f"checkpoint={folder}", "split=val"]) == 0
    from_folder = json.loads((cfg.run_dir / "report_val.json").read_text())["val"]
    assert main(["-q", "evaluate", config, f"checkpoint={checkpoint}", "split=val"]) == 0
    from_checkpoint = json.loads((cfg.run_dir / "report_val.json").read_text())["val"]
    assert from_folder == from_checkpoint and from_folder["num_samples"] > 0
