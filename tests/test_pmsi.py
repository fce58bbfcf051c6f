"""PMG / RMG-PMSI: multi-stage heads, the interaction, progressive phases, robustness evaluation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_config, tiny_tree

from fgvc.cli import main
from fgvc.config import build_config
from fgvc.data.mixing import recursive_mosaic
from fgvc.engine.run import train_and_report
from fgvc.errors import ConfigError
from fgvc.methods import build_method
from fgvc.methods.progressive import Progressive
from fgvc.models import build_model
from fgvc.models.backbones import Backbone
from fgvc.models.pmsi import MultiStageInteraction, MultiStageNet

MS = {"head": "multi_stage", "multi_stage": {"stages": 3, "hidden": 16}}


def test_interaction_matches_the_equations():
    torch.manual_seed(0)
    mix = MultiStageInteraction(channels=4, hidden=6, num_stages=2).eval()  # eval: dropout off
    xs = [torch.randn(3, 4), torch.randn(3, 4)]
    first, _, second = mix.mutual
    mutual = second(first(torch.cat(xs, 1)))
    expected = [x + torch.sigmoid(mutual * x) * x for x in xs]
    for got, want in zip(mix(xs), expected):
        torch.testing.assert_close(got, want)
    assert first.in_features == 8 and first.out_features == 6 and second.out_features == 4


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5])
def test_multi_stage_net_shapes(stages):
    net = MultiStageNet(Backbone("test_resnet", announce=False), 7, stages=stages, hidden=16)
    outputs = net.forward_all(torch.randn(2, 3, 32, 32))
    assert len(outputs) == stages + 1 and all(o.shape == (2, 7) for o in outputs)
    c = net.blocks[-1][3].out_channels
    assert c == net.backbone.body.num_features // 2  # half the deepest map's channels
    assert net.concat_classifier[1].in_features == stages * c
    backbone = {id(p) for p in net.backbone.parameters()}
    assert not any(id(p) in backbone for p in net.new_parameters())
    assert len(net.new_parameters()) + len(backbone) == len(list(net.parameters()))


def test_stage_count_is_checked(tmp_path):
    with pytest.raises(ValueError, match="stages must be 1..5"):
        MultiStageNet(Backbone("test_resnet", announce=False), 3, stages=6)
    with pytest.raises(ConfigError, match="model.multi_stage.stages"):
        build_config(tiny_tree(tmp_path, tmp_path, model={**MS, "multi_stage": {"stages": 6}},
                               method={"name": "progressive"}))


def test_progressive_needs_the_multi_stage_head(tmp_path):
    with pytest.raises(ConfigError, match="go together"):
        build_config(tiny_tree(tmp_path, tmp_path, method={"name": "progressive"}))
    with pytest.raises(ConfigError, match="go together"):
        build_config(tiny_tree(tmp_path, tmp_path, model=MS))


class Recorder:
    """Stands in for the trainer's update: records which parameters each backward reached."""

    def __init__(self, model):
        self.model, self.phases = model, []

    def __call__(self, loss):
        self.model.zero_grad(set_to_none=True)
        loss.backward()
        self.phases.append({name for name, p in self.model.named_parameters() if p.grad is not None})
        return loss.item()


def _net_and_method(tmp_path, interaction: bool, **method):
    cfg = tiny_config(tmp_path, tmp_path, model={**MS, "multi_stage": {"stages": 3, "hidden": 16,
                                                                        "interaction": interaction}},
                      method={"name": "progressive", **method})
    torch.manual_seed(0)
    return build_model(cfg, 5), build_method(cfg, 5)


def test_each_phase_updates_only_what_it_uses(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=False, augment="jigsaw")
    update = Recorder(model)
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3])}
    method.train_step(model, batch, update, _no_autocast)
    assert len(update.phases) == 4  # StageNum + 1 backward passes
    for n, touched in enumerate(update.phases[:3]):
        assert any(name.startswith(f"classifiers.{n}.") for name in touched)
        assert not any(name.startswith(f"classifiers.{m}.") for m in range(3) if m != n for name in touched)
        assert not any(name.startswith("concat_classifier") for name in touched)
        assert not any(name.startswith(f"blocks.{m}.") for m in range(n + 1, 3) for name in touched)
        assert any(name.startswith("backbone.") for name in touched)
    last = update.phases[3]
    assert any(name.startswith("concat_classifier") for name in last)
    assert not any(name.startswith("classifiers.") for name in last)


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def test_interaction_lets_every_phase_reach_every_stage_block(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=True)
    update = Recorder(model)
    method.train_step(model, {"image": torch.randn(4, 3, 32, 32), "label": torch.arange(4)}, update,
                      _no_autocast)
    for touched in update.phases:
        assert all(any(name.startswith(f"blocks.{m}.") for name in touched) for m in range(3))
        assert any(name.startswith("interaction.") for name in touched)


def test_phases_see_mosaics_of_decreasing_depth_then_the_original(tmp_path, monkeypatch):
    model, method = _net_and_method(tmp_path, interaction=True, augment="rmg")
    seen = []
    forward_all = model.forward_all
    monkeypatch.setattr(model, "forward_all", lambda x: seen.append(x.clone()) or forward_all(x))
    levels = []
    monkeypatch.setattr("fgvc.methods.progressive.recursive_mosaic",
                        lambda x, r, **kw: levels.append(r) or recursive_mosaic(x, r, **kw))
    images = torch.arange(4 * 3 * 32 * 32, dtype=torch.float32).reshape(4, 3, 32, 32)
    method.train_step(model, {"image": images, "label": torch.arange(4)}, Recorder(model), _no_autocast)
    assert levels == [3, 2, 1]
    for x in seen[:3]:  # each a per-sample permutation of the sample's own pixels, not the original
        assert not torch.equal(x, images)
        assert torch.equal(x.flatten(1).sort(1).values, images.flatten(1).sort(1).values)
    assert torch.equal(seen[3], images)


def test_without_phases_one_update_sums_all_losses(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=False, phases=False, augment="none")
    update = Recorder(model)
    method.train_step(model, {"image": torch.randn(4, 3, 32, 32), "label": torch.arange(4)}, update, _no_autocast)
    assert len(update.phases) == 1
    assert all(any(name.startswith(f"classifiers.{m}.") for name in update.phases[0]) for m in range(3))


def test_cutmix_phase_input_has_soft_targets_of_at_most_two_classes(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=True, augment="cutmix")
    assert isinstance(method, Progressive)
    x, target = method.phase_input(model, torch.randn(4, 3, 32, 32), torch.arange(4), 2)
    assert x.shape == (4, 3, 32, 32) and target.shape == (4, 5)
    assert torch.allclose(target.sum(1), torch.ones(4))
    assert ((target > 0).sum(1) <= 2).all() and (target[torch.arange(4), torch.arange(4)] > 0).all()


def test_predict_gives_concat_and_mix(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=True)
    model.eval()
    images = torch.randn(3, 3, 32, 32)
    out = method.predict(model, {"image": images})
    all_logits = model.forward_all(images)
    torch.testing.assert_close(out["concat"], all_logits[-1])
    torch.testing.assert_close(out["mix"], sum(all_logits))
    torch.testing.assert_close(model(images), all_logits[-1])


def test_progressive_run_reports_both_rules_and_robustness(folder_dataset, tmp_path, capsys):
    cfg = tiny_config(folder_dataset, tmp_path, model=MS, method={"name": "progressive"},
                      schedule={"epochs": 1, "warmup_epochs": 0, "freeze_backbone_epochs": 1})
    report = train_and_report(cfg)
    assert set(report["test"]["rules"]) == {"concat", "mix"}
    assert report["test"]["top1"] == report["test"]["rules"]["concat"]["top1"]
    assert "Prediction rules" in (cfg.run_dir / "report.md").read_text()

    config = tmp_path / "c.yaml"
    config.write_text(json.dumps(tiny_tree(folder_dataset, tmp_path, model=MS, method={"name": "progressive"})))
    assert main(["-q", "evaluate", str(config), "corruption=all"]) == 0
    rows = json.loads((cfg.run_dir / "report_robustness.json").read_text())["rows"]
    assert [r["corruption"] for r in rows] == ["clean"] + ["color_jitter"] * 3 + ["gaussian_noise"] * 3
    assert rows[0]["top-1"] == pytest.approx(report["test"]["top1"])
    assert all(r["drop"] == pytest.approx(rows[0]["top-1"] - r["top-1"]) for r in rows)
    assert "gaussian_noise" in capsys.readouterr().out
    assert main(["-q", "evaluate", str(config), "corruption=fog"]) == 2

    # deployment: the multi-stage model exports to ONNX with P_concat parity (checked inside export)
    best = cfg.run_dir / "checkpoints" / "best.pt"
    assert main(["-q", "export", "--checkpoint", str(best), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "top-1 identical 3/3" in capsys.readouterr().out

    # Grad-CAM of the last three stages, from the CLI, on two of the dataset's images
    images = sorted(str(p) for p in (folder_dataset / "test").rglob("*.png"))[:2]
    out = tmp_path / "cam.png"
    assert main(["-q", "analyze", "cam", "--checkpoint", str(cfg.run_dir / "checkpoints" / "best.pt"),
                 *images, "--out", str(out)]) == 0
    assert out.stat().st_size > 5000
    assert main(["-q", "analyze", "cam", "--checkpoint", str(cfg.run_dir / "checkpoints" / "best.pt"),
                 images[0], "--layers", "blocks.7", "--out", str(out)]) == 2


@pytest.mark.parametrize("name", ["color_jitter", "gaussian_noise"])
def test_corruptions_change_images_reproducibly(name):
    from PIL import Image

    from fgvc.analysis.robustness import SEVERITIES, corrupted_transform
    from fgvc.data.transforms import eval_transform

    img = Image.fromarray((torch.rand(40, 40, 3) * 255).to(torch.uint8).numpy())
    clean = eval_transform(32, 1.0)(img)
    draws = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        draws.append(corrupted_transform(32, 1.0, name, SEVERITIES[name][-1])(img))
    assert draws[0].shape == clean.shape and not torch.allclose(draws[0], clean)
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


def test_cam_maps_of_the_last_three_stages():
    from fgvc.analysis.cam import cam_maps, default_layers

    torch.manual_seed(0)
    net = MultiStageNet(Backbone("test_resnet", announce=False), 4, stages=3, hidden=16)
    assert default_layers(net) == ["blocks.0", "blocks.1", "blocks.2"]
    linear = build_model(build_config(tiny_tree("x", "y")), 4)
    assert default_layers(linear) == ["backbone.body.layer2", "backbone.body.layer3", "backbone.body.layer4"]
    images = torch.randn(2, 3, 32, 32)
    for model in (net, linear):
        maps = cam_maps(model, images, default_layers(model))
        assert maps.shape == (3, 2, 32, 32)
        assert maps.min() >= 0 and maps.max() <= 1 + 1e-6 and maps.std() > 0


def test_paste_box_puts_the_resized_partner_box_in_place():
    from fgvc.data.mixing import paste_box

    images, partner = torch.zeros(2, 1, 8, 8), torch.arange(2 * 64, dtype=torch.float32).reshape(2, 1, 8, 8)
    out = paste_box(images, partner, (2, 6, 0, 4), (0, 4, 4, 8))  # same size: a plain copy
    torch.testing.assert_close(out[:, :, 2:6, 0:4], partner[:, :, 0:4, 4:8])
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[2:6, 0:4] = False
    assert (out[:, :, mask] == 0).all()
    assert paste_box(images, partner, (0, 2, 0, 2), (0, 8, 0, 8)).shape == images.shape  # resized down


def test_snapmix_weights_follow_the_semantic_maps(tmp_path, monkeypatch):
    model, method = _net_and_method(tmp_path, interaction=True, augment="snapmix")
    maps = torch.zeros(4, 32, 32)
    maps[:, :16, :16] = 1.0  # every image's class lives in its top-left quadrant
    monkeypatch.setattr("fgvc.methods.progressive.semantic_maps", lambda m, x, y: maps)
    boxes = iter([(0, 16, 0, 8), (0, 32, 0, 32)])  # box a: half the top-left quadrant; box b: everything
    monkeypatch.setattr("fgvc.methods.progressive.random_box", lambda h, w, lam: next(boxes))
    labels = torch.tensor([0, 1, 2, 3])
    images = torch.randn(4, 3, 32, 32)
    mixed, target = method.phase_input(model, images, labels, 1)
    assert not torch.equal(mixed[:, :, :16, :8], images[:, :, :16, :8])
    torch.testing.assert_close(mixed[:, :, 16:], images[:, :, 16:])
    w_a = target[torch.arange(4), labels]
    torch.testing.assert_close(w_a[target.count_nonzero(1) == 2], torch.full(((target.count_nonzero(1) == 2).sum(),), 0.5))
    assert torch.allclose(target.sum(1), torch.full((4,), 1.5))  # kept half of a's map + all of b's


def test_semantic_maps_touch_no_gradients(tmp_path):
    from fgvc.methods.progressive import semantic_maps

    model, _ = _net_and_method(tmp_path, interaction=True)
    maps = semantic_maps(model, torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2]))
    assert maps.shape == (3, 32, 32) and (maps >= 0).all()
    assert all(p.grad is None for p in model.parameters())


def test_snapmix_phases_train(tmp_path):
    model, method = _net_and_method(tmp_path, interaction=True, augment="snapmix")
    update = Recorder(model)
    loss, _ = method.train_step(model, {"image": torch.randn(4, 3, 32, 32), "label": torch.arange(4)}, update,
                                _no_autocast)
    assert len(update.phases) == 4 and math.isfinite(loss["loss"]) and loss["loss"] > 0
    for n, touched in enumerate(update.phases[:3]):  # each mixed phase trains its own stage classifier
        assert any(name.startswith(f"classifiers.{n}.") for name in touched)
        assert not any(name.startswith("concat_classifier") for name in touched)
    assert any(name.startswith("concat_classifier") for name in update.phases[3])
