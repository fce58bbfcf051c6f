"""``report.json`` and a readable ``report.md`` (+ training-curve PNG) for a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.2f}" if x == 0 or abs(x) >= 0.01 else f"{x:.2e}"
    return str(x)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot_curves(rows: list[dict], path: Path) -> Path | None:
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(epochs, [r["train_loss"] for r in rows], marker="o")
    ax1.set(xlabel="epoch", ylabel="train loss", title="loss")
    ax2.plot(epochs, [r["train_top1"] for r in rows], marker="o", label="train (augmented)")
    ax2.plot(epochs, [r["val_top1"] for r in rows], marker="o", label="val")
    ax2.set(xlabel="epoch", ylabel="top-1 %", title="accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _checkpoint_line(report: dict, protocol: dict) -> str:
    """Which weights the figures come from: the validation-selected best.pt unless the user chose others."""
    checkpoint = protocol.get("checkpoint", "checkpoints/best.pt")
    if Path(checkpoint).name == "best.pt":
        return (f"- reported checkpoint `{checkpoint}`: best validation top-1 (epoch {report.get('best_epoch', '?')}); "
                "the test split never selects a model and is evaluated once, on that checkpoint")
    return f"- reported checkpoint `{checkpoint}`: chosen by the user, not selected on validation"


def _skipped_lines(split: str, metrics: dict, shown: int = 20) -> list[str]:
    """The unreadable images an evaluation skipped (``data.bad_images=skip``), counted and named."""
    skipped = metrics.get("skipped") or []
    if not skipped:
        return []
    lines = [f"Accuracy over {metrics.get('num_samples')} of {metrics.get('num_images')} {split} images: "
             f"{len(skipped)} unreadable image(s) skipped (data.bad_images=skip):", ""]
    lines += [f"- {message}" for message in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"- ... and {len(skipped) - shown} more (all in the JSON report)")
    return lines + [""]


def write_report(run_dir: Path, report: dict, classes: list[str], stem: str = "report") -> Path:
    """Write ``<stem>.json`` (everything) and ``<stem>.md`` (what a reader needs to trust the figures).

    The metrics are under the key of the evaluated split (``report["test"]`` for the test split).
    """
    run_dir = Path(run_dir)
    (run_dir / f"{stem}.json").write_text(json.dumps(report, indent=2))
    p = report.get("protocol", {})
    split = p.get("evaluated_split", "test")
    test = report.get(split, {})
    md = [f"# {report['name']}", "",
          f"Dataset **{report['dataset']}** ({len(classes)} classes), model `{report['model']}` "
          f"({report.get('params_m', 0):.2f} M parameters), method `{report['method']}`.", "",
          "## Protocol", ""]
    md += [f"- {role}: {desc} — {p.get('counts', {}).get(role, '?')} images"
           for role, desc in p.get("splits", {}).items()]
    md += [f"- {role} hold-out: {h['fraction']:.0%} of the training images, stratified by class, seed {h['seed']}"
           for role, h in p.get("holdouts", {}).items()]
    md += [_checkpoint_line(report, p), f"- seed {p.get('seed')}; test-time: {p.get('tta', 'single centre crop')}", ""]
    if p.get("missing_metadata") is not None:
        md += [f"- metadata {p.get('metadata')}: missing or invalid for "
               f"{p['missing_metadata']} of the evaluated images (encoded as zeros)", ""]
    md += ["## Results", "", markdown_table([{
        "split": split, "top-1": test.get("top1"), "top-5": test.get("top5"),
        "mean per-class": test.get("mean_per_class"), "images": test.get("num_samples")}]), ""]
    md += _skipped_lines(split, test)
    if test.get("per_dataset"):
        md += ["Per dataset (joint label space; a prediction counts only if it is the right class of the union):",
               "", markdown_table([{"dataset": name, "top-1": acc} for name, acc in test["per_dataset"].items()]
                                  + [{"dataset": "arithmetic mean", "top-1": test["mean_over_datasets"]}]), ""]
    if test.get("rules"):
        first = next(iter(test["rules"]))
        md += [f"Prediction rules (the first, `{first}`, is the headline figure and selects the model):", "",
               markdown_table([{"rule": name, "top-1": r.get("top1"), "top-5": r.get("top5")}
                               for name, r in test["rules"].items()]), ""]
    if report.get("tta"):
        members = p.get("ensemble") or []
        md += [f"## Test-time augmentation and ensembles ({split})", "",
               "Separate from the headline figure above (one checkpoint, one centre crop). Softmax "
               "probabilities averaged over each image's views"
               + (f", then over the {len(members)} checkpoints of the ensemble ("
                  + ", ".join(f"`{m}`" for m in members) + ")" if members else "") + ".", "",
               markdown_table(report["tta"]), ""]
    if report.get("epochs"):
        md += ["## Training", "", "![curves](curves.png)", "",
               markdown_table(report["epochs"], ["epoch", "train_loss", "train_top1", "val_top1",
                                                 "lr", "images_per_s"]), ""]
    if test.get("per_class"):
        acc = np.array([np.nan if a is None else a for a in test["per_class"]])
        order = np.argsort(np.nan_to_num(acc, nan=101.0))[:10]
        md += [f"## Hardest classes ({split})", "", markdown_table(
            [{"class": classes[i], "accuracy": float(acc[i])} for i in order if not np.isnan(acc[i])]), ""]
    if test.get("confusions"):
        md += [f"## Most frequent confusions ({split})", "", markdown_table(
            [{"true": classes[t], "predicted": classes[q], "count": c} for t, q, c in test["confusions"]]), ""]
    figures = sorted(str(f.relative_to(run_dir)) for f in run_dir.rglob("*.png") if f.name != "curves.png")
    if figures:  # analyses written into the run folder (fgvc analyze ...)
        md += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    path = run_dir / f"{stem}.md"
    path.write_text("\n".join(md))
    if report.get("epochs"):
        plot_curves(report["epochs"], run_dir / "curves.png")
    return path
