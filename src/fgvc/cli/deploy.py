"""`fgvc predict`, `fgvc export`, `fgvc benchmark latency` and `fgvc import-checkpoint`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fgvc.cli.common import add_out
from fgvc.errors import FgvcError


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
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
    add_out(p, "the .onnx file to write (default: the checkpoint's path with .onnx)")
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

    p = sub.add_parser("import-checkpoint", help="convert released weights (Dynamic MLP authors) to an fgvc checkpoint")
    p.add_argument("--from", dest="source", required=True, choices=["dynamic-mlp"],
                   help="whose release: dynamic-mlp = ylingfeng/DynamicMLP (ResNet-50 + Dynamic MLP-C, iNat21)")
    p.add_argument("path", help="the released .pth file")
    p.add_argument("out", help="where to write the fgvc checkpoint")
    p.add_argument("--backbone", default="resnet50", help="timm name of the checkpoint's backbone")
    p.add_argument("--inat-root", help="iNat 2021 folder (train_mini.json, val.json): names the classes")
    p.set_defaults(func=cmd_import_checkpoint)


def cmd_predict(args: argparse.Namespace) -> int:
    from fgvc.deploy.predict import predict_images

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
    from fgvc.deploy.export import export_onnx, read_export_info, sidecar_path

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
