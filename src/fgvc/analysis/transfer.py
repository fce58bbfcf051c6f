"""Transferability over training (CTC paper): a linear probe on a target dataset per epoch checkpoint.

For every ``checkpoints/epoch_*.pt`` of a run (``train.keep_epoch_checkpoints``; epoch 0 = the
initial weights):

- discriminability: the checkpoint's own classifier, top-1 on the source run's test split (an
  analysis of the training trajectory, not model selection: no checkpoint is chosen by it);
- transferability: the pooled backbone feature of the target config's train and test images (its
  eval transform: resize and centre crop at the target's ``data.image_size``), a linear probe fitted
  on target train and scored (top-1) on target test.

The probe is scikit-learn's ``LogisticRegression`` (multinomial, L2, lbfgs, fixed ``C``) on
features standardised with the train statistics (``StandardScaler``): a convex fit, so with the same
features it gives the same answer, and the curves differ only by the backbones. ``C`` is fixed, not
searched on the target's val split, so the target's test split never tunes anything. With
``max_train``, a seeded stratified subset of about that many target train images (the same for
every checkpoint) keeps the probe cheap on large targets.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fgvc.analysis.runs import epoch_checkpoints, over_epoch_checkpoints, run_config, write_rows
from fgvc.config import load_config
from fgvc.data.holdout import stratified_holdout
from fgvc.data.splits import prepare_splits
from fgvc.engine.evaluate import predict_loader
from fgvc.engine.inference import eval_loader, load_for_eval
from fgvc.errors import FgvcError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSettings:
    max_train: int | None = None  # about this many target train images (stratified, seeded); None: all
    C: float = 1.0  # inverse L2 strength of the logistic regression
    max_iter: int = 2000
    seed: int = 0


@torch.no_grad()
def backbone_features(model: torch.nn.Module, loader, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Pooled backbone features ``[N, D]`` and labels ``[N]`` in loader order. The backbone, not the
    classifier's input of a fused or erudite model: the part that carries over to another dataset."""
    model.eval()
    feats, labels = [], []
    for batch in loader:
        if "image" not in batch:  # every image of the batch unreadable and skipped (named in the log)
            continue
        feats.append(model.backbone(batch["image"].to(device)).float().flatten(1).cpu())
        labels.append(batch["label"])
    return torch.cat(feats).numpy(), torch.cat(labels).numpy()


def linear_probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 settings: ProbeSettings) -> float:
    """Top-1 (%) on ``test`` of a logistic regression fitted on standardised ``train`` features."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=settings.C, max_iter=settings.max_iter,
                                                               random_state=settings.seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        probe.fit(*train)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            log.warning("linear probe: lbfgs did not converge in %d iterations (raise --max-iter)",
                        settings.max_iter)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return float((probe.predict(test[0]) == test[1]).mean() * 100)



class Target:
    """The target dataset's train and test splits, read once and shared by every checkpoint."""

    def __init__(self, config: str | Path, settings: ProbeSettings, overrides: Sequence[str] = ()):
        self.config_path, self.overrides = str(config), list(overrides)
        self.cfg = load_config(config, list(overrides))
        self.data = self.cfg.data.model_copy(update={"metadata": []})  # images only: the backbone's input
        splits = prepare_splits(self.data)
        self.name, self.classes, self.names = splits.source.name, splits.classes, splits.names
        self.train, self.test = splits.train, splits.test
        if settings.max_train and settings.max_train < len(self.train):
            fraction = settings.max_train / len(self.train)
            _, self.train = stratified_holdout(self.train, fraction, settings.seed)
            subset = f"{self.names['train']}, stratified subset of {len(self.train)}"
            self.names = self.names | {"train": subset}
        if len({s.label for s in self.train}) < 2:
            raise FgvcError(f"{self.config_path}: the target train split has fewer than 2 classes; "
                            "a linear probe needs at least 2")

    def features(self, model: torch.nn.Module, device: torch.device) -> tuple[tuple, tuple]:
        """(train, test) features and labels of the target through ``model``'s backbone."""
        def run(samples):
            loader = eval_loader(self.data, samples)
            return backbone_features(model, loader, device)

        return run(self.train), run(self.test)

    def describe(self) -> dict:
        return {"config": self.config_path, "overrides": self.overrides, "dataset": self.name,
                "classes": len(self.classes),
                "splits": {"train": self.names["train"], "test": self.names["test"]},
                "counts": {"train": len(self.train), "test": len(self.test)},
                "image_size": self.data.image_size}


def run_transfer(run_dir: Path, target: Target, settings: ProbeSettings,
                 bar: tqdm | None = None) -> list[dict]:
    """One row per epoch checkpoint of a run: source test top-1 and target probe top-1."""
    cfg = run_config(run_dir)
    checkpoints = epoch_checkpoints(run_dir)
    splits = prepare_splits(cfg.data)
    rows = []
    for epoch, path in checkpoints:
        _, model, method, data_cfg, device = load_for_eval(cfg, path, splits.classes)
        logits, labels = predict_loader(model, method, eval_loader(data_cfg, splits.test), device,
                                        progress=False)
        source = float((logits.argmax(1) == labels).double().mean() * 100)
        probe = linear_probe(*target.features(model, device), settings)
        rows.append({"run": run_dir.name, "source": splits.source.name, "epoch": epoch,
                     "checkpoint": str(path), "source_top1": source, "target_top1": probe})
        if bar is not None:
            bar.set_postfix_str(f"{run_dir.name} epoch {epoch}: source {source:.1f} target {probe:.1f}")
            bar.update()
    return rows


def plot_transfer(rows: list[dict], path: Path, source: str, target: str) -> Path:
    """Source top-1 and target probe top-1 against epoch, one line per run, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for run in dict.fromkeys(r["run"] for r in rows):
        mine = [r for r in rows if r["run"] == run]
        epochs = [r["epoch"] for r in mine]
        axes[0].plot(epochs, [r["source_top1"] for r in mine], marker="o", label=run)
        axes[1].plot(epochs, [r["target_top1"] for r in mine], marker="o", label=run)
    axes[0].set(xlabel="epoch", ylabel="top-1 (%)", title=f"discriminability: {source} test")
    axes[1].set(xlabel="epoch", ylabel="top-1 (%)", title=f"transferability: linear probe on {target}")
    for ax in axes:
        ax.set_ylim(0, 102)  # one scale for both panels
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def analyse_transfer(run_dirs: list[Path], target_config: str | Path, out_dir: Path,
                     settings: ProbeSettings = ProbeSettings(), progress: bool = True,
                     target_overrides: Sequence[str] = ()) -> dict:
    """Every run's epoch checkpoints against one target (its config with ``key=value`` overrides);
    writes ``transfer.json``, ``transfer.csv`` and ``transfer.png``."""
    # read the target only once the runs are known to have epoch checkpoints (fail early, before its splits)
    target = functools.cache(lambda: Target(target_config, settings, target_overrides))
    rows = over_epoch_checkpoints(run_dirs, lambda run_dir, bar: run_transfer(run_dir, target(), settings, bar),
                                  "transfer", progress)
    result = {"target": target().describe(), "probe": {"model": "StandardScaler + LogisticRegression (sklearn)",
                                                     **asdict(settings)},
              "source_metric": "top-1 (%) of the checkpoint's own classifier on its run's test split",
              "rows": rows}
    write_rows(out_dir, "transfer", result)
    sources = ", ".join(dict.fromkeys(r["source"] for r in rows))
    plot_transfer(rows, out_dir / "transfer.png", sources, target().name)
    return result
