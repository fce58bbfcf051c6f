from __future__ import annotations

import pytest
import yaml

from fgvc.config import apply_override, load_config
from fgvc.errors import ConfigError


def write(path, tree):
    path.write_text(yaml.safe_dump(tree))
    return path


def test_yaml_overrides_and_base(tmp_path):
    write(tmp_path / "base.yaml", {"data": {"format": "cub", "root": "/data/cub"}, "optim": {"lr": 0.1}})
    cfg_path = write(tmp_path / "exp.yaml", {"_base_": "base.yaml", "name": "exp", "optim": {"momentum": 0.8}})
    cfg = load_config(cfg_path, ["optim.lr=1e-3", "data.metadata=[geo]", "model.pretrained=null"])
    assert cfg.name == "exp" and cfg.data.format == "cub"
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.optim.momentum == pytest.approx(0.8)
    assert cfg.data.metadata == ["geo"] and cfg.model.pretrained is None
    # the resolved config round-trips through its saved YAML
    saved = write(tmp_path / "saved.yaml", yaml.safe_load(cfg.to_yaml()))
    assert load_config(saved) == cfg


@pytest.mark.parametrize("override, words", [
    (["optim.lrr=0.1"], ["unknown config key 'optim.lrr'", "lr"]),
    (["bogus.key=1"], ["unknown config key 'bogus'"]),
    (["optim.lr=fast"], ["optim.lr", "fast"]),
    (["optim.lr=-1"], ["optim.lr", "greater than 0"]),
    (["data.batch_size=0"], ["data.batch_size"]),
    (["data.format=imagenet"], ["data.format", "imagenet"]),
    (["schedule.warmup_epochs=200"], ["warmup_epochs", "200"]),
    (["data.metadata=[geo, altitude]"], ["data.metadata", "altitude"]),
    (["optim.lr"], ["not of the form key=value"]),
])
def test_config_errors_are_one_line_naming_the_key(tmp_path, override, words):
    path = write(tmp_path / "c.yaml", {"data": {"format": "folder", "root": "x"}})
    with pytest.raises(ConfigError) as info:
        load_config(path, override)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_missing_root_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="data.root is required"):
        load_config(write(tmp_path / "a.yaml", {"data": {"format": "cub"}}))
    with pytest.raises(ConfigError, match="config key 'data' is required"):
        load_config(write(tmp_path / "b.yaml", {"name": "x"}))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    write(tmp_path / "loop.yaml", {"_base_": "loop.yaml"})
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "loop.yaml")


def test_override_into_value_is_rejected():
    tree = {"optim": {"lr": 0.1}}
    with pytest.raises(ConfigError, match="'lr' is a value"):
        apply_override(tree, "optim.lr.x=1")


def test_override_reaches_into_a_list_by_index():
    tree = {"data": {"joint": [{"format": "cub", "root": "a"}, {"format": "cars", "root": "b"}]}}
    apply_override(tree, "data.joint.1.root=/elsewhere/cars")
    assert tree["data"]["joint"][1] == {"format": "cars", "root": "/elsewhere/cars"}
    assert tree["data"]["joint"][0] == {"format": "cub", "root": "a"}
    for bad in ("data.joint.2.root=x", "data.joint.first.root=x", "data.joint.5=x"):
        with pytest.raises(ConfigError, match="is not an index of a list of 2"):
            apply_override(tree, bad)


def test_fusion_needs_metadata(tmp_path):
    path = write(tmp_path / "c.yaml", {"data": {"format": "inat2021", "root": "x"}})
    with pytest.raises(ConfigError, match="set data.metadata"):
        load_config(path, ["model.fusion.name=dynamic_mlp"])
    cfg = load_config(path, ["model.fusion.name=dynamic_mlp", "data.metadata=[geo]", "model.fusion.variant=b"])
    assert cfg.model.fusion.variant == "b"
