"""`fgvc train`, `fgvc evaluate` and `fgvc compare`: a run from its config, and runs side by side."""

from __future__ import annotations

import argparse

from fgvc.cli.common import add_config, add_out, add_runs, config_checkpoint_split
from fgvc.errors import FgvcError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from CONFIG; key=value pairs override config keys "
                       "(e.g. optim.lr=0.01 schedule.epochs=30 train.resume=true). Several GPUs or "
                       "machines: torchrun --nproc_per_node N -m fgvc train CONFIG ... (data.batch_size "
                       "is per process; train.sync_bn=true for BatchNorm over the global batch).")
    add_config(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint (top-1, top-5, per-class) and write the report",
                       description="Evaluate checkpoint=PATH (default: the run's best.pt) on split=test|val|train. "
                       "PATH may also be a folder from `fgvc export --format hub`, hf://owner/name, or an "
                       ".onnx file from `fgvc export` (FP32 or INT8, run in ONNX Runtime; its figures go to "
                       "report_<split>_<file>.md beside the run's report). "
                       "corruption=color_jitter|gaussian_noise|all (comma-separated) evaluates every severity of "
                       "those corruptions too and reports the drop against clean accuracy "
                       "(report_robustness.md). Test-time augmentation, each a row of its own beside the "
                       "single centre-crop figure: eval.hflip=true (centre crop + mirror), "
                       "eval.tta_scales=[224,288] (the eval pipeline at each size), eval.ten_crop=true; "
                       "checkpoint=a.pt,b.pt (or checkpoint= repeated) adds the ensemble's rows (softmax "
                       "probabilities averaged over views, then checkpoints).")
    add_config(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="a paper-style table (methods x datasets, mean ± std over seeds) from runs",
                       description="Rows: methods — run folder names without a seed suffix (_s0, _seed1, -seed2), "
                       "so name runs <method>_s<seed>; columns: each dataset's test top-1 and top-5 as mean ± "
                       "sample std over the seeds, then the number of seeds, parameters and MACs per test image. "
                       "Writes comparison.md and comparison.csv (one line per method and dataset).")
    add_runs(p)
    add_out(p, "output folder (default: runs/compare)", default="runs/compare")
    p.add_argument("--group-by", default="name-without-seed", choices=["name-without-seed", "run"],
                   help="name-without-seed (default): seeds of one method together; run: a row per run")
    p.add_argument("--no-complexity", action="store_true", help="skip loading the models to count parameters/MACs")
    p.set_defaults(func=cmd_compare)


def cmd_train(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.engine.distributed import current
    from fgvc.engine.run import train_and_report

    cfg = load_config(args.config, args.overrides)
    report = train_and_report(cfg, overwrite=args.overwrite)
    if not current().is_main:  # under torchrun: rank 0 speaks for the run
        return 0
    test = report["test"]
    print(f"{cfg.name}: test top-1 {test['top1']:.2f}  top-5 {test.get('top5', float('nan')):.2f}  "
          f"(best val top-1 {report['best_val_top1']:.2f} at epoch {report['best_epoch']})  "
          f"report: {cfg.run_dir / 'report.md'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fgvc.deploy.model import load_for_eval_any, report_stem
    from fgvc.engine.run import evaluate_checkpoint

    cfg, checkpoint, split, extra = config_checkpoint_split(args, "corruption")
    first, *ensemble = [c for c in checkpoint.split(",") if c] or [checkpoint]
    if "corruption" in extra:
        if ensemble:
            raise FgvcError(f"checkpoint={checkpoint}: corruption= evaluates one checkpoint, not an ensemble")
        return _evaluate_robustness(cfg, checkpoint, split, extra["corruption"])
    stem = report_stem(split, first)
    report = evaluate_checkpoint(cfg, first, split=split, ensemble=ensemble, load=load_for_eval_any,
                                 stem=stem)
    m = report[split]
    print(f"{split}: top-1 {m['top1']:.2f}  top-5 {m.get('top5', float('nan')):.2f}  "
          f"mean per-class {m['mean_per_class']:.2f}  ({m['num_samples']} images"
          f"{' of ' + str(m['num_images']) + ', the others unreadable' if m.get('skipped') else ''})  "
          f"report: {cfg.run_dir / (stem + '.md')}")
    if report.get("tta"):
        from fgvc.engine.report import markdown_table

        print(markdown_table(report["tta"]))
    return 0


def _evaluate_robustness(cfg, checkpoint: str, split: str, corruption: str) -> int:
    from fgvc.analysis.robustness import SEVERITIES, evaluate_robustness
    from fgvc.engine.report import markdown_table

    names = list(SEVERITIES) if corruption == "all" else corruption.split(",")
    unknown = [n for n in names if n not in SEVERITIES]
    if unknown:
        raise FgvcError(f"corruption={corruption}: unknown {', '.join(unknown)} "
                        f"(one of {', '.join(SEVERITIES)}, comma-separated, or all)")
    result = evaluate_robustness(cfg, checkpoint, names, split)
    print(markdown_table(result["rows"]))
    print(f"report: {cfg.run_dir / 'report_robustness.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fgvc.analysis.compare import write_comparison

    md, csv_path, table = write_comparison(args.runs, args.out, args.group_by, not args.no_complexity)
    print(table)
    print(f"comparison: {md} ({csv_path})")
    return 0
