"""The erudite meta step: fgvc's θ-only adaptation against adapting the whole model (released code).

Both compute the second-order gradient, with respect to the attention parameters θ, of
``L_meta = L_all(meta-train) + L_all(adapted; meta-test)`` on the same model, batch and meta-test
dataset, alternating, in one process:

- **fgvc** (docs/methods/erudite.md): only θ is adapted, ``θ' = θ − α∇θ L_all``; θ sits after the
  backbone, so the backbone runs once without a graph and only the head is re-run (``functional_call``
  over θ, no copy).
- **whole model** (the released code's way): a deep copy of the network per step whose every
  parameter is adapted with ``create_graph=True``, the meta-test forward through the adapted copy,
  the second-order backward through the whole network.

The objectives differ (one adapts θ, the other everything), so the gradients are not compared here;
tests/test_erudite_method.py checks fgvc's against an explicit second-order expression.

    python benchmarks/meta_step.py [--backbone resnet18] [--size 112] [--per-dataset 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.func import functional_call

from fgvc.engine.report import markdown_table
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


class TrainForward(torch.nn.Module):
    """``model.forward_train`` as a module call, so ``functional_call`` can run it."""

    def __init__(self, model: EruditeNet):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> dict:
        return self.model.forward_train(images)


def whole_model_meta_grad(net: EruditeNet, images, labels, test: int, alpha: float) -> list[torch.Tensor]:
    wrapper = TrainForward(copy.deepcopy(net))  # the released code clones the network each step
    params = dict(wrapper.named_parameters())
    theta = [params[f"model.head.{n}"] for n in net.head.meta_parameter_names()]
    index = dataset_index(labels, GROUPS)[0]
    train, held = index != test, index == test
    train_loss = joint_loss(wrapper(images[train]), labels[train], GROUPS)
    grads = torch.autograd.grad(train_loss, list(params.values()), create_graph=True, allow_unused=True)
    adapted = {n: p if g is None else p - alpha * g for (n, p), g in zip(params.items(), grads)}
    loss = train_loss + joint_loss(functional_call(wrapper, adapted, (images[held],)), labels[held], GROUPS)
    return list(torch.autograd.grad(loss, theta))


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
    times = {"fgvc (θ-only, backbone once)": [], "whole model (copy + full graph)": []}
    for r in range(args.repeats):
        test = r % len(GROUPS)
        times["fgvc (θ-only, backbone once)"].append(timed(fgvc_meta_grad, net, images, labels, test, 0.01))
        times["whole model (copy + full graph)"].append(timed(whole_model_meta_grad, net, images, labels, test, 0.01))
    base = statistics.median(times["whole model (copy + full graph)"])
    print(f"{args.backbone}, {args.size} px, batch {len(labels)} ({args.per_dataset} per dataset, 4 datasets), "
          f"cpu, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(markdown_table([{"meta step": k, "ms": f"{statistics.median(v) * 1e3:.1f}",
                           "speed-up": f"{base / statistics.median(v):.2f}x"} for k, v in times.items()]))


if __name__ == "__main__":
    main()
