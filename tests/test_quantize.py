"""INT8 export (ONNX Runtime static QDQ and dynamic quantisation) of real tiny trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from _deploy import KINDS

import fgvc.data.dataset as dataset_module
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.splits import prepare_splits
from fgvc.deploy.onnx_model import OnnxModel
from fgvc.deploy.quantize import calibration_samples, export_quantized
from fgvc.checkpoint import load_checkpoint
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError
from fgvc.deploy.export import read_export_info, sidecar_path

MIN_AGREEMENT = 95.0  # % of a seeded batch of test images on which INT8 and FP32 name the same class


def seeded_test_batch(cfg, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` test images (a seeded draw) through the eval transform, with their metadata."""
    splits = prepare_splits(cfg.data)
    chosen = np.random.default_rng(seed).choice(len(splits.test), size=min(size, len(splits.test)), replace=False)
    loader = make_loader(cfg.data, make_dataset(cfg.data, [splits.test[i] for i in chosen], train=False),
                         train=False)
    batches = list(loader)
    return torch.cat([b["image"] for b in batches]), torch.cat([b["meta"] for b in batches])


def qdq_counts(path) -> dict[str, int]:
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    return {op: ops.count(op) for op in ("QuantizeLinear", "DequantizeLinear", "Conv", "ConvInteger")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_static_int8_agrees_with_fp32(kind, trained_runs, tmp_path):
    cfg, checkpoint = trained_runs[kind]
    int8 = export_quantized(checkpoint, tmp_path / "int8.onnx", mode="int8", calibration=24)
    counts = qdq_counts(int8)
    assert counts["QuantizeLinear"] > 0 and counts["DequantizeLinear"] > counts["QuantizeLinear"]
    weights = [t for t in onnx.load(str(int8)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= counts["Conv"] > 0  # every convolution's weights stored as int8
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == (["image", "meta"] if kind == "fusion" else ["image"])

    images, meta = seeded_test_batch(cfg)
    ckpt = load_checkpoint(checkpoint)
    _, model = model_from_checkpoint(ckpt, len(ckpt["classes"]))
    with torch.no_grad():
        fp32_logits = model.eval()(images, meta)  # the ONNX FP32 file equals it within 1e-4 (parity)
    int8_logits = OnnxModel(int8)(images, meta)
    agreement = 100.0 * (fp32_logits.argmax(1) == int8_logits.argmax(1)).float().mean().item()
    assert agreement >= MIN_AGREEMENT, f"{kind}: INT8 agrees with FP32 on {agreement:.1f} % of {len(images)}"

    info = read_export_info(int8)
    assert info == json.loads(sidecar_path(int8).read_text())
    q = info["quantization"]
    assert q["mode"] == "int8 static" and q["format"] == "QDQ" and "per channel" in q["weights"]
    assert q["calibration"]["images"] == 24 and q["calibration"]["split"] == "train"
    assert q["bytes"]["int8"] < int8.stat().st_size < q["bytes"]["int8"] + 20_000  # without the metadata
    assert q["bytes"]["int8"] < q["bytes"]["fp32"] / 2
    v = q["validation"]
    assert v["split"] == "val" and v["images"] == len(prepare_splits(cfg.data).val)
    assert v["top1_agreement"] >= MIN_AGREEMENT and abs(v["fp32_top1"] - v["int8_top1"]) <= 100 - MIN_AGREEMENT
    assert info["parity"]["max_abs_diff"] <= info["parity"]["tolerance"]  # the FP32 export's own check
    assert info["classes"] == prepare_splits(cfg.data).classes


def test_calibration_reads_training_images_only(trained_runs, tmp_path, monkeypatch):
    """Every image file the export opens — calibration, then the validation measurement — is a training
    file (the validation split is a hold-out of train here); none is a test image."""
    cfg, checkpoint = trained_runs["image_only"]
    opened = []
    for name in ("load_image", "load_image_tensor"):
        original = getattr(dataset_module, name)
        def spy(sample, *limit, f=original):  # (sample, pixel limit)
            opened.append(sample.path)
            return f(sample, *limit)

        monkeypatch.setattr(dataset_module, name, spy)
    out = export_quantized(checkpoint, tmp_path / "int8.onnx", mode="int8", calibration=20, seed=3)
    splits = prepare_splits(cfg.data)
    test, val, train = ({s.path for s in part} for part in (splits.test, splits.val, splits.train))
    calibration = read_export_info(out)["quantization"]["calibration"]["paths"]
    calibrated = {str(Path(cfg.data.root, p)) for p in calibration}
    assert len(calibrated) == 20 and calibrated <= train and not calibrated & val
    assert set(opened) == calibrated | val  # the spy saw every read: the calibration set, then val
    assert not set(opened) & test and all("/test/" not in p for p in opened)


def test_calibration_draw_is_seeded_and_bounded(trained_runs):
    train = prepare_splits(trained_runs["image_only"][0].data).train
    first, again = calibration_samples(train, 10, seed=1), calibration_samples(train, 10, seed=1)
    assert [s.path for s in first] == [s.path for s in again]
    assert [s.path for s in first] != [s.path for s in calibration_samples(train, 10, seed=2)]
    assert len(calibration_samples(train, 10_000, seed=0)) == len(train)
    with pytest.raises(FgvcError, match="--calibration 0"):
        calibration_samples(train, 0, seed=0)


def test_dynamic_needs_no_data(trained_runs, tmp_path, caplog):
    _, checkpoint = trained_runs["image_only"]
    out = export_quantized(checkpoint, tmp_path / "dyn.onnx", mode="dynamic",
                           overrides=[f"data.root={tmp_path / 'gone'}"])
    q = read_export_info(out)["quantization"]
    assert q["mode"] == "dynamic" and q["calibration"] is None and q["validation"] is None
    assert "without a validation check" in caplog.text
    assert qdq_counts(out)["ConvInteger"] > 0
    logits = OnnxModel(out)(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()


def test_static_without_training_data_is_one_clear_error(trained_runs, tmp_path):
    _, checkpoint = trained_runs["image_only"]
    with pytest.raises(FgvcError, match="static INT8 calibrates on the model's training images"):
        export_quantized(checkpoint, tmp_path / "int8.onnx", overrides=[f"data.root={tmp_path / 'gone'}"])
    assert not (tmp_path / "int8.onnx").exists()


def test_cli_export_quantize_prints_what_it_measured(trained_runs, tmp_path, capsys):
    from fgvc.cli import main

    _, checkpoint = trained_runs["fusion"]
    out = tmp_path / "model.int8.onnx"
    assert main(["-q", "export", "--checkpoint", str(checkpoint), "--quantize", "int8", "--calibration", "16",
                 "--seed", "1", "--out", str(out), "--keep-fp32", str(tmp_path / "model.onnx")]) == 0
    printed = capsys.readouterr().out
    q = read_export_info(out)["quantization"]
    v = q["validation"]
    assert f"calibrated on 16 training images (seed 1)" in printed and (tmp_path / "model.onnx").is_file()
    assert f"top-1 FP32 {v['fp32_top1']:.2f}, 8-bit {v['int8_top1']:.2f}" in printed
    assert f"{q['bytes']['fp32'] / q['bytes']['int8']:.2f}x smaller" in printed


def test_latency_has_the_static_int8_row(trained_runs):
    from fgvc.analysis.latency import measure_latency

    _, checkpoint = trained_runs["image_only"]
    result = measure_latency(checkpoint, sizes=[32], runs=1, warmup=0, threads=[1], calibration=8)
    assert [r["engine"] for r in result["rows"]] == ["PyTorch eager (no_grad)", "ONNX Runtime FP32",
                                                     "ONNX Runtime INT8 (static QDQ)"]
    q = result["quantization"][32]
    assert q["mode"] == "int8 static" and q["calibration_images"] == 8
    assert result["rows"][2]["model MB"] < result["rows"][1]["model MB"]


def test_every_calibration_image_sets_the_ranges(trained_runs, tmp_path, monkeypatch):
    """The input's activation scale is (max - min) / 255 over all N calibration images (uint8, range
    widened to include 0), read one per batch — more batches than any internal batching of the
    calibrator — so no batch is dropped."""
    import fgvc.deploy.quantize as quantize

    cfg, checkpoint = trained_runs["image_only"]
    monkeypatch.setattr(quantize, "CALIBRATION_BATCH", 1)
    out = export_quantized(checkpoint, tmp_path / "int8.onnx", calibration=40, seed=5, validate=False)
    graph = onnx.load(str(out)).graph
    [node] = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image"]
    scale = next(onnx.numpy_helper.to_array(t) for t in graph.initializer if t.name == node.input[1])
    samples = calibration_samples(prepare_splits(cfg.data).train, 40, seed=5)
    pixels = torch.cat([b["image"] for b in make_loader(cfg.data, make_dataset(cfg.data, samples, train=False),
                                                        train=False)])
    low, high = min(0.0, pixels.min().item()), max(0.0, pixels.max().item())
    assert len(samples) == 40 and float(scale) == pytest.approx((high - low) / 255, rel=1e-5)
