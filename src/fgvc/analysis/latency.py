"""``fgvc benchmark latency``: CPU time of one image through a checkpoint, PyTorch vs ONNX Runtime.

Batch 1, as a deployment answering one request at a time (and the RMG-PMSI paper's speed table, at
448 and 224 px). Per size, PyTorch runs the model eagerly (eval mode, under ``no_grad`` or
``inference_mode``) and ONNX Runtime (CPUExecutionProvider) runs the file ``fgvc export`` writes for
that size — dynamic batch, opset 17, parity-checked — on the same random input. Both get the same
number of intra-op threads. Each engine does ``warmup`` untimed runs, then ``runs`` timed ones;
the table gives the median and the 90th percentile in milliseconds.
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
from fgvc.engine.report import markdown_table
from fgvc.errors import FgvcError

COLUMNS = ["engine", "size", "batch", "threads", "median ms", "p90 ms", "runs", "speed-up"]


def time_calls(call: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _row(engine: str, size: int, threads: int, times: list[float]) -> dict:
    return {"engine": engine, "size": size, "batch": 1, "threads": threads,
            "median ms": float(np.median(times)), "p90 ms": float(np.percentile(times, 90)),
            "runs": len(times)}


def _torch_call(model: torch.nn.Module, inputs: tuple, inference_mode: bool) -> Callable[[], object]:
    grad_off = torch.inference_mode if inference_mode else torch.no_grad

    def call():
        with grad_off():
            return model(*inputs)
    return call


def _ort_call(onnx_path: Path, names: list[str], inputs: tuple, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {n: x.numpy() for n, x in zip(names, inputs)}
    return lambda: session.run(["logits"], feed)


def measure_latency(checkpoint: str | Path, sizes: Sequence[int] = (448, 224), runs: int = 50,
                    warmup: int = 5, threads: int | None = None, inference_mode: bool = False) -> dict:
    """``{"rows": [...], "parity": {size: ...}, ...}``: one PyTorch and one ONNX Runtime row per size.

    ``threads`` (default: ``torch.get_num_threads()``, the physical cores) is given to both engines;
    PyTorch's setting is restored afterwards.
    """
    import onnxruntime as ort


    if runs < 1 or warmup < 0:
        raise FgvcError(f"--runs {runs} / --warmup {warmup}: need at least 1 timed run and 0 or more "
                        "warm-up runs")
    if not sizes or min(sizes) < 1:
        raise FgvcError(f"--sizes {' '.join(map(str, sizes))}: need positive image sizes in pixels")
    previous = torch.get_num_threads()
    threads = threads or previous
    if threads < 1:
        raise FgvcError(f"--threads {threads}: need at least 1")
    _, cfg, model = load_for_export(checkpoint)
    names = input_names(cfg)
    mode = "inference_mode" if inference_mode else "no_grad"
    rows, parity = [], {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work skews the figures
    torch.set_num_threads(threads)
    try:
        with tempfile.TemporaryDirectory(prefix="fgvc-latency-") as tmp:
            for size in sizes:
                inputs = example_inputs(cfg, 1, size, seed=2)
                pt = _row(f"PyTorch eager ({mode})", size, threads,
                          time_calls(_torch_call(model, inputs, inference_mode), runs, warmup))
                path = export_onnx(checkpoint, Path(tmp) / f"model_{size}.onnx", image_size=size)
                parity[size] = json.loads(Path(f"{path}.json").read_text())["parity"]
                onnx = _row("ONNX Runtime (CPU)", size, threads,
                            time_calls(_ort_call(path, names, inputs, threads), runs, warmup))
                pt["speed-up"] = "1.00x"
                onnx["speed-up"] = f"{pt['median ms'] / onnx['median ms']:.2f}x"
                rows += [pt, onnx]
    finally:
        torch.set_num_threads(previous)
    return {"checkpoint": str(checkpoint), "backbone": cfg.model.backbone, "fusion": cfg.model.fusion.name,
            "threads": threads, "runs": runs, "warmup": warmup, "torch": torch.__version__,
            "onnxruntime": ort.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average": load, "rows": rows, "parity": parity}


def format_latency(result: dict) -> str:
    """A heading line that says what was measured, then the Markdown table."""
    head = (f"{result['backbone']} (fusion: {result['fusion']}), batch 1, {result['threads']} thread(s) of "
            f"{result['cpu_count']} CPUs, median / p90 of {result['runs']} runs after {result['warmup']} "
            "warm-up; "
            f"torch {result['torch']}, onnxruntime {result['onnxruntime']}")
    if result.get("load_average") is not None:
        head += f"; 1-min load average {result['load_average']:.2f} at the start"
    parity = ", ".join(f"{size} px {p['max_abs_diff']:.1e}" for size, p in result["parity"].items())
    return f"{head}\n\n{markdown_table(result['rows'], COLUMNS)}\n\nONNX parity (max |logit diff|): {parity}"
