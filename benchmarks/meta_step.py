"""The erudite meta step: fgvc's θ-only adaptation against adapting the whole model (released code).

Both compute the same thing — the gradient of ``L_meta = L_all(θ; meta-train) + L_all(θ'; meta-test)``
with respect to the attention parameters θ, second order through ``θ' = θ − α∇θ L_all`` — on the
same model, batch and meta-test dataset, alternating, in one process:

- **fgvc**: θ sits after the backbone, so the backbone runs once without a graph and only the head
  is adapted and re-run (``torch.func.functional_call`` over θ, no copy).
- **whole model** (the released code's way): a deep copy of the network per step, the full forward
  with graph for meta-train and again for meta-test through the adapted copy.

The two gradients are checked to agree before timing.

    python benchmarks/meta_step.py [--backbone resnet18] [--size 112] [--per-dataset 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.func import functional_call

from fgvc.analysis.report import markdown_table
from fgvc.methods.erudite import dataset_index, joint_loss
from fgvc.models.backbones import Backbone
from fgvc.models.erudite import EruditeNet

GROUPS = [200, 196, 100, 102]  # CUB, Cars, Aircraft, Flowers


def batch(per_dataset: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    starts = torch.tensor([0] + GROUPS[:-1]).cumsum(0)
    labels = torch.cat([start + torch.randint(n, (per_dataset,)) for start, n in zip(starts.tolist(), GROUPS)])
    return torch.randn(len(labels), 3, size, size), labels


def fgvc_meta_grad(net: EruditeNet, images, labels, test: int, alpha: float) -> list[torch.Tensor]:
    names = net.head.meta_parameter_names()
    params = dict(net.head.named_parameters())
    theta = [params[n] for n in names]
    with torch.no_grad():
        fmap = net.features(images)
    index = dataset_index(labels, GROUPS)[0]
    train, held = index != test, index == test
    train_loss = joint_loss(net.head(fmap[train]), labels[train], GROUPS)
    grads = torch.autograd.grad(train_loss, theta, create_graph=True)
    adapted = {n: p - alpha * g for n, p, g in zip(names, theta, grads)}
    loss = train_loss + joint_loss(functional_call(net.head, adapted, (fmap[held],)), labels[held], GROUPS)
    return list(torch.autograd.grad(loss, theta))


def whole_model_meta_grad(net: EruditeNet, images, labels, test: int, alpha: float) -> list[torch.Tensor]:
    names = [f"head.{n}" for n in net.head.meta_parameter_names()]
    model = copy.deepcopy(net)  # the released code clones the network each step
    params = dict(model.named_parameters())
    theta = [params[n] for n in names]
    index = dataset_index(labels, GROUPS)[0]
    train, held = index != test, index == test
    train_loss = joint_loss(model.forward_train(images[train]), labels[train], GROUPS)
    grads = torch.autograd.grad(train_loss, theta, create_graph=True)
    adapted = {n: p - alpha * g for n, p, g in zip(names, theta, grads)}
    test_out = _forward_train(model, adapted, images[held])
    loss = train_loss + joint_loss(test_out, labels[held], GROUPS)
    return list(torch.autograd.grad(loss, theta))


def _forward_train(model: EruditeNet, adapted: dict, images: torch.Tensor) -> dict:
    """``model.forward_train`` with the adapted θ swapped in (through the whole network's graph)."""
    head_params = {n.removeprefix("head."): t for n, t in adapted.items()}
    return functional_call(model.head, head_params, (model.features(images),))


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--per-dataset", type=int, default=8, help="images per dataset in the batch (4 datasets)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    net = EruditeNet(Backbone(args.backbone, announce=False), GROUPS).eval()  # eval: identical BN in both
    images, labels = batch(args.per_dataset, args.size)
    ours = fgvc_meta_grad(net, images, labels, 1, 0.01)
    theirs = whole_model_meta_grad(net, images, labels, 1, 0.01)
    diff = max((a - b).abs().max().item() for a, b in zip(ours, theirs))
    scale = max(a.abs().max().item() for a in ours)
    assert diff <= 1e-4 * max(scale, 1e-6), f"the two meta-gradients differ by {diff}"
    times = {"fgvc (θ-only, backbone once)": [], "whole model (copy + full graph)": []}
    for r in range(args.repeats):
        test = r % len(GROUPS)
        times["fgvc (θ-only, backbone once)"].append(timed(fgvc_meta_grad, net, images, labels, test, 0.01))
        times["whole model (copy + full graph)"].append(timed(whole_model_meta_grad, net, images, labels, test, 0.01))
    base = statistics.median(times["whole model (copy + full graph)"])
    print(f"{args.backbone}, {args.size} px, batch {len(labels)} ({args.per_dataset} per dataset, 4 datasets), "
          f"cpu, {torch.get_num_threads()} threads, median of {args.repeats}; gradients agree to {diff:.1e} "
          f"(largest {scale:.1e})")
    print(markdown_table([{"meta step": k, "ms": f"{statistics.median(v) * 1e3:.1f}",
                           "speed-up": f"{base / statistics.median(v):.2f}x"} for k, v in times.items()]))


if __name__ == "__main__":
    main()
