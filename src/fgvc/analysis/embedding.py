"""t-SNE of several runs' representations of chosen classes, side by side (Dynamic MLP paper, Fig. 1).

Each panel embeds one run's features of the same test images with scikit-learn's t-SNE (same
perplexity and seed for every panel). ``pooled`` is the backbone's pooled image feature; ``fused``
is what the classifier reads — the fused image+metadata feature of a fusion model, the pooled
feature of an image-only model. The JSON gives each panel's silhouette score (classes as clusters)
on the features themselves and on the t-SNE points: the first is the one to compare runs by, the
second describes the picture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fgvc.analysis.features import extract
from fgvc.analysis.runs import (FinishedRun, load_runs, model_for_analysis, refresh_reports, run_classes,
    select_classes)
from fgvc.engine.inference import eval_loader
from fgvc.errors import FgvcError

KINDS = ("pooled", "fused")


@torch.no_grad()
def extract_representations(model, loader, device, kind: str = "fused") -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, D]`` and labels ``[N]`` in loader order."""
    if kind == "fused":
        return extract(model, loader, device)
    model.eval()
    feats, labels = [], []
    for batch in loader:
        feats.append(model.backbone(batch["image"].to(device)).float().cpu())
        labels.append(batch["label"])
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def tsne(feats: np.ndarray, dims: int = 2, seed: int = 0) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(feats) - 1) / 3))
    return TSNE(dims, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)


def silhouette(points: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette with the classes as clusters; None when it is undefined (one class, singletons)."""
    from sklearn.metrics import silhouette_score

    k = len(np.unique(labels))
    return float(silhouette_score(points, labels)) if 2 <= k < len(labels) else None


def run_features(run: FinishedRun, class_names: list[str], split: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One run's features of the images of ``class_names`` on ``split``; labels index ``class_names``."""
    model, splits, data_cfg, device = model_for_analysis(run)
    if kind == "pooled" and not hasattr(model, "backbone"):
        raise FgvcError(f"{run.path}: the model has no backbone to pool; use --features fused")
    index = {c: i for i, c in enumerate(splits.classes)}
    missing = [c for c in class_names if c not in index]
    if missing:
        raise FgvcError(f"{run.path}: its dataset has no class {missing[0]!r}; compare runs of one dataset")
    wanted = {index[c]: i for i, c in enumerate(class_names)}
    samples = [s for s in splits.samples(split) if s.label in wanted]
    if not samples:
        raise FgvcError(f"{run.path}: no {split} image of the chosen classes")
    loader = eval_loader(data_cfg, samples)
    feats, labels = extract_representations(model, loader, device, kind)
    return feats, np.array([wanted[int(label)] for label in labels])


def plot_panels(panels: list[dict], class_names: list[str], path: Path, dims: int = 2) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    width = 4.2 * len(panels) + 1.9  # the panels, then the legend
    fig = plt.figure(figsize=(width, 4.2))
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, **({"projection": "3d"} if dims == 3 else {}))
        points, labels = panel["points"], panel["labels"]
        for c, name in enumerate(class_names):
            sel = labels == c
            ax.scatter(*points[sel].T, s=8, color=colours(c % colours.N), label=name)
        score = panel["silhouette_features"]
        ax.set_title(f"{panel['run']}\nsilhouette {'n/a' if score is None else f'{score:.2f}'}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if dims == 3:
            ax.set_zticks([])
    handles, labels = fig.axes[0].get_legend_handles_labels()
    right = 1 - 1.9 / width
    fig.tight_layout(rect=(0, 0, right, 1))
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(right, 0.5), fontsize=7, markerscale=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def embedding_analysis(run_dirs: list[str | Path], classes: list[str] | None = None, genus: str | None = None,
                       dims: int = 2, split: str = "test", kind: str = "fused", out: str | Path | None = None,
                       seed: int = 0) -> dict:
    """Write ``embedding.png`` and ``embedding.json`` into ``out`` (default: ``<first run>/analysis``)."""
    if dims not in (2, 3):
        raise FgvcError(f"--dims {dims}: 2 or 3")
    if kind not in KINDS:
        raise FgvcError(f"--features {kind}: one of {', '.join(KINDS)}")
    runs = load_runs(run_dirs)
    all_classes = run_classes(runs[0])
    class_names = [all_classes[i] for i in select_classes(all_classes, classes, genus)]
    panels = []
    for run in runs:
        feats, labels = run_features(run, class_names, split, kind)
        points = tsne(feats, dims, seed)
        panels.append({"run": run.name, "points": points, "labels": labels, "num_images": len(labels),
                       "feature_dim": int(feats.shape[1]), "silhouette_features": silhouette(feats, labels),
                       "silhouette_tsne": silhouette(points, labels)})
    out = Path(out) if out else runs[0].path / "analysis"
    png = plot_panels(panels, class_names, out / "embedding.png", dims)
    result = {"split": split, "features": kind, "dims": dims, "seed": seed, "classes": class_names,
              "png": png.name, "panels": [{k: v for k, v in p.items() if k not in ("points", "labels")}
                                          for p in panels]}
    (out / "embedding.json").write_text(json.dumps(result, indent=2))
    refresh_reports(runs, out)
    return result
