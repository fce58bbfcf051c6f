"""Information dynamics over training (CTC paper): MINE estimates of I(X;T) and I(T;Y) per checkpoint.

For every ``checkpoints/epoch_*.pt`` of a run (``train.keep_epoch_checkpoints``) and one split:

- X: the input image as the model sees it (eval transform, normalised), average-pooled to
  ``x_size × x_size`` per channel and flattened (3·8·8 = 192 numbers by default), so that the
  statistics network stays small and trains from a few thousand images;
- T: the representation the classifier reads (the pooled backbone feature; see ``features.batch_features``);
- Y: the one-hot label.

Both figures come from ``fgvc.analysis.mine.mine_estimate`` (held-out Donsker–Varadhan bound, nats)
with the same seed and the same image subset for every checkpoint, so the estimator's own noise is
shared across epochs and the curves compare checkpoints. T is a deterministic function of X, so the
true I(X;T) is not finite for continuous images: the I(X;T) figure measures how much of the pooled
input a small network can recover from T, and only compares checkpoints estimated with the same
settings. I(T;Y) is bounded by H(Y) ≤ log(classes).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fgvc.analysis.features import batch_features
from fgvc.analysis.mine import mine_estimate
from fgvc.analysis.runs import epoch_checkpoints, over_epoch_checkpoints, run_config, write_rows
from fgvc.data.splits import prepare_splits
from fgvc.engine.inference import eval_loader, load_for_eval
from fgvc.errors import FgvcError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InformationSettings:
    split: str = "test"
    max_samples: int = 2000  # a seeded random subset of the split (the same for every checkpoint)
    steps: int = 1000  # Adam steps of the statistics network per estimate
    hidden: int = 128
    batch_size: int = 256
    x_size: int = 8  # X = the image average-pooled to x_size × x_size per channel
    seed: int = 0
    last_epoch_only: bool = False  # only each run's last epoch checkpoint: a table's figure, in a fraction of the time



@torch.no_grad()
def extract_xty(model: torch.nn.Module, loader, device: torch.device, x_size: int) -> tuple[torch.Tensor, ...]:
    """Pooled images ``[N, 3·x_size²]``, representations ``[N, D]`` and labels ``[N]``, in loader order."""
    model.eval()
    xs, ts, ys = [], [], []
    for batch in loader:
        xs.append(F.adaptive_avg_pool2d(batch["image"].float(), x_size).flatten(1))
        ts.append(batch_features(model, batch, device))
        ys.append(batch["label"])
    return torch.cat(xs), torch.cat(ts), torch.cat(ys)


def _subset(samples: list, max_samples: int, seed: int) -> list:
    if len(samples) <= max_samples:
        return samples
    keep = np.sort(np.random.default_rng(seed).choice(len(samples), max_samples, replace=False))
    return [samples[i] for i in keep]



def run_information(run_dir: Path, settings: InformationSettings, bar: tqdm | None = None) -> list[dict]:
    """One row per epoch checkpoint of a run: epoch, I(X;T), I(T;Y) in nats, and the sample count."""
    cfg = run_config(run_dir)
    splits = prepare_splits(cfg.data)
    samples = _subset(splits.samples(settings.split), settings.max_samples, settings.seed)
    if len(samples) < 8:
        raise FgvcError(f"{run_dir}: split '{settings.split}' has {len(samples)} images; MINE needs at least 8")
    mine = dict(steps=settings.steps, hidden=settings.hidden, batch_size=settings.batch_size, seed=settings.seed)
    rows = []
    checkpoints = epoch_checkpoints(run_dir)
    for epoch, path in checkpoints[-1:] if settings.last_epoch_only else checkpoints:
        _, model, _, data_cfg, device = load_for_eval(cfg, path, splits.classes)
        loader = eval_loader(data_cfg, samples)
        x, t, y = extract_xty(model, loader, device, settings.x_size)
        y = F.one_hot(y, len(splits.classes)).float()
        rows.append({"run": run_dir.name, "epoch": epoch, "checkpoint": str(path), "samples": len(x),
                     "i_xt": mine_estimate(x, t, **mine), "i_ty": mine_estimate(t, y, **mine)})
        summary = f"{run_dir.name} epoch {epoch}: I(X;T) {rows[-1]['i_xt']:.3f}, I(T;Y) {rows[-1]['i_ty']:.3f} nats"
        log.info(summary)
        if bar is not None:
            bar.set_postfix_str(summary)
            bar.update()
    return rows


def plot_information(rows: list[dict], path: Path) -> Path:
    """I(X;T) and I(T;Y) against epoch (one line per run), and the information plane."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        epochs = [r["epoch"] for r in mine]
        axes[0].plot(epochs, [r["i_xt"] for r in mine], marker="o", label=run)
        axes[1].plot(epochs, [r["i_ty"] for r in mine], marker="o", label=run)
        points = axes[2].scatter([r["i_xt"] for r in mine], [r["i_ty"] for r in mine], c=epochs, cmap="viridis", s=18)
        axes[2].plot([r["i_xt"] for r in mine], [r["i_ty"] for r in mine], lw=0.8, alpha=0.6)
    axes[0].set(xlabel="epoch", ylabel="I(X;T) (nats)", title="input vs representation")
    axes[1].set(xlabel="epoch", ylabel="I(T;Y) (nats)", title="representation vs label")
    axes[2].set(xlabel="I(X;T) (nats)", ylabel="I(T;Y) (nats)", title="information plane")
    fig.colorbar(points, ax=axes[2], label="epoch")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyse_information(run_dirs: list[Path], out_dir: Path, settings: InformationSettings,
                        progress: bool = True) -> dict:
    """Every run's epoch checkpoints; writes ``information.json``, ``information.csv``, ``information.png``."""
    rows = over_epoch_checkpoints(run_dirs, lambda run_dir, bar: run_information(run_dir, settings, bar), "MINE",
                                  progress, settings.last_epoch_only)
    result = {"settings": asdict(settings), "estimator": "MINE, held-out Donsker-Varadhan bound (nats)",
              "rows": rows}
    write_rows(out_dir, "information", result)
    plot_information(rows, out_dir / "information.png")
    return result
