"""A method is one module: the interface every shipped method keeps, and a new method defined here alone.

The toy method below is the whole of what adding a method takes (in its own module under
``fgvc/methods/`` it would be found there): its config section becomes ``method.name=toy`` with its
own keys and checks, the trainer trains it, DDP learns its forwards, and nothing else is edited.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar, Literal

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_tree
from pydantic import Field

from fgvc.config import Config, build_config
from fgvc.engine.distributed import find_unused_parameters
from fgvc.engine.run import train_and_report
from fgvc.errors import ConfigError
from fgvc.methods import METHODS, Method, build_method, method_class
from fgvc.sections import MethodSection

SHIPPED = ("ctc", "erudite", "priors", "progressive", "supervised")
ROUTABLE = {"forward", "forward_all", "forward_train"}  # the training entry points fgvc's models have


def test_every_shipped_method_states_what_the_trainer_and_ddp_need():
    assert set(SHIPPED) <= set(METHODS)
    for name in SHIPPED:
        cls = METHODS[name]
        assert issubclass(cls, Method) and cls.name == name
        section = cls.section()  # every key has a default
        assert section.name == name and isinstance(section, MethodSection)
        assert set(cls.forwards) <= ROUTABLE, name
        assert isinstance(cls.unused_parameters(section), bool)
        assert cls.section.heads and set(cls.section.heads) <= {"linear", "multi_stage", "erudite"}
        # a method either trains through train_step/training_loss or fits and adjusts
        own = cls.train_step is not Method.train_step or cls.training_loss is not Method.training_loss
        fits = cls.fit is not Method.fit and cls.adjust is not Method.adjust
        assert own != fits, name
        assert cls.trains_model == own, name


def test_the_config_section_is_the_method_s(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path, method={"name": "ctc", "ctc_alpha": 0.3})
    assert type(cfg.method) is METHODS["ctc"].section and cfg.method.ctc_alpha == 0.3
    assert method_class(cfg) is METHODS["ctc"]
    with pytest.raises(ConfigError, match=r"unknown config key 'method\.ctc_alph' \(known keys here: name, "):
        tiny_config(tmp_path, tmp_path, method={"name": "ctc", "ctc_alph": 0.3})
    with pytest.raises(ConfigError, match=r"config key 'method\.name': no such choice 'nope' \(one of ctc, "):
        tiny_config(tmp_path, tmp_path, method={"name": "nope"})
    # no name: the default method; its section has no keys of its own
    assert tiny_config(tmp_path, tmp_path, method={}).method.name == "supervised"
    with pytest.raises(ConfigError, match=r"unknown config key 'method\.bogus' \(known keys here: name\)"):
        tiny_config(tmp_path, tmp_path, method={"bogus": 1})


def test_another_method_s_keys_are_dropped_with_a_note(tmp_path, caplog):
    """A base config's progressive keys under a child's method.name=supervised (the RMG-PMSI baselines),
    and the flat method section of configs saved before each method had its own."""
    saved = {"name": "supervised", "augment": "jigsaw", "phases": False, "ctc_alpha": 0.5,
             "image_checkpoint": None}
    with caplog.at_level("INFO", logger="fgvc.config"):
        cfg = tiny_config(tmp_path, tmp_path, method=saved)
    assert cfg.method.model_dump() == {"name": "supervised"}
    assert "method.augment, method.phases, method.ctc_alpha, method.image_checkpoint" in caplog.text


# --- a new method, defined here and nowhere else ------------------------------------------------

class ToyConfig(MethodSection):
    """``method.name=toy``: cross-entropy with the logits scaled by ``1 / temperature``."""

    name: Literal["toy"] = "toy"
    heads: ClassVar[tuple[str, ...]] = ("linear",)
    temperature: float = Field(1.0, gt=0)

    def check(self, cfg: Config) -> None:
        if cfg.model.fusion.name != "none":
            raise ValueError("method.name=toy trains image-only models: set model.fusion.name=none")


@pytest.fixture
def toy():
    class Toy(Method):
        section = ToyConfig

        def __init__(self, cfg, num_classes, model=None, num_train=None):
            self.temperature = cfg.method.temperature
            self.batches = 0

        def training_loss(self, model, batch):
            self.batches += 1
            logits = model(batch["image"], batch["meta"])
            return F.cross_entropy(logits.float() / self.temperature, batch["label"]), logits

    yield Toy
    del METHODS["toy"]


def test_a_new_method_is_one_module(toy, folder_dataset, tmp_path):
    tree = tiny_tree(folder_dataset, tmp_path, method={"name": "toy", "temperature": 2.0},
                     schedule={"epochs": 1})
    cfg = build_config(tree)
    assert type(cfg.method) is ToyConfig and cfg.method.temperature == 2.0
    assert isinstance(build_method(cfg, 3), toy) and not find_unused_parameters(cfg)
    with pytest.raises(ConfigError, match=r"config key 'method\.temperature'"):
        build_config(tiny_tree(folder_dataset, tmp_path, method={"name": "toy", "temperature": 0}))
    with pytest.raises(ConfigError, match="unknown config key 'method.temp'"):
        build_config(tiny_tree(folder_dataset, tmp_path, method={"name": "toy", "temp": 1}))
    with pytest.raises(ConfigError, match="method.name=toy trains image-only models"):
        build_config(tiny_tree(folder_dataset, tmp_path, method={"name": "toy"}, data={"metadata": ["geo"]},
                               model={"fusion": {"name": "concat"}}))
    with pytest.raises(ConfigError, match="method.name=toy and model.head=multi_stage do not go together"):
        build_config(tiny_tree(folder_dataset, tmp_path, method={"name": "toy"},
                               model={"head": "multi_stage"}))

    report = train_and_report(cfg)
    assert report["method"] == "toy" and 0 <= report["test"]["top1"] <= 100
    saved = (tmp_path / "tiny" / "config.yaml").read_text()
    assert "temperature: 2.0" in saved
    assert build_config(json.loads(json.dumps(cfg.model_dump(mode="json")))) == cfg


def test_a_method_with_a_taken_name_is_refused(toy):
    with pytest.raises(TypeError, match="method.name=toy is taken"):
        type("OtherToy", (Method,), {"section": ToyConfig, "__module__": __name__})
    assert METHODS["toy"] is toy


def test_no_branch_on_a_method_name_outside_the_methods():
    """The engine, the command line, deployment and the analyses ask the method's class, never its name."""
    src = Path(__file__).resolve().parents[1] / "src" / "fgvc"
    for part in ("engine", "cli", "deploy", "analysis"):
        for path in (src / part).rglob("*.py"):
            text = path.read_text()
            for name in SHIPPED:
                assert f'== "{name}"' not in text and f"== '{name}'" not in text, (path, name)


# --- fusion variants and dataset formats are tables too -------------------------------------------

def test_model_fusion_takes_the_names_of_the_fusion_table():
    from typing import get_args

    from fgvc.models.fusion import FUSIONS, FusionConfig, build_fusion_head

    assert get_args(FusionConfig.model_fields["name"].annotation) == ("none", *FUSIONS)
    for name, fusion in FUSIONS.items():
        head = build_fusion_head(FusionConfig(name=name, d=8, h=4, loc_width=8), 16, 6, 5)
        assert head(torch.randn(3, 16), torch.randn(3, 6)).shape == (3, 5), name
        if fusion.compensable:
            build_fusion_head(FusionConfig(name=name, compensated=True, d=8, h=4, loc_width=8), 16, 6, 5)


def test_data_format_takes_the_names_the_reader_modules_declare(tmp_path):
    from typing import get_args

    from fgvc.data.formats import FORMATS, LEVELS, config_options
    from fgvc.data.section import DataConfig

    assert get_args(DataConfig.model_fields["format"].annotation) == (*FORMATS, "shards")
    assert set(LEVELS) == {"variant", "family", "manufacturer", "fine", "coarse"}
    # data.level and data.crop_banner reach the readers that take them, and no other
    aircraft = config_options(DataConfig(format="aircraft", root="x", level="family"))
    assert aircraft == {"on_bad_record": "error", "level": "family", "crop_banner": True}
    assert config_options(DataConfig(format="cub", root="x", level="family")) == {"on_bad_record": "error"}
    assert config_options(DataConfig(format="inat2021", root="x"))["splits"] == ("train_mini", "val")


def test_no_format_or_fusion_is_named_outside_its_table():
    src = Path(__file__).resolve().parents[1] / "src" / "fgvc"
    from fgvc.data.formats import FORMATS
    from fgvc.models.fusion import FUSIONS

    def branches(text: str, names) -> list[str]:  # code that treats one name apart
        return [n for n in names if any(f in text for f in (f'== "{n}"', f'"{n}":', f'startswith("{n[:4]}'))]

    for path in (src / "data" / "splits.py", src / "data" / "section.py", src / "data" / "loader.py",
                 src / "config.py"):
        assert branches(path.read_text(), FORMATS) == [], path
    for path in (src / "models" / "__init__.py", src / "config.py"):
        assert branches(path.read_text(), FUSIONS) == [], path


def test_the_model_card_line_comes_from_the_method():
    from fgvc.deploy.hub import _method_line

    def line(method, head="linear", fusion="none", **cfg):
        saved = {"method": {"name": method, **cfg}, "model": {"multi_stage": {"interaction": True}}}
        return _method_line({"config": saved, "architecture": {"method": method, "head": head, "fusion": fusion}})

    assert line("progressive", "multi_stage", augment="rmg").startswith("RMG-PMSI: progressive multi-stage training")
    assert line("erudite", "erudite") == "the erudite model: one network over several datasets' classes"
    assert line("ctc") == "contrastive temporal coding (CTC) on a linear classifier"
    assert line("supervised", fusion="dynamic_mlp").startswith("geo-temporal fusion `dynamic_mlp`")
    assert line("supervised") == "supervised, image only"
