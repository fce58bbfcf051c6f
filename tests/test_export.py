"""`fgvc export --format onnx` and `fgvc benchmark latency` on checkpoint files of tiny, untrained models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import tiny_config

from fgvc.checkpoint import load_checkpoint, save_atomic
from fgvc.cli import main
from fgvc.deploy.export import ATOL, check_parity, example_inputs, read_export_info, sidecar_path
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError
from fgvc.models import build_model

CLASSES = ["Passer domesticus", "Turdus merula", "Erithacus rubecula", "Parus major"]


def write_checkpoint(path, root, **model) -> str:
    """An fgvc checkpoint as the trainer writes it, with random weights and non-trivial BatchNorm statistics."""
    metadata = ["geo", "temporal"] if model.get("fusion", {}).get("name", "none") != "none" else []
    cfg = tiny_config(root, path.parent, model={"backbone": "test_resnet", **model}, data={"metadata": metadata})
    torch.manual_seed(0)
    net = build_model(cfg, len(CLASSES), load_pretrained=False)
    for m in net.modules():  # running stats away from (0, 1), so BatchNorm folding is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    save_atomic({"model": net.state_dict(), "config": cfg.model_dump(mode="json"), "classes": CLASSES,
                 "dataset": "folder"}, path)
    return str(path)


@pytest.fixture(scope="module")
def image_only(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("image_only")
    return write_checkpoint(tmp / "best.pt", tmp)


@pytest.fixture(scope="module")
def fusion(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fusion")
    return write_checkpoint(tmp / "best.pt", tmp, fusion={"name": "dynamic_mlp", "d": 16, "h": 8, "loc_width": 16})


def assert_onnx_matches_pytorch(checkpoint: str, onnx_path, size: int, batch: int) -> None:
    """A fresh random batch, of a size neither traced nor parity-checked at export, through both engines."""
    ckpt = load_checkpoint(checkpoint)
    cfg, model = model_from_checkpoint(ckpt, len(CLASSES))
    inputs = example_inputs(cfg, batch, size, seed=123)
    with torch.no_grad():
        expected = model.eval()(*inputs).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(["logits"], dict(zip(names, (x.numpy() for x in inputs))))[0]
    assert got.shape == (batch, len(CLASSES))
    assert np.abs(got - expected).max() <= ATOL * max(1.0, np.abs(expected).max())
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_image_only(image_only, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["-q", "export", "--checkpoint", image_only, "--format", "onnx", "--out", str(out),
                 "--image-size", "40"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "max |logit diff|" in printed and "top-1 identical 3/3" in printed
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["logits"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 40, 40]
    assert_onnx_matches_pytorch(image_only, out, size=40, batch=5)
    assert_onnx_matches_pytorch(image_only, out, size=40, batch=1)
    info = read_export_info(out)
    assert info == json.loads(sidecar_path(out).read_text())
    assert info["classes"] == CLASSES
    prep = info["preprocessing"]
    assert prep["centre_crop"] == 40 and prep["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert prep["std"] == pytest.approx([0.229, 0.224, 0.225]) and prep["resize_short_side"] == 46
    assert info["parity"]["max_abs_diff"] <= info["parity"]["tolerance"] and info["export"]["opset"] == 17


def test_export_fusion_model_has_a_meta_input(fusion, tmp_path, capsys):
    out = tmp_path / "fusion.onnx"
    assert main(["-q", "export", "--checkpoint", fusion, "--format", "onnx", "--out", str(out)]) == 0
    assert "meta ['batch', 6]" in capsys.readouterr().out
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image", "meta"]
    assert_onnx_matches_pytorch(fusion, out, size=32, batch=5)
    info = read_export_info(out)
    assert info["classes"] == CLASSES and info["inputs"]["meta"]["use"] == ["geo", "temporal"]
    assert info["inputs"]["meta"]["shape"] == ["batch", 6] and info["model"]["fusion"] == "dynamic_mlp"


def test_default_out_is_next_to_the_checkpoint(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "run" / "best.pt", tmp_path)
    assert main(["-q", "export", "--checkpoint", checkpoint]) == 0
    assert (tmp_path / "run" / "best.onnx").is_file() and (tmp_path / "run" / "best.onnx.json").is_file()


def test_parity_failure_is_an_error(image_only, tmp_path):
    out = tmp_path / "model.onnx"
    assert main(["-q", "export", "--checkpoint", image_only, "--out", str(out)]) == 0
    cfg, other = model_from_checkpoint(load_checkpoint(image_only), len(CLASSES))
    with torch.no_grad():
        other.head[-1].bias.add_(1.0)  # a different model than the one exported
    with pytest.raises(FgvcError, match="ONNX parity failed: max"):
        check_parity(out, other.eval(), example_inputs(cfg, 3, 32), ["image"], len(CLASSES))


def test_latency_rows_per_size_threads_and_engine(image_only, tmp_path, capsys):
    """The table's structure (no timing is asserted: speed is measured in benchmarks/)."""
    report, threads = tmp_path / "latency.json", torch.get_num_threads()
    assert main(["-q", "benchmark", "latency", "--checkpoint", image_only, "--runs", "2", "--sizes", "32",
                 "--warmup", "1", "--threads", "1", "2", "--quantize", "dynamic", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| 32 |" in line]
    assert len(rows) == 6 and "PyTorch eager" in rows[0] and "ONNX Runtime FP32" in rows[1]
    assert "ONNX Runtime INT8 (dynamic)" in rows[2]
    assert "1/2 thread(s)" in out and "median / p90 of 2 runs" in out and "x smaller than FP32" in out
    result = json.loads(report.read_text())
    assert [(r["size"], r["threads"]) for r in result["rows"]] == [(32, 1)] * 3 + [(32, 2)] * 3
    assert all(r["median ms"] > 0 and r["p90 ms"] >= r["median ms"] and r["runs"] == 2
               for r in result["rows"])
    assert result["threads"] == [1, 2] and result["quantization"]["32"]["mode"] == "dynamic"
    sizes = {r["engine"]: r["model MB"] for r in result["rows"]}
    assert sizes["ONNX Runtime INT8 (dynamic)"] < sizes["ONNX Runtime FP32"]
    assert all(r["speed-up"].endswith("x") for r in result["rows"])
    assert result["rows"][1]["vs ORT FP32"] == "1.00x"
    assert torch.get_num_threads() == threads  # PyTorch's setting restored


def test_latency_sizes_default_to_the_models_and_224(image_only, tmp_path):
    from fgvc.analysis.latency import measure_latency

    result = measure_latency(image_only, runs=1, warmup=0, threads=[1], quantize=None)
    assert [r["size"] for r in result["rows"]] == [32, 32, 224, 224]


def test_unsupported_format_is_one_line(image_only, capsys):
    assert main(["export", "--checkpoint", image_only, "--format", "torchscript"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgvc: error: --format torchscript: not supported")


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]
