"""L2 distances between the classifier's weight rows of chosen classes (Dynamic MLP paper, Fig. 7).

Row ``c`` of the final Linear layer is the direction that scores class ``c``; the farther apart the
rows of look-alike classes, the better the classifier separates them. One heatmap per run (shared
colour scale), side by side, and the matrices and their mean off-diagonal distance in the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgvc.analysis.runs import load_runs, refresh_reports, run_classes, select_classes
from fgvc.checkpoint import load_checkpoint
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError


def classifier_weight(model: nn.Module) -> torch.Tensor:
    """``[C, D]`` weight of the final Linear layer: ``head.fc`` (fusion), ``head.classifier`` (erudite), or the head."""
    head = getattr(model, "head", None)
    for candidate in (getattr(head, "fc", None), getattr(head, "classifier", None),
                      head[-1] if isinstance(head, nn.Sequential) else head):
        if isinstance(candidate, nn.Linear):
            return candidate.weight.detach().float().cpu()
    raise FgvcError(f"{type(model).__name__}: no single final Linear classifier to read (multi-stage models "
                    "have one per stage)")


def weight_distances(weight: torch.Tensor, indices: list[int]) -> torch.Tensor:
    """``[K, K]`` Euclidean distances between the rows ``indices`` of ``weight``."""
    rows = weight[indices]
    return torch.cdist(rows[None], rows[None])[0]


def mean_off_diagonal(matrix: np.ndarray) -> float | None:
    k = len(matrix)
    return float(matrix[~np.eye(k, dtype=bool)].mean()) if k > 1 else None


def plot_heatmaps(panels: list[dict], class_names: list[str], path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    side = max(3.5, 0.35 * k + 1.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels) + 1, side), squeeze=False)
    vmax = max(float(p["distances"].max()) for p in panels) or 1.0
    for n, (ax, panel) in enumerate(zip(axes[0], panels)):
        image = ax.imshow(panel["distances"], cmap="viridis", vmin=0, vmax=vmax)
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(k), class_names if n == 0 else [], fontsize=6)  # rows named once, on the left
        mean = panel["mean_off_diagonal"]
        ax.set_title(f"{panel['run']}\nmean distance {'n/a' if mean is None else f'{mean:.2f}'}", fontsize=9)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, f"{panel['distances'][i, j]:.1f}", ha="center", va="center", fontsize=6,
                            color="white" if panel["distances"][i, j] < vmax / 2 else "black")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="L2 distance of classifier rows")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def distance_analysis(run_dirs: list[str | Path], classes: list[str] | None = None, genus: str | None = None,
                      out: str | Path | None = None) -> dict:
    """Write ``distances.png`` and ``distances.json`` into ``out`` (default: ``<first run>/analysis``)."""
    runs = load_runs(run_dirs)
    panels, class_names = [], None
    for run in runs:
        if not run.checkpoint.is_file():
            raise FgvcError(f"{run.checkpoint}: missing; the distances read the run's classifier")
        ckpt = load_checkpoint(run.checkpoint)
        names = list(ckpt.get("classes") or run_classes(run))
        if class_names is None:
            class_names = [names[i] for i in select_classes(names, classes, genus)]
        missing = [c for c in class_names if c not in names]
        if missing:
            raise FgvcError(f"{run.path}: its classes do not include {missing[0]!r}; compare runs of one dataset")
        _, model = model_from_checkpoint(ckpt, len(names), run.config)
        matrix = weight_distances(classifier_weight(model), [names.index(c) for c in class_names]).numpy()
        panels.append({"run": run.name, "distances": matrix, "mean_off_diagonal": mean_off_diagonal(matrix)})
    out = Path(out) if out else runs[0].path / "analysis"
    png = plot_heatmaps(panels, class_names, out / "distances.png")
    result = {"classes": class_names, "png": png.name,
              "runs": [{"run": p["run"], "mean_off_diagonal": p["mean_off_diagonal"],
                        "distances": p["distances"].tolist()} for p in panels]}
    (out / "distances.json").write_text(json.dumps(result, indent=2))
    refresh_reports(runs, out)
    return result
