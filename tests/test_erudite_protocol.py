"""The erudite protocol: Single (per-dataset models + a coarse classifier) vs joint variants, per mixture."""

from __future__ import annotations

import json

import torch
from conftest import tiny_config, write_folder_dataset

from fgvc.cli import main
from fgvc.experiments.protocol import (VARIANTS, class_changes, coarse_config, run_protocol, single_scores,
                                       variant_config)


def test_single_needs_the_right_dataset_and_the_right_class():
    coarse = torch.tensor([0, 0, 1, 1, 1, 0])  # dataset a's 3 test images, then b's 3
    correct = {"a": torch.tensor([True, True, True]), "b": torch.tensor([True, False, True])}
    scores = single_scores(coarse, correct)
    assert abs(scores["a"] - 200 / 3) < 1e-4  # third image sent to b's model: wrong although a's model is right
    assert abs(scores["b"] - 100 / 3) < 1e-4  # first right; second wrong class; third sent to a


def test_class_changes_count_ties_apart():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    single = torch.tensor([True, False, True, True, False, False, True, False])
    joint = torch.tensor([True, True, True, True, False, False, False, False])
    # class 0: 1/2 -> 2/2 rose; 1: 2/2 -> 2/2 and 2: 0/2 -> 0/2 tied; 3: 1/2 -> 0/2 fell
    assert class_changes(joint, single, labels) == {"_positive": 1, "_tied": 2, "_negative": 1}


def test_protocol_on_two_tiny_datasets(tmp_path, capsys):
    a = write_folder_dataset(tmp_path / "a", classes=3, train_per_class=12, seed=1)
    b = write_folder_dataset(tmp_path / "b", classes=2, train_per_class=12, seed=2)
    cfg = tiny_config(a, tmp_path / "runs", name="proto",
                      data={"joint": [{"format": "folder", "root": str(a), "name": "a"},
                                      {"format": "folder", "root": str(b), "name": "b"}], "batch_size": 4},
                      model={"head": "erudite", "erudite": {"heads": 4}}, method={"name": "erudite"},
                      schedule={"epochs": 1, "warmup_epochs": 0})
    report = run_protocol(cfg, ["baseline", "ours", "ours_pmg"], sizes=(2,))
    text = report.read_text()
    for method in ("Single", "Baseline", "Ours", "Ours_PMG"):
        assert f"| {method} |" in text
    results = json.loads((report.parent / "protocol.json").read_text())["a+b"]
    assert set(results) == {"single", "baseline", "ours", "ours_pmg"}
    assert all({k for k in scores if not k.startswith("_")} == {"a", "b"} for scores in results.values())
    counts = [results["ours"][k] for k in ("_positive", "_tied", "_negative")]
    assert sum(counts) == 5  # every class of the union, in exactly one of the three
    assert "positive / tied / negative classes" in text
    runs = {p.name for p in (tmp_path / "runs").iterdir()}
    assert {"proto_single_a", "proto_single_b", "proto_coarse_a+b", "proto_ours_a+b"} <= runs
    coarse = json.loads((tmp_path / "runs" / "proto_coarse_a+b" / "report.json").read_text())
    assert set(coarse["test"]["per_dataset"]) == {"a", "b"}  # the coarse model's accuracy per dataset
    # Table 1's feature analysis on the joint model, from its saved config
    run = tmp_path / "runs" / "proto_ours_a+b"
    assert main(["-q", "analyze", "features", str(run / "config.yaml")]) == 0
    features = json.loads((run / "features_test" / "features.json").read_text())
    assert set(features["clusters"]) == {"a", "b"} and "a-b" in features["mmd2"]
    assert features["complexity"]["params_train_m"] > features["complexity"]["params_test_m"]  # aux dropped
    assert (run / "features_test" / "tsne.png").stat().st_size > 5000
    # the CLI refuses a single-dataset config in one line
    config = tmp_path / "one.yaml"
    config.write_text(json.dumps({"data": {"format": "folder", "root": str(a)}}))
    assert main(["-q", "protocol", "erudite", str(config)]) == 2
    assert "data.joint" in capsys.readouterr().err


def test_mixtures_keep_the_images_per_dataset_of_the_base_batch(tmp_path):
    """A base batch of 24 over four datasets is 6 each: a triple trains on 18, a pair on 12 (32 would
    not split over three datasets at all)."""
    joint = [{"format": "folder", "root": str(tmp_path / n), "name": n} for n in "abcd"]
    base = tiny_config(tmp_path, tmp_path / "runs", data={"joint": joint, "batch_size": 24},
                       model={"head": "erudite"}, method={"name": "erudite"})
    sources = list(base.data.joint)
    assert variant_config(base, sources[:3], "t", "ours").data.batch_size == 18
    assert coarse_config(base, sources[:2], "c").data.batch_size == 12
    assert variant_config(base, sources, "all", "baseline").data.batch_size == 24


def test_a_protocol_variant_is_its_shipped_row(tmp_path):
    """The protocol's variant on the synthetic base config builds what configs/erudite/synthetic/<v>.yaml
    builds: one copy of each variant, in configs/erudite/_variants/."""
    from pathlib import Path

    from fgvc.config import load_config

    root = Path(__file__).parents[1] / "configs" / "erudite" / "synthetic"
    base = load_config(root / "_synthetic.yaml")
    for variant in VARIANTS:
        row = load_config(root / f"{variant}.yaml")
        built = variant_config(base, list(base.data.joint), row.name, variant)
        assert built == row, variant
