"""fgvc analyze embedding | distances | per-class on tiny trained runs (image-only and Dynamic MLP)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from fgvc.analysis.distances import distance_analysis
from fgvc.analysis.embedding import embedding_analysis, extract_representations, silhouette
from fgvc.analysis.per_class import moving_average, sort_by_baseline
from fgvc.analysis.runs import load_run, model_for_analysis
from fgvc.cli import main
from fgvc.config import build_config
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.synthetic import SynthOptions, write_benchmark
from fgvc.engine.run import train_and_report
from fgvc.errors import FgvcError


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An image-only and a Dynamic MLP-C run (2 epochs, 32 px) on a 2-genus x 3-species synthetic iNat set."""
    root = tmp_path_factory.mktemp("analyze")
    write_benchmark(root / "synth", SynthOptions(size=32, genera=2, species_per_genus=3, train_per_class=8,
                                                 train_mini_per_class=4, val_per_class=4, domains=("cub",),
                                                 domain_genera=1, domain_species_per_genus=2,
                                                 domain_images_per_class=4))
    out = {}
    for name, fusion, metadata in (("image_only", "none", []), ("dmlp", "dynamic_mlp", ["geo", "temporal"])):
        cfg = build_config({
            "name": name, "output_dir": str(root / "runs"),
            "data": {"format": "inat2021", "root": str(root / "synth" / "inat"), "train_split": "train",
                     "image_size": 32, "batch_size": 8, "num_workers": 0, "val_fraction": 0.25, "metadata": metadata},
            "model": {"backbone": "test_resnet", "fusion": {"name": fusion, "d": 32, "h": 16}},
            "schedule": {"epochs": 2, "warmup_epochs": 0}, "train": {"progress": False}})
        train_and_report(cfg)
        out[name] = cfg.run_dir
    return out


def genus_of(run_dir) -> str:
    classes = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)["classes"]
    return classes[0].split()[0]


def test_embedding_panels_silhouettes_and_fused_features(runs, tmp_path):
    genus = genus_of(runs["image_only"])
    result = embedding_analysis([runs["image_only"], runs["dmlp"]], genus=genus, out=tmp_path)
    assert (tmp_path / "embedding.png").stat().st_size > 0
    assert json.loads((tmp_path / "embedding.json").read_text()) == result
    assert len(result["classes"]) == 3 and all(c.startswith(genus) for c in result["classes"])
    for panel in result["panels"]:
        assert panel["num_images"] == 3 * 4  # the genus' 3 species x 4 test (val.json) images
        assert isinstance(panel["silhouette_features"], float) and isinstance(panel["silhouette_tsne"], float)
    # the fused representation of the fusion model is the classifier's input, not the pooled feature
    model, splits, data_cfg, device = model_for_analysis(load_run(runs["dmlp"]))
    loader = make_loader(data_cfg, make_dataset(data_cfg, splits.test[:8], train=False), train=False)
    fused, labels = extract_representations(model, loader, device, "fused")
    pooled, _ = extract_representations(model, loader, device, "pooled")
    assert fused.shape == pooled.shape and not np.allclose(fused, pooled)
    logits = model.head.fc(torch.from_numpy(fused))
    assert torch.allclose(logits, model(next(iter(loader))["image"], next(iter(loader))["meta"]), atol=1e-5)


def test_silhouette_tells_separated_classes_from_mixed_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    separated = np.eye(3)[labels] * 10 + rng.normal(0, 0.1, (30, 3))
    assert silhouette(separated, labels) > 0.9
    assert abs(silhouette(rng.normal(0, 1, (30, 3)), labels)) < 0.2
    assert silhouette(separated, np.zeros(30, dtype=int)) is None  # one class: no silhouette


def test_embedding_cli_3d_pooled(runs, tmp_path, capsys):
    assert main(["-q", "analyze", "embedding", str(runs["dmlp"]), "--dims", "3", "--features", "pooled",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "embedding.json").read_text())
    assert result["dims"] == 3 and result["features"] == "pooled" and len(result["classes"]) == 6
    assert "silhouette" in capsys.readouterr().out and (tmp_path / "embedding.png").is_file()


def test_distance_heatmap_equals_manual_cdist(runs, tmp_path):
    ckpt = torch.load(runs["dmlp"] / "checkpoints" / "best.pt", weights_only=False)
    chosen = [ckpt["classes"][i] for i in (4, 0, 2)]
    result = distance_analysis([runs["dmlp"], runs["image_only"]], classes=chosen, out=tmp_path)
    assert (tmp_path / "distances.png").stat().st_size > 0 and result["classes"] == chosen
    for run, key in (("dmlp", "head.fc.weight"), ("image_only", "head.0.weight")):
        weight = torch.load(runs[run] / "checkpoints" / "best.pt", weights_only=False)["model"][key]
        expected = torch.cdist(weight[[4, 0, 2]], weight[[4, 0, 2]])
        panel = next(r for r in result["runs"] if r["run"] == run)
        torch.testing.assert_close(torch.tensor(panel["distances"]), expected, rtol=1e-5, atol=1e-5)
        off = expected[~torch.eye(3, dtype=torch.bool)].mean().item()
        assert panel["mean_off_diagonal"] == pytest.approx(off, rel=1e-5)


def test_moving_average_and_sorting_on_a_hand_made_case():
    assert moving_average(np.array([0.0, 10, 20, 30]), 3).tolist() == [5, 10, 20, 25]
    assert moving_average(np.array([1.0, 2, 3]), 1).tolist() == [1, 2, 3]
    with pytest.raises(FgvcError, match="odd"):
        moving_average(np.array([1.0]), 2)
    baseline = np.array([50.0, 10, np.nan, 30, 10])
    other = np.array([60.0, 40, 70, 20, 0])
    order, smoothed = sort_by_baseline(baseline, {"base": baseline, "other": other}, 3)
    assert order.tolist() == [1, 4, 3, 0]  # ascending, ties in label order, the NaN class dropped
    assert smoothed["base"].tolist() == [10, pytest.approx(50 / 3), 30, 40]
    assert smoothed["other"].tolist() == [20, 20, pytest.approx(80 / 3), 40]


def test_per_class_cli_writes_png_csv_json(runs, tmp_path, capsys):
    assert main(["-q", "analyze", "per-class", str(runs["dmlp"]), "--baseline", str(runs["image_only"]),
                 "--window", "3", "--top", "2", "--out", str(tmp_path)]) == 0
    assert "mean per-class" in capsys.readouterr().out and (tmp_path / "per_class.png").is_file()
    base = json.loads((runs["image_only"] / "report.json").read_text())["test"]["per_class"]
    rows = list(csv.DictReader(open(tmp_path / "per_class.csv")))
    assert len(rows) == 6 and [float(r["image_only"]) for r in rows] == pytest.approx(sorted(base), abs=1e-3)
    result = json.loads((tmp_path / "per_class.json").read_text())
    assert list(result["runs"]) == ["image_only", "dmlp"] and result["window"] == 3
    confusions = json.loads((runs["dmlp"] / "report.json").read_text())["test"]["confusions"][:2]
    assert [c["count"] for c in result["runs"]["dmlp"]["confusions"]] == [c[2] for c in confusions]


def test_a_folder_that_is_not_a_finished_run_is_one_line(runs, tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text((runs["dmlp"] / "config.yaml").read_text())
    assert main(["analyze", "distances", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished run (no report.json)" in err[0]
    assert main(["analyze", "embedding", str(runs["dmlp"]), "--classes", "Nonexistent species"]) == 2
    assert "unknown class 'Nonexistent species'" in capsys.readouterr().err


def test_report_states_the_protocol_and_links_analysis_figures(runs, capsys):
    report = json.loads((runs["dmlp"] / "report.json").read_text())["protocol"]
    assert report["holdouts"] == {"val": {"fraction": 0.25, "seed": 0}}
    assert report["checkpoint"] == "checkpoints/best.pt"
    assert main(["-q", "analyze", "distances", str(runs["dmlp"])]) == 0  # default: <run>/analysis, report refreshed
    md = (runs["dmlp"] / "report.md").read_text()
    assert "- val hold-out: 25% of the training images, stratified by class, seed 0" in md
    assert "reported checkpoint `checkpoints/best.pt`: best validation top-1" in md
    assert "official split 'val'" in md and "![analysis/distances.png](analysis/distances.png)" in md
