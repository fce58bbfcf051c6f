"""A finished run folder (``runs/<name>/``) as the multi-run analyses and ``fgvc compare`` read it.

A run is finished when it holds its resolved ``config.yaml`` and a ``report.json`` with test
metrics (written at the end of ``fgvc train``, or by ``fgvc evaluate``). Analyses that need the
model load ``checkpoints/best.pt`` — the checkpoint the report's figures come from.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fgvc.checkpoint import load_checkpoint
from fgvc.config import Config, load_config
from fgvc.data.splits import prepare_splits
from fgvc.engine.inference import load_for_eval
from fgvc.engine.report import write_report
from fgvc.errors import FgvcError

EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt$")


@dataclass
class FinishedRun:
    path: Path
    config: Config
    report: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def test(self) -> dict:
        return self.report["test"]

    @property
    def seed(self) -> int:
        return self.report.get("protocol", {}).get("seed", self.config.seed)


def run_config(run_dir: Path) -> Config:
    """The resolved config of a run folder, finished or not (the per-epoch analyses need no report)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FgvcError(f"{run_dir}: no config.yaml; pass the folder of a run made by `fgvc train`")
    return load_config(path)


def epoch_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``checkpoints/epoch_*.pt``, by epoch (0 = at initialisation)."""
    found = sorted((int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("epoch_*.pt")
                   if (m := EPOCH_FILE.search(p.name)))
    if not found:
        raise FgvcError(f"{run_dir / 'checkpoints'}: no epoch_*.pt checkpoints; train with "
                        "train.keep_epoch_checkpoints=true to keep one per epoch")
    return found


def over_epoch_checkpoints(run_dirs: list[Path], per_run: Callable[[Path, tqdm], list[dict]], desc: str,
                           progress: bool = True, last_only: bool = False) -> list[dict]:
    """The rows of ``per_run(run_dir, bar)`` for every run, under one progress bar over all their epoch
    checkpoints (``last_only``: one per run); fails early on a run without them, or on two runs of one name
    (figures label runs by it)."""
    names = [d.name for d in run_dirs]
    if len(set(names)) != len(names):
        raise FgvcError(f"run folders share a name ({', '.join(names)}): the figures label runs by folder name")
    total = sum(1 if last_only else len(epoch_checkpoints(d)) for d in run_dirs)
    rows = []
    with tqdm(total=total, desc=desc, disable=None if progress else True, dynamic_ncols=True) as bar:
        for run_dir in run_dirs:
            rows += per_run(run_dir, bar)
    return rows


def write_rows(out_dir: Path, stem: str, result: dict) -> None:
    """``<stem>.json`` (the whole result) and ``<stem>.csv`` (its ``rows``) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2))
    with (out_dir / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result["rows"][0]))
        writer.writeheader()
        writer.writerows(result["rows"])


def load_run(path: str | Path) -> FinishedRun:
    """Read a run folder; a one-line error says what is missing and how to get it."""
    path = Path(path)
    if not path.is_dir():
        raise FgvcError(f"{path}: no such run folder")
    report_path, config_path = path / "report.json", path / "config.yaml"
    if not report_path.is_file() or not config_path.is_file():
        missing = " and ".join(p.name for p in (config_path, report_path) if not p.is_file())
        raise FgvcError(f"{path}: not a finished run (no {missing}); train it to the end, or write its report "
                        "with `fgvc evaluate <its config.yaml>`")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise FgvcError(f"{report_path}: not readable JSON ({exc}); re-run `fgvc evaluate` on the run") from None
    if "test" not in report:
        raise FgvcError(f"{report_path}: no test metrics; evaluate the run with `fgvc evaluate {config_path}`")
    return FinishedRun(path, load_config(config_path), report)


def load_runs(paths: list[str | Path]) -> list[FinishedRun]:
    runs = [load_run(p) for p in paths]
    folders = [r.path.resolve() for r in runs]
    duplicated = sorted({str(f) for f in folders if folders.count(f) > 1})
    if duplicated:
        raise FgvcError(f"run folder given twice: {', '.join(duplicated)}")
    return runs


def run_classes(run: FinishedRun) -> list[str]:
    """Class names in label order: from the checkpoint when it has them, else from the dataset."""
    if run.checkpoint.is_file():
        classes = load_checkpoint(run.checkpoint).get("classes")
        if classes:
            return list(classes)
    return list(prepare_splits(run.config.data).classes)


def select_classes(classes: list[str], names: list[str] | None = None, genus: str | None = None,
                   default: int = 10) -> list[int]:
    """Label indices of the chosen classes: given names, names starting with ``genus``, or the first ``default``."""
    if names and genus:
        raise FgvcError("--classes and --genus: give one of them")
    if names:
        index = {c: i for i, c in enumerate(classes)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise FgvcError(f"--classes: unknown class {', '.join(map(repr, unknown))} (e.g. {classes[0]!r})")
        return [index[n] for n in names]
    if genus:
        chosen = [i for i, c in enumerate(classes) if c.startswith(genus)]
        if not chosen:
            raise FgvcError(f"--genus {genus!r}: no class name starts with it (e.g. {classes[0]!r})")
        return chosen
    return list(range(min(default, len(classes))))


def model_for_analysis(run: FinishedRun):
    """The run's best checkpoint loaded for evaluation, its splits and the data config the model reads."""
    if not run.checkpoint.is_file():
        raise FgvcError(f"{run.checkpoint}: missing; this analysis needs the run's model")
    splits = prepare_splits(run.config.data)
    _, model, _, data_cfg, device = load_for_eval(run.config, run.checkpoint, splits.classes)
    return model, splits, data_cfg, device


def refresh_reports(runs: list[FinishedRun], out: Path) -> None:
    """Rewrite ``report.md`` of the runs whose folder holds ``out``, so it links the new figures."""
    for run in runs:
        if out.resolve().is_relative_to(run.path.resolve()):
            write_report(run.path, run.report, run_classes(run))
