import logging

import pytest
import torch

from fgvc.errors import FgvcError
from fgvc.models.backbones import Backbone, create_stage_extractor


def test_pooled_features_and_stage_maps():
    backbone = Backbone("test_resnet")
    x = torch.randn(2, 3, 32, 32)
    assert backbone(x).shape == (2, backbone.num_features)
    assert backbone.feature_map(x).shape[:2] == (2, backbone.num_features)
    stages = create_stage_extractor("test_resnet", out_indices=(2, 3, 4))
    maps = stages(x)
    assert [m.shape[1] for m in maps] == stages.feature_info.channels()
    assert [32 // m.shape[-1] for m in maps] == stages.feature_info.reduction()


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "test_vit", "test_efficientnet"])
def test_pooled_width_is_what_the_model_returns(name):
    backbone = Backbone(name)
    size = 160 if "vit" in name else 64
    assert backbone(torch.randn(1, 3, size, size)).shape == (1, backbone.num_features)


def test_local_weights_file_loads_and_says_so(tmp_path, caplog):
    source = Backbone("test_resnet")
    path = tmp_path / "weights.pth"
    # the layout of a released checkpoint: wrapped, DataParallel-prefixed, with a classifier
    state = {f"module.{k}": v for k, v in source.body.state_dict().items()}
    state["module.fc.weight"] = torch.randn(10, source.num_features)
    torch.save({"state_dict": state}, path)
    with caplog.at_level(logging.INFO, logger="fgvc"):
        loaded = Backbone("test_resnet", pretrained=str(path))
    assert "loaded" in caplog.text and str(path) in caplog.text
    x = torch.randn(2, 3, 32, 32)
    source.eval(), loaded.eval()
    assert torch.equal(source(x), loaded(x))


def test_random_init_is_announced(caplog):
    with caplog.at_level(logging.INFO, logger="fgvc"):
        Backbone("test_resnet")
    assert "random init" in caplog.text


def test_bad_weight_sources_fail_clearly(tmp_path):
    with pytest.raises(FgvcError, match="not found"):
        Backbone("test_resnet", pretrained=str(tmp_path / "missing.pth"))
    torch.save({"unrelated.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(FgvcError, match="no tensor matches"):
        Backbone("test_resnet", pretrained=str(tmp_path / "other.pth"))
    with pytest.raises(FgvcError, match="unknown timm model"):
        Backbone("resnet_that_does_not_exist")
