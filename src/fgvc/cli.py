"""The ``fgvc`` command line. Every error a user can cause ends as one line: ``fgvc: error: ...``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from fgvc import __version__
from fgvc.errors import FgvcError, one_line

DEMO_SECTIONS = ("dynamic_mlp", "rmg_pmsi", "erudite", "ctc")  # fgvc.demo.SECTIONS, named here so --help needs no torch

EPILOG = """examples:
  fgvc demo                                         synthetic data, train, evaluate, report
  fgvc data synth ~/data/synth                      write the synthetic benchmark
  fgvc data verify configs/quickstart.yaml          check a dataset without training
  fgvc train configs/quickstart.yaml optim.lr=0.02  train (key=value overrides any config key)
  fgvc evaluate configs/quickstart.yaml checkpoint=runs/quickstart/checkpoints/best.pt
  fgvc predict --checkpoint runs/quickstart/checkpoints/best.pt photo.jpg --lat 45.5 --lon -73.6 --date 2021-06-01
  fgvc analyze cam --checkpoint runs/quickstart/checkpoints/best.pt a.jpg b.jpg   Grad-CAM grid
  fgvc export --checkpoint runs/quickstart/checkpoints/best.pt --format onnx   ONNX + parity check
"""


def _split_overrides(items: list[str], *extra_keys: str) -> tuple[list[str], dict[str, str]]:
    """Separate command keys (e.g. ``checkpoint=``) from config overrides; a repeated key's values are
    joined with commas (``checkpoint=a.pt checkpoint=b.pt`` is ``checkpoint=a.pt,b.pt``)."""
    overrides, extra = [], {}
    for item in items:
        key, sep, value = item.partition("=")
        if sep and key in extra_keys:
            extra[key] = f"{extra[key]},{value}" if key in extra else value
        else:
            overrides.append(item)
    return overrides, extra


def _config_checkpoint_split(args: argparse.Namespace, *extra_keys: str):
    """The config, ``checkpoint=`` (default: the run's best.pt), ``split=`` (default test), other keys."""
    from fgvc.config import load_config

    overrides, extra = _split_overrides(args.overrides, "checkpoint", "split", *extra_keys)
    cfg = load_config(args.config, overrides)
    checkpoint = extra.get("checkpoint") or str(cfg.run_dir / "checkpoints" / "best.pt")
    split = extra.get("split", "test")
    if split not in ("train", "val", "test"):
        raise FgvcError(f"split={split}: expected one of train, val, test")
    return cfg, checkpoint, split, extra


def cmd_train(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.engine.run import train_and_report, train_priors_and_report

    cfg = load_config(args.config, args.overrides)
    run = train_priors_and_report if cfg.method.name == "priors" else train_and_report
    report = run(cfg, overwrite=args.overwrite)
    from fgvc.engine.distributed import current

    if not current().is_main:  # under torchrun: rank 0 speaks for the run
        return 0
    test = report["test"]
    print(f"{cfg.name}: test top-1 {test['top1']:.2f}  top-5 {test.get('top5', float('nan')):.2f}  "
          f"(best val top-1 {report['best_val_top1']:.2f} at epoch {report['best_epoch']})  "
          f"report: {cfg.run_dir / 'report.md'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fgvc.engine.run import evaluate_checkpoint

    cfg, checkpoint, split, extra = _config_checkpoint_split(args, "corruption")
    first, *ensemble = [c for c in checkpoint.split(",") if c] or [checkpoint]
    if "corruption" in extra:
        if ensemble:
            raise FgvcError(f"checkpoint={checkpoint}: corruption= evaluates one checkpoint, not an ensemble")
        return _evaluate_robustness(cfg, checkpoint, split, extra["corruption"])
    report = evaluate_checkpoint(cfg, first, split=split, ensemble=ensemble)
    m = report[split]
    print(f"{split}: top-1 {m['top1']:.2f}  top-5 {m.get('top5', float('nan')):.2f}  "
          f"mean per-class {m['mean_per_class']:.2f}  ({m['num_samples']} images)  "
          f"report: {cfg.run_dir / ('report.md' if split == 'test' else f'report_{split}.md')}")
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


def cmd_data_synth(args: argparse.Namespace) -> int:
    from fgvc.data.synthetic import SynthOptions, write_benchmark

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SynthOptions)}
    summary = write_benchmark(Path(args.out_dir), SynthOptions(**values))
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_data_verify(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.data.verify import format_summary, verify

    cfg = load_config(args.config, args.overrides)
    summary = verify(cfg.data, check_images=not args.no_images)
    print(format_summary(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 1 if summary["problems"] else 0


def cmd_data_shard(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.data.shards import write_shards
    from fgvc.data.splits import prepare_splits

    cfg = load_config(args.config, args.overrides)
    if cfg.data.format == "shards":
        raise FgvcError(f"{cfg.data.root}: already shards; point the config at the original dataset")
    written = write_shards(prepare_splits(cfg.data), args.out_dir, bad_images=cfg.data.bad_images,
                           max_per_shard=args.max_per_shard, roles=args.splits, workers=args.workers)
    for role, index in written.items():
        print(f"{role}: {index['count']} images in {len(index['shards'])} shards, {len(index['skipped'])} "
              f"skipped ({index['source']}) -> {Path(args.out_dir) / (role + '.json')}")
    print(f"train from them with: fgvc train {args.config} data.format=shards data.root={args.out_dir}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fgvc.predict import predict_images

    results = predict_images(args.checkpoint, args.images, args.lat, args.lon, args.date, args.topk, args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for result in results:
        print(f"{result['image']}  (metadata: {result['metadata']})")
        for rank, top in enumerate(result["top"], 1):
            print(f"  {rank}. {top['class']:40s} {100 * top['probability']:6.2f} %")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format != "onnx":
        raise FgvcError(f"--format {args.format}: not supported; fgvc exports onnx (ONNX Runtime, "
                        "TensorRT and OpenVINO read it)")
    from fgvc.export import export_onnx, read_export_info, sidecar_path

    out = args.out or str(Path(args.checkpoint).with_suffix(".onnx"))
    path = export_onnx(args.checkpoint, out, image_size=args.image_size, opset=args.opset)
    info = read_export_info(path)
    parity, inputs = info["parity"], info["inputs"]
    shapes = ", ".join(f"{name} {spec['shape']}" for name, spec in inputs.items())
    print(f"{path}: ONNX opset {info['export']['opset']}, inputs {shapes}, {len(info['classes'])} classes")
    print(f"parity vs PyTorch on a random batch of {parity['batch']}: max |logit diff| "
          f"{parity['max_abs_diff']:.1e} (tolerance {parity['tolerance']:.0e}), top-1 identical "
          f"{parity['top1_agree']}")
    print(f"class names and preprocessing: the file's metadata_props and {sidecar_path(path)}")
    return 0


def cmd_benchmark_latency(args: argparse.Namespace) -> int:
    from fgvc.analysis.latency import format_latency, measure_latency

    result = measure_latency(args.checkpoint, sizes=args.sizes, runs=args.runs, warmup=args.warmup,
                             threads=args.threads, inference_mode=args.inference_mode)
    print(format_latency(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_protocol_erudite(args: argparse.Namespace) -> int:
    from fgvc.config import load_config
    from fgvc.erudite_protocol import VARIANTS, run_protocol

    cfg = load_config(args.config, args.overrides)
    if len(cfg.data.joint) < 2:
        raise FgvcError(f"{args.config}: the protocol needs data.joint with at least 2 datasets")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise FgvcError(f"--variants: unknown {', '.join(unknown)} (one of {', '.join(VARIANTS)})")
    print(f"protocol report: {run_protocol(cfg, args.variants, tuple(args.sizes))}")
    return 0


def cmd_analyze_features(args: argparse.Namespace) -> int:
    from fgvc.analysis.features import analyse_features

    cfg, checkpoint, split, _ = _config_checkpoint_split(args)
    analyse_features(cfg, checkpoint, split)
    print(f"feature analysis: {cfg.run_dir / f'features_{split}' / 'features.md'}")
    return 0


def cmd_analyze_complexity(args: argparse.Namespace) -> int:
    from fgvc.analysis.complexity import format_complexity, measure_complexity, write_complexity
    from fgvc.config import load_config

    overrides, extra = _split_overrides(args.overrides, "checkpoint")
    cfg = load_config(args.config, overrides)
    result = measure_complexity(cfg, extra.get("checkpoint"), args.batch_size, args.image_size, args.steps,
                                args.warmup)
    path = write_complexity(result, args.out or cfg.run_dir)
    print(format_complexity(result))
    print(f"complexity: {path} ({path.with_suffix('.json')})")
    return 0


def cmd_analyze_cam(args: argparse.Namespace) -> int:
    from fgvc.analysis.cam import cam_for_checkpoint

    out = args.out or str(Path(args.checkpoint).parent / "cam.png")
    path = cam_for_checkpoint(args.checkpoint, args.images, out, args.layers, args.method, args.class_index)
    print(f"CAM grid: {path}")
    return 0


def cmd_analyze_information(args: argparse.Namespace) -> int:
    from fgvc.analysis.information import InformationSettings, analyse_information

    runs = [Path(d) for d in args.runs]
    if args.out is None and len(runs) > 1:
        raise FgvcError("several runs: pass --out DIR for the joint figures")
    out = Path(args.out) if args.out else runs[0] / f"information_{args.split}"
    settings = InformationSettings(split=args.split, max_samples=args.max_samples, steps=args.steps,
                                   hidden=args.hidden, x_size=args.x_size, seed=args.seed)
    analyse_information(runs, out, settings, progress=not args.quiet)
    print(f"information dynamics: {out / 'information.png'} ({out / 'information.csv'})")
    return 0


def cmd_analyze_transfer(args: argparse.Namespace) -> int:
    from fgvc.analysis.transfer import ProbeSettings, analyse_transfer

    runs = [Path(d) for d in args.runs]
    out = Path(args.out) if args.out else runs[0]
    settings = ProbeSettings(max_train=args.max_train, C=args.C, max_iter=args.max_iter, seed=args.seed)
    analyse_transfer(runs, args.target, out, settings, progress=not args.quiet,
                     target_overrides=args.target_set)
    print(f"transferability: {out / 'transfer.png'} ({out / 'transfer.csv'})")
    return 0


def cmd_analyze_embedding(args: argparse.Namespace) -> int:
    from fgvc.analysis.embedding import embedding_analysis

    result = embedding_analysis(args.runs, args.classes, args.genus, args.dims, args.split, args.features, args.out)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "analysis"
    for panel in result["panels"]:
        score = panel["silhouette_features"]
        print(f"{panel['run']}: {panel['num_images']} images, silhouette "
              f"{'n/a' if score is None else f'{score:.3f}'}")
    print(f"t-SNE: {out / 'embedding.png'} ({out / 'embedding.json'})")
    return 0


def cmd_analyze_distances(args: argparse.Namespace) -> int:
    from fgvc.analysis.distances import distance_analysis

    result = distance_analysis(args.runs, args.classes, args.genus, args.out)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "analysis"
    for run in result["runs"]:
        mean = run["mean_off_diagonal"]
        print(f"{run['run']}: mean L2 distance between classifier rows {'n/a' if mean is None else f'{mean:.3f}'}")
    print(f"heatmap: {out / 'distances.png'} ({out / 'distances.json'})")
    return 0


def cmd_analyze_per_class(args: argparse.Namespace) -> int:
    from fgvc.analysis.per_class import per_class_analysis

    result = per_class_analysis(args.runs, args.baseline, args.window, args.top, args.out)
    out = Path(args.out) if args.out else Path(args.baseline) / "analysis"
    for name, run in result["runs"].items():
        worst = ", ".join(f"{c['true']} -> {c['predicted']} ({c['count']})" for c in run["confusions"][:3])
        print(f"{name}: mean per-class {run['mean_per_class']:.2f}; top confusions: {worst or 'none'}")
    print(f"per-class curves: {out / 'per_class.png'} ({out / 'per_class.csv'}, {out / 'per_class.json'})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from fgvc.analysis.compare import write_comparison

    md, csv_path, table = write_comparison(args.runs, args.out, args.group_by, not args.no_complexity)
    print(table)
    print(f"comparison: {md} ({csv_path})")
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from fgvc.models.convert import import_dynamic_mlp_checkpoint

    classes = None
    if args.inat_root:
        from fgvc.data.formats import read_dataset

        classes = read_dataset("inat2021", args.inat_root, splits=("train_mini", "val"), check_images=False).classes
    ckpt = import_dynamic_mlp_checkpoint(args.path, args.out, backbone=args.backbone, classes=classes)
    fusion = ckpt["config"]["model"]["fusion"]
    print(f"{args.out}: {args.backbone} + Dynamic MLP-{fusion['variant'].upper()} (d={fusion['d']}, h={fusion['h']}, "
          f"n={fusion['n']}), {len(ckpt['classes'])} classes — use it with `fgvc predict --checkpoint {args.out}` "
          f"or `fgvc evaluate CONFIG checkpoint={args.out}`")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fgvc.demo import run_demo

    run_demo(Path(args.data), Path(args.out), epochs=args.epochs, quick=args.quick, seeds=tuple(args.seeds),
             sections=tuple(args.sections))
    return 0


def _add_synth_options(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per field of ``SynthOptions`` (its comments are the help)."""
    from fgvc.data.synthetic import SynthOptions

    for field in dataclasses.fields(SynthOptions):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, default=default, action=argparse.BooleanOptionalAction)
        elif isinstance(default, (tuple, list)):
            parser.add_argument(flag, dest=field.name, default=default, nargs="+",
                                type=type(default[0]) if default else str, help=f"default: {' '.join(map(str, default))}")
        else:
            parser.add_argument(flag, dest=field.name, default=default, type=type(default),
                                help=f"default: {default}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fgvc", description="Fine-grained visual classification: train, evaluate and analyse "
        "Dynamic MLP, RMG-PMSI, the erudite model and CTC on real or synthetic data.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fgvc {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from CONFIG; key=value pairs override config keys "
                       "(e.g. optim.lr=0.01 schedule.epochs=30 train.resume=true). Several GPUs or "
                       "machines: torchrun --nproc_per_node N -m fgvc train CONFIG ... (data.batch_size "
                       "is per process; train.sync_bn=true for BatchNorm over the global batch).")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same name")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint (top-1, top-5, per-class) and write the report",
                       description="Evaluate checkpoint=PATH (default: the run's best.pt) on split=test|val|train. "
                       "corruption=color_jitter|gaussian_noise|all (comma-separated) evaluates every severity of "
                       "those corruptions too and reports the drop against clean accuracy "
                       "(report_robustness.md). Test-time augmentation, each a row of its own beside the "
                       "single centre-crop figure: eval.hflip=true (centre crop + mirror), "
                       "eval.tta_scales=[224,288] (the eval pipeline at each size), eval.ten_crop=true; "
                       "checkpoint=a.pt,b.pt (or checkpoint= repeated) adds the ensemble's rows (softmax "
                       "probabilities averaged over views, then checkpoints).")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k classes of image files (with --lat/--lon/--date for metadata models)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True, help="an fgvc checkpoint (best.pt, last.pt or imported)")
    p.add_argument("--lat", type=float, help="latitude in degrees, -90..90")
    p.add_argument("--lon", type=float, help="longitude in degrees, -180..180")
    p.add_argument("--date", help="observation date, YYYY-MM-DD")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="a checkpoint as an ONNX file, checked against PyTorch, with class names",
                       description="Export to ONNX (input image [B,3,S,S], plus meta [B,D] for metadata "
                       "models; output logits), check ONNX Runtime against PyTorch on a random batch, and "
                       "write the class names and preprocessing into the file's metadata_props and OUT.json.")
    p.add_argument("--checkpoint", required=True, help="an fgvc checkpoint (best.pt, last.pt or imported)")
    p.add_argument("--format", default="onnx", help="only onnx (default)")
    p.add_argument("--out", help="the .onnx file to write (default: the checkpoint's path with .onnx)")
    p.add_argument("--image-size", type=int, help="side S of the input image (default: the checkpoint's "
                   "data.image_size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.set_defaults(func=cmd_export)

    bench = sub.add_parser("benchmark", help="speed: batch-1 latency, PyTorch vs ONNX Runtime on the CPU")
    bench_sub = bench.add_subparsers(dest="benchmark_command", required=True, metavar="BENCHMARK")
    p = bench_sub.add_parser("latency", help="batch-1 CPU latency of a checkpoint: PyTorch vs ONNX Runtime",
                             description="Per image size: warm-up runs, then the median and 90th percentile "
                             "of --runs timed batch-1 forwards, PyTorch eager (eval) and ONNX Runtime "
                             "(CPUExecutionProvider, the file `fgvc export` writes), with the same threads.")
    p.add_argument("--checkpoint", required=True, help="an fgvc checkpoint")
    p.add_argument("--sizes", type=int, nargs="+", default=[448, 224],
                   help="input sizes in pixels (default: 448 224, as in the RMG-PMSI paper)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per engine and size (default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    p.add_argument("--threads", type=int, help="intra-op threads for both engines (default: torch's, "
                   "the physical cores)")
    p.add_argument("--inference-mode", action="store_true",
                   help="PyTorch under torch.inference_mode instead of no_grad")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=cmd_benchmark_latency)

    protocol = sub.add_parser("protocol", help="a paper's multi-run protocol (erudite: every dataset mixture vs Single)")
    protocol_sub = protocol.add_subparsers(dest="protocol_command", required=True, metavar="PROTOCOL")
    p = protocol_sub.add_parser("erudite", help="joint variants vs Single on every mixture of data.joint",
                                description="For every mixture (of --sizes) of the config's data.joint: one "
                                "image-only model per dataset plus a coarse dataset classifier (Single), and each "
                                "joint variant; writes <output_dir>/<name>/protocol.md with per-dataset test "
                                "top-1, the mean and Δ against Single.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--variants", nargs="+", default=["baseline", "baseline_plus", "baseline_plusplus", "ours"],
                   help="baseline, baseline_plus, baseline_plusplus, ours, ours_pcgrad, ours_pmg, "
                   "hierarchical (default: the first four)")
    p.add_argument("--sizes", nargs="+", type=int, default=[2, 3, 4],
                   help="mixture sizes (default 2 3 4: the 11 mixtures of four datasets)")
    p.set_defaults(func=cmd_protocol_erudite)

    analyze = sub.add_parser("analyze", help="figures from trained runs: t-SNE, distances, per-class, CAM, complexity, "
                             "features, transfer, information")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True, metavar="ANALYSIS")
    p = analyze_sub.add_parser("features", help="cluster metrics per dataset, MMD between datasets, params/MACs, t-SNE",
                               description="On the features the classifier reads (checkpoint=PATH, default the "
                               "run's best.pt; split=test|val|train): silhouette, Calinski-Harabasz and "
                               "Davies-Bouldin per dataset, MMD² between datasets, parameters and MACs at train "
                               "and test time, a t-SNE plot; written to <run>/features_<split>/.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_analyze_features)
    p = analyze_sub.add_parser("complexity", help="parameters, FLOPs per image, training and inference images/s",
                               description="The config's model (or checkpoint=PATH's architecture and weights) on "
                               "the configured device (train.device): parameters (total, trainable, at test time "
                               "without training-only modules), FLOPs per image (FlopCounterMode; FLOPs = 2 x MACs) "
                               "of a test forward, a training forward and a whole training step, and images/s of "
                               "training steps (forward, backward, optimiser step) and of inference, on random "
                               "inputs of --batch-size x --image-size. Writes complexity.json and complexity.md "
                               "into the run folder (or --out). Other key=value pairs override the config.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--batch-size", type=int, help="images per step (default: data.batch_size)")
    p.add_argument("--image-size", type=int, help="input side in pixels (default: data.image_size)")
    p.add_argument("--steps", type=int, default=10, help="timed steps each for training and inference (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    p.add_argument("--out", help="output folder (default: the run folder, <output_dir>/<name>)")
    p.set_defaults(func=cmd_analyze_complexity)
    p = analyze_sub.add_parser("cam", help="Grad-CAM (or a variant) of chosen layers for chosen images, as a PNG grid",
                               description="Rows: images; columns: the input and one map per layer, for the "
                               "model's top-1 class (or --class-index). Default layers: the last three stages "
                               "(a PMG / RMG-PMSI model's smooth conv blocks).")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--checkpoint", required=True, help="an fgvc checkpoint")
    p.add_argument("--layers", nargs="+", help="module names, e.g. backbone.body.layer4 (default: last three stages)")
    p.add_argument("--method", default="gradcam", help="gradcam, gradcam++, xgradcam, eigencam or layercam")
    p.add_argument("--class-index", type=int, help="explain this class instead of each image's top-1")
    p.add_argument("--out", help="PNG path (default: cam.png beside the checkpoint)")
    p.set_defaults(func=cmd_analyze_cam)
    p = analyze_sub.add_parser("information", help="MINE estimates of I(X;T) and I(T;Y) for every epoch checkpoint "
                               "(CTC's information dynamics)",
                               description="For each RUN_DIR (a folder made by `fgvc train` with "
                               "train.keep_epoch_checkpoints=true) and every checkpoints/epoch_*.pt: X = the "
                               "eval-transformed image average-pooled to --x-size², T = the feature the classifier "
                               "reads, Y = the one-hot label, on a seeded subset of --split; MINE (held-out "
                               "Donsker-Varadhan bound, nats, same seed for every checkpoint) estimates I(X;T) and "
                               "I(T;Y). Writes information.json, information.csv (one row per checkpoint) and "
                               "information.png (both against epoch, one line per run, and the information plane).",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--max-samples", type=int, default=2000, help="seeded random subset of the split (half trains "
                   "the statistics network, half gives the estimate)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps of the statistics network per estimate")
    p.add_argument("--hidden", type=int, default=128, help="width of the statistics network's two hidden layers")
    p.add_argument("--x-size", type=int, default=8, help="X = the image average-pooled to this size per channel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: RUN_DIR/information_<split> for one run)")
    p.set_defaults(func=cmd_analyze_information)
    p = analyze_sub.add_parser("transfer", help="source accuracy and a linear probe on a target dataset for every "
                               "epoch checkpoint (CTC's discriminability vs transferability)",
                               description="For each RUN_DIR (a folder made by `fgvc train` with "
                               "train.keep_epoch_checkpoints=true) and every checkpoints/epoch_*.pt (000 = the "
                               "initial weights): the checkpoint's own top-1 on its run's test split, and the "
                               "top-1 on the target's test split of a linear probe (standardised features, "
                               "scikit-learn LogisticRegression, fixed C and seed) fitted on the target's train "
                               "split; the probe reads the checkpoint's pooled backbone features of the target "
                               "images under the target config's eval transform. Writes transfer.json, "
                               "transfer.csv (one row per checkpoint) and transfer.png (both against epoch, one "
                               "line per run).",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--target", required=True, metavar="CONFIG", help="YAML config whose data section is the "
                   "target dataset (its train split fits the probe, its test split scores it)")
    p.add_argument("--target-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the target config, e.g. data.root=/data/CINIC-10 (repeatable)")
    p.add_argument("--max-train", type=int, metavar="N", help="fit the probe on a seeded stratified subset of "
                   "about N target train images (None: all)")
    p.add_argument("--C", type=float, default=1.0, metavar="C",
                   help="inverse L2 strength of the logistic regression")
    p.add_argument("--max-iter", type=int, default=2000, help="lbfgs iterations of the probe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (None: the first RUN_DIR)")
    p.set_defaults(func=cmd_analyze_transfer)

    classes_help = "class names as in the dataset (quote names with spaces); default: the first 10 classes"
    p = analyze_sub.add_parser("embedding", help="t-SNE of several runs' features of chosen classes, side by side",
                               description="For each RUN_DIR (a finished `fgvc train` folder): the best "
                               "checkpoint's features of the chosen classes' images on --split, embedded by "
                               "t-SNE (same perplexity and seed per panel), one panel per run in embedding.png; "
                               "embedding.json gives each panel's silhouette score (classes as clusters) on the "
                               "features and on the t-SNE points.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--classes", nargs="+", metavar="NAME", help=classes_help)
    p.add_argument("--genus", metavar="PREFIX", help="the classes whose name starts with PREFIX (e.g. a genus)")
    p.add_argument("--dims", type=int, default=2, choices=[2, 3], help="2-D or 3-D t-SNE (default: 2)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--features", default="fused", choices=["pooled", "fused"],
                   help="fused (default): what the classifier reads (the fused feature of a fusion model); "
                   "pooled: the backbone's pooled image feature")
    p.add_argument("--out", help="output folder (default: RUN_DIR/analysis of the first run)")
    p.set_defaults(func=cmd_analyze_embedding)
    p = analyze_sub.add_parser("distances", help="heatmap of L2 distances between classifier rows of chosen classes",
                               description="Row c of the final Linear layer scores class c: distances between "
                               "the rows of look-alike classes show how far apart the classifier holds them. One "
                               "heatmap per RUN_DIR (shared colour scale) in distances.png; the matrices and "
                               "their mean off-diagonal distance in distances.json.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--classes", nargs="+", metavar="NAME", help=classes_help)
    p.add_argument("--genus", metavar="PREFIX", help="the classes whose name starts with PREFIX (e.g. a genus)")
    p.add_argument("--out", help="output folder (default: RUN_DIR/analysis of the first run)")
    p.set_defaults(func=cmd_analyze_distances)
    p = analyze_sub.add_parser("per-class", help="per-class test accuracy of runs, sorted by a baseline's, smoothed",
                               description="From each run's report.json: per-class test accuracy in the order of "
                               "the --baseline run's accuracy (ascending), smoothed by a centred moving average "
                               "over --window adjacent classes (per_class.png, per_class.csv), and each run's "
                               "most frequent confusions (per_class.json).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--baseline", required=True, metavar="RUN_DIR", help="the run whose accuracy orders the classes")
    p.add_argument("--window", type=int, default=5, help="odd number of adjacent classes averaged (default: 5)")
    p.add_argument("--top", type=int, default=5, help="confusion pairs kept per run (default: 5, at most 10)")
    p.add_argument("--out", help="output folder (default: BASELINE/analysis)")
    p.set_defaults(func=cmd_analyze_per_class)

    p = sub.add_parser("compare", help="a paper-style table (methods x datasets, mean ± std over seeds) from runs",
                       description="Rows: methods — run folder names without a seed suffix (_s0, _seed1, -seed2), "
                       "so name runs <method>_s<seed>; columns: each dataset's test top-1 and top-5 as mean ± "
                       "sample std over the seeds, then the number of seeds, parameters and MACs per test image. "
                       "Writes comparison.md and comparison.csv (one line per method and dataset).")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    p.add_argument("--group-by", default="name-without-seed", choices=["name-without-seed", "run"],
                   help="name-without-seed (default): seeds of one method together; run: a row per run")
    p.add_argument("--no-complexity", action="store_true", help="skip loading the models to count parameters/MACs")
    p.set_defaults(func=cmd_compare)

    data = sub.add_parser("data", help="write the synthetic benchmark, verify a dataset, or shard it")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    p = data_sub.add_parser("synth", help="write the procedural benchmark in the real on-disk formats",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out_dir")
    _add_synth_options(p)
    p.set_defaults(func=cmd_data_synth)
    p = data_sub.add_parser("verify", help="counts per split/class, metadata and every bad file or record")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--no-images", action="store_true", help="skip decoding every image")
    p.add_argument("--json", metavar="PATH", help="also write the summary as JSON")
    p.set_defaults(func=cmd_data_verify)
    p = data_sub.add_parser("shard", help="write the splits as WebDataset tar shards (+ <split>.json indices)",
                            description="Resolve CONFIG's splits as training would (hold-outs included) and "
                            "write OUT_DIR/<split>-NNNNNN.tar (original image bytes + a JSON of label and "
                            "metadata per sample) and OUT_DIR/<split>.json (shards, counts, classes). Train "
                            "or evaluate from them with data.format=shards data.root=OUT_DIR. Unreadable "
                            "images stop with the file named, or are skipped and counted with "
                            "data.bad_images=skip.")
    p.add_argument("config", help="experiment YAML whose data section names the dataset to shard")
    p.add_argument("out_dir", help="folder for the tar shards and the <split>.json indices")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.root=PATH")
    p.add_argument("--max-per-shard", type=int, default=1000, metavar="N",
                   help="samples per tar file (default: 1000)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], choices=["train", "val", "test"],
                   help="which splits (default: train val test)")
    p.add_argument("--workers", type=int, default=4, help="threads reading and checking images (default: 4)")
    p.set_defaults(func=cmd_data_shard)

    p = sub.add_parser("import-checkpoint", help="convert released weights (Dynamic MLP authors) to an fgvc checkpoint")
    p.add_argument("--from", dest="source", required=True, choices=["dynamic-mlp"],
                   help="whose release: dynamic-mlp = ylingfeng/DynamicMLP (ResNet-50 + Dynamic MLP-C, iNat21)")
    p.add_argument("path", help="the released .pth file")
    p.add_argument("out", help="where to write the fgvc checkpoint")
    p.add_argument("--backbone", default="resnet50", help="timm name of the checkpoint's backbone")
    p.add_argument("--inat-root", help="iNat 2021 folder (train_mini.json, val.json): names the classes")
    p.set_defaults(func=cmd_import_checkpoint)

    p = sub.add_parser("demo", help="synthetic benchmark on a CPU: Dynamic MLP, RMG-PMSI, the erudite model and CTC "
                       "against their baselines")
    p.add_argument("--data", default=str(Path.home() / ".cache" / "fgvc" / "synthetic"),
                   help="cache folder for the synthetic benchmark (written if absent)")
    p.add_argument("--out", default="runs/demo", help="folder for the runs and the demo report")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epoch count")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one run per model and seed; the table gives mean ± std (default: 0 1 2)")
    p.add_argument("--sections", nargs="+", choices=DEMO_SECTIONS, default=list(DEMO_SECTIONS),
                   help="which comparisons to run (default: all); only dynamic_mlp uses every seed, the "
                   "others the first")
    p.add_argument("--quick", action="store_true", help="tiny runs (seconds) to check the installation")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname).1s %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except FgvcError as exc:
        print(f"fgvc: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fgvc: interrupted", file=sys.stderr)
        return 130
