"""`fgvc analyze ...`: figures and tables from trained runs and checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from fgvc.cli.common import add_classes, add_config, add_out, add_runs, config_checkpoint_split, split_overrides
from fgvc.errors import FgvcError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
    analyze = sub.add_parser("analyze", help="figures from trained runs: t-SNE, distances, per-class, CAM, complexity, "
                             "features, transfer, information")
    analyze_sub = analyze.add_subparsers(dest="analyze_command", required=True, metavar="ANALYSIS")
    p = analyze_sub.add_parser("features", help="cluster metrics per dataset, MMD between datasets, params/MACs, t-SNE",
                               description="On the features the classifier reads (checkpoint=PATH, default the "
                               "run's best.pt; split=test|val|train): silhouette, Calinski-Harabasz and "
                               "Davies-Bouldin per dataset, MMD² between datasets, parameters and MACs at train "
                               "and test time, a t-SNE plot; written to <run>/features_<split>/.")
    add_config(p)
    p.set_defaults(func=cmd_analyze_features)
    p = analyze_sub.add_parser("complexity", help="parameters, FLOPs per image, training and inference images/s",
                               description="The config's model (or checkpoint=PATH's architecture and weights) on "
                               "the configured device (train.device): parameters (total, trainable, at test time "
                               "without training-only modules), FLOPs per image (FlopCounterMode; FLOPs = 2 x MACs) "
                               "of a test forward, a training forward and a whole training step, and images/s of "
                               "training steps (forward, backward, optimiser step) and of inference, on random "
                               "inputs of --batch-size x --image-size. Writes complexity.json and complexity.md "
                               "into the run folder (or --out). Other key=value pairs override the config.")
    add_config(p)
    p.add_argument("--batch-size", type=int, help="images per step (default: data.batch_size)")
    p.add_argument("--image-size", type=int, help="input side in pixels (default: data.image_size)")
    p.add_argument("--steps", type=int, default=10, help="timed steps each for training and inference (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    add_out(p, "output folder (default: the run folder, <output_dir>/<name>)")
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
    add_out(p, "PNG path (default: cam.png beside the checkpoint)")
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
    add_runs(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--max-samples", type=int, default=2000, help="seeded random subset of the split (half trains "
                   "the statistics network, half gives the estimate)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps of the statistics network per estimate")
    p.add_argument("--hidden", type=int, default=128, help="width of the statistics network's two hidden layers")
    p.add_argument("--x-size", type=int, default=8, help="X = the image average-pooled to this size per channel")
    p.add_argument("--seed", type=int, default=0)
    add_out(p, "output folder (default: RUN_DIR/information_<split> for one run)")
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
    add_runs(p)
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
    add_out(p, "output folder (None: the first RUN_DIR)")
    p.set_defaults(func=cmd_analyze_transfer)

    p = analyze_sub.add_parser("embedding", help="t-SNE of several runs' features of chosen classes, side by side",
                               description="For each RUN_DIR (a finished `fgvc train` folder): the best "
                               "checkpoint's features of the chosen classes' images on --split, embedded by "
                               "t-SNE (same perplexity and seed per panel), one panel per run in embedding.png; "
                               "embedding.json gives each panel's silhouette score (classes as clusters) on the "
                               "features and on the t-SNE points.")
    add_runs(p)
    add_classes(p)
    p.add_argument("--dims", type=int, default=2, choices=[2, 3], help="2-D or 3-D t-SNE (default: 2)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--features", default="fused", choices=["pooled", "fused"],
                   help="fused (default): what the classifier reads (the fused feature of a fusion model); "
                   "pooled: the backbone's pooled image feature")
    add_out(p, "output folder (default: RUN_DIR/analysis of the first run)")
    p.set_defaults(func=cmd_analyze_embedding)
    p = analyze_sub.add_parser("distances", help="heatmap of L2 distances between classifier rows of chosen classes",
                               description="Row c of the final Linear layer scores class c: distances between "
                               "the rows of look-alike classes show how far apart the classifier holds them. One "
                               "heatmap per RUN_DIR (shared colour scale) in distances.png; the matrices and "
                               "their mean off-diagonal distance in distances.json.")
    add_runs(p)
    add_classes(p)
    add_out(p, "output folder (default: RUN_DIR/analysis of the first run)")
    p.set_defaults(func=cmd_analyze_distances)
    p = analyze_sub.add_parser("per-class", help="per-class test accuracy of runs, sorted by a baseline's, smoothed",
                               description="From each run's report.json: per-class test accuracy in the order of "
                               "the --baseline run's accuracy (ascending), smoothed by a centred moving average "
                               "over --window adjacent classes (per_class.png, per_class.csv), and each run's "
                               "most frequent confusions (per_class.json).")
    add_runs(p)
    p.add_argument("--baseline", required=True, metavar="RUN_DIR", help="the run whose accuracy orders the classes")
    p.add_argument("--window", type=int, default=5, help="odd number of adjacent classes averaged (default: 5)")
    p.add_argument("--top", type=int, default=5, help="confusion pairs kept per run (default: 5, at most 10)")
    add_out(p, "output folder (default: BASELINE/analysis)")
    p.set_defaults(func=cmd_analyze_per_class)


def cmd_analyze_features(args: argparse.Namespace) -> int:
    from fgvc.analysis.features import analyse_features

    cfg, checkpoint, split, _ = config_checkpoint_split(args)
    analyse_features(cfg, checkpoint, split)
    print(f"feature analysis: {cfg.run_dir / f'features_{split}' / 'features.md'}")
    return 0


def cmd_analyze_complexity(args: argparse.Namespace) -> int:
    from fgvc.analysis.complexity import format_complexity, measure_complexity, write_complexity
    from fgvc.config import load_config

    overrides, extra = split_overrides(args.overrides, "checkpoint")
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
