"""A whole run: train, evaluate the best checkpoint on test once, write the report."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from torch import nn

from fgvc.checkpoint import load_checkpoint
from fgvc.config import Config
from fgvc.data.records import Splits
from fgvc.data.splits import holdout_seed, prepare_splits
from fgvc.engine.distributed import init_distributed, run_on_main
from fgvc.engine.evaluate import evaluate, predict_loader
from fgvc.engine.inference import eval_loader, load_for_eval, model_from_checkpoint
from fgvc.engine.report import write_report
from fgvc.engine.trainer import Trainer, prepare_run_dir, resolve_device, setup_file_logging
from fgvc.engine.tta import evaluate_tta, wants_tta
from fgvc.errors import FgvcError
from fgvc.methods import Method, build_method, method_class
from fgvc.metrics import classification_metrics

log = logging.getLogger(__name__)


def _holdouts(cfg: Config, splits: Splits) -> dict:
    """Fraction and seed of each split carved out of train as a stratified hold-out (see prepare_splits)."""
    fractions = {"val": cfg.data.val_fraction, "test": cfg.data.test_fraction}
    return {role: {"fraction": fraction, "seed": holdout_seed(cfg.data, role)} for role, fraction in fractions.items()
            if "hold-out" in splits.names.get(role, "")}


def _protocol(cfg: Config, splits: Splits, evaluated: str, missing: int | None) -> dict:
    counts = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    return {"splits": splits.names, "counts": counts, "seed": cfg.seed, "evaluated_split": evaluated,
            "holdouts": _holdouts(cfg, splits),
            "tta": "single centre crop", "metadata": cfg.data.metadata,
            "missing_metadata": missing if cfg.data.metadata else None}


def _report(cfg: Config, splits: Splits, model: torch.nn.Module, metrics: dict, split: str,
            missing: int | None, state: dict | None = None, epochs: list[dict] | None = None) -> dict:
    return {"name": cfg.name, "dataset": splits.source.name, "model": cfg.model.backbone,
            "method": cfg.method.name, "params_m": _parameters(model) / 1e6,
            "best_epoch": (state or {}).get("best_epoch", -1) + 1, "best_val_top1": (state or {}).get("best_top1"),
            "protocol": _protocol(cfg, splits, split, missing), split: metrics, "epochs": epochs or []}


def _parameters(model: torch.nn.Module) -> int:
    """Parameter count; a model run outside PyTorch (an exported file) states its own."""
    return getattr(model, "num_parameters", None) or sum(p.numel() for p in model.parameters())


def train_and_report(cfg: Config, overwrite: bool = False) -> dict:
    """The run of any config: train, evaluate best.pt on test, write the report. Under ``torchrun`` every
    process runs this; rank 0 alone writes the run folder and the report. A method that trains no image
    model (``Method.trains_model``) fits its own instead and is evaluated on top of its base checkpoint."""
    if not method_class(cfg).trains_model:
        return _fit_and_report(cfg, overwrite)
    ctx = init_distributed(cfg.train.device)
    run_dir = run_on_main(ctx, prepare_run_dir, cfg, overwrite)
    if ctx.is_main:
        setup_file_logging(run_dir)
    trainer = Trainer(cfg)
    log.info("run folder %s; %d classes; train %d / val %d / test %d images; device %s",
             run_dir, trainer.num_classes, len(trainer.splits.train), len(trainer.splits.val),
             len(trainer.splits.test), trainer.device)
    state = trainer.fit()
    epochs = trainer.metrics.rows()
    report = evaluate_checkpoint(cfg, run_dir / "checkpoints" / "best.pt", splits=trainer.splits,
                                 write=False)
    report |= {"best_epoch": state.best_epoch + 1, "best_val_top1": state.best_top1, "epochs": epochs}
    if ctx.is_main:
        write_report(run_dir, report, trainer.splits.classes)
    return report


train_priors_and_report = train_and_report  # compatibility: priors runs through train_and_report


def _fit_and_report(cfg: Config, overwrite: bool = False) -> dict:
    """A method that fits a small model of its own in seconds (PriorsNet on metadata): under
    ``torchrun`` rank 0 does all of it alone."""
    ctx = init_distributed(cfg.train.device)
    if ctx.enabled:
        return run_on_main(ctx, _fit_alone, cfg, overwrite)
    return _fit_alone(cfg, overwrite)


def _fit_alone(cfg: Config, overwrite: bool = False) -> dict:
    run_dir = prepare_run_dir(cfg, overwrite)
    setup_file_logging(run_dir)
    splits = prepare_splits(cfg.data)
    method = build_method(cfg, len(splits.classes))
    fitted = method.fit(splits, run_dir / "checkpoints", progress=cfg.train.progress)
    val = evaluate_adjusted(cfg, method, split="val", splits=splits)
    test = evaluate_adjusted(cfg, method, split="test", splits=splits)
    report = {"name": cfg.name, "dataset": splits.source.name, "model": fitted["model"],
              "method": cfg.method.name, "params_m": fitted["params_m"], "best_epoch": fitted["epochs"],
              "best_val_top1": val["adjusted"]["top1"],
              "protocol": _protocol(cfg, splits, "test", test["missing_metadata"]),
              "test": test["adjusted"], "image_only": {"test": test["image"], "val": val["image"]},
              "epochs": []}
    write_report(run_dir, report, splits.classes)
    return report


class _IndexRecorder:
    """Wraps a method so that ``predict_loader``'s rows can be matched to samples (skipped images too)."""

    def __init__(self, method):
        self.method, self.indices = method, []

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        self.indices.append(torch.as_tensor(batch["index"]).cpu())
        return self.method.predict(model, batch)


def evaluate_adjusted(cfg: Config, method: Method, split: str = "test", splits: Splits | None = None) -> dict:
    """Top-k on a split of ``cfg.data`` of ``method.base_checkpoint()`` (an image model), without and with
    the method's adjustment (``method.adjust``: e.g. PriorsNet's prior multiplied in).

    The image model is rebuilt from the checkpoint's own config (``cfg`` supplies the data, device
    and precision). Returns ``{"split", "num_samples", "missing_metadata", "image": metrics,
    "adjusted": metrics}`` with the metrics of ``classification_metrics``; ``missing_metadata``
    counts the samples the method could not adjust.
    """
    splits = splits or prepare_splits(cfg.data)
    classes = list(splits.classes)
    image_checkpoint = method.base_checkpoint()
    ckpt = load_checkpoint(image_checkpoint)
    names = ckpt.get("classes")
    if names and list(names) != classes:
        raise FgvcError(f"image checkpoint was trained on {len(names)} other classes, not the {len(classes)} "
                        f"classes of '{splits.source.name}'")
    method.check_classes(classes, splits.source.name)
    device = resolve_device(cfg.train.device)
    model_cfg, model = model_from_checkpoint(ckpt, len(classes), cfg)
    model.to(device)

    samples = splits.samples(split)
    data_cfg = cfg.data.model_copy(update={"metadata": model_cfg.data.metadata})  # what the model reads
    loader = eval_loader(data_cfg, samples)
    recorder = _IndexRecorder(build_method(model_cfg, len(classes)))
    amp = device.type == "cuda" if cfg.train.amp is None else cfg.train.amp
    skipped: list[str] = []
    image_logits, labels = predict_loader(model, recorder, loader, device, amp=amp, skipped=skipped,
                                          desc=f"{split} (image)", progress=cfg.train.progress)
    index = torch.cat(recorder.indices) if recorder.indices else torch.zeros(0, dtype=torch.long)
    adjusted, missing = method.adjust(image_logits, samples, index, device=device)
    k = cfg.eval.topk
    counts = {"num_images": len(labels) + len(skipped), "skipped": skipped}  # unreadable images, skipped
    result = {"split": split, "num_samples": len(labels), "missing_metadata": missing,
              "image": classification_metrics(image_logits, labels, len(classes), k) | counts,
              "adjusted": classification_metrics(adjusted, labels, len(classes), k) | counts}
    log.info("%s: top-1 %.2f image only, %.2f with method.name=%s (%d samples not adjusted)", split,
             result["image"]["top1"], result["adjusted"]["top1"], cfg.method.name, missing)
    return result


def _relative_to_run(cfg: Config, path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(cfg.run_dir.resolve()))
    except ValueError:
        return str(path)


def evaluate_checkpoint(cfg: Config, checkpoint: str | Path, split: str = "test",
                        splits: Splits | None = None, write: bool = True,
                        ensemble: Sequence[str | Path] = (), load: Callable = load_for_eval,
                        stem: str | None = None) -> dict:
    """Evaluate a checkpoint on one split of the config's dataset; by default writes the report.

    With ``eval.hflip`` / ``eval.tta_scales`` / ``eval.ten_crop`` or further ``ensemble`` checkpoints,
    ``report["tta"]`` holds the TTA and ensemble rows (``fgvc.engine.tta``); the headline metrics stay
    this checkpoint's single centre crop. ``load(cfg, path, classes) -> LoadedModel`` reads each model
    (``fgvc.deploy.model.load_for_eval_any`` also reads exported files and hub folders); ``stem``: the
    report's file name (default ``report`` for test, else ``report_<split>``).
    """
    splits = splits or prepare_splits(cfg.data)
    ckpt, model, method, data_cfg, device = load(cfg, checkpoint, splits.classes)
    ctx = init_distributed(cfg.train.device)  # under torchrun: each rank a strided slice; counts added
    loader = eval_loader(data_cfg, splits.samples(split), rank=ctx.rank, world_size=ctx.world_size)
    metrics = evaluate(model, method, loader, device, len(splits.classes), cfg.eval.topk,
                       groups=splits.groups, progress=cfg.train.progress and ctx.is_main,
                       gather=ctx.gather_object)
    report = _report(cfg, splits, model, metrics, split, loader.dataset.missing_metadata, ckpt.get("state"))
    report["protocol"]["checkpoint"] = _relative_to_run(cfg, checkpoint)
    if wants_tta(cfg.eval) or ensemble:
        report["tta"] = _tta_rows(cfg, splits, split, (model, method, data_cfg, device), ensemble, ctx, load)
        report["protocol"]["ensemble"] = [str(checkpoint), *map(str, ensemble)] if ensemble else None
    if write and ctx.is_main:  # the test figures go into the run's report (keeping its training curves); others beside it
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        previous = cfg.run_dir / "report.json"
        if split == "test" and previous.is_file():
            old = json.loads(previous.read_text())
            report |= {k: old[k] for k in ("epochs", "best_epoch", "best_val_top1") if k in old}
        stem = stem or ("report" if split == "test" else f"report_{split}")
        write_report(cfg.run_dir, report, splits.classes, stem)
    return report


def _tta_rows(cfg: Config, splits: Splits, split: str, first: tuple, ensemble: Sequence[str | Path],
              ctx=None, load: Callable = load_for_eval) -> list[dict]:
    """The TTA table of ``first`` (model, method, data config, device) and the ensemble checkpoints,
    each loaded only when its turn comes; ``ctx``: the DDP context (each rank a slice, counts added)."""
    def members():
        yield first
        for path in ensemble:
            yield load(cfg, path, splits.classes)[1:]

    return evaluate_tta(cfg.eval, splits.samples(split), members(), len(splits.classes), splits.groups,
                        ensemble_size=1 + len(ensemble), progress=cfg.train.progress and (ctx is None or ctx.is_main),
                        gather=ctx.gather_object if ctx is not None else None,
                        loader_options={"rank": ctx.rank, "world_size": ctx.world_size} if ctx is not None else None)
