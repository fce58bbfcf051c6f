"""Typed experiment settings: YAML files plus ``key=value`` overrides, validated before any work.

A config file is a YAML mapping of the sections below. ``_base_: other.yaml`` (or a list) merges
other files first, so a paper's experiment grid shares one recipe. Overrides use dotted keys:
``fgvc train configs/quickstart.yaml optim.lr=0.1 data.batch_size=64``; values are parsed as YAML.
Any unknown key, wrong type or impossible value raises ``ConfigError`` with one line naming the key.

The sections live with what reads them: ``fgvc.data.section`` (``data``; its formats are the
readers'), ``fgvc.models.fusion`` (``model.fusion``), each method module (its ``method`` section,
chosen by ``method.name``) and ``fgvc.sections`` (model heads, optimiser, schedule, training,
evaluation). This module joins them and checks the rules between sections.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path, PurePath
from typing import Annotated, Literal, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from fgvc.data.section import FORMAT_NAMES, LEVELS, DataConfig, JointSource
from fgvc.errors import ConfigError
from fgvc.methods import METHODS
from fgvc.models.fusion import FUSION_NAMES, FusionConfig
from fgvc.sections import (
    EruditeConfig,
    EvalConfig,
    MethodSection,
    MultiStageConfig,
    OptimConfig,
    ScheduleConfig,
    Section,
    TrainConfig,
)

# the names this module had before the sections moved out (MethodConfig: now the base of a method's section)
__all__ = ["FORMAT_NAMES", "FUSION_NAMES", "LEVELS", "Config", "DataConfig", "EruditeConfig", "EvalConfig",
           "FusionConfig", "JointSource", "MethodConfig", "MethodSection", "ModelConfig", "MultiStageConfig",
           "OptimConfig", "ScheduleConfig", "Section", "TrainConfig", "apply_override", "build_config",
           "load_config", "yaml_problem"]
MethodConfig = MethodSection

log = logging.getLogger(__name__)

DEFAULT_METHOD = "supervised"  # method.name when a config gives none


class ModelConfig(Section):
    backbone: str = "resnet50"  # any timm model name
    # None: random init; "hub": timm's hub weights; "synthetic": the shipped weights of `fgvc pretrain`
    # (synthetic upstream set, offline); else a local file
    pretrained: str | None = None
    drop_rate: float = Field(0.0, ge=0, lt=1)  # dropout before the classifier
    # multi_stage: PMG / RMG-PMSI classifiers per stage; erudite: experts, gate, attention (joint data)
    head: Literal["linear", "multi_stage", "erudite"] = "linear"
    fusion: FusionConfig = FusionConfig()
    multi_stage: MultiStageConfig = MultiStageConfig()
    erudite: EruditeConfig = EruditeConfig()


def _method_union(sections: tuple[type[MethodSection], ...]) -> object:
    """The ``method`` annotation: the sections of the known methods, told apart by ``name``."""
    sections = tuple(sorted(sections, key=lambda section: section.model_fields["name"].default))
    return Annotated[Union[sections], Field(discriminator="name")] if len(sections) > 1 else sections[0]


_SECTIONS = tuple(cls.section for cls in METHODS.values())  # those the union below is made of
MethodUnion = _method_union(_SECTIONS)


# Keys older fgvc versions wrote and this one no longer reads: (section, key) -> why.
RETIRED_KEYS = {("eval", "test_at_end"): "removed (no fgvc version read it)"}


class Config(Section):
    name: str = "run"
    seed: int = Field(0, ge=0, lt=2 ** 32)  # NumPy's seeding range
    output_dir: str = "runs"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    method: MethodUnion = METHODS[DEFAULT_METHOD].section()  # type: ignore[valid-type]
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, tree: object) -> object:
        """Settings fgvc no longer has are dropped with a note, so that configs saved in older
        checkpoints, run folders and hub folders still load."""
        if not isinstance(tree, dict):
            return tree
        tree = dict(tree)
        for (section, key), why in RETIRED_KEYS.items():
            if isinstance(tree.get(section), dict) and key in tree[section]:
                log.info("%s.%s: %s; ignored", section, key, why)
                tree[section] = {k: v for k, v in tree[section].items() if k != key}
        return tree

    @model_validator(mode="before")
    @classmethod
    def _method_section(cls, tree: object) -> object:
        """``method.name`` defaults to supervised. Keys of another method's section are dropped with a
        note (a base config's, or every method's in configs saved before the sections were split);
        a key no method has stays, to be refused."""
        if not isinstance(tree, dict) or not isinstance(tree.get("method"), dict):
            return tree
        section = {"name": DEFAULT_METHOD} | tree["method"]
        own = METHODS.get(section["name"])
        if own is not None:
            others = {key for cls in METHODS.values() for key in cls.section.model_fields}
            ignored = [key for key in section if key not in own.section.model_fields and key in others]
            if ignored:
                log.info("method.name=%s does not read %s (keys of other methods): ignored", section["name"],
                         ", ".join(f"method.{key}" for key in ignored))
                section = {key: value for key, value in section.items() if key not in ignored}
        return {**tree, "method": section}

    @field_validator("name")
    @classmethod
    def _name_stays_in_output_dir(cls, name: str) -> str:
        parts = PurePath(name).parts
        if not parts or PurePath(name).is_absolute() or ".." in parts or parts == (".",):
            raise ValueError("a run name is a folder inside output_dir: no absolute path, no '..'")
        return name

    @model_validator(mode="after")
    def _fusion_has_metadata(self) -> Config:
        if self.model.fusion.name != "none" and not self.data.metadata:
            raise ValueError(f"model.fusion.name={self.model.fusion.name} reads metadata: set data.metadata "
                             "(e.g. [geo, temporal])")
        return self

    @model_validator(mode="after")
    def _method_fits_the_model(self) -> Config:
        m, head = self.method, self.model.head
        if head not in m.heads:
            trainers = [name for name, cls in METHODS.items() if head in cls.section.heads]
            raise ValueError(f"method.name={m.name} and model.head={head} do not go together: "
                             f"method.name={m.name} trains model.head={' or '.join(m.heads)}"
                             + (f", model.head={head} is trained by method.name={' or '.join(trainers)}"
                                if trainers else ""))
        if head == "multi_stage" and self.model.fusion.name != "none":
            raise ValueError("model.head=multi_stage reads no metadata: set model.fusion.name=none")
        if self.model.erudite.multi_stage and self.model.erudite.hierarchical:
            raise ValueError("model.erudite.multi_stage (Ours_PMG) takes neither model.erudite.hierarchical nor "
                             "method.augment=snapmix (its semantic maps need PMG's concatenated classifier)")
        m.check(self)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _sync_methods() -> None:
    """Methods defined after this module was imported (a plugin, a test) join the ``method`` union."""
    global _SECTIONS
    sections = tuple(cls.section for cls in METHODS.values())
    if sections != _SECTIONS:
        Config.model_fields["method"] = FieldInfo.from_annotated_attribute(
            _method_union(sections), METHODS[DEFAULT_METHOD].section())
        Config.model_rebuild(force=True)
        _SECTIONS = sections


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ chain loops back to itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections, got {type(raw).__name__}")
    bases = raw.pop("_base_", [])
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged = deep_merge(merged, _read_yaml(path.parent / base, seen + (path,)))
    return deep_merge(merged, raw)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what: "line 3, column 1: a tab (YAML indents with spaces)"."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if "'\\t'" in problem:
        problem = "a tab (YAML indents with spaces only)"
    context = getattr(exc, "context", None)
    if context and "tab" not in problem:
        problem = f"{problem} ({context})"
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def apply_override(tree: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (``1e-3``, ``[geo]``, ``null``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{override}' is not of the form key=value (e.g. optim.lr=0.01)")
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    node = tree
    *parents, leaf = key.split(".")
    for part in parents:
        if isinstance(node, list):  # data.joint.0.root: an item of a list by its index
            node = node[_list_index(node, part, override)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"override '{override}': '{part}' is a value, not a section")
    if isinstance(node, list):
        node[_list_index(node, leaf, override)] = value
    else:
        node[leaf] = value


def _list_index(items: list, part: str, override: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise ConfigError(f"override '{override}': '{part}' is not an index of a list of {len(items)}")
    return int(part)


def _explain(error: ValidationError) -> str:
    first = error.errors()[0]
    parts, section = _resolve(first["loc"])
    key = ".".join(parts)
    if first["type"] == "extra_forbidden":
        section = _resolve(first["loc"][:-1])[1]
        known = ", ".join(section.model_fields) if section else ""
        return f"unknown config key '{key}'" + (f" (known keys here: {known})" if known else "")
    if first["type"] == "missing":
        return f"config key '{key}' is required"
    if first["type"] == "union_tag_invalid":
        tags = first["ctx"]["expected_tags"].replace("'", "")
        return f"config key '{key}.name': no such choice {first['ctx']['tag']!r} (one of {tags})"
    got = first.get("input")
    msg = first["msg"].removeprefix("Value error, ")
    if not key:  # a check across sections: its message names the keys
        return msg
    return f"config key '{key}': {msg} (got {got!r})" if not isinstance(got, dict) else f"{key}: {msg}"


def _resolve(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """The dotted key of an error's location and the section it ends in. Inside a section chosen by
    its name (``method``), pydantic puts the name into the location: it is not part of the key."""
    parts, model, rest = [], Config, list(loc)
    while rest:
        part = str(rest.pop(0))
        parts.append(part)
        field = model.model_fields.get(part) if model else None
        annotation = getattr(field, "annotation", None)
        if field is not None and field.discriminator and rest:
            tag = str(rest.pop(0))
            model = next((m for m in get_args(annotation) if m.model_fields["name"].default == tag), None)
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            model = None
    return parts, model


def build_config(tree: dict) -> Config:
    _sync_methods()
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None


def read_tree(path: str | Path) -> dict:
    """A config file with its ``_base_`` files merged in, not validated yet: for experiments that
    combine a file's settings with another config (the erudite variants) before validating."""
    return _read_yaml(Path(path))


def shipped_config(relative: str | PurePath) -> Path:
    """A config shipped inside the package (``fgvc/configs/``; the repository's ``configs/`` links to
    it), e.g. ``shipped_config("dynamic_mlp/synthetic/concat.yaml")``: what the demo and the protocol
    run, so the same file reproduces their tables with ``fgvc train``."""
    path = Path(str(files("fgvc") / "configs" / relative))
    if not path.is_file():
        raise ConfigError(f"no shipped config {relative} (in {path.parent})")
    return path


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML experiment (or start empty), apply dotted overrides, validate."""
    tree = _read_yaml(Path(path)) if path else {}
    for override in overrides:
        apply_override(tree, override)
    return build_config(tree)
