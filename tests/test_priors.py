"""PriorsNet (presence-only geo prior) and the GeoNet-style backbone copy, on tiny CPU problems."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_config
from PIL import Image
from torch import nn

from fgvc.data.metadata import encode_batch, encode_metadata
from fgvc.data.records import Sample
from fgvc.engine.run import evaluate_adjusted
from fgvc.errors import FgvcError
from fgvc.methods.priors import (
    Priors,
    PriorsNet,
    combine_with_image,
    encode_points,
    load_image_backbone,
    load_priors,
    presence_only_loss,
    prior_logits,
    random_locations,
    random_points,
    save_priors,
    train_priors,
)
from fgvc.models.backbones import Backbone
from fgvc.models.fusion import LocationEncoder
from fgvc.models.heads import ImageClassifier

CENTRES = [(45.0, -100.0), (-25.0, 135.0), (50.0, 10.0)]  # one blob per class


@pytest.fixture(autouse=True)
def one_thread():
    """A tiny MLP gains nothing from intra-op threads and loses a lot when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(per_class: int = 60, seed: int = 0, missing: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = [Sample(f"{c}_{i}.png", c, float(lat + rng.normal(0, 5)), float(lon + rng.normal(0, 5)),
                  float(rng.uniform()), id=f"{c}_{i}")
           for c, (lat, lon) in enumerate(CENTRES) for i in range(per_class)]
    return out + [Sample(f"nometa_{i}.png", i % 3, None, None, None, id=f"m{i}") for i in range(missing)]


FAST = {"epochs": 15, "batch_size": 32, "lr": 5e-3, "width": 32, "n_res": 2, "progress": False}


# --- the loss --------------------------------------------------------------------------------------

def _nll(p: float, eps: float) -> float:
    return -math.log(p + eps)


@pytest.mark.parametrize("eps", [1e-5, 0.0])
def test_presence_only_loss_by_hand(eps):
    sig = lambda s: 1 / (1 + math.exp(-s))
    pos, rand = [1.0, -2.0], [0.5, 3.0]
    # target class 0 at the positive location: λ = C = 2 on -log σ(s), and no negative term for it;
    # the other class there and both classes at the random location: -log(1 - σ(s)); means over B×C
    expected = ((2 * _nll(sig(1.0), eps) + _nll(1 - sig(-2.0), eps)) / 2
                + (_nll(1 - sig(0.5), eps) + _nll(1 - sig(3.0), eps)) / 2)
    loss = presence_only_loss(torch.tensor([pos]), torch.tensor([rand]), torch.tensor([0]), eps=eps)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # an explicit λ
    expected_l5 = expected + (5 - 2) * _nll(sig(1.0), eps) / 2
    loss = presence_only_loss(torch.tensor([pos]), torch.tensor([rand]), torch.tensor([0]), 5.0, eps=eps)
    assert loss.item() == pytest.approx(expected_l5, rel=1e-6)


def test_presence_only_loss_is_stable_for_saturated_logits():
    logits = torch.tensor([[-200.0, 200.0]], requires_grad=True)  # confidently wrong
    loss = presence_only_loss(logits, torch.tensor([[200.0, -200.0]]), torch.tensor([0]), eps=0.0)
    assert torch.isfinite(loss) and loss.item() == pytest.approx((2 * 200 + 200) / 2 + 200 / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # the authors' eps caps each term at -log(eps)
    capped = presence_only_loss(logits.detach(), torch.tensor([[200.0, -200.0]]), torch.tensor([0]))
    assert capped.item() == pytest.approx(4 * -math.log(1e-5) / 2, rel=1e-4)


# --- random negatives ------------------------------------------------------------------------------

def test_random_points_are_uniform_on_the_sphere():
    lat, lon, date = random_points(20_000, torch.Generator().manual_seed(0))
    assert abs((lat.abs() < 30).double().mean().item() - 0.5) < 0.02  # sin 30° = 1/2 of the area
    assert abs((lat.abs() < 60).double().mean().item() - math.sqrt(3) / 2) < 0.02
    assert lat.abs().max() <= 90 and lon.min() >= -180 and lon.max() <= 180
    assert abs((lon < 0).double().mean().item() - 0.5) < 0.02
    assert 0 <= date.min() and date.max() <= 1
    quartiles = torch.quantile(date, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    assert torch.allclose(quartiles, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), atol=0.02)


@pytest.mark.parametrize("use", [("geo", "temporal"), ("geo",), ("temporal",)])
def test_encoding_matches_encode_metadata(use):
    lat, lon, date = random_points(50, torch.Generator().manual_seed(1))
    ours = encode_points(lat, lon, date, use)
    reference = np.stack([encode_metadata(float(a), float(o), float(d), use) for a, o, d in zip(lat, lon, date)])
    assert ours.dtype == torch.float32 and ours.shape == reference.shape
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-6)
    # random_locations = those points, encoded; reproducible for a generator seed
    again = random_locations(50, torch.Generator().manual_seed(1), use)
    assert torch.equal(again, ours)


# --- training --------------------------------------------------------------------------------------

def _sigmoid_at(model: PriorsNet, samples: list[Sample]) -> torch.Tensor:
    meta, _ = encode_batch(samples, model.use)
    return torch.sigmoid(prior_logits(model, meta))


@pytest.mark.parametrize("balance", ["class", "instance"])
def test_train_priors_learns_the_blobs(balance):
    train = blobs()
    model = train_priors(train, 3, ("geo", "temporal"), seed=0, balance=balance, **FAST)
    test = blobs(per_class=20, seed=1)
    p = _sigmoid_at(model, test)
    labels = torch.tensor([s.label for s in test])
    own = p[torch.arange(len(test)), labels]
    others = p.masked_fill(torch.nn.functional.one_hot(labels, 3).bool(), -1).max(dim=1).values
    assert (own > 0.5).float().mean() > 0.9 and (own > others).all()
    # far from every blob (South Atlantic) no class is likely
    far = encode_points(torch.tensor([-50.0]), torch.tensor([-20.0]), torch.tensor([0.5]))
    assert torch.sigmoid(prior_logits(model, far)).max() < 0.5
    assert model.info["losses"][-1] < model.info["losses"][0]


def test_train_priors_is_deterministic_and_leaves_global_rng_alone():
    train = blobs(per_class=20)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_priors(train, 3, seed=3, **FAST | {"epochs": 3})
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    b = train_priors(train, 3, seed=3, **FAST | {"epochs": 3})
    c = train_priors(train, 3, seed=4, **FAST | {"epochs": 3})
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_missing_metadata_is_excluded_and_counted(caplog):
    train = blobs(per_class=20, missing=7)
    with caplog.at_level(logging.INFO, logger="fgvc.methods.priors"):
        model = train_priors(train, 3, ("geo",), seed=0, **FAST | {"epochs": 1})
    assert model.info["n_missing"] == 7 and model.info["n_train"] == 60
    assert "7 of 67 training samples have no usable geo metadata" in caplog.text
    assert model.use == ("geo",) and model.settings["meta_in"] == 4
    with pytest.raises(FgvcError, match="no training sample has usable metadata"):
        train_priors(blobs(per_class=0, missing=3), 3, **FAST)


def test_save_and_load_priors(tmp_path):
    model = train_priors(blobs(per_class=10), 3, ("temporal",), seed=0, classes=["a", "b", "c"],
                         **FAST | {"epochs": 1})
    save_priors(model, tmp_path / "prior.pt")
    loaded = load_priors(tmp_path / "prior.pt")
    assert loaded.settings == model.settings and loaded.use == ("temporal",)
    assert loaded.classes == ["a", "b", "c"] and loaded.info["n_train"] == 30
    meta = random_locations(5, torch.Generator().manual_seed(0), ("temporal",))
    assert torch.equal(prior_logits(loaded, meta), prior_logits(model, meta))


# --- test time -------------------------------------------------------------------------------------

def test_combine_with_image_is_a_product_of_probabilities():
    image = torch.tensor([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]])
    prior = torch.tensor([[-3.0, 1.0, 0.0], [-3.0, 1.0, 0.0]])
    out = combine_with_image(image, prior, torch.tensor([True, False]))
    product = torch.softmax(image[0], 0) * torch.sigmoid(prior[0])
    torch.testing.assert_close(out[0].exp(), product / product.sum())
    torch.testing.assert_close(out[1], torch.log_softmax(image[1], 0))  # no metadata: image alone
    assert out[0].argmax() == 1 and out[1].argmax() == 0


def _write_manifest(root: Path) -> Path:
    """Images are noise (the image model cannot tell the classes apart); locations tell them apart."""
    rng = np.random.default_rng(0)
    rows = ["path,label,lat,lon,date,split"]
    for split, n in (("train", 30), ("test", 6)):
        for c, (lat, lon) in enumerate(CENTRES):
            for i in range(n):
                name = f"img/{split}_{c}_{i}.png"
                (root / "img").mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / name)
                where = ("", "") if split == "test" and i == 0 else (f"{lat + rng.normal(0, 5):.3f}",
                                                                    f"{lon + rng.normal(0, 5):.3f}")
                rows.append(f"{name},class_{c},{where[0]},{where[1]},{rng.uniform():.4f},{split}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_evaluate_with_prior_end_to_end(tmp_path):
    cfg = tiny_config(_write_manifest(tmp_path / "data"), tmp_path / "runs",
                      data={"format": "manifest", "root": str(tmp_path / "data" / "manifest.csv")})
    from fgvc.data.splits import prepare_splits

    splits = prepare_splits(cfg.data)
    torch.manual_seed(0)
    image_model = ImageClassifier(Backbone("test_resnet", announce=False), 3)
    torch.save({"model": image_model.state_dict(), "config": cfg.model_dump(mode="json"),
                "classes": splits.classes}, tmp_path / "image.pt")
    prior = train_priors(splits.train, 3, ("geo",), seed=0, classes=splits.classes, **FAST)
    save_priors(prior, tmp_path / "prior.pt")

    result = evaluate_adjusted(cfg, _priors(cfg, tmp_path / "image.pt", load_priors(tmp_path / "prior.pt")),
                               splits=splits)
    assert result["num_samples"] == 18 and result["missing_metadata"] == 3
    assert result["image"]["top1"] < 60  # noise images
    # every sample with a location is right with the prior; the 3 without keep the image prediction
    assert result["adjusted"]["top1"] >= 100 * 15 / 18 - 1e-6
    assert result["adjusted"]["top1"] > result["image"]["top1"]
    assert set(result["image"]) >= {"top1", "top5", "per_class"}

    other = PriorsNet(4, 3)
    other.classes = ["x", "y", "z"]
    with pytest.raises(FgvcError, match="other classes"):
        evaluate_adjusted(cfg, _priors(cfg, tmp_path / "image.pt", other), splits=splits)


def _priors(cfg, image_checkpoint, prior):
    """The priors method holding a trained prior, on top of ``image_checkpoint``."""
    method = Priors(cfg, len(prior.classes or []))
    method.image_checkpoint, method.prior = image_checkpoint, prior
    return method


# --- GeoNet-style: copy an image-only backbone into a fusion model -------------------------------

class _FusionLike(nn.Module):
    """Stands for any fusion model: a ``backbone`` plus new layers."""

    def __init__(self):
        super().__init__()
        self.backbone = Backbone("test_resnet", announce=False)
        self.loc = LocationEncoder(6, 16, 16, n_res=1)
        self.head = nn.Linear(self.backbone.num_features + 16, 3)


def test_load_image_backbone_copies_exactly_the_backbone(tmp_path):
    torch.manual_seed(0)
    image_model = ImageClassifier(Backbone("test_resnet", announce=False), 3)
    for buffer in image_model.backbone.buffers():  # make BN statistics differ from a fresh model's too
        if buffer.is_floating_point():
            buffer.add_(0.5)
    torch.save({"model": image_model.state_dict(), "classes": ["a", "b", "c"]}, tmp_path / "image.pt")
    torch.manual_seed(1)
    fusion = _FusionLike()
    before = {k: v.clone() for k, v in fusion.state_dict().items()}

    copied = load_image_backbone(fusion, tmp_path / "image.pt")
    backbone_keys = [k for k in fusion.state_dict() if k.startswith("backbone.")]
    assert copied == len(backbone_keys) == len(image_model.backbone.state_dict())
    source = image_model.state_dict()
    for key, value in fusion.state_dict().items():
        expected = source[key] if key.startswith("backbone.") else before[key]
        assert torch.equal(value, expected), key

    # a checkpoint of another architecture is refused, naming what is missing
    partial = {"model": {k: v for k, v in source.items() if "layer" not in k}}
    with pytest.raises(FgvcError, match="tensors missing"):
        load_image_backbone(_FusionLike(), partial)


@pytest.mark.parametrize("how", ["helper", "config"])
def test_geonet_recipe_trains_only_the_fusion_head(tmp_path, how):
    """Image-only backbone into a fusion model, then training with the backbone frozen throughout.

    Either with ``load_image_backbone`` after building the model, or by config alone:
    ``model.pretrained=<image-only checkpoint>`` (fgvc checkpoints load as backbone weights).
    """
    from fgvc.engine.trainer import Trainer

    manifest = _write_manifest(tmp_path / "data")
    torch.manual_seed(0)
    image_model = ImageClassifier(Backbone("test_resnet", announce=False), 3)
    torch.save({"model": image_model.state_dict()}, tmp_path / "image.pt")
    cfg = tiny_config(manifest, tmp_path / "runs", data={"format": "manifest", "root": str(manifest),
                                                         "metadata": ["geo"]},
                      model={"backbone": "test_resnet", "fusion": {"name": "concat", "d": 16, "loc_width": 16},
                             "pretrained": str(tmp_path / "image.pt") if how == "config" else None},
                      schedule={"epochs": 1, "warmup_epochs": 0, "freeze_backbone_epochs": 1})

    trainer = Trainer(cfg)
    if how == "helper":
        copied = load_image_backbone(trainer.model, tmp_path / "image.pt")
        assert copied == len(image_model.backbone.state_dict())
    head_before = {k: v.clone() for k, v in trainer.model.head.state_dict().items()}
    trainer.fit()
    for key, value in trainer.model.backbone.state_dict().items():  # weights and BN statistics kept
        assert torch.equal(value.cpu(), image_model.backbone.state_dict()[key]), key
    assert any(not torch.equal(v.cpu(), head_before[k]) for k, v in trainer.model.head.state_dict().items())
