"""The erudite paper's protocol (Table 2): joint models on every mixture of the datasets vs Single.

For a base config whose ``data.joint`` lists the datasets, each mixture (every subset of the chosen
sizes: 6 pairs, 4 triples and the whole of four datasets) trains the chosen joint variants and is
compared with **Single**: one image-only model per dataset (trained once, shared by all mixtures)
and a coarse classifier over the mixture's datasets that picks which of them answers. A Single
prediction is right only when the coarse classifier picks the right dataset and that dataset's model
the right class, so both systems predict in the union label space. Every model selects its epoch on
its hold-out validation split; test splits are evaluated once. Figures: per-dataset test top-1, the
arithmetic mean, and Δ = mean − Single's mean. Joint batches keep the base config's images per
dataset (``data.batch_size / len(data.joint)``), so a mixture's batch scales with its size.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path, PurePath

import torch

from fgvc.config import Config, build_config, deep_merge, read_tree, shipped_config
from fgvc.engine.inference import predict_split
from fgvc.engine.report import markdown_table
from fgvc.engine.run import train_and_report

log = logging.getLogger(__name__)

# Table 2's joint methods and the hierarchical baseline: one shipped file each (configs/erudite/_variants/),
# applied on top of the base config (Ours_PMG: the erudite head on PMG's multi-stage network)
VARIANTS_DIR = PurePath("erudite/_variants")
VARIANTS = ("baseline", "baseline_plus", "baseline_plusplus", "ours", "ours_pcgrad", "ours_pmg",
            "hierarchical")
LABELS = {"single": "Single", "baseline": "Baseline", "baseline_plus": "Baseline+",
          "baseline_plusplus": "Baseline++", "ours": "Ours", "ours_pcgrad": "Ours_PCGrad", "ours_pmg": "Ours_PMG",
          "hierarchical": "hierarchical multi-task"}


def variant_settings(variant: str) -> dict:
    """The settings of one variant, as its shipped file states them."""
    return read_tree(shipped_config(VARIANTS_DIR / f"{variant}.yaml"))


def _joint_data(base: Config, sources: list) -> dict:
    """The data section for a mixture: its datasets, and the base config's images per dataset in every
    batch (a batch of 32 over four datasets is 8 each, so a triple's batch is 24)."""
    per_dataset = max(1, base.data.batch_size // len(base.data.joint))
    return {"joint": [s.model_dump(mode="json") for s in sources], "batch_size": per_dataset * len(sources)}


def variant_config(base: Config, sources: list, name: str, variant: str) -> Config:
    """``variant``'s shipped settings on top of the base config, trained on ``sources``."""
    tree = deep_merge(base.model_dump(mode="json"), variant_settings(variant))
    tree["data"] |= _joint_data(base, sources)
    return build_config(tree | {"name": name})


def single_config(base: Config, source, name: str) -> Config:
    """The image-only model of one dataset: the base recipe with a linear classifier."""
    tree = base.model_dump(mode="json")
    own = {k: v for k, v in source.model_dump(mode="json").items() if k != "name"}
    tree["data"] = tree["data"] | own | {"joint": [], "name": source.dataset_name}
    tree["model"] = tree["model"] | {"head": "linear"}
    tree["method"] = tree["method"] | {"name": "supervised"}
    return build_config(tree | {"name": name})


def coarse_config(base: Config, sources: list, name: str) -> Config:
    """Which dataset an image comes from: a linear classifier on the joint data labelled by dataset."""
    tree = base.model_dump(mode="json")
    tree["data"] = tree["data"] | _joint_data(base, sources) | {"joint_target": "dataset"}
    tree["model"] = tree["model"] | {"head": "linear"}
    tree["method"] = tree["method"] | {"name": "supervised"}
    return build_config(tree | {"name": name})


def _best(cfg: Config) -> Path:
    return cfg.run_dir / "checkpoints" / "best.pt"


def _trained(cfg: Config, done: dict[str, dict]) -> dict:
    """Train once per protocol run: the Single models serve every mixture their dataset is in."""
    if cfg.name not in done:
        done[cfg.name] = train_and_report(cfg, overwrite=True)
    return done[cfg.name]


def single_scores(coarse_pred: torch.Tensor, correct: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-dataset top-1 of Single: the joint test split is the datasets' test splits in order, so
    dataset n's block of ``coarse_pred`` must say n, and its model must be right."""
    scores, start = {}, 0
    for n, (name, right) in enumerate(correct.items()):
        block = coarse_pred[start:start + len(right)]
        scores[name] = 100.0 * ((block == n) & right).float().mean().item()
        start += len(right)
    return scores


def run_mixture(base: Config, sources: list, variants: list[str], prefix: str,
                done: dict[str, dict] | None = None) -> dict[str, dict]:
    """Train Single (unless in ``done``), the coarse classifier and each variant on ``sources``;
    per-dataset test top-1 of each."""
    done = {} if done is None else done
    names = [s.dataset_name for s in sources]
    tag = "+".join(names)
    correct = {}
    for source in sources:
        cfg = single_config(base, source, f"{prefix}_single_{source.dataset_name}")
        _trained(cfg, done)
        logits, labels = predict_split(cfg, _best(cfg), "test")
        correct[source.dataset_name] = logits.argmax(1) == labels
    coarse = coarse_config(base, sources, f"{prefix}_coarse_{tag}")
    _trained(coarse, done)
    coarse_logits, _ = predict_split(coarse, _best(coarse), "test")
    rows = {"single": single_scores(coarse_logits.argmax(1), correct)}
    single_right = single_correct(coarse_logits.argmax(1), correct)
    for variant in variants:
        cfg = variant_config(base, sources, f"{prefix}_{variant}_{tag}", variant)
        rows[variant] = dict(_trained(cfg, done)["test"]["per_dataset"])
        logits, labels = predict_split(cfg, _best(cfg), "test")
        rows[variant] |= class_changes(logits.argmax(1) == labels, single_right, labels)
    return rows


def single_correct(coarse_pred: torch.Tensor, correct: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per joint test sample: did Single (coarse choice, then that dataset's model) get it right?"""
    parts, start = [], 0
    for n, right in enumerate(correct.values()):
        parts.append((coarse_pred[start:start + len(right)] == n) & right)
        start += len(right)
    return torch.cat(parts)


def class_changes(right: torch.Tensor, single_right: torch.Tensor, labels: torch.Tensor) -> dict[str, int]:
    """Classes whose test accuracy rose (positive), stayed equal (tied) or fell (negative) against
    Single (Table 1). Ties are counted apart: with a few test images per class many classes tie, and a
    tie is no gain."""
    classes = labels.unique()
    acc = torch.stack([right[labels == c].float().mean() for c in classes])
    base = torch.stack([single_right[labels == c].float().mean() for c in classes])
    return {"_positive": int((acc > base).sum()), "_tied": int((acc == base).sum()),
            "_negative": int((acc < base).sum())}


def table_rows(mixture: str, results: dict[str, dict]) -> list[dict]:
    """Per-dataset top-1, mean, Δ against Single and the positive / tied / negative class counts."""
    def accuracies(scores: dict) -> dict:
        return {k: v for k, v in scores.items() if not k.startswith("_")}

    single_mean = sum(results["single"].values()) / len(results["single"])
    rows = []
    for method, scores in results.items():
        acc = accuracies(scores)
        mean = sum(acc.values()) / len(acc)
        rows.append({"datasets": mixture, "method": LABELS.get(method, method),
                     **{name: f"{a:.2f}" for name, a in acc.items()}, "mean": f"{mean:.2f}",
                     "Δ vs Single": "" if method == "single" else f"{mean - single_mean:+.2f}",
                     "positive / tied / negative classes": "" if method == "single" else
                     f"{scores['_positive']} / {scores['_tied']} / {scores['_negative']}"})
    return rows


def run_protocol(base: Config, variants: list[str], sizes: tuple[int, ...] = (2, 3, 4)) -> Path:
    """Every mixture of ``base.data.joint`` of the given sizes; writes ``protocol.md`` / ``protocol.json``."""
    sources = list(base.data.joint)
    out_dir = Path(base.output_dir) / base.name
    out_dir.mkdir(parents=True, exist_ok=True)
    done: dict[str, dict] = {}
    results, md = {}, [f"# {base.name}: joint training vs Single on every mixture", "", __doc__.split("\n\n")[1], ""]
    for size in sizes:
        for mixture in itertools.combinations(sources, size):
            tag = "+".join(s.dataset_name for s in mixture)
            log.info("mixture %s", tag)
            results[tag] = run_mixture(base, list(mixture), variants, base.name, done)
            md += [f"## {tag}", "", markdown_table(table_rows(tag, results[tag])), ""]
            (out_dir / "protocol.json").write_text(json.dumps(results, indent=2))
            (out_dir / "protocol.md").write_text("\n".join(md))
    return out_dir / "protocol.md"
