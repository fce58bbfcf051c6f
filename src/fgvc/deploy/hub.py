"""``fgvc export --format hub``: a trained model as a folder others load in one line, and ``fgvc push``.

The folder follows the Hugging Face Hub convention for models:

- ``model.safetensors`` — the weights (the checkpoint's state dict; reading safetensors runs no code);
- ``config.json`` — what rebuilds and feeds the model: the resolved fgvc config, the class names, their
  taxonomy where the dataset has one, the evaluation preprocessing, the metadata the model reads, and the
  figures of the run's report;
- ``README.md`` — the model card: method, backbone, data and splits, validation and test figures, the
  command that trains it again, how to use it, what it is for and what it is not;
- ``occurrences.safetensors`` — where the training split saw each class (``fgvc predict --region``),
  when the data had locations.

Reading a folder gives back the checkpoint it was written from (``read_folder``), so everything that
loads a checkpoint loads a folder — with bit-identical weights. ``hf://owner/name[@revision]`` is fetched
through ``huggingface_hub``'s cache first (``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` apply as for any hub
model). The architecture comes from the config, never from code in the folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
import yaml

from fgvc.deploy.export import deployment_info, load_for_export
from fgvc.deploy.source import (CARD, CONFIG, FILES, FORMAT, OCCURRENCES, PREFIX, WEIGHTS,
                                is_hub_source, read_folder, resolve)
from fgvc.engine.inference import model_from_checkpoint
from fgvc.errors import FgvcError
from fgvc.methods import METHODS
from fgvc.version import __version__

log = logging.getLogger(__name__)

__all__ = ["CARD", "CONFIG", "FILES", "FORMAT", "OCCURRENCES", "PREFIX", "WEIGHTS", "export_hub",
           "is_hub_source", "load_model", "model_card", "push", "read_folder", "resolve"]


# --- writing -------------------------------------------------------------------------------------

def find_report(checkpoint: str | Path) -> Path | None:
    """The run's ``report.json``: runs/<name>/report.json for runs/<name>/checkpoints/<file>.pt."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    report = run_dir / "report.json"
    return report if report.is_file() else None


def results_from_report(report: dict) -> dict:
    """The figures the card and ``config.json`` carry: best validation top-1 and the test metrics."""
    split = (report.get("protocol") or {}).get("evaluated_split", "test")
    metrics = report.get(split) or {}
    keep = ("top1", "top5", "mean_per_class", "num_samples", "rules", "per_dataset", "mean_over_datasets")
    return {"val": {"top1": report.get("best_val_top1"), "best_epoch": report.get("best_epoch")},
            split: {k: metrics[k] for k in keep if k in metrics},
            "protocol": {k: v for k, v in (report.get("protocol") or {}).items()
                         if k in ("splits", "counts", "seed", "holdouts", "evaluated_split", "tta",
                                  "metadata", "missing_metadata")},
            "dataset": report.get("dataset"), "name": report.get("name")}


def hub_config(ckpt: dict, cfg, checkpoint: str | Path, results: dict | None) -> dict:
    """``config.json``: the resolved config, classes, taxonomy, preprocessing, inputs and figures."""
    info = deployment_info(ckpt, cfg, checkpoint, cfg.data.image_size)
    return {
        "format": FORMAT, "library_name": "fgvc", "fgvc_version": __version__,
        "architecture": {"backbone": cfg.model.backbone, "head": cfg.model.head,
                         "fusion": cfg.model.fusion.name, "method": cfg.method.name},
        "classes": info["classes"], "taxonomy": ckpt.get("taxonomy") or {},
        "dataset": ckpt.get("dataset"), "groups": ckpt.get("groups"),
        "preprocessing": info["preprocessing"], "inputs": info["inputs"], "outputs": info["outputs"],
        "results": results, "config": cfg.model_dump(mode="json"),
    }


def export_hub(checkpoint: str | Path, out_dir: str | Path, report: str | Path | None = None) -> Path:
    """Write ``out_dir/{model.safetensors, config.json, README.md}`` for an fgvc checkpoint.

    ``report``: the run's ``report.json`` (default: found beside the checkpoint's run folder); without
    one, the card says it has no figures rather than inventing any.
    """
    from safetensors.torch import save_file

    ckpt, cfg, model = load_for_export(checkpoint)  # rebuilds the model: the weights are known to load
    from_folder = "hub" in ckpt  # a hub folder written again (e.g. from hf://): its figures come along
    report_path = Path(report) if report else None if from_folder else find_report(checkpoint)
    if report_path is not None and not report_path.is_file():
        raise FgvcError(f"--report {report_path}: file not found")
    results = (results_from_report(json.loads(report_path.read_text())) if report_path
               else ckpt["hub"]["results"] if from_folder else None)
    if results is None:
        log.warning("no report.json beside %s: the model card will carry no figures (pass --report)", checkpoint)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # clone: tensors that share storage (tied weights) are each written whole; safetensors refuses aliases
    state = {k: v.detach().cpu().clone().contiguous() for k, v in ckpt["model"].items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "fgvc": __version__})
    occurrences = ckpt.get("occurrences")
    if occurrences and len(occurrences["label"]):  # the training locations, for --region
        save_file({k: v.contiguous() for k, v in occurrences.items()}, str(out / OCCURRENCES))
    config = hub_config(ckpt, cfg, checkpoint, results)
    config["parameters"] = sum(p.numel() for p in model.parameters())
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    (out / CARD).write_text(model_card(config))
    return out


# --- the model card ------------------------------------------------------------------------------

def _method_line(config: dict) -> str:
    cfg, arch = config["config"], config["architecture"]
    method, fusion = METHODS.get(arch["method"]), arch["fusion"]
    line = method.card(cfg) if method is not None else None
    if line:
        return line
    if fusion != "none":
        return (f"geo-temporal fusion `{fusion}` of the image feature with the location/date encoding "
                "(Dynamic MLP and its baselines)")
    return "supervised, image only"


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _results_section(results: dict | None) -> list[str]:
    if not results:
        return ["No run report was given or found beside the checkpoint, so this card states no accuracy. "
                "Evaluate the model with `fgvc evaluate` before relying on it.", ""]
    protocol = results.get("protocol", {})
    split = protocol.get("evaluated_split", "test")
    test, val = results.get(split, {}), results.get("val", {})
    lines = ["| split | top-1 | top-5 | mean per-class | images |", "|---|---|---|---|---|",
             f"| validation (best epoch {val.get('best_epoch')}) | {_figure(val.get('top1'))} | | | "
             f"{protocol.get('counts', {}).get('val', '')} |",
             f"| {split} | {_figure(test.get('top1'))} | {_figure(test.get('top5'))} | "
             f"{_figure(test.get('mean_per_class'))} | {test.get('num_samples', '')} |", ""]
    if test.get("rules"):
        lines += ["Prediction rules on the test split (the first is the headline figure; this folder's "
                  "PyTorch model computes all of them, an ONNX export gives the first):", ""]
        lines += [f"- `{name}`: top-1 {_figure(r.get('top1'))}" for name, r in test["rules"].items()] + [""]
    lines += [f"Accuracy in %, single centre crop ({protocol.get('tta', 'single centre crop')}), from the run's "
              "report; the model was selected on the validation split, and the test split was used once."
              , ""]
    return lines


def _splits_section(config: dict) -> list[str]:
    results = config.get("results") or {}
    protocol = results.get("protocol", {})
    data = config["config"]["data"]
    lines = [f"Dataset **{config.get('dataset') or data.get('format')}** (format `{data.get('format')}`), "
             f"{len(config['classes'])} classes."]
    for role, desc in (protocol.get("splits") or {}).items():
        lines.append(f"- {role}: {desc} — {protocol.get('counts', {}).get(role, '?')} images")
    for role, h in (protocol.get("holdouts") or {}).items():
        lines.append(f"- {role} hold-out: {h['fraction']:.0%} of the training images, stratified by class, "
                     f"seed {h['seed']}")
    if protocol.get("seed") is not None:
        lines.append(f"- training seed {protocol['seed']}")
    return lines + [""]


def _front_matter(config: dict) -> str:
    arch, results = config["architecture"], config.get("results") or {}
    meta = {"library_name": "fgvc", "pipeline_tag": "image-classification",
            "tags": ["fgvc", "fine-grained-classification", arch["backbone"], arch["method"]]
            + ([f"fusion-{arch['fusion']}"] if arch["fusion"] != "none" else [])}
    split = results.get("protocol", {}).get("evaluated_split", "test")
    if results.get(split, {}).get("top1") is not None:
        meta["model-index"] = [{"name": results.get("name") or arch["backbone"], "results": [{
            "task": {"type": "image-classification"},
            "dataset": {"name": str(config.get("dataset")), "type": str(config["config"]["data"]["format"]),
                        "split": split},
            "metrics": [{"type": "accuracy", "name": f"{split} top-1", "value": round(results[split]["top1"], 2)}]
            + ([{"type": "accuracy", "name": f"{split} top-5", "value": round(results[split]["top5"], 2)}]
               if results[split].get("top5") is not None else [])}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def model_card(config: dict, source: str = "hf://OWNER/NAME") -> str:
    """``README.md`` of a hub folder, from its ``config.json`` (figures only from the run's report);
    ``source``: where the usage examples load it from (``fgvc push`` puts the repository's id there)."""
    arch, cfg = config["architecture"], config["config"]
    inputs, prep = config["inputs"], config["preprocessing"]
    name = (config.get("results") or {}).get("name") or cfg.get("name") or "fgvc model"
    reads = inputs.get("meta", {}).get("use") or []
    example = ' --lat 45.5 --lon -73.6 --date 2021-06-01' if reads else ""
    lines = [_front_matter(config), f"# {name}", "",
             f"A fine-grained image classifier trained with [fgvc](https://pypi.org/project/fgvc/) "
             f"{config['fgvc_version']}: {_method_line(config)}.", "",
             "## Model", "",
             f"- backbone `{arch['backbone']}`, head `{arch['head']}`, fusion `{arch['fusion']}`, "
             f"method `{arch['method']}`; {config.get('parameters', 0) / 1e6:.2f} M parameters",
             f"- input: RGB, {prep['centre_crop']} x {prep['centre_crop']} px centre crop after "
             + (f"a square resize to {prep['resize_square']} px" if "resize_square" in prep
                else f"resizing the short side to {prep['resize_short_side']} px")
             + f", normalised with mean {prep['mean']} and std {prep['std']}",
             "- reads " + (f"metadata {' + '.join(reads)} (location and/or date, encoded as in fgvc's "
                           "`encode_metadata`; missing values are zeros)" if reads else "the image only"),
             "", "## Data and splits", "", *_splits_section(config),
             "## Results", "", *_results_section(config.get("results")),
             "## Training", "",
             "Trains again with `fgvc train config.yaml`, where `config.yaml` is the resolved configuration "
             "below (the `config` entry of `config.json`):", "",
             "<details><summary>config.yaml</summary>", "", "```yaml",
             yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "", "</details>", "",
             "## Use", "", "```python", "import fgvc", "", f'model = fgvc.load("{source}")  # or the local folder',
             "```", "", "```bash", f"fgvc predict --checkpoint {source} photo.jpg{example}",
             f"fgvc export --checkpoint {source} --format onnx --quantize int8", "```", "",
             "## Intended use and limits", "",
             f"- It names one of the {len(config['classes'])} classes it was trained on, always: an image of "
             "anything else still gets one of them. Check the probabilities, not only the top-1.",
             "- The figures above hold for images like the test split's; photos from other cameras, regions, "
             "seasons or framing can score far lower. Evaluate on your own data (`fgvc evaluate`).",
             ]
    if reads:
        lines.append("- Location and date shift the prediction towards what lives there then; a wrong or "
                     "captive-animal location misleads it (leave the metadata out then).")
    if str(cfg["data"].get("format")) == "inat2021" and "synthetic" in str(cfg["data"].get("root", "")):
        lines.append("- Trained on fgvc's procedurally generated benchmark: a demonstration, not a model of "
                     "real species.")
    lines.append("- Not for decisions about people, or where a wrong identification is costly without review "
                 "by an expert.")
    return "\n".join(lines) + "\n"


# --- reading -------------------------------------------------------------------------------------

def load_model(source: str | Path, cache_dir: str | Path | None = None) -> tuple[dict, object, torch.nn.Module]:
    """``(checkpoint dict, config, model in eval mode)`` of a hub folder or ``hf://`` id."""
    ckpt = read_folder(source, cache_dir)
    cfg, model = model_from_checkpoint(ckpt, len(ckpt["classes"]))
    return ckpt, cfg, model.eval()


# --- uploading -----------------------------------------------------------------------------------

def push(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None,
         message: str | None = None) -> str:
    """Upload a hub folder to ``owner/name`` on the Hugging Face Hub (created if absent); the commit URL.

    Needs a token: ``token``, ``HF_TOKEN`` or ``hf auth login``.
    """
    folder = resolve(folder)
    if not (folder / CARD).is_file():
        raise FgvcError(f"{folder}: no {CARD} (model card); write the folder with `fgvc export --format hub`")
    if repo_id.startswith(PREFIX):
        repo_id = repo_id[len(PREFIX):]
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise FgvcError(f"{repo_id}: expected owner/name")
    try:
        from huggingface_hub import HfApi, get_token
    except ImportError:
        raise FgvcError("fgvc push needs huggingface_hub (pip install 'fgvc[hub]')") from None
    token = token or get_token()
    if not token:
        raise FgvcError("no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access)")
    card = folder / CARD
    config = json.loads((folder / CONFIG).read_text())
    if card.read_text() == model_card(config):  # the card as exported: name the repository in its examples
        card.write_text(model_card(config, f"{PREFIX}{repo_id}"))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   allow_patterns=list(FILES),
                                   commit_message=message or f"fgvc {__version__}: model, config and card")
    except Exception as exc:  # HTTP errors, auth, network: the hub's first line says which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise FgvcError(f"upload to {repo_id} failed: {first}") from None
    return str(getattr(commit, "commit_url", commit))
