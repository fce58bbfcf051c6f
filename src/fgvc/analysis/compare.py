"""``fgvc compare``: a paper-style table from finished runs.

Rows are methods, columns datasets; a cell is test top-1 (and top-5) as mean ± sample standard
deviation over the seeds of that method on that dataset. Runs are grouped by name: a run's method is
its folder name without a trailing seed suffix (``_s0``, ``_seed1``, ``-seed2``, ``seed3``), so
``dmlp_s0`` and ``dmlp_s1`` are two seeds of ``dmlp``. Naming the runs is the user's statement of
what belongs together — simpler to check than comparing configs, which also differ in paths and
other things that do not change the method. ``group_by="run"`` keeps every run a row of its own.
Parameters and per-image MACs (what the papers call FLOPs) come from each row's first run.
"""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

from fgvc.analysis.complexity import model_complexity
from fgvc.analysis.runs import FinishedRun, load_runs
from fgvc.checkpoint import load_checkpoint
from fgvc.data.metadata import metadata_dim
from fgvc.engine.inference import model_from_checkpoint
from fgvc.engine.report import markdown_table
from fgvc.errors import FgvcError

GROUP_BY = ("name-without-seed", "run")
SEED_SUFFIX = re.compile(r"(?:[_-](?:s|seed)[_-]?|[_-]?seed)\d+$")


def method_name(run_name: str, group_by: str = "name-without-seed") -> str:
    if group_by not in GROUP_BY:
        raise FgvcError(f"--group-by {group_by}: one of {', '.join(GROUP_BY)}")
    if group_by == "run":
        return run_name
    return SEED_SUFFIX.sub("", run_name) or run_name


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def complexity_of(run: FinishedRun) -> dict:
    """Parameters (M) and GMACs per test image of a run's best checkpoint; params from the report otherwise."""
    if not run.checkpoint.is_file():
        return {"params_m": run.report.get("params_m"), "gmacs": None}

    ckpt = load_checkpoint(run.checkpoint)
    num_classes = len(ckpt.get("classes") or run.test.get("per_class") or [])
    cfg, model = model_from_checkpoint(ckpt, num_classes, run.config)
    meta_dim = metadata_dim(cfg.data.metadata) if cfg.model.fusion.name != "none" else 0
    c = model_complexity(model, cfg.data.image_size, meta_dim)
    return {"params_m": c["params_test_m"], "gmacs": c["gmacs_test"]}


def group_runs(runs: list[FinishedRun], group_by: str) -> dict[str, dict[str, list[FinishedRun]]]:
    """method -> dataset -> runs, in the order given; two runs of one cell with one seed is an error."""
    groups: dict[str, dict[str, list[FinishedRun]]] = {}
    for run in runs:
        cell = groups.setdefault(method_name(run.name, group_by), {}).setdefault(run.report["dataset"], [])
        clash = [r for r in cell if r.seed == run.seed]
        if clash:
            raise FgvcError(f"{run.path} and {clash[0].path}: same method, dataset and seed {run.seed}; "
                            "name runs <method>_s<seed>, or use --group-by run")
        cell.append(run)
    return groups


def comparison_rows(runs: list[FinishedRun], group_by: str = "name-without-seed",
                    with_complexity: bool = True) -> list[dict]:
    """One record per (method, dataset): seeds, top-1/top-5 mean and std, params, GMACs, run names."""
    rows = []
    for method, datasets in group_runs(runs, group_by).items():
        cost = complexity_of(next(iter(datasets.values()))[0]) if with_complexity else {}
        for dataset, cell in datasets.items():
            top1, top5 = [r.test["top1"] for r in cell], [r.test.get("top5") for r in cell]
            row = {"method": method, "dataset": dataset, "seeds": [r.seed for r in cell],
                   "top1": top1, "top5": top5 if None not in top5 else []}
            for key in ("top1", "top5"):
                row[f"{key}_mean"], row[f"{key}_std"] = mean_std(row[key]) if row[key] else (None, None)
            rows.append(row | {"params_m": cost.get("params_m"), "gmacs": cost.get("gmacs"),
                               "runs": [r.name for r in cell]})
    return rows


def markdown_comparison(rows: list[dict]) -> str:
    """Wide table: a row per method, ``<dataset> top-1`` / ``top-5`` columns, then seeds, params, GMACs."""
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    table = {}
    for r in rows:
        line = table.setdefault(r["method"], {"method": r["method"]})
        line[f"{r['dataset']} top-1"] = format_mean_std(r["top1"])
        line[f"{r['dataset']} top-5"] = format_mean_std(r["top5"]) if r["top5"] else ""
        line["seeds"] = ", ".join(str(n) for n in sorted({len(x["seeds"]) for x in rows if x["method"] == r["method"]}))
        line["params (M)"] = "" if r["params_m"] is None else f"{r['params_m']:.2f}"
        line["GMACs / image"] = "" if r["gmacs"] is None else f"{r['gmacs']:.3g}"
    columns = ["method"] + [f"{d} top-{k}" for d in datasets for k in (1, 5)] + ["seeds", "params (M)",
                                                                                "GMACs / image"]
    return markdown_table(list(table.values()), columns)


def write_comparison(run_dirs: list[str | Path], out: str | Path, group_by: str = "name-without-seed",
                     with_complexity: bool = True) -> tuple[Path, Path, str]:
    """Write ``comparison.md`` and ``comparison.csv`` (one line per method and dataset) into ``out``."""
    if not run_dirs:
        raise FgvcError("fgvc compare: give at least one run folder")
    method_name("", group_by)  # validate before loading anything
    rows = comparison_rows(load_runs(run_dirs), group_by, with_complexity)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_comparison(rows)
    md = out / "comparison.md"
    md.write_text("\n".join(["# Comparison", "", "Test top-1 / top-5 (%) as mean ± sample std over seeds; "
                             "seeds = runs per cell; parameters and multiply-accumulates per test image "
                             "(papers call them FLOPs) of each method's first run.", "", table, ""]))
    path = out / "comparison.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        keys = ["method", "dataset", "top1_mean", "top1_std", "top5_mean", "top5_std", "params_m", "gmacs"]
        writer.writerow(keys + ["seeds", "runs"])
        for r in rows:
            writer.writerow(["" if r[k] is None else r[k] for k in keys]
                            + [" ".join(map(str, r["seeds"])), " ".join(r["runs"])])
    return md, path, table
