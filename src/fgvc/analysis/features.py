"""What a trained model's features look like (erudite paper, Table 1 and 3, and its t-SNE figures).

From the representation the final classifier reads (the re-fused feature F of an erudite model, the
pooled backbone feature otherwise) on one split:

- cluster quality per dataset (scikit-learn): silhouette (higher is better), Calinski-Harabasz
  (higher), Davies-Bouldin (lower), with the classes as clusters;
- MMD² between every two datasets' features (Gaussian kernel, bandwidth = median pairwise distance);
- parameters and multiply-accumulates per image at training time (auxiliary classifiers included)
  and at test time (``fgvc.analysis.complexity``: ``torch.utils.flop_counter``, MACs = FLOPs / 2);
- a 2-D t-SNE of the features coloured by dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgvc.analysis.complexity import model_complexity
from fgvc.config import Config
from fgvc.data.joint import dataset_index
from fgvc.data.splits import prepare_splits
from fgvc.engine.inference import eval_loader, load_for_eval
from fgvc.engine.report import markdown_table


@torch.no_grad()
def batch_features(model: nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
    """The representation the classifier reads, ``[B, D]`` on CPU, for one loader batch."""
    images = batch["image"].to(device)
    if hasattr(model, "forward_train"):  # erudite: the re-fused feature the joint classifier reads
        f = model.forward_train(images).get("features")
    elif hasattr(model, "fused_features"):  # metadata fusion
        f = model.fused_features(images, batch["meta"].to(device))
    else:
        f = model.backbone(images)
    return f.float().cpu()


@torch.no_grad()
def extract(model: nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[N, D]`` and labels ``[N]`` of a loader, in order."""
    model.eval()
    feats, labels = [], []
    for batch in loader:
        feats.append(batch_features(model, batch, device))
        labels.append(batch["label"])
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def cluster_scores(feats: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
        return {"silhouette": float("nan"), "calinski_harabasz": float("nan"), "davies_bouldin": float("nan")}
    return {"silhouette": float(silhouette_score(feats, labels)),
            "calinski_harabasz": float(calinski_harabasz_score(feats, labels)),
            "davies_bouldin": float(davies_bouldin_score(feats, labels))}


def mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD² with a Gaussian kernel ``exp(-|a-b|² / (2 h²))``; ``h`` defaults to the median distance."""
    x_t, y_t = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    both = torch.cat([x_t, y_t])
    dist = torch.cdist(both, both).pow(2)
    if bandwidth is None:
        bandwidth = float(dist[dist > 0].median().sqrt()) if (dist > 0).any() else 1.0
    k = torch.exp(-dist / (2 * bandwidth ** 2))
    n, m = len(x_t), len(y_t)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
                 - 2 * kxy.mean())


def plot_tsne(feats: np.ndarray, groups: np.ndarray, names: list[str], path: Path, seed: int = 0) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    points = TSNE(2, perplexity=min(30.0, max(2.0, (len(feats) - 1) / 3)), init="pca",
                  random_state=seed).fit_transform(feats)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for g, name in enumerate(names):
        sel = groups == g
        ax.scatter(points[sel, 0], points[sel, 1], s=6, label=name)
    ax.set(xticks=[], yticks=[], title="t-SNE of the classifier's input features")
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyse(model: nn.Module, loader, device: torch.device, groups: list[tuple[str, int]], image_size: int,
            out_dir: Path) -> dict:
    """Everything above for one model and split; writes ``features.json``, ``features.md``, ``tsne.png``."""
    feats, labels = extract(model, loader, device)
    dataset = dataset_index(torch.as_tensor(labels), [n for _, n in groups])[0].numpy()
    names = [name for name, _ in groups]
    per_dataset = {name: cluster_scores(feats[dataset == d], labels[dataset == d]) for d, name in enumerate(names)}
    distances = {f"{a}-{b}": mmd2(feats[dataset == i], feats[dataset == j])
                 for i, a in enumerate(names) for j, b in enumerate(names) if i < j
                 and (dataset == i).sum() > 1 and (dataset == j).sum() > 1}
    result = {"clusters": per_dataset, "mmd2": distances, "complexity": model_complexity(model, image_size)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "features.json").write_text(json.dumps(result, indent=2))
    plot_tsne(feats, dataset, names, out_dir / "tsne.png")
    c = result["complexity"]
    md = ["# Feature analysis", "", __doc__.split("\n\n")[1], "",
          markdown_table([{"dataset": n, **s} for n, s in per_dataset.items()]), "",
          markdown_table([{"datasets": k, "MMD²": v} for k, v in distances.items()]) if distances else "", "",
          markdown_table([{"": "train", "params (M)": c["params_train_m"], "GMACs / image": c["gmacs_train"]},
                          {"": "test", "params (M)": c["params_test_m"], "GMACs / image": c["gmacs_test"]}]), "",
          "![t-SNE](tsne.png)", ""]
    (out_dir / "features.md").write_text("\n".join(md))
    return result


def analyse_features(cfg: Config, checkpoint: str | Path, split: str = "test") -> dict:
    """``analyse`` for a checkpoint on a split of the config's dataset, into ``<run>/features_<split>/``."""
    splits = prepare_splits(cfg.data)
    _, model, _, data_cfg, device = load_for_eval(cfg, checkpoint, splits.classes)
    loader = eval_loader(data_cfg, splits.samples(split))
    return analyse(model, loader, device, splits.groups, data_cfg.image_size, cfg.run_dir / f"features_{split}")
