"""Cost of each fusion head: forward+backward time and memory against a plain ``nn.Linear`` head.

Every head of ``model.fusion.name`` (Dynamic MLP A/B/C, the Table S5 same-structure ablations,
concat/add/mul plain and parameter-compensated, the three attention variants) is built exactly as
training builds it, on pooled image features of the paper's ResNet-50 (batch 256, 2048-d) and
the 6-value geo-temporal input, d=256, h=64, n=2. The baseline is the image-only classifier:
``nn.Linear(2048, classes)``, timed in the same run, alternating with the heads.

Memory: on CUDA the allocator's peak during the step; on CPU (no allocator statistics) the bytes the
step keeps alive at its peak — the tensors saved for backward plus parameters and their gradients.

    python benchmarks/fusion.py [--batch 256] [--classes 1000] [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn

from fgvc.config import FusionConfig
from fgvc.engine.report import markdown_table
from fgvc.models.fusion import build_fusion_head

IMG_DIM, META_DIM = 2048, 6
HEADS = [  # (label, FusionConfig fields)
    ("Dynamic MLP-A", {"name": "dynamic_mlp", "variant": "a"}),
    ("Dynamic MLP-B", {"name": "dynamic_mlp", "variant": "b"}),
    ("Dynamic MLP-C", {"name": "dynamic_mlp", "variant": "c"}),
    ("same structure, concat", {"name": "same_concat"}),
    ("same structure, add", {"name": "same_add"}),
    ("same structure, mul", {"name": "same_mul"}),
    ("concat", {"name": "concat"}),
    ("concat, compensated", {"name": "concat", "compensated": True}),
    ("add", {"name": "add"}),
    ("add, compensated", {"name": "add", "compensated": True}),
    ("mul", {"name": "mul"}),
    ("mul, compensated", {"name": "mul", "compensated": True}),
    ("attention, image query", {"name": "attn_img_q"}),
    ("attention, metadata query", {"name": "attn_meta_q"}),
    ("attention, concatenated", {"name": "attn_cat"}),
]


class LinearHead(nn.Module):
    """The image-only classifier with the fusion heads' call signature (metadata ignored)."""

    def __init__(self, classes: int):
        super().__init__()
        self.fc = nn.Linear(IMG_DIM, classes)

    def forward(self, img_feat: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        return self.fc(img_feat)


def step(head: nn.Module, img: torch.Tensor, meta: torch.Tensor, labels: torch.Tensor) -> None:
    head.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(head(img, meta), labels).backward()


def seconds(head: nn.Module, inputs: tuple, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step(head, *inputs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_bytes(head: nn.Module, inputs: tuple, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step(head, *inputs)
        return torch.cuda.max_memory_allocated(device) - base
    saved = []
    seen = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:  # a tensor saved by several ops is held once
            seen.add(key)
            saved.append(key[1])
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(head, *inputs)
    weights = sum(p.numel() * p.element_size() * 2 for p in head.parameters())  # values + gradients
    return sum(saved) + weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", type=int, default=1000, help="classifier width (iNat 2021 mini: 10000)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per head (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    inputs = (torch.randn(args.batch, IMG_DIM, device=device), torch.randn(args.batch, META_DIM, device=device),
              torch.randint(0, args.classes, (args.batch,), device=device))
    heads = {"nn.Linear (image-only)": LinearHead(args.classes)}
    for label, fields in HEADS:
        heads[label] = build_fusion_head(FusionConfig(**fields), IMG_DIM, META_DIM, args.classes)
    for head in heads.values():
        head.to(device).train()
        for _ in range(3):  # warm-up: allocator, kernels, lazy init
            step(head, *inputs)
    times = {label: [] for label in heads}
    for _ in range(args.repeats):  # alternate so that machine noise hits every head alike
        for label, head in heads.items():
            times[label].append(seconds(head, inputs, device))
    base_t = statistics.median(times["nn.Linear (image-only)"])
    base_m = peak_bytes(heads["nn.Linear (image-only)"], inputs, device)
    rows = []
    for label, head in heads.items():
        t, m = statistics.median(times[label]), peak_bytes(head, inputs, device)
        rows.append({"head": label, "params (M)": f"{sum(p.numel() for p in head.parameters()) / 1e6:.2f}",
                     "fwd+bwd (ms)": f"{t * 1e3:.2f}", "time / Linear": f"{t / base_t:.1f}",
                     "memory (MB)": f"{m / 2**20:.1f}", "memory / Linear": f"{m / base_m:.1f}"})
    print(f"batch {args.batch}, {IMG_DIM}-d image features, {META_DIM} metadata values, d=256 h=64 n=2, "
          f"{args.classes} classes, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
