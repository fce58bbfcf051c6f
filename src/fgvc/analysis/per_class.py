"""Per-class test accuracy of several runs against a baseline (Dynamic MLP paper, Fig. S4).

Classes are sorted by the baseline's accuracy (ascending, ties in label order); each run's accuracy
in that order is smoothed by a centred moving average over ``window`` adjacent classes (fewer at the
ends), so a curve above the baseline's shows where a method helps: on the classes the baseline
finds hard, or everywhere. Classes without a test image are left out. The figures come from each
run's ``report.json`` (the per-class accuracy and hardest confusions its evaluation recorded).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fgvc.analysis.runs import FinishedRun, load_runs, refresh_reports, run_classes
from fgvc.errors import FgvcError


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` neighbours (odd window); the ends average what exists."""
    if window < 1 or window % 2 == 0:
        raise FgvcError(f"--window {window}: an odd number of classes, 1 or more")
    half = window // 2
    sums = np.concatenate([[0.0], np.cumsum(values, dtype=float)])
    lo = np.clip(np.arange(len(values)) - half, 0, len(values))
    hi = np.clip(np.arange(len(values)) + half + 1, 0, len(values))
    return (sums[hi] - sums[lo]) / (hi - lo)


def sort_by_baseline(baseline: np.ndarray, curves: dict[str, np.ndarray], window: int) -> tuple[np.ndarray, dict]:
    """Class order (baseline ascending, classes NaN anywhere dropped) and each curve smoothed in it."""
    valid = np.isfinite(baseline) & np.all([np.isfinite(c) for c in curves.values()], axis=0)
    order = np.flatnonzero(valid)[np.argsort(baseline[valid], kind="stable")]
    return order, {name: moving_average(c[order], window) for name, c in curves.items()}


def _accuracy(run: FinishedRun) -> np.ndarray:
    per_class = run.test.get("per_class")
    if not per_class:
        raise FgvcError(f"{run.path / 'report.json'}: no per-class test accuracy; re-run `fgvc evaluate` on it")
    return np.array([np.nan if a is None else a for a in per_class], dtype=float)


def plot_curves(order: np.ndarray, smoothed: dict[str, np.ndarray], baseline: str, window: int, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(order))
    for name, curve in smoothed.items():
        ax.plot(x, curve, label=name + (" (baseline)" if name == baseline else ""),
                lw=2.2 if name == baseline else 1.4, color="black" if name == baseline else None)
    ax.set(xlabel=f"classes sorted by {baseline}'s accuracy", ylabel=f"test accuracy % (moving average of {window})",
           ylim=(0, 102))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_class_analysis(run_dirs: list[str | Path], baseline_dir: str | Path, window: int = 5, top: int = 5,
                       out: str | Path | None = None) -> dict:
    """Write ``per_class.png``, ``per_class.csv`` and ``per_class.json`` (default: ``<baseline>/analysis``)."""
    baseline = load_runs([baseline_dir])[0]
    runs = [baseline] + [r for r in load_runs(run_dirs) if r.path.resolve() != baseline.path.resolve()]
    classes = run_classes(baseline)
    curves = {}
    for run in runs:
        acc = _accuracy(run)
        if len(acc) != len(classes):
            raise FgvcError(f"{run.path}: {len(acc)} classes, the baseline {baseline.path} has {len(classes)}; "
                            "compare runs of one dataset")
        curves[run.name] = acc
    order, smoothed = sort_by_baseline(curves[baseline.name], curves, window)
    out = Path(out) if out else baseline.path / "analysis"
    png = plot_curves(order, smoothed, baseline.name, window, out / "per_class.png")
    with open(out / "per_class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "class"] + [f"{n}{suffix}" for n in curves for suffix in ("", "_smoothed")])
        for rank, c in enumerate(order):
            writer.writerow([rank, classes[c]] + [f"{v:.4g}" for n in curves
                                                  for v in (curves[n][c], smoothed[n][rank])])
    result = {"baseline": baseline.name, "window": window, "png": png.name, "order": [classes[c] for c in order],
              "runs": {run.name: {"mean_per_class": float(np.nanmean(curves[run.name])),
                                  "confusions": [{"true": classes[t], "predicted": classes[p], "count": n}
                                                 for t, p, n in run.test.get("confusions", [])[:top]]}
                       for run in runs}}
    (out / "per_class.json").write_text(json.dumps(result, indent=2))
    refresh_reports(runs, out)
    return result
