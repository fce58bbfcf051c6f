"""`fgvc predict`, `fgvc serve`, `fgvc export`, `fgvc push`, `fgvc benchmark latency` and
`fgvc import-checkpoint`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from fgvc.cli.common import add_out
from fgvc.errors import FgvcError

MODEL_HELP = ("an fgvc checkpoint (best.pt, last.pt or imported), a folder from `fgvc export --format hub`, "
              "hf://owner/name (through the Hugging Face cache), or an .onnx file from `fgvc export`")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the ``fgvc`` parser."""
    p = sub.add_parser("predict", help="top-k species of photos, each with its own place and date (EXIF, manifest "
                       "or --lat/--lon/--date), to the terminal or a CSV/JSONL/JSON file",
                       description="Predict every IMAGE (files, folders searched recursively, globs) and every "
                       "image of --manifest. Metadata per image, field by field: --lat/--lon/--date (all "
                       "images) > the manifest's lat, lon, date > the photo's EXIF (GPS, DateTimeOriginal); "
                       "each row says what was used and its source (cli, csv, exif, none). --out writes one "
                       "row per image as it goes; running the same command again resumes (images already "
                       "in the file are skipped). Unreadable files are rows with their reason; the exit "
                       "status is 1 only when no image could be read.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files, folders or quoted globs")
    p.add_argument("--checkpoint", required=True, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--manifest", metavar="FILE", help="CSV (header path[,lat,lon,date]) or JSONL of images to "
                   "predict; relative paths are relative to the file")
    p.add_argument("--out", metavar="FILE", help="results.csv, results.jsonl or results.json (resumable)")
    p.add_argument("--lat", type=float, help="latitude in degrees, -90..90, for every image")
    p.add_argument("--lon", type=float, help="longitude in degrees, -180..180, for every image")
    p.add_argument("--date", help="observation date YYYY-MM-DD, for every image")
    p.add_argument("--ignore-location", action="store_true", help="use no location (captive or planted)")
    p.add_argument("--ignore-date", action="store_true", help="use no date")
    p.add_argument("--prior", metavar="RUN", help="a PriorsNet run folder (or its checkpoints/priors.pt): "
                   "re-rank by p(y|x)·σ(s_y(location, date))")
    p.add_argument("--species-list", metavar="FILE", help="allow only these classes: one class name, common "
                   "name or genus per line")
    p.add_argument("--region", metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
                   help="allow only classes seen inside this box in the training data (write "
                   "--region=-40,-30,140,155 when the box starts with a minus sign)")
    p.add_argument("--topk", type=int, default=5, help="classes per image")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding the images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="without --out: print the rows as JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="an HTTP API (POST /v1/predict) and a web page for a checkpoint",
                       description="Serve --checkpoint (with its --prior, --species-list, --region as in "
                       "fgvc predict) with FastAPI on uvicorn: the page at /, POST /v1/predict (multipart field "
                       "image; form fields lat, lon, date, topk, ignore_location, ignore_date, compare), "
                       "GET /v1/model, GET /healthz, OpenAPI docs at /docs. Binds 127.0.0.1 unless --host "
                       "says otherwise.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--prior", metavar="RUN", help="a PriorsNet run folder (or its checkpoints/priors.pt)")
    p.add_argument("--species-list", metavar="FILE", help="allow only these classes (class names, common names "
                   "or genera, one per line)")
    p.add_argument("--region", metavar="LAT_MIN,LAT_MAX,LON_MIN,LON_MAX",
                   help="allow only classes seen inside this box in the training data (--region=-40,... "
                   "when it starts with a minus sign)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=20, help="larger request bodies get 413")
    p.add_argument("--max-batch", type=int, default=16, help="concurrent requests batched into one forward pass")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="a checkpoint as an ONNX file (FP32 or INT8) or as a hub folder",
                       description="--format onnx: export (input image [B,3,S,S], plus meta [B,D] for "
                       "metadata models; output logits), check ONNX Runtime against PyTorch on a random "
                       "batch, and write the class names and preprocessing into the file's metadata_props "
                       "and OUT.json. "
                       "--quantize int8 then quantises it statically (QDQ, int8 per-channel weights, uint8 "
                       "activations calibrated on --calibration training images drawn with --seed, read "
                       "through the model's evaluation transform; never test images) and writes the FP32 and "
                       "INT8 top-1 on the validation split and their top-1 agreement into the file; "
                       "--quantize dynamic needs no images. --format hub: a folder with model.safetensors, "
                       "config.json and a README.md model card (figures from the run's report.json) that "
                       "fgvc.load(), predict, evaluate and serve read, and `fgvc push` uploads.")
    p.add_argument("--checkpoint", required=True, metavar="MODEL", help="an fgvc checkpoint, a hub folder or "
                   "hf://owner/name")
    p.add_argument("--format", default="onnx", help="onnx (default) or hub")
    add_out(p, "the .onnx file (default: the checkpoint's path with .onnx, .int8.onnx or .dynamic.onnx) or "
            "the hub folder (default: the checkpoint's path without .pt, plus -hub)")
    p.add_argument("--quantize", choices=["int8", "dynamic"], help="onnx: 8-bit weights and activations")
    p.add_argument("--calibration", type=int, default=256, metavar="N", help="--quantize int8: training "
                   "images that calibrate the activation ranges (default: 256)")
    p.add_argument("--seed", type=int, default=0,
                   help="--quantize int8: the draw of the calibration images (default: 0)")
    p.add_argument("--keep-fp32", metavar="PATH", help="--quantize: also keep the FP32 file it starts from")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="--quantize: change the checkpoint's config for reading its data, e.g. "
                   "--set data.root=/data/CUB_200_2011 when the images moved since training (repeatable)")
    p.add_argument("--image-size", type=int, help="onnx: side S of the input image (default: the "
                   "checkpoint's data.image_size)")
    p.add_argument("--opset", type=int, default=17, help="onnx: ONNX opset (default: 17)")
    p.add_argument("--report", metavar="REPORT_JSON", help="hub: the run's report.json for the model card "
                   "(default: the one in the checkpoint's run folder)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("push", help="upload a hub folder to the Hugging Face Hub",
                       description="Upload FOLDER (written by `fgvc export --format hub`: model.safetensors, "
                       "config.json, README.md) to the model repository REPO_ID (owner/name), created if "
                       "absent; the card's examples are made to name REPO_ID. Needs huggingface_hub and a "
                       "token with write access (--token, HF_TOKEN or `hf auth login`). The project's tests "
                       "run it up to the HTTP requests, against a mocked transport: no test talks to the "
                       "live Hub.")
    p.add_argument("folder", metavar="FOLDER", help="a folder written by `fgvc export --format hub`")
    p.add_argument("repo_id", metavar="REPO_ID", help="owner/name (or hf://owner/name)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", help="the commit message (default: fgvc VERSION: model, config and card)")
    p.add_argument("--token", help="a Hugging Face token (default: HF_TOKEN or the one `hf auth login` "
                   "saved)")
    p.set_defaults(func=cmd_push)

    bench = sub.add_parser("benchmark", help="speed: batch-1 latency, PyTorch vs ONNX Runtime FP32 and INT8")
    bench_sub = bench.add_subparsers(dest="benchmark_command", required=True, metavar="BENCHMARK")
    p = bench_sub.add_parser("latency", help="batch-1 CPU latency of a checkpoint: PyTorch, ONNX Runtime "
                             "FP32 and INT8, per thread count",
                             description="Per image size and thread count: warm-up runs, then --runs rounds "
                             "in which PyTorch eager (eval), ONNX Runtime FP32 (CPUExecutionProvider, the "
                             "file `fgvc export` writes) and ONNX Runtime on its 8-bit file (`fgvc export "
                             "--quantize`) each time one batch-1 forward, taking turns; the median and 90th "
                             "percentile of each, the speed-ups and the model sizes. Static INT8 calibrates "
                             "on training images of the checkpoint's dataset (--set data.root=... when it "
                             "moved; --quantize dynamic or none without data).")
    p.add_argument("--checkpoint", required=True, metavar="MODEL", help="an fgvc checkpoint, a hub folder or "
                   "hf://owner/name")
    p.add_argument("--sizes", type=int, nargs="+", help="input sizes in pixels (default: the model's "
                   "data.image_size and 224)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts, each "
                   "given to every engine (default: 1 2)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per engine, size and thread count "
                   "(default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default: 5)")
    p.add_argument("--quantize", default="int8", choices=["int8", "dynamic", "none"],
                   help="the 8-bit row: static INT8 (QDQ), dynamic, or none (default: int8)")
    p.add_argument("--calibration", type=int, default=64, metavar="N",
                   help="static INT8: training images that calibrate it (default: 64)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change the checkpoint's config for reading its data, e.g. --set data.root=PATH")
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


def _metadata_given(args: argparse.Namespace):
    """--lat/--lon/--date as given for every image, refused when they cannot be used as written."""
    import math

    from fgvc.data.metadata import date_fraction
    from fgvc.deploy.predict import Given

    if (args.lat is None) != (args.lon is None):
        raise FgvcError("--lat and --lon go together: give both, or neither (then each photo's own EXIF "
                        "or the manifest gives the location)")
    if args.ignore_location and args.lat is not None:
        raise FgvcError("--ignore-location with --lat/--lon: choose one")
    if args.ignore_date and args.date is not None:
        raise FgvcError("--ignore-date with --date: choose one")
    for flag, value, limit in (("--lat", args.lat, 90), ("--lon", args.lon, 180)):
        if value is not None and not (math.isfinite(value) and abs(value) <= limit):
            raise FgvcError(f"{flag} {value}: expected a number in -{limit}..{limit} (to predict without "
                            "a location, leave out --lat/--lon and use --ignore-location)")
    if args.date is not None:
        try:
            date_fraction(args.date)
        except ValueError as exc:
            raise FgvcError(f"--date: {exc} (expected YYYY-MM-DD)") from None
    if args.lat is None and args.date is None:
        return None
    return Given(args.lat, args.lon, args.date)


def _predictor(args: argparse.Namespace):
    """The model of --checkpoint with its --prior, --species-list and --region (predict and serve)."""
    from fgvc.deploy.model import load_inference_model
    from fgvc.deploy.predictor import Predictor, load_prior, read_species_list, region_classes

    model = load_inference_model(args.checkpoint, args.device)
    prior = load_prior(args.prior, model) if args.prior else None
    allowed = None
    if args.species_list:
        allowed, unknown = read_species_list(args.species_list, model)
        if unknown:
            logging.getLogger("fgvc").warning("%s: %d names match no class of the model (e.g. %s)",
                                              args.species_list, len(unknown), ", ".join(unknown[:3]))
    if args.region:
        in_region = region_classes(args.region, model)
        allowed = in_region if allowed is None else allowed & in_region
        if not allowed:
            raise FgvcError(f"--species-list and --region {args.region} have no class in common")
    return Predictor(model, prior, allowed, getattr(args, "topk", 5))


def cmd_predict(args: argparse.Namespace) -> int:
    from fgvc.deploy.predict import predict_files

    if args.topk < 1:
        raise FgvcError(f"--topk {args.topk}: must be at least 1")
    if args.batch_size < 1 or args.workers < 0:
        raise FgvcError("--batch-size must be at least 1 and --workers at least 0")
    if not args.images and not args.manifest:
        raise FgvcError("no images: give files, folders or globs, or --manifest FILE")
    cli = _metadata_given(args)
    predictor = _predictor(args)
    summary = predict_files(predictor, args.images, manifest=args.manifest, cli=cli,
                            ignore_location=args.ignore_location, ignore_date=args.ignore_date, out=args.out,
                            batch_size=args.batch_size, workers=args.workers, progress=not args.quiet)
    for warning in summary.warnings:
        print(f"fgvc: warning: {warning}", file=sys.stderr)
    for reason in summary.unreadable:
        print(f"fgvc: unreadable: {reason}", file=sys.stderr)
    if args.out is None:
        _print_rows(summary.rows, args.json)
    sources = ", ".join(f"{k} {v}" for k, v in summary.sources.most_common()) or "none"
    malformed = ", ".join(f"{k} {v}" for k, v in summary.metadata_problems.most_common())
    print(f"{summary.predicted} images predicted, {len(summary.unreadable)} unreadable"
          + (f", {summary.skipped_done} already in {args.out}" if summary.skipped_done else "")
          + f"; metadata from: {sources}" + (f"; malformed fields treated as missing: {malformed}" if malformed else "")
          + (f"; results: {args.out}" if args.out else ""), file=sys.stderr if args.json else sys.stdout)
    return 1 if summary.unreadable and not summary.predicted and not summary.skipped_done else 0


def _print_rows(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        if row["status"] != "ok":
            continue
        used = [f"{k} {row[k]}" for k in ("lat", "lon", "date") if row[k] is not None]
        print(f"{row['image']}  (metadata: {', '.join(used) + ' from ' + row['metadata_source'] if used else 'none used'})")
        for rank, top in enumerate(row["top"], 1):
            print(f"  {rank}. {top['class']:40s} {100 * top['probability']:6.2f} %")
        if row.get("rollup"):
            r = row["rollup"]
            print(f"  (best raw class {r['raw_class']} is not allowed"
                  + (f"; both are of the genus {r['genus']})" if r["genus"] else ")"))


def cmd_serve(args: argparse.Namespace) -> int:
    from fgvc.deploy.serve import serve

    if args.max_upload_mb <= 0 or args.max_batch < 1:
        raise FgvcError("--max-upload-mb must be positive and --max-batch at least 1")
    predictor = _predictor(args)
    print(f"fgvc serve: {len(predictor.model.classes)} classes, reads {'+'.join(predictor.model.metadata) or 'no metadata'}"
          + (f", prior reads {'+'.join(predictor.prior_use)}" if predictor.prior is not None else "")
          + f"; page http://{args.host}:{args.port}/  API docs http://{args.host}:{args.port}/docs", flush=True)
    serve(predictor, args.host, args.port, int(args.max_upload_mb * 2**20), args.max_batch)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format not in ("onnx", "hub"):
        raise FgvcError(f"--format {args.format}: not supported; fgvc exports onnx (ONNX Runtime, TensorRT "
                        "and OpenVINO read it; --quantize for 8 bits) or hub (safetensors, config.json, "
                        "model card)")
    if args.format == "hub":
        return _export_hub(args)
    from fgvc.deploy.export import export_onnx, read_export_info, sidecar_path

    if args.quantize is None and (args.overrides or args.keep_fp32):
        raise FgvcError("--set and --keep-fp32 go with --quantize")
    out = args.out or f"{_out_stem(args.checkpoint)}{'.' + args.quantize if args.quantize else ''}.onnx"
    if args.quantize:
        from fgvc.deploy.quantize import export_quantized

        path = export_quantized(args.checkpoint, out, mode=args.quantize, calibration=args.calibration,
                                image_size=args.image_size, overrides=args.overrides, seed=args.seed,
                                keep_fp32=args.keep_fp32, opset=args.opset)
    else:
        path = export_onnx(args.checkpoint, out, image_size=args.image_size, opset=args.opset)
    info = read_export_info(path)
    parity, inputs = info["parity"], info["inputs"]
    shapes = ", ".join(f"{name} {spec['shape']}" for name, spec in inputs.items())
    print(f"{path}: ONNX opset {info['export']['opset']}, inputs {shapes}, {len(info['classes'])} classes")
    print(f"FP32 parity vs PyTorch on a random batch of {parity['batch']}: max |logit diff| "
          f"{parity['max_abs_diff']:.1e} (tolerance {parity['tolerance']:.0e}), top-1 identical "
          f"{parity['top1_agree']}")
    if "quantization" in info:
        _print_quantization(info["quantization"])
    print(f"class names and preprocessing: the file's metadata_props and {sidecar_path(path)}")
    return 0


def _out_stem(source: str) -> str:
    """Where an export goes by default: beside a checkpoint or folder; for hf://owner/name, ./name."""
    if source.startswith("hf://"):
        return source.split("@")[0].rstrip("/").rsplit("/", 1)[-1]
    path = Path(source.rstrip("/"))
    return str(path if path.is_dir() else path.with_suffix(""))


def _print_quantization(q: dict) -> None:
    size = q["bytes"]
    calibration = q.get("calibration")
    print(f"{q['mode']} ({q['format']}): weights {q['weights']}, activations {q['activations']}"
          + (f"; calibrated on {calibration['images']} training images (seed {calibration['seed']})"
             if calibration else ""))
    print(f"size {size['int8'] / 2**20:.2f} MiB vs FP32 {size['fp32'] / 2**20:.2f} MiB "
          f"({size['fp32'] / size['int8']:.2f}x smaller)")
    v = q.get("validation")
    if v:
        print(f"{v['split']} ({v['images']} images): top-1 FP32 {v['fp32_top1']:.2f}, "
              f"8-bit {v['int8_top1']:.2f}; same top-1 class on {v['top1_agreement']:.2f} %")
    else:
        print("no validation figures (no validation images were readable)")


def _export_hub(args: argparse.Namespace) -> int:
    from fgvc.deploy.hub import export_hub

    if args.quantize or args.image_size or args.overrides or args.keep_fp32:
        raise FgvcError("--format hub writes the checkpoint's own weights: --quantize, --image-size, --set "
                        "and --keep-fp32 are for --format onnx")
    out = args.out or f"{_out_stem(args.checkpoint)}-hub"
    folder = export_hub(args.checkpoint, out, report=args.report)
    print(f"{folder}: model.safetensors, config.json, README.md (model card) — load it with "
          f'fgvc.load("{folder}") or --checkpoint {folder}; upload it with `fgvc push {folder} OWNER/NAME`')
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from fgvc.deploy.hub import push

    url = push(args.folder, args.repo_id, private=args.private, token=args.token, message=args.message)
    print(f"uploaded {args.folder} to {args.repo_id}: {url}")
    return 0


def cmd_benchmark_latency(args: argparse.Namespace) -> int:
    from fgvc.analysis.latency import format_latency, measure_latency

    result = measure_latency(args.checkpoint, sizes=args.sizes, runs=args.runs, warmup=args.warmup,
                             threads=args.threads, inference_mode=args.inference_mode,
                             quantize=None if args.quantize == "none" else args.quantize,
                             calibration=args.calibration, overrides=args.overrides)
    print(format_latency(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


def cmd_import_checkpoint(args: argparse.Namespace) -> int:
    from fgvc.deploy.convert import import_dynamic_mlp_checkpoint

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
