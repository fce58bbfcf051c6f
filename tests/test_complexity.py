"""Parameter and FLOP counts against hand counts; ``fgvc analyze complexity`` on a tiny trained run."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch import nn

from fgvc.analysis.complexity import count_flops, count_parameters, model_complexity
from fgvc.cli import main
from conftest import tiny_tree


class ConvLinear(nn.Module):
    """conv 3->8 3x3 (no padding) on 10x10 -> 8x8x8, then linear 512 -> 6, no biases."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=False)
        self.fc = nn.Linear(8 * 8 * 8, 6, bias=False)

    def forward(self, x):
        return self.fc(self.conv(x).flatten(1))


CONV_MACS = (8 * 8 * 8) * (3 * 3 * 3)  # one multiply-add per output value and kernel weight
FC_MACS = 512 * 6


def test_flops_are_twice_the_hand_counted_macs_per_image():
    x = torch.zeros(2, 3, 10, 10)
    assert count_flops(ConvLinear(), x) == 2 * 2 * (CONV_MACS + FC_MACS)  # batch 2, FLOPs = 2 x MACs
    assert model_complexity(ConvLinear(), 10)["gmacs_test"] * 1e9 == pytest.approx(CONV_MACS + FC_MACS)


def test_a_training_step_counts_the_backward_too():
    fc = nn.Linear(20, 7, bias=False)
    x = torch.randn(5, 20)  # no input gradient: backward is one matmul (weight gradient), as big as forward
    assert count_flops(lambda: fc(x).sum().backward(), grad=True) == 2 * (2 * 5 * 20 * 7)
    assert fc.weight.grad is not None


def test_parameters_total_trainable_and_without_training_only_modules():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)  # 15
            self.aux_classifiers = nn.ModuleList([nn.Linear(4, 2), nn.Linear(4, 1)])  # 10 + 5, erudite-style

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(2, 4)  # 12
            self.head = Head()

    net = Net()
    net.backbone.requires_grad_(False)
    assert count_parameters(net) == {"total": 42, "trainable": 30, "test_time": 27}


def test_cli_writes_complexity_files_for_a_trained_run(folder_dataset, tmp_path, capsys):
    tree = tiny_tree(folder_dataset, tmp_path / "runs", schedule={"epochs": 1, "warmup_epochs": 0.5})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tree))
    assert main(["-q", "train", str(config)]) == 0
    best = tmp_path / "runs" / "tiny" / "checkpoints" / "best.pt"
    assert main(["-q", "analyze", "complexity", str(config), f"checkpoint={best}", "--batch-size", "2",
                 "--image-size", "32", "--steps", "1", "--warmup", "0"]) == 0
    result = json.loads((tmp_path / "runs" / "tiny" / "complexity.json").read_text())
    md = (tmp_path / "runs" / "tiny" / "complexity.md").read_text()
    model = torch.load(best, weights_only=False)["model"]
    assert result["params"]["total"] == result["params"]["test_time"] == sum(v.numel() for k, v in model.items()
                                                                              if "running" not in k
                                                                              and "num_batches" not in k)
    assert (result["batch_size"], result["image_size"], result["checkpoint"]) == (2, 32, str(best))
    flops = result["flops_per_image"]
    assert flops["test_forward"] == flops["train_forward"] > 0
    assert flops["train_step"] > flops["train_forward"]  # backward counted
    assert result["images_per_s"]["train"] > 0 and result["images_per_s"]["inference"] > 0
    assert "FLOPs = 2 x MACs" in md and "| training |" in md and "| inference |" in md
    assert "complexity.md" in capsys.readouterr().out
