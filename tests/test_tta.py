"""Test-time augmentation and ensembles: the views are the documented crops, averaging is exact,
an ensemble of one checkpoint twice is that checkpoint, an ensemble of two different checkpoints is
their averaged probabilities computed by hand, and ``fgvc evaluate`` reports the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from conftest import tiny_tree
from fgvc.checkpoint import load_checkpoint, save_atomic
from fgvc.cli import main
from fgvc.config import load_config
from fgvc.data.transforms import eval_transform, flip_views, multi_scale_views, ten_crop_views
from fgvc.engine.inference import predict_split
from fgvc.engine.tta import EnsembleSum, predict_views
from fgvc.errors import FgvcError


def _image(width: int = 48, height: int = 40) -> Image.Image:
    """Every pixel different, so a wrong crop or a missing flip changes the tensor."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _normalise(img: Image.Image) -> torch.Tensor:
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(img)


def test_ten_crop_is_four_corners_and_centre_of_the_resize_then_their_mirrors():
    img, size, crop_pct = _image(), 16, 0.8
    views = ten_crop_views(size, crop_pct)(img)
    assert len(views) == 10 and all(v.shape == (3, size, size) for v in views)
    resized = v2.Resize(20, antialias=True)(img)  # short side 40 -> 16 / 0.8 = 20, long side 48 -> 24
    w, h = resized.size
    assert (w, h) == (24, 20)
    boxes = [(0, 0), (w - size, 0), (0, h - size), (w - size, h - size)]  # (left, top) of tl, tr, bl, br
    for view, (left, top) in zip(views[:4], boxes):
        assert torch.allclose(view, _normalise(resized.crop((left, top, left + size, top + size))), atol=1e-6)
    assert torch.allclose(views[4], eval_transform(size, crop_pct)(img), atol=1e-6)  # the centre crop
    # then the five crops of the mirrored image: its top-left corner is the mirrored top-right, ...
    for plain, mirrored in zip([views[i] for i in (1, 0, 3, 2, 4)], views[5:]):
        assert torch.equal(mirrored, plain.flip(-1))


def test_flip_adds_the_mirror_of_the_centre_crop_and_multi_scale_runs_the_pipeline_per_size():
    img = _image()
    centre, mirror = flip_views(16, 0.8)(img)
    assert torch.equal(centre, eval_transform(16, 0.8)(img)) and torch.equal(mirror, centre.flip(-1))
    views = multi_scale_views([16, 24], 16, 0.8)(img)
    assert [tuple(v.shape) for v in views] == [(3, 16, 16), (3, 24, 24)]
    assert torch.equal(views[1], eval_transform(24, 0.8)(img))
    square = multi_scale_views([24], 16, 0.8, resize=20)(img)[0]  # square resize scales with the crop: 30
    assert torch.equal(square, eval_transform(24, 0.8, resize=30)(img))


class MetaNet(nn.Module):
    """Logits from the pooled image and the metadata, so a view that dropped the metadata would differ."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image, self.meta = nn.Linear(3, 4), nn.Linear(2, 4)

    def forward(self, images, meta):
        return self.image(images.mean((2, 3))) + self.meta(meta)


class TwoRules:
    def predict(self, model, batch):
        logits = model(batch["image"], batch["meta"])
        return {"concat": logits, "mix": 2 * logits}


def test_views_average_softmax_probabilities_per_rule_with_the_metadata_of_every_view():
    model, g = MetaNet(), torch.Generator().manual_seed(1)
    batches = [{"image": [torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 3, 12, 12, generator=g)],
                "label": torch.tensor([0, 1, 2]), "meta": torch.randn(3, 2, generator=g)} for _ in range(2)]
    probs, labels = predict_views(model, TwoRules(), batches, torch.device("cpu"), progress=False)
    assert list(probs) == ["concat", "mix"] and labels.tolist() == [0, 1, 2, 0, 1, 2]
    for name, scale in (("concat", 1), ("mix", 2)):
        manual = torch.cat([sum((scale * model(v, b["meta"])).softmax(1) for v in b["image"]) / 2 for b in batches])
        assert torch.allclose(probs[name], manual.detach(), atol=1e-6)


def test_ensemble_averages_each_rule_and_refuses_different_rules():
    a = {"concat": torch.tensor([[0.2, 0.8], [0.9, 0.1]]), "mix": torch.tensor([[1.0, 0.0], [0.5, 0.5]])}
    b = {"concat": torch.tensor([[0.6, 0.4], [0.3, 0.7]]), "mix": torch.tensor([[0.0, 1.0], [0.25, 0.75]])}
    ensemble = EnsembleSum()
    for member in (a, b):
        ensemble.start_member()
        for row in range(2):  # batch by batch, as the loader gives them
            ensemble.add({name: p[row:row + 1] for name, p in member.items()}, torch.tensor([row]))
    blocks = list(ensemble.average_batches(rows=1))
    assert [labels.tolist() for _, labels in blocks] == [[0], [1]]
    for name in ("concat", "mix"):
        mean = torch.cat([probabilities[name] for probabilities, _ in blocks])
        assert torch.allclose(mean, torch.stack([a[name], b[name]]).mean(0))
    ensemble.start_member()
    with pytest.raises(FgvcError, match="different prediction rules"):
        ensemble.add({"logits": a["concat"]}, torch.tensor([0, 1]))


@pytest.fixture(scope="module")
def trained(folder_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("tta")
    config = out / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_tree(folder_dataset, out / "runs",
                                               schedule={"epochs": 1, "warmup_epochs": 0.5})))
    assert main(["-q", "train", str(config)]) == 0
    return config, out / "runs" / "tiny"


def test_evaluate_reports_tta_rows_and_an_ensemble_of_one_checkpoint_twice_equals_it(trained, capsys):
    config, run = trained
    best = run / "checkpoints" / "best.pt"
    assert main(["-q", "evaluate", str(config), f"checkpoint={best}", f"checkpoint={best}",
                 "eval.hflip=true", "eval.ten_crop=true", "eval.tta_scales=[32,40]"]) == 0
    report = json.loads((run / "report.json").read_text())
    rows = {(r["setting"], r["checkpoints"]): r for r in report["tta"]}
    settings = ["centre crop", "centre crop + flip", "multi-scale 32/40 px", "ten-crop"]
    assert list(rows) == [(s, 1) for s in settings] + [(s, 2) for s in settings]
    assert [rows[(s, 1)]["views"] for s in settings] == [1, 2, 2, 10]
    assert rows[("centre crop", 1)]["top-1"] == pytest.approx(report["test"]["top1"])  # the headline, apart
    for s in settings:
        assert rows[(s, 2)]["top-1"] == rows[(s, 1)]["top-1"]
        assert rows[(s, 2)]["mean per-class"] == rows[(s, 1)]["mean per-class"]
    assert report["protocol"]["ensemble"] == [str(best), str(best)]
    md = (run / "report.md").read_text()
    assert "## Test-time augmentation and ensembles (test)" in md and "| ten-crop | 2 | 10 |" in md
    assert "ten-crop" in capsys.readouterr().out


def test_ensemble_of_two_different_checkpoints_is_their_average_by_hand(trained, tmp_path):
    """The second member is the first with noise on its weights, enough for the two to score differently;
    the ensemble, in either order, must score what their averaged probabilities score (so neither the
    first nor the last member alone can pass)."""
    config, run = trained
    cfg, best, other = load_config(config), run / "checkpoints" / "best.pt", tmp_path / "other.pt"
    logits_a, labels = predict_split(cfg, best)

    def top1(probs):
        return 100 * (probs.argmax(1) == labels).float().mean().item()

    for noise in (0.1, 0.2, 0.3, 0.5, 1.0):
        ckpt, g = load_checkpoint(best), torch.Generator().manual_seed(0)
        ckpt["model"] = {k: v + noise * v.abs().mean() * torch.randn(v.shape, generator=g)
                         if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        save_atomic(ckpt, other)
        logits_b, labels_b = predict_split(cfg, other)
        if top1(logits_a) != top1(logits_b):
            break
    else:
        pytest.fail("no noise level made the second checkpoint score differently")
    assert torch.equal(labels, labels_b)
    mean = (logits_a.softmax(1) + logits_b.softmax(1)) / 2
    hits = (mean.argmax(1) == labels).float()
    per_class = [hits[labels == c].mean().item() for c in labels.unique()]

    for members in (f"{best},{other}", f"{other},{best}"):
        assert main(["-q", "evaluate", str(config), f"checkpoint={members}"]) == 0
        row = next(r for r in json.loads((run / "report.json").read_text())["tta"] if r["checkpoints"] == 2)
        assert row["top-1"] == pytest.approx(top1(mean))
        assert row["mean per-class"] == pytest.approx(100 * sum(per_class) / len(per_class))


def test_evaluate_without_tta_has_no_table_and_corruption_refuses_an_ensemble(trained, capsys):
    config, run = trained
    best = run / "checkpoints" / "best.pt"
    assert main(["-q", "evaluate", str(config), f"checkpoint={best}", "split=val"]) == 0
    assert "tta" not in json.loads((run / "report_val.json").read_text())
    assert main(["-q", "evaluate", str(config), f"checkpoint={best},{best}", "corruption=gaussian_noise"]) == 2
    assert "not an ensemble" in capsys.readouterr().err


def test_views_of_a_uint8_tensor_image_are_all_normalised_floats():
    tensor = torch.from_numpy(np.array(_image())).permute(2, 0, 1).contiguous()  # what tensor decoding gives
    for make in (ten_crop_views(16, 0.8), flip_views(16, 0.8), multi_scale_views([16, 24], 16)):
        views = make(tensor)
        assert all(v.dtype == torch.float32 and v.shape[-1] in (16, 24) for v in views)
    assert torch.equal(ten_crop_views(16, 0.8)(tensor)[4], eval_transform(16, 0.8)(tensor))
