"""``fgvc benchmark latency``: CPU time of one image through a checkpoint — PyTorch, ONNX Runtime FP32
and ONNX Runtime 8-bit, at several thread counts.

Batch 1, as a deployment answering one request at a time, at the model's own input size and at 224 px
(or ``sizes``). Per size, PyTorch runs the model eagerly (eval mode, under ``no_grad`` or
``inference_mode``); ONNX Runtime (CPUExecutionProvider) runs the file ``fgvc export`` writes for that
size — dynamic batch, opset 17, parity-checked — and the 8-bit file ``fgvc export --quantize`` makes of
it (static INT8 calibrated on training images, or dynamic), all on the same random input. Per thread
count (intra-op threads, given to every engine), each engine does ``warmup`` untimed runs, then the
engines take turns for ``runs`` timed rounds, so a change in the machine's load hits all of them alike;
the table gives the median and the 90th percentile in milliseconds, the speed-up over PyTorch and over
ONNX Runtime FP32, and the size of each model (the weights in memory for PyTorch, the graph and
weights of each file).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fgvc.deploy.export import example_inputs, export_onnx, input_names, load_for_export
from fgvc.deploy.onnx_model import onnx_session
from fgvc.deploy.quantize import MODES, export_quantized, model_bytes
from fgvc.engine.report import markdown_table
from fgvc.errors import FgvcError

COLUMNS = ["engine", "size", "batch", "threads", "median ms", "p90 ms", "runs", "speed-up", "vs ORT FP32",
           "model MB"]
DEFAULT_THREADS = (1, 2)
REFERENCE_SIZE = 224


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    return time_in_turns({"call": call}, runs, warmup)["call"]


def time_in_turns(calls: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` calls of each, after ``warmup`` untimed ones each; the calls take turns
    (one of each per round), so a change in the machine's load falls on all of them."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _row(engine: str, size: int, threads: int, times: list[float], megabytes: float) -> dict:
    return {"engine": engine, "size": size, "batch": 1, "threads": threads,
            "median ms": float(np.median(times)), "p90 ms": float(np.percentile(times, 90)),
            "runs": len(times), "model MB": round(megabytes, 2)}


def _torch_call(model: torch.nn.Module, inputs: tuple, inference_mode: bool) -> Callable[[], object]:
    grad_off = torch.inference_mode if inference_mode else torch.no_grad

    def call():
        with grad_off():
            return model(*inputs)
    return call


def _ort_call(onnx_path: Path, names: list[str], inputs: tuple, threads: int) -> Callable[[], object]:
    session = onnx_session(onnx_path, threads)
    feed = {n: x.numpy() for n, x in zip(names, inputs)}
    return lambda: session.run(["logits"], feed)


def _tensor_megabytes(model: torch.nn.Module) -> float:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def measure_latency(checkpoint: str | Path, sizes: Sequence[int] | None = None, runs: int = 50,
                    warmup: int = 5, threads: Sequence[int] = DEFAULT_THREADS, inference_mode: bool = False,
                    quantize: str | None = "int8", calibration: int = 64,
                    overrides: Sequence[str] = ()) -> dict:
    """``{"rows": [...], "parity": {size: ...}, "quantization": {size: ...}, ...}``: per size and thread
    count, a PyTorch, an ONNX Runtime FP32 and (``quantize``: ``int8``, ``dynamic`` or None) an ONNX
    Runtime 8-bit row.

    ``sizes`` default to the model's ``data.image_size`` and 224 px. Static INT8 calibrates on
    ``calibration`` training images of the checkpoint's dataset (``overrides`` such as
    ``data.root=...`` say where it is now). PyTorch's thread setting is restored afterwards.
    """
    import onnxruntime as ort

    if runs < 1 or warmup < 0:
        raise FgvcError(f"--runs {runs} / --warmup {warmup}: need at least 1 timed run and 0 or more "
                        "warm-up runs")
    if quantize is not None and quantize not in MODES:
        raise FgvcError(f"--quantize {quantize}: expected one of {', '.join(MODES)} or none")
    threads = list(threads)
    if not threads or min(threads) < 1:
        raise FgvcError(f"--threads {' '.join(map(str, threads))}: need thread counts of at least 1")
    _, cfg, model = load_for_export(checkpoint)
    sizes = list(dict.fromkeys(sizes or (cfg.data.image_size, REFERENCE_SIZE)))
    if min(sizes) < 1:
        raise FgvcError(f"--sizes {' '.join(map(str, sizes))}: need positive image sizes in pixels")
    names = input_names(cfg)
    mode = "inference_mode" if inference_mode else "no_grad"
    eight_bit = {"int8": "ONNX Runtime INT8 (static QDQ)",
                 "dynamic": "ONNX Runtime INT8 (dynamic)"}.get(quantize)
    rows, parity, quantization = [], {}, {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work skews the figures
    previous = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory(prefix="fgvc-latency-") as tmp:
            for size in sizes:
                inputs = example_inputs(cfg, 1, size, seed=2)
                fp32 = Path(tmp) / f"model_{size}.onnx"
                files = {"ONNX Runtime FP32": fp32}
                if quantize:
                    int8 = export_quantized(checkpoint, Path(tmp) / f"model_{size}.{quantize}.onnx",
                                            mode=quantize, calibration=calibration, image_size=size,
                                            overrides=overrides, validate=False, keep_fp32=fp32)
                    files[eight_bit] = int8
                    q = json.loads(Path(f"{int8}.json").read_text())["quantization"]
                    quantization[size] = {k: q[k] for k in ("mode", "format", "weights", "activations",
                                                            "reduce_range", "bytes")}
                    quantization[size]["calibration_images"] = (q["calibration"] or {}).get("images")
                else:
                    export_onnx(checkpoint, fp32, image_size=size)
                parity[size] = json.loads(Path(f"{fp32}.json").read_text())["parity"]
                megabytes = {"PyTorch": _tensor_megabytes(model),
                             **{engine: model_bytes(path) / 2**20 for engine, path in files.items()}}
                for n in threads:
                    torch.set_num_threads(n)
                    calls = {"PyTorch": _torch_call(model, inputs, inference_mode),
                             **{engine: _ort_call(path, names, inputs, n) for engine, path in files.items()}}
                    times = time_in_turns(calls, runs, warmup)
                    group = [_row(f"PyTorch eager ({mode})" if engine == "PyTorch" else engine, size, n,
                                  times[engine], megabytes[engine]) for engine in calls]
                    torch_ms, ort_ms = group[0]["median ms"], group[1]["median ms"]
                    for row in group:
                        row["speed-up"] = f"{torch_ms / row['median ms']:.2f}x"
                        row["vs ORT FP32"] = f"{ort_ms / row['median ms']:.2f}x"
                    rows += group
    finally:
        torch.set_num_threads(previous)
    return {"checkpoint": str(checkpoint), "backbone": cfg.model.backbone, "head": cfg.model.head,
            "fusion": cfg.model.fusion.name, "threads": threads, "runs": runs, "warmup": warmup,
            "quantize": quantize, "torch": torch.__version__, "onnxruntime": ort.__version__,
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "load_average": load, "rows": rows, "parity": parity, "quantization": quantization}


def format_latency(result: dict) -> str:
    """A heading line that says what was measured, then the Markdown table."""
    threads = "/".join(map(str, result["threads"]))
    head = (f"{result['backbone']} (head: {result['head']}, fusion: {result['fusion']}), batch 1, {threads} "
            f"thread(s) of {result['cpu_count']} CPUs, median / p90 of {result['runs']} runs after "
            f"{result['warmup']} warm-up, engines in turns; torch {result['torch']}, onnxruntime "
            f"{result['onnxruntime']}")
    if result.get("load_average") is not None:
        head += f"; 1-min load average {result['load_average']:.2f} at the start"
    parity = ", ".join(f"{size} px {p['max_abs_diff']:.1e}" for size, p in result["parity"].items())
    lines = [head, "", markdown_table(result["rows"], COLUMNS), "",
             f"ONNX FP32 parity (max |logit diff|): {parity}"]
    for size, q in result.get("quantization", {}).items():
        images = q["calibration_images"]
        calibrated = f", calibrated on {images} training images" if images else ""
        lines.append(f"8-bit at {size} px: {q['mode']} ({q['format']}), weights {q['weights']}{calibrated}; "
                     f"{q['bytes']['fp32'] / q['bytes']['int8']:.2f}x smaller than FP32")
    return "\n".join(lines)
