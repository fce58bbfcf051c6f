"""PMG and RMG-PMSI trained as their released scripts train them (docs/methods/rmg_pmsi.md).

The reference of the first test restates, in plain PyTorch, what the released PMG training loop
computes for one batch: three jigsaw phases (8, 4, 2 patches a side; one order for the batch, drawn
by swapping the first patch with every patch of a shuffled list), each its own backward pass and SGD
step on its stage's cross-entropy, then the whole image with the concatenated classifier's
cross-entropy × 2; the learning rate set per epoch to lr/2·(cos(π e/E) + 1); the smooth-conv
BatchNorms with momentum 0.01.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_tree
from torch import nn

from fgvc.config import build_config
from fgvc.data.mixing import jigsaw, recursive_mosaic
from fgvc.data.transforms import eval_transform_for, train_transform_for
from fgvc.deploy.export import deployment_info
from fgvc.engine.run import train_and_report
from fgvc.engine.trainer import Trainer, set_backbone_frozen
from fgvc.errors import ConfigError
from fgvc.models import build_model

PMG = {"head": "multi_stage", "multi_stage": {"stages": 3, "hidden": 16, "interaction": False}}


def release_swaps(images: torch.Tensor, n: int, shuffled: list[int]) -> torch.Tensor:
    """The release's jigsaw: swap the top-left patch with patch k, for each k of the shuffled list."""
    size = images.shape[-1] // n
    out = images.clone()
    for k in shuffled:
        rows, cols = slice(k // n * size, (k // n + 1) * size), slice(k % n * size, (k % n + 1) * size)
        first = out[..., :size, :size].clone()
        out[..., :size, :size] = out[..., rows, cols]
        out[..., rows, cols] = first
    return out


def fixed_orders(monkeypatch, orders: list[list[int]]) -> None:
    """Every patch order fgvc draws comes, in turn, from ``orders`` (the shuffled lists)."""
    queue = list(orders)

    def draw(count, k, generator):
        order = queue.pop(0)
        assert count == 1 and len(order) == k
        return torch.tensor([order])

    monkeypatch.setattr("fgvc.data.mixing._random_permutations", draw)


def test_one_progressive_step_matches_the_release_loop(folder_dataset, tmp_path, monkeypatch):
    epochs, epoch = 4, 2

    def config(bn_momentum):
        return tiny_config(folder_dataset, tmp_path,
                           model={**PMG, "multi_stage": {**PMG["multi_stage"], "bn_momentum": bn_momentum}},
                           method={"name": "progressive", "augment": "jigsaw", "patch_order": "release",
                                   "concat_loss_weight": 2.0},
                           optim={"lr": 0.05, "backbone_lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4},
                           schedule={"epochs": epochs, "warmup_epochs": 0, "per_epoch": True})

    trainer = Trainer(config(0.01))
    with warnings.catch_warnings():  # the schedule is moved to epoch 2's last step without optimiser steps
        warnings.simplefilter("ignore")
        for _ in range((epoch + 1) * trainer.steps_per_epoch - 1):
            trainer.scheduler.step()
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0])
    shuffled = [torch.randperm(n * n, generator=g).tolist() for n in (8, 4, 2)]

    # the reference: the same weights in a network whose smooth-conv BatchNorms get the release's momentum
    ref = build_model(config(0.1), 3)
    ref.load_state_dict(trainer.model.state_dict())
    for module in ref.blocks.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.01
    ref.train()
    factor = 0.5 * (math.cos(math.pi * epoch / epochs) + 1)  # cosine_anneal_schedule(epoch, epochs, lr) / lr
    backbone = {id(p) for p in ref.backbone.parameters()}
    sgd = torch.optim.SGD([{"params": [p for p in ref.parameters() if id(p) in backbone], "lr": 0.01 * factor},
                           {"params": [p for p in ref.parameters() if id(p) not in backbone], "lr": 0.05 * factor}],
                          momentum=0.9, weight_decay=5e-4)
    losses = []
    for phase, (n, order) in enumerate(zip((8, 4, 2), shuffled)):
        sgd.zero_grad()
        loss = F.cross_entropy(ref.forward_all(release_swaps(images, n, order))[phase], labels) * 1
        loss.backward()
        sgd.step()
        losses.append(loss.item())
    sgd.zero_grad()
    concat_loss = F.cross_entropy(ref.forward_all(images)[-1], labels) * 2
    concat_loss.backward()
    sgd.step()
    losses.append(concat_loss.item() / 2)

    fixed_orders(monkeypatch, shuffled)
    trainer.model.train()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([0.01 * factor, 0.05 * factor])
    got, _ = trainer.train_step({"image": images, "label": labels})
    assert [got[k] for k in ("stage1", "stage2", "stage3", "concat")] == pytest.approx(losses, abs=1e-6)
    assert got["loss"] == pytest.approx(sum(losses) / 4, abs=1e-6)
    ours = trainer.model.state_dict()
    for name, value in ref.state_dict().items():
        torch.testing.assert_close(ours[name].float(), value.float(), rtol=0, atol=1e-6, msg=name)
    changed = {k for k in before if not torch.equal(before[k], ours[k])}
    assert any(k.startswith("backbone.") and k.endswith("weight") for k in changed)
    assert any(k.startswith("blocks.") and k.endswith("running_var") for k in changed)


def test_release_order_is_one_order_for_the_batch_moving_every_patch():
    torch.manual_seed(0)
    images = torch.arange(2 * 4 * 8 * 8, dtype=torch.float32).view(2, 4, 8, 8)
    for _ in range(20):
        out = jigsaw(images, 2, release_order=True)
        shift = out - images
        assert torch.equal(shift[0], shift[1])  # both images moved alike
        quadrants = [shift[0, 0, :4, :4], shift[0, 0, :4, 4:], shift[0, 0, 4:, :4], shift[0, 0, 4:, 4:]]
        assert all((q != 0).all() for q in quadrants)  # no quadrant in its place
        mosaic = recursive_mosaic(images, 3, release_order=True)
        assert torch.equal(mosaic[0] - images[0], mosaic[1] - images[1])
        assert not torch.equal(mosaic, images)


def release_mosaic(images: torch.Tensor, orders: list[list[int]], choices: list[int]) -> torch.Tensor:
    """The release's recursive mosaic: at each level the quadrant swaps of ``release_swaps``, then the
    next level inside the chosen output quadrant."""
    out, top, left, size = images.clone(), 0, 0, images.shape[-1]
    for order, choice in zip(orders, choices):
        size //= 2
        region = out[..., top:top + 2 * size, left:left + 2 * size]
        region.copy_(release_swaps(region, 2, order))
        top, left = top + choice // 2 * size, left + choice % 2 * size
    return out


def test_release_mosaic_order_restates_the_release(monkeypatch):
    g = torch.Generator().manual_seed(3)
    images = torch.randn(3, 3, 32, 32, generator=g)
    orders = [torch.randperm(4, generator=g).tolist() for _ in range(3)]
    choices = [2, 1, 3]
    monkeypatch.setattr("fgvc.data.mixing._random_permutations",
                        lambda count, k, generator: torch.tensor(orders))
    monkeypatch.setattr(torch, "randint", lambda low, high, size, generator=None, device=None:
                        torch.tensor(choices).view(size))
    assert torch.equal(recursive_mosaic(images, 3, release_order=True), release_mosaic(images, orders, choices))


def test_per_epoch_cosine_is_pmgs_schedule(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, optim={"lr": 0.1},
                      schedule={"epochs": 5, "warmup_epochs": 0, "per_epoch": True})
    trainer = Trainer(cfg)
    steps = trainer.steps_per_epoch
    assert steps > 1
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(5 * steps):
            lrs.append(trainer.optimizer.param_groups[-1]["lr"])
            trainer.scheduler.step()
    for e in range(5):  # PMG's cosine_anneal_schedule(e, 5, 0.1), constant within the epoch
        assert lrs[e * steps:(e + 1) * steps] == pytest.approx([0.1 / 2 * (math.cos(math.pi * e / 5) + 1)] * steps)
    assert min(lrs) > 0.009

    with pytest.raises(ConfigError, match="whole number"):
        tiny_config(folder_dataset, tmp_path, schedule={"epochs": 5, "warmup_epochs": 0.5, "per_epoch": True})


def test_a_longer_cosine_stops_short_of_zero(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, optim={"lr": 0.1},
                      schedule={"epochs": 2, "warmup_epochs": 0, "cosine_epochs": 64})
    trainer = Trainer(cfg)
    total = 2 * trainer.steps_per_epoch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(total):
            trainer.scheduler.step()
    # the cosine's step count is 64 epochs' worth: after 2 of them the rate has barely moved
    expected = 0.1 * 0.5 * (1 + math.cos(math.pi * total / (64 * trainer.steps_per_epoch)))
    assert trainer.optimizer.param_groups[-1]["lr"] == pytest.approx(expected)
    assert expected > 0.099


def test_pmg_input_pipeline(tmp_path):
    from PIL import Image

    tree = tiny_tree(tmp_path, tmp_path, data={"resize": 20, "image_size": 16, "crop_padding": 4,
                                               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    data = build_config(tree).data
    white = Image.new("RGB", (30, 30), (255, 255, 255))
    torch.manual_seed(0)
    crops = [train_transform_for(data)(white) for _ in range(30)]
    assert all(c.shape == (3, 16, 16) for c in crops)
    assert all(c.max() == 1.0 for c in crops)  # white: (1 - 0.5) / 0.5
    assert any(c.min() == -1.0 for c in crops)  # the zero padding: (0 - 0.5) / 0.5
    assert {float(v) for c in crops for v in c.unique()} == {-1.0, 1.0}
    # evaluation, prediction and the exported model's description normalise as training did
    assert torch.equal(eval_transform_for(data)(white), torch.ones(3, 16, 16))
    info = deployment_info({"classes": ["a"]}, build_config(tree), "best.pt", 16, 17, True, "torchscript")
    assert info["preprocessing"]["mean"] == info["preprocessing"]["std"] == [0.5, 0.5, 0.5]

    with pytest.raises(ConfigError, match="data.crop_padding"):
        build_config(tiny_tree(tmp_path, tmp_path, data={"crop_padding": 8}))
    with pytest.raises(ConfigError, match="data.std"):
        build_config(tiny_tree(tmp_path, tmp_path, data={"std": [0.5, 0, 0.5]}))


@pytest.mark.parametrize("bn", ["eval", "train"])
def test_frozen_backbone_batchnorm(folder_dataset, tmp_path, bn):
    cfg = tiny_config(folder_dataset, tmp_path, model=PMG, method={"name": "progressive"},
                      schedule={"epochs": 2, "warmup_epochs": 0, "freeze_backbone_epochs": 1, "frozen_backbone_bn": bn})
    trainer = Trainer(cfg)
    trainer.model.train()
    set_backbone_frozen(trainer.model, True, bn)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step({"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 0])})
    after = trainer.model.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    weights = [k for k in backbone if "running" not in k and "num_batches" not in k]
    stats = [k for k in backbone if "running_mean" in k]
    assert weights and stats
    assert all(torch.equal(before[k], after[k]) for k in weights)  # frozen either way
    moved = [not torch.equal(before[k], after[k]) for k in stats]
    assert all(moved) if bn == "train" else not any(moved)


def test_progressive_run_logs_each_phase_and_their_mean(folder_dataset, tmp_path):
    cfg = tiny_config(folder_dataset, tmp_path, model=PMG, method={"name": "progressive", "augment": "jigsaw",
                                                                    "concat_loss_weight": 2.0},
                      schedule={"epochs": 1, "warmup_epochs": 0})
    train_and_report(cfg)
    row = json.loads((cfg.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    phases = [row[f"train_loss_{name}"] for name in ("stage1", "stage2", "stage3", "concat")]
    assert row["train_loss"] == pytest.approx(sum(phases) / 4)
    assert all(0.3 < value < 3 for value in phases)  # cross-entropies over 3 classes, not sums of them
