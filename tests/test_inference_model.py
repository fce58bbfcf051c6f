"""load_inference_model: what prediction sees of a trained checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fgvc.data.loader import make_dataset
from fgvc.data.splits import prepare_splits
from fgvc.data.occurrences import classes_in_box, occurrence_table, parse_box
from fgvc.data.records import Sample
from fgvc.deploy.exif import read_photo
from fgvc.deploy.model import load_inference_model
from fgvc.checkpoint import load_checkpoint
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError


def test_fusion_checkpoint_as_inference_model(deploy_models):
    model = load_inference_model(deploy_models.dynamic_mlp)
    ckpt = load_checkpoint(deploy_models.dynamic_mlp)
    assert model.classes == ckpt["classes"] and len(model.classes) == 4
    assert model.metadata == ("geo", "temporal") and model.meta_dim == 6
    assert model.image_size == 32 and model.config.model.fusion.name == "dynamic_mlp"
    assert model.taxonomy["genus"][0] == model.classes[0].split()[0]  # iNat taxonomy travels with the weights
    assert model.taxonomy["common_name"][0].endswith("Beetle")

    # the evaluation pipeline's tensors and the model's own forward
    splits = prepare_splits(model.config.data)
    dataset = make_dataset(model.config.data, splits.test[:3], train=False)
    items = [dataset[i] for i in range(3)]
    images, meta = torch.stack([it["image"] for it in items]), torch.stack([it["meta"] for it in items])
    _, reference = model_from_checkpoint(ckpt, len(model.classes))
    with torch.no_grad():
        expected = reference.eval()(images, meta)
    assert torch.allclose(model(images, meta), expected, atol=1e-6)
    assert not torch.allclose(model(images), expected, atol=1e-4)  # None = the missing-metadata rule
    assert torch.allclose(model(images), model(images, torch.zeros(3, 6)))
    # prediction's own path from a photo file to the tensor gives the evaluation pipeline's tensor
    photos = torch.stack([model.preprocess(read_photo(Path(s.path).read_bytes(), s.path)[0])
                          for s in splits.test[:3]])
    assert torch.allclose(photos, images, atol=1e-6)


def test_image_only_checkpoint_reads_no_metadata(deploy_models):
    model = load_inference_model(deploy_models.image_only)
    assert model.metadata == () and model.meta_dim == 0
    images = torch.randn(2, 3, 32, 32)
    assert model(images).shape == (2, 4)


def test_training_locations_travel_with_the_checkpoint(deploy_models):
    model = load_inference_model(deploy_models.image_only)  # the model reads none, the run still records them
    splits = prepare_splits(model.config.data)
    table = model.occurrences
    assert table is not None and set(table) == {"label", "lat10", "lon10"}
    assert torch.equal(table["label"], occurrence_table(splits.train)["label"])
    first = next(s for s in splits.train if s.lat is not None)
    box = (first.lat - 0.01, first.lat + 0.01, first.lon - 0.01, first.lon + 0.01)
    assert first.label in classes_in_box(table, box)
    assert classes_in_box(table, parse_box("-90,90,-180,180")) == set(range(4))


def test_occurrences_rounding_antimeridian_and_missing():
    samples = [Sample("a", 0, 10.04, 179.96), Sample("b", 1, -20.0, -179.9), Sample("c", 2, None, None),
               Sample("d", 0, 10.01, 179.99), Sample("e", 1, 95.0, 0.0)]  # d rounds like a; e is invalid
    table = occurrence_table(samples)
    assert table["label"].tolist() == [0, 1]
    assert table["lat10"].tolist() == [100, -200] and table["lon10"].tolist() == [1800, -1799]
    assert classes_in_box(table, parse_box("0,30,170,-170")) == {0}  # across the antimeridian
    assert classes_in_box(table, parse_box("-30,30,170,-170")) == {0, 1}
    assert classes_in_box(table, parse_box("0,5,-10,10")) == set()
    for bad in ("1,2,3", "10,0,0,1", "0,1,0,200", "a,b,c,d"):
        with pytest.raises(ValueError, match="region"):
            parse_box(bad)


def test_refuses_what_is_not_an_image_model(deploy_models, tmp_path):
    with pytest.raises(FgvcError, match="PriorsNet location prior"):
        load_inference_model(deploy_models.prior_run / "checkpoints" / "priors.pt")
    torch.save({"state_dict": {}}, tmp_path / "released.pth")
    with pytest.raises(FgvcError, match="import-checkpoint"):
        load_inference_model(tmp_path / "released.pth")
    with pytest.raises(FgvcError, match="not found"):
        load_inference_model(tmp_path / "none.pt")
