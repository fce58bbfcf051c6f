"""A whole run: train, evaluate the best checkpoint on test once, write the report."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from fgvc.analysis.report import write_report
from fgvc.config import Config
from fgvc.data.loader import Splits, holdout_seed, make_dataset, make_loader, prepare_splits
from fgvc.engine.checkpoint import load_checkpoint
from fgvc.engine.distributed import init_distributed, run_on_main
from fgvc.engine.evaluate import evaluate, predict_loader
from fgvc.engine.tta import evaluate_tta, wants_tta
from fgvc.engine.trainer import Trainer, prepare_run_dir, resolve_device, setup_file_logging
from fgvc.errors import FgvcError
from fgvc.methods import build_method
from fgvc.models import model_from_checkpoint

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
            "method": cfg.method.name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "best_epoch": (state or {}).get("best_epoch", -1) + 1, "best_val_top1": (state or {}).get("best_top1"),
            "protocol": _protocol(cfg, splits, split, missing), split: metrics, "epochs": epochs or []}


def train_and_report(cfg: Config, overwrite: bool = False) -> dict:
    """Under ``torchrun`` every process runs this; rank 0 alone writes the run folder and the report."""
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


def train_priors_and_report(cfg: Config, overwrite: bool = False) -> dict:
    """PriorsNet: fit the location prior on train metadata, combine with the image model on test.

    A small MLP on metadata that trains in seconds: under ``torchrun`` rank 0 does all of it alone."""
    ctx = init_distributed(cfg.train.device)
    if ctx.enabled:
        return run_on_main(ctx, _train_priors_alone, cfg, overwrite)
    return _train_priors_alone(cfg, overwrite)


def _train_priors_alone(cfg: Config, overwrite: bool = False) -> dict:
    from fgvc.methods.priors import evaluate_with_prior, save_priors, train_priors

    run_dir = prepare_run_dir(cfg, overwrite)
    setup_file_logging(run_dir)
    splits = prepare_splits(cfg.data)
    m = cfg.method
    prior = train_priors(splits.train, len(splits.classes), tuple(cfg.data.metadata), epochs=m.priors_epochs,
                         batch_size=m.priors_batch_size, lr=m.priors_lr, seed=cfg.seed, balance=m.priors_balance,
                         classes=splits.classes, progress=cfg.train.progress)
    save_priors(prior, run_dir / "checkpoints" / "priors.pt")
    val = evaluate_with_prior(cfg, m.image_checkpoint, prior, split="val", splits=splits)
    test = evaluate_with_prior(cfg, m.image_checkpoint, prior, split="test", splits=splits)
    params = sum(p.numel() for p in prior.parameters()) / 1e6
    report = {"name": cfg.name, "dataset": splits.source.name, "model": f"PriorsNet + {m.image_checkpoint}",
              "method": "priors", "params_m": params, "best_epoch": m.priors_epochs,
              "best_val_top1": val["with_prior"]["top1"],
              "protocol": _protocol(cfg, splits, "test", test["missing_metadata"]),
              "test": test["with_prior"], "image_only": {"test": test["image"], "val": val["image"]},
              "epochs": []}
    write_report(run_dir, report, splits.classes)
    return report


def _load_for_eval(cfg: Config, checkpoint: str | Path, splits: Splits):
    """The checkpoint's model on the config's device, its method, and the data config it reads."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("classes") and list(ckpt["classes"]) != list(splits.classes):
        raise FgvcError(f"{checkpoint}: trained on {len(ckpt['classes'])} classes of "
                        f"'{ckpt.get('dataset')}', not the {len(splits.classes)} classes of this dataset")
    device = init_distributed(cfg.train.device).local_device(resolve_device(cfg.train.device))
    model_cfg, model = model_from_checkpoint(ckpt, len(splits.classes), cfg)
    model.to(device)
    log.info("model weights: %s (epoch %s)", checkpoint, (ckpt.get("state") or {}).get("epoch", "?"))
    data_cfg = cfg.data.model_copy(update={"metadata": model_cfg.data.metadata})  # what the model reads
    return ckpt, model, build_method(model_cfg, len(splits.classes)), data_cfg, device


def _eval_loader(data_cfg, splits: Splits, split: str):
    return make_loader(data_cfg, make_dataset(data_cfg, splits.samples(split), train=False), train=False)


def _relative_to_run(cfg: Config, path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(cfg.run_dir.resolve()))
    except ValueError:
        return str(path)


def evaluate_checkpoint(cfg: Config, checkpoint: str | Path, split: str = "test",
                        splits: Splits | None = None, write: bool = True,
                        ensemble: Sequence[str | Path] = ()) -> dict:
    """Evaluate a checkpoint on one split of the config's dataset; by default writes the report.

    With ``eval.hflip`` / ``eval.tta_scales`` / ``eval.ten_crop`` or further ``ensemble`` checkpoints,
    ``report["tta"]`` holds the TTA and ensemble rows (``fgvc.engine.tta``); the headline metrics stay
    this checkpoint's single centre crop.
    """
    splits = splits or prepare_splits(cfg.data)
    ckpt, model, method, data_cfg, device = _load_for_eval(cfg, checkpoint, splits)
    dataset = make_dataset(data_cfg, splits.samples(split), train=False)
    ctx = init_distributed(cfg.train.device)  # under torchrun: each rank a strided slice, gathered
    loader = make_loader(data_cfg, dataset, train=False, rank=ctx.rank, world_size=ctx.world_size)
    metrics = evaluate(model, method, loader, device, len(splits.classes), cfg.eval.topk,
                       groups=splits.groups, progress=cfg.train.progress and ctx.is_main,
                       gather=ctx.gatherer(loader))
    report = _report(cfg, splits, model, metrics, split, dataset.missing_metadata, ckpt.get("state"))
    report["protocol"]["checkpoint"] = _relative_to_run(cfg, checkpoint)
    if wants_tta(cfg.eval) or ensemble:
        report["tta"] = _tta_rows(cfg, splits, split, (model, method, data_cfg, device), ensemble, ctx)
        report["protocol"]["ensemble"] = [str(checkpoint), *map(str, ensemble)] if ensemble else None
    if write and ctx.is_main:  # the test figures go into the run's report (keeping its training curves); others beside it
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        previous = cfg.run_dir / "report.json"
        if split == "test" and previous.is_file():
            old = json.loads(previous.read_text())
            report |= {k: old[k] for k in ("epochs", "best_epoch", "best_val_top1") if k in old}
        write_report(cfg.run_dir, report, splits.classes, "report" if split == "test" else f"report_{split}")
    return report


def _tta_rows(cfg: Config, splits: Splits, split: str, first: tuple, ensemble: Sequence[str | Path],
              ctx=None) -> list[dict]:
    """The TTA table of ``first`` (model, method, data config, device) and the ensemble checkpoints,
    each loaded only when its turn comes; ``ctx``: the DDP context (each rank a slice, gathered)."""
    def members():
        yield first
        for path in ensemble:
            yield _load_for_eval(cfg, path, splits)[1:]

    return evaluate_tta(cfg.eval, splits.samples(split), members(), len(splits.classes), splits.groups,
                        progress=cfg.train.progress and (ctx is None or ctx.is_main),
                        gather=ctx.gather_outputs if ctx is not None else None,
                        loader_options={"rank": ctx.rank, "world_size": ctx.world_size} if ctx is not None else None)


def predict_split(cfg: Config, checkpoint: str | Path, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's primary logits ``[N, C]`` and the labels on one split, in the split's order."""
    splits = prepare_splits(cfg.data)
    _, model, method, data_cfg, device = _load_for_eval(cfg, checkpoint, splits)
    loader = _eval_loader(data_cfg, splits, split)
    return predict_loader(model, method, loader, device, progress=cfg.train.progress)


def analyse_features(cfg: Config, checkpoint: str | Path, split: str = "test") -> dict:
    """Cluster metrics per dataset, MMD between datasets, complexity and t-SNE, into ``features_<split>/``."""
    from fgvc.analysis.features import analyse

    splits = prepare_splits(cfg.data)
    _, model, _, data_cfg, device = _load_for_eval(cfg, checkpoint, splits)
    loader = _eval_loader(data_cfg, splits, split)
    return analyse(model, loader, device, splits.groups, data_cfg.image_size, cfg.run_dir / f"features_{split}")


def evaluate_robustness(cfg: Config, checkpoint: str | Path, corruptions: list[str], split: str = "test") -> dict:
    """Clean accuracy, then every severity of each corruption; writes ``report_robustness.{md,json}``."""
    from fgvc.analysis.report import markdown_table
    from fgvc.analysis.robustness import SEVERITIES, corrupted_loader, corrupted_transform, robustness_rows

    splits = prepare_splits(cfg.data)
    _, model, method, data_cfg, device = _load_for_eval(cfg, checkpoint, splits)
    dataset = make_dataset(data_cfg, splits.samples(split), train=False)
    run = dict(device=device, num_classes=len(splits.classes), topk=cfg.eval.topk, progress=cfg.train.progress)
    clean = evaluate(model, method, make_loader(data_cfg, dataset, train=False), desc="clean", **run)
    results = {}
    for name in corruptions:
        for severity in SEVERITIES[name]:
            transform = corrupted_transform(data_cfg.image_size, data_cfg.crop_pct, name, severity, data_cfg.resize)
            loader = corrupted_loader(dataset, transform, data_cfg.eval_batch_size or 2 * data_cfg.batch_size,
                                      data_cfg.num_workers)
            results[(name, severity)] = evaluate(model, method, loader, desc=f"{name} {severity}", **run)
            log.info("%s %s: top-1 %.2f (clean %.2f)", name, severity, results[(name, severity)]["top1"],
                     clean["top1"])
    rows = robustness_rows(clean, results)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "report_robustness.json").write_text(json.dumps(
        {"checkpoint": str(checkpoint), "split": split, "rows": rows}, indent=2))
    (cfg.run_dir / "report_robustness.md").write_text("\n".join([
        f"# {cfg.name}: robustness on {split}", "", f"Checkpoint `{checkpoint}`; drop = clean top-1 minus "
        "corrupted top-1. Colour jitter: brightness, contrast and saturation factors in [1-s, 1+s]; "
        "Gaussian noise: σ on [0, 1] pixels. One fixed draw per image.", "", markdown_table(rows), ""]))
    return {"split": split, "rows": rows}
