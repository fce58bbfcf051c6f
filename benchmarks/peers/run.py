"""The authors' released training scripts beside fgvc, on the same synthetic split.

For each seed: fgvc trains from ``benchmarks/peers/<method>.yaml`` (the release's recipe at the
benchmark's size), then a fresh copy of the release — read from the clone given with ``--release``,
never vendored — is patched in the open (CPU, data paths, image size, epochs, batch, learning rates,
a seed, the start; the patch is printed) and runs its own ``train.py``/``main.py`` on the same images:
fgvc's training split as its train folder, fgvc's test split as its test folder. ``--start same``
(default) gives the release fgvc's initial weights, after checking that both networks then compute
the same outputs; ``--start random`` lets the release initialise itself.

Printed: test top-1 of the release as it selects it (the best epoch on the test set) and at its last
epoch, fgvc's as fgvc selects it (the best epoch on a validation hold-out of train), and seconds per
training epoch (median over epochs) of both.

    python benchmarks/peers/run.py pmg --release /path/to/PMG-Progressive-Multi-Granularity-Training
    python benchmarks/peers/run.py rmg_pmsi --release /path/to/Progressive-Multi-stage-...-FGVC
        [--seeds 0 1 2] [--start same|random] [--data DIR] [--out runs/peers] [key=value ...]

Seeds run in separate invocations (``--seeds 0``, then ``--seeds 1 2``) with the same settings and
``--out`` add up to one table: ``results.json`` keeps the other seeds' rows.

Extra ``key=value`` pairs override the fgvc config (and, through it, the patch): e.g.
``schedule.epochs=1`` for a quick check. The synthetic data is written on first use (``fgvc data synth``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fgvc.cli.threads import thread_policy

thread_policy()  # this process and both sides' children wait alike: their seconds compare like with like
import torch  # noqa: E402  (after the thread policy: it is read when OpenMP starts)

from common import PeerError, apply_edits, copy_release  # noqa: E402

from fgvc.checkpoint import load_checkpoint
from fgvc.config import load_config
from fgvc.data.records import Splits
from fgvc.data.splits import prepare_splits
from fgvc.engine.inference import model_from_checkpoint
from fgvc.engine.run import evaluate_checkpoint

HERE = Path(__file__).resolve().parent
PEERS = ("pmg", "rmg_pmsi")


def fgvc_overrides(args, seed: int, out: Path) -> list[str]:
    return [f"data.root={args.data}", f"seed={seed}", f"name={args.method}_seed{seed}", f"output_dir={out}",
            "train.keep_epoch_checkpoints=true", "train.progress=false", *args.overrides]


def check_recipe(cfg, recipe: dict) -> None:
    """The fgvc side must train with what the release hard-codes."""
    wrong = []
    for key, want in recipe.items():
        got = cfg
        for part in key.split("."):
            got = getattr(got, part)
        if (tuple(got) if isinstance(got, (list, tuple)) else got) != want:
            wrong.append(f"{key}={got!r} (the release: {want!r})")
    if wrong:
        raise PeerError("the fgvc config differs from the release's recipe: " + ", ".join(wrong))


def write_image_folders(splits: Splits, root: Path) -> dict[str, Path]:
    """``root/{train,test}/<label>/`` links to the split's image files; labels zero-padded, so the
    release's ImageFolder numbers the classes as fgvc does."""
    width = len(str(len(splits.classes)))
    folders = {}
    for role in ("train", "test"):
        folder = root / role
        for i, sample in enumerate(splits.samples(role)):
            if sample.row is not None or sample.trim_bottom or sample.box:
                raise PeerError(f"{sample.path}: the releases read whole image files; this dataset's samples are not")
            link = folder / f"{sample.label:0{width}d}" / f"{i:06d}{Path(sample.path).suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path(sample.path).resolve())
        for label in range(len(splits.classes)):  # ImageFolder needs every class, even without images here
            (folder / f"{label:0{width}d}").mkdir(parents=True, exist_ok=True)
        folders[role] = folder
    return folders


def run_logged(cmd: list[str], cwd: Path, log: Path) -> str:
    """Run ``cmd``, streaming its output into ``log``; stop with its last lines if it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    text = log.read_text()
    if code:
        tail = "\n".join(text.splitlines()[-15:])
        raise PeerError(f"{' '.join(cmd[:3])} ... failed (exit {code}) in {cwd}; last lines of {log}:\n{tail}")
    return text


def run_fgvc(args, cfg, cfg_path: Path, overrides: list[str], run_dir: Path, log: Path) -> dict:
    cmd = [sys.executable, "-m", "fgvc", "-q", "train", str(cfg_path), *overrides, "--overwrite"]
    run_logged(cmd, Path.cwd(), log)
    for path in (run_dir / "checkpoints").glob("epoch_*.pt"):  # only the start is needed (same_start)
        if path.name != "epoch_000.pt":
            path.unlink()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    report = json.loads((run_dir / "report.json").read_text())
    rules = report["test"]["rules"]
    last = last_epoch_rules(cfg, run_dir)
    return {"concat": rules["concat"]["top1"], "mix": rules["mix"]["top1"], "best_epoch": report["best_epoch"],
            "last_concat": last["concat"]["top1"], "last_mix": last["mix"]["top1"],
            "seconds": statistics.median(r["epoch_time_s"] for r in rows), "epochs": len(rows)}


def last_epoch_rules(cfg, run_dir: Path) -> dict:
    """fgvc's last epoch on test, the release's second figure (``report_last_epoch.md`` beside the run's
    report of its selected epoch)."""
    report = evaluate_checkpoint(cfg, run_dir / "checkpoints" / "last.pt", split="test", stem="report_last_epoch")
    return report["test"]["rules"]


def same_start(peer, release: Path, cfg, num_classes: int, path: Path) -> None:
    """Write fgvc's initial weights to ``path`` in the (patched) release's names, after checking that
    both networks compute the same outputs with them."""
    ckpt = load_checkpoint(cfg.run_dir / "checkpoints" / "epoch_000.pt")
    _, ours = model_from_checkpoint(ckpt, num_classes)
    theirs = peer.network(release, cfg, num_classes)
    state = theirs.state_dict()
    own = ours.state_dict()
    named = {peer.release_key(k): v for k, v in own.items() if peer.release_key(k) is not None}
    backbone = [v for k, v in own.items() if peer.release_key(k) is None]  # matched by order
    their_backbone = [k for k in state if k.startswith("features.") and k not in named]
    for key, value in [*named.items(), *zip(their_backbone, backbone)]:
        if key not in state or state[key].shape != value.shape:
            raise PeerError(f"fgvc's {peer.TITLE} network does not map onto the release's at {key}")
        state[key] = value.clone()
    if len(backbone) > len(their_backbone):
        raise PeerError("the release's backbone has fewer tensors than fgvc's")
    theirs.load_state_dict(state)
    images = torch.randn(4, 3, cfg.data.image_size, cfg.data.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = max(float((a - b).abs().max()) for a, b in zip(ours.eval().forward_all(images),
                                                               peer.outputs(theirs.eval(), images)))
    print(f"same start: fgvc's initial weights in the release's network, outputs differ by at most {gap:.2e}")
    if gap > 1e-4:
        raise PeerError(f"the release's network and fgvc's compute different outputs (max |diff| {gap:.2e})")
    torch.save(theirs.state_dict(), path)


def run_release(args, peer, cfg, splits: Splits, folders: dict, seed: int, run_dir: Path, show: bool) -> dict:
    release = run_dir / "release"
    copy_release(args.release, release)
    num_classes = len(splits.classes)
    init = run_dir / "release_init.pt" if args.start == "same" else None
    diff = apply_edits(release, peer.edits(cfg, num_classes, seed, init), peer.COMMIT)
    if init:
        same_start(peer, release, cfg, num_classes, init)
    (run_dir / "release.patch").write_text(diff)
    if show:
        print(f"\nThe patch applied to {peer.TITLE}'s release ({peer.URL}, commit {peer.COMMIT}):\n\n{diff}")
    for place, role in peer.DATA.items():
        (release / place).parent.mkdir(parents=True, exist_ok=True)
        (release / place).symlink_to(folders[role].resolve(), target_is_directory=True)
    for folder in getattr(peer, "FOLDERS", ()):
        (release / folder).mkdir(exist_ok=True)
    log = run_logged([sys.executable, "-u", peer.SCRIPT], release, run_dir / "release.log")
    epochs = peer.results(release, log)
    if len(epochs) != cfg.schedule.epochs:
        raise PeerError(f"read {len(epochs)} epochs from the release's output, expected {cfg.schedule.epochs} "
                        f"({run_dir / 'release.log'})")
    best = max(epochs, key=lambda e: e["mix"])  # both releases keep the epoch of best P_mix on test
    return {"best_concat": max(e["concat"] for e in epochs), "best_mix": best["mix"],
            "last_concat": epochs[-1]["concat"], "last_mix": epochs[-1]["mix"],
            "seconds": statistics.median(e["seconds"] for e in epochs), "epochs": epochs}


def mean_std(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(peer, rows: list[dict]) -> str:
    head = ("| seed | release: best test P_concat | best test P_mix | last-epoch P_concat | last-epoch P_mix "
            "| fgvc: test P_concat (best val epoch) | P_mix | fgvc last-epoch P_concat | last-epoch P_mix "
            "| release s/epoch | fgvc s/epoch |")
    lines = [head, "|" + " --- |" * 11]
    keys = [("release", "best_concat"), ("release", "best_mix"), ("release", "last_concat"), ("release", "last_mix"),
            ("fgvc", "concat"), ("fgvc", "mix"), ("fgvc", "last_concat"), ("fgvc", "last_mix"),
            ("release", "seconds"), ("fgvc", "seconds")]
    for row in rows:  # rows of an older runner may lack fgvc's last epoch: left empty
        lines.append(f"| {row['seed']} | " + " | ".join(f"{row[a][b]:.2f}" if b in row[a] else "" for a, b in keys)
                     + " |")
    if len(rows) > 1:
        lines.append("| mean ± std | " + " | ".join(mean_std([r[a][b] for r in rows if b in r[a]]) for a, b in keys)
                     + " |")
    return "\n".join(lines)


def earlier_rows(path: Path, args) -> list[dict]:
    """The rows of ``results.json`` from earlier runs with the same method, start and overrides, for the
    seeds this run does not repeat: seeds may be run one invocation at a time into one table."""
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if [old.get(key) for key in ("method", "start", "overrides")] != [args.method, args.start, args.overrides]:
        print(f"{path}: written with other settings, replaced")
        return []
    rows = [row for row in old["rows"] if row["seed"] not in args.seeds]
    if rows:
        print(f"kept from {path}: seed(s) {', '.join(str(row['seed']) for row in rows)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("method", choices=PEERS)
    parser.add_argument("--release", type=Path, required=True, help="a clone of the authors' repository")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start", choices=("same", "random"), default="same",
                        help="same: the release starts from fgvc's initial weights; random: from its own init")
    parser.add_argument("--data", type=Path, default=Path("~/.cache/fgvc/synthetic/inat").expanduser(),
                        help="the synthetic iNat-format set (written with `fgvc data synth` if missing)")
    parser.add_argument("--out", type=Path, default=Path("runs/peers"))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="fgvc config overrides")
    args = parser.parse_intermixed_args(argv)
    args.release, args.out = args.release.resolve(), args.out.resolve() / args.method
    peer = importlib.import_module(args.method)
    config = HERE / f"{args.method}.yaml"
    try:
        if not (args.data / "train.json").exists():
            print(f"writing the synthetic benchmark into {args.data.parent} (fgvc data synth)")
            subprocess.run([sys.executable, "-m", "fgvc", "-q", "data", "synth", str(args.data.parent)], check=True,
                           stdout=subprocess.DEVNULL)
        splits = prepare_splits(load_config(config, fgvc_overrides(args, 0, args.out)).data)
        shutil.rmtree(args.out / "data", ignore_errors=True)
        folders = write_image_folders(splits, args.out / "data")
        print(f"{peer.TITLE}: {len(splits.train)} training and {len(splits.test)} test images, "
              f"{len(splits.classes)} classes ({splits.names})")
        rows = earlier_rows(args.out / "results.json", args)
        for i, seed in enumerate(args.seeds):
            overrides = fgvc_overrides(args, seed, args.out / "fgvc")
            if hasattr(peer, "cosine_epochs"):
                cfg = load_config(config, overrides)
                overrides.append(f"schedule.cosine_epochs={peer.cosine_epochs(cfg, len(splits.train))}")
            cfg = load_config(config, overrides)
            check_recipe(cfg, peer.RECIPE)
            run_dir = cfg.run_dir
            start = time.perf_counter()
            ours = run_fgvc(args, cfg, config, overrides, run_dir, args.out / f"fgvc_seed{seed}.log")
            print(f"seed {seed}: fgvc done in {time.perf_counter() - start:.0f} s, test top-1 {ours['concat']:.2f}")
            start = time.perf_counter()
            theirs = run_release(args, peer, cfg, splits, folders, seed, args.out / f"release_seed{seed}", i == 0)
            print(f"seed {seed}: release done in {time.perf_counter() - start:.0f} s, test top-1 best "
                  f"{theirs['best_concat']:.2f}, last {theirs['last_concat']:.2f}")
            rows.append({"seed": seed, "fgvc": ours, "release": theirs})
            rows.sort(key=lambda row: row["seed"])
            (args.out / "results.json").write_text(json.dumps({"method": args.method, "start": args.start,
                                                               "overrides": args.overrides, "rows": rows}, indent=1))
    except PeerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = table(peer, rows)
    (args.out / "results.md").write_text(text + "\n")
    print(f"\n{peer.TITLE}, release vs fgvc ({cfg.schedule.epochs} epochs, start: {args.start}); "
          f"test top-1 in %, seconds per training epoch (median over epochs):\n\n{text}\n\n"
          f"Written: {args.out / 'results.md'}, {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
