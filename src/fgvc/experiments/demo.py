"""``fgvc demo``: the synthetic benchmark on the CPU, one report with a section per method.

Every run is a config shipped with the package (``fgvc/configs/<method>/synthetic/``, the repository's
``configs/``) loaded with a few overrides — run name, seed, output folder, the benchmark's folder and,
for the random-start rows, ``model.pretrained=null`` — so ``fgvc train <that config> <those
overrides>`` reproduces any row. Each section compares a method with its baselines twice: on the plain
benchmark and on the benchmark with that method's mechanism switched on (docs/synthetic.md), written
once into sibling cache folders. The fine-tuned sections start from the shipped synthetic-upstream
backbone (``model.pretrained=synthetic``, the papers' learning-rate groups); CTC trains from scratch,
as its paper does. Every model selects its epoch on a hold-out of its training split and is tested
once.

``fgvc demo`` runs the first seed of the pretrained start and the section's main rows (7 minutes of
CPU time); ``fgvc demo --full`` adds seeds 1 and 2 (mean ± std), the random start and the remaining
rows. The default's runs are the full comparison's first-seed runs, under the same names. The runs of a
section go side by side, each a process on one torch thread (``experiments/jobs.py``): ``--workers``
changes the wall time, never a figure.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fgvc.analysis.compare import write_comparison
from fgvc.analysis.embedding import embedding_analysis
from fgvc.analysis.information import InformationSettings, analyse_information
from fgvc.analysis.robustness import evaluate_robustness
from fgvc.analysis.runs import load_run, run_classes
from fgvc.analysis.transfer import ProbeSettings, analyse_transfer
from fgvc.config import Config, apply_override, build_config, read_tree, shipped_config
from fgvc.data.synthetic import SynthOptions, write_benchmark
from fgvc.engine.report import markdown_table
from fgvc.engine.run import train_and_report
from fgvc.experiments.jobs import Jobs
from fgvc.experiments.protocol import LABELS, run_mixture
from fgvc.methods.ctc import switch_epoch

log = logging.getLogger(__name__)

SECTIONS = ("dynamic_mlp", "rmg_pmsi", "erudite", "ctc")
SHIPPED_DATA = "~/.cache/fgvc/synthetic"  # where the shipped synthetic configs read the benchmark
# Each section's mechanism (docs/synthetic.md): the switch of SynthOptions and its words in the tables
MECHANISM = {"dynamic_mlp": ("regional_appearance", True, "regional appearance"),
             "rmg_pmsi": ("local_evidence", True, "local evidence"),
             "erudite": ("shared_cues", True, "shared cues"),
             "ctc": ("transfer_target", "flowers", "transfer target")}
START_WORDS = {"pretrained": "synthetic-upstream", "random": "random init"}
ONE_THREAD = "OMP_NUM_THREADS=1"  # the printed commands run as the demo's runs do


@dataclass(frozen=True)
class Plan:
    """What one ``fgvc demo`` call runs."""

    seeds: tuple[int, ...] = (0,)
    starts: tuple[str, ...] = ("pretrained",)
    full: bool = False  # every row of each section (the default: the main rows)
    epochs: int | None = None  # override every config's schedule.epochs
    quick: bool = False  # 1-2 epochs of 2 batches: checks the installation in seconds
    workers: int = 1  # runs side by side, one torch thread each (experiments/jobs.py): wall time only


def set_dir(data_dir: Path, section: str | None) -> Path:
    """The plain benchmark in ``data_dir``; a mechanism's beside it (``synthetic-local-evidence``)."""
    if section is None:
        return data_dir
    return data_dir.with_name(f"{data_dir.name}-{MECHANISM[section][0].replace('_', '-')}")


def write_set(data_dir: Path, section: str | None) -> Path:
    """Write (or find cached) the plain benchmark or ``section``'s mechanism benchmark."""
    switch, value, _ = MECHANISM[section] if section else (None, None, None)
    options = SynthOptions(**({switch: value} if switch else {}))
    folder = set_dir(data_dir, section)
    write_benchmark(folder, options)
    return folder


def demo_config(relative: str, data_dir: Path, out_dir: Path, name: str, seed: int, plan: Plan,
                start: str = "pretrained", overrides: tuple[str, ...] = ()) -> Config:
    """A shipped config with the demo's overrides: run name, seed, output folder, its benchmark's folder
    (the shipped files read ~/.cache/fgvc/synthetic), the start, and the plan's length."""
    tree = read_tree(shipped_config(relative))
    data = tree["data"]
    for source in [data] + data.get("joint", []):
        if "root" in source:
            source["root"] = source["root"].replace(SHIPPED_DATA, str(data_dir), 1)
    tree |= {"name": name, "seed": seed, "output_dir": str(out_dir)}
    changes = list(overrides)
    if start == "random":
        changes += ["model.pretrained=null", "optim.backbone_lr=null"]
    if plan.epochs or plan.quick:
        epochs = plan.epochs or 1
        changes += [f"schedule.epochs={epochs}", f"schedule.warmup_epochs={min(1, epochs - 1)}"]
    if plan.quick:
        changes.append("train.limit_train_batches=2")
    for change in changes:
        apply_override(tree, change)
    return build_config(tree)


def command(relative: str, cfg: Config, start: str) -> str:
    """The ``fgvc train`` line that reproduces a demo run (its benchmark in the default cache folder), on
    one thread as the demo trains it: the thread count is part of a result (experiments/jobs.py)."""
    home = str(Path.home())
    words = [f"{ONE_THREAD} fgvc train configs/{relative} name={cfg.name} seed={cfg.seed}"]
    roots = [("data.root", cfg.data.root)] if cfg.data.root else []
    roots += [(f"data.joint.{i}.root", s.root) for i, s in enumerate(cfg.data.joint)]
    shipped = read_tree(shipped_config(relative))
    defaults = [shipped["data"].get("root")] + [s["root"] for s in shipped["data"].get("joint", [])]
    for key, root in roots:
        root = root.replace(home, "~", 1)
        if root not in defaults:
            words.append(f"{key}={root}")
    if start == "random" and shipped["model"].get("pretrained"):
        words.append("model.pretrained=null optim.backbone_lr=null")
    return " ".join(words)


def _mean_std(values: list[float], sign: str = "") -> str:
    """``12.34`` for one value, ``12.34 ± 0.56`` for several (``sign="+"``: ``+12.34``)."""
    if not values:
        return ""
    mean = f"{statistics.fmean(values):{sign}.2f}"
    return mean if len(values) == 1 else f"{mean} ± {statistics.stdev(values):.2f}"


def gap_sentence(a: list[float], b: list[float], label_a: str, label_b: str, where: str) -> str:
    """``label_a`` against ``label_b`` in words, with the seeds' spread as the yardstick."""
    gap = round(statistics.fmean(a) - statistics.fmean(b), 1)
    side = f"{abs(gap):.1f} points above" if gap > 0 else f"{abs(gap):.1f} points below" if gap < 0 else "level with"
    text = f"{where}, {label_a} is {side} {label_b}"
    if len(a) < 2:
        return text + " (one seed: no spread to judge it by)"
    spread = max(statistics.stdev(a), statistics.stdev(b))
    verdict = "more than" if abs(gap) > 2 * spread else "within"
    return text + f" ({len(a)} seeds; {verdict} twice the larger seed spread, ±{spread:.1f})"


def both_sets_sentence(a: Callable[[str], list[float]], b: Callable[[str], list[float]], label_a: str,
                       label_b: str, mech: str, claim: str) -> str:
    """``gap_sentence`` on the plain set, then on the mechanism set (``a(which)``, ``b(which)`` give each
    side's per-seed values), then what the paper's claim predicts."""
    said = [gap_sentence(a(which), b(which), label_a, label_b, where)
            for which, where in (("plain", "On the plain set"), ("mechanism", f"with {mech}"))]
    return f"{said[0]}; {said[1]}. {claim}"


def run_demo(data_dir: Path, out_dir: Path, plan: Plan = Plan(),
             sections: tuple[str, ...] = SECTIONS) -> dict:
    """Run the chosen sections and write one ``report.md``; returns each section's results."""
    start_time = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    results, parts = {}, []
    runners = {"dynamic_mlp": dynamic_mlp_section, "rmg_pmsi": rmg_pmsi_section, "erudite": erudite_section,
               "ctc": ctc_section}
    with Jobs(plan.workers) as jobs:
        for section in sections:
            sets = {"plain": write_set(data_dir, None), "mechanism": write_set(data_dir, section)}
            results[section], text = runners[section](sets, out_dir, plan, jobs)
            parts.append(text)
    minutes = (time.perf_counter() - start_time) / 60
    seeds = ", ".join(map(str, plan.seeds))
    head = ["# fgvc demo", "",
            "Everything below trained and evaluated on this machine's CPU from the procedurally generated "
            "benchmark (docs/synthetic.md), each section on the plain set and on the set with its method's "
            f"mechanism switched on; seed{'s' if len(plan.seeds) > 1 else ''} {seeds}"
            f"{' (mean ± std)' if len(plan.seeds) > 1 else ''}; starts: "
            f"{', '.join(START_WORDS[s] for s in plan.starts)}. Each row's `fgvc train` command is in its "
            "run's folder (`config.yaml`) and under the tables of the README.", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(head + parts + [f"Wall time: {minutes:.1f} min.", ""]))
    print(f"demo report: {path}")
    return results


def _train_rows(models: list[tuple[str, str, str, bool]], sets: dict[str, Path], out_dir: Path, plan: Plan,
                starts: tuple[str, ...], jobs: Jobs, extra=None) -> list[dict]:
    """Train every (model, start, set, seed) side by side; one row per model and start with per-set lists
    of results.

    ``models``: (label, run-name stem, shipped config, main row); rows that are not main run only with
    ``plan.full``. ``extra(cfg, report)`` (a module-level function: it runs in a worker) adds figures to a
    run's result.
    """
    rows, runs, configs = [], [], []
    for label, stem, relative, main in models:
        if not (main or plan.full):
            continue
        for start in starts:
            row = {"label": label, "stem": stem, "config": relative, "start": start, "sets": {}}
            for which, folder in sets.items():
                row["sets"][which] = []
                for seed in plan.seeds:
                    name = f"{stem}_{which}_{start}_seed{seed}"
                    configs.append(demo_config(relative, folder, out_dir, name, seed, plan, start))
                    runs.append((row["sets"][which], f"{label}, {which} set, {start} start, seed {seed}",
                                 command(relative, configs[-1], start)))
            rows.append(row)
    results = jobs.map(train_run, configs, [what for _, what, _ in runs], [extra] * len(configs))
    for (where, _, line), result in zip(runs, results):
        where.append(result | {"command": line})
    return rows


def train_run(cfg: Config, what: str, extra=None) -> dict:
    """One demo run (in a worker): its test figures, plus ``extra(cfg, report)``."""
    log.info("demo: %s", what)
    report = train_and_report(cfg, overwrite=True)
    result = {"name": cfg.name, "top1": report["test"]["top1"], "top5": report["test"]["top5"],
              "params_m": report["params_m"]}
    return result | (extra(cfg, report) if extra is not None else {})


def _values(row: dict, which: str, key: str) -> list[float]:
    return [r[key] for r in row["sets"][which] if r.get(key) is not None]


def _commands(rows: list[dict]) -> list[str]:
    lines = [r["sets"][w][0]["command"] for r in rows for w in r["sets"]]
    return ["Reproduce a row (first seed; `seed=N` and `name=` for the others):", "", "```bash",
            *dict.fromkeys(lines), "```", ""]


# --- Dynamic MLP: what location and date add ---------------------------------------------------------

# (label, run-name stem, shipped config, in the default demo)
DYNAMIC_MLP_MODELS = [("image-only", "dmlp_image_only", "dynamic_mlp/synthetic/image_only.yaml", True),
                      ("concat (ConcatNet)", "dmlp_concat", "dynamic_mlp/synthetic/concat.yaml", True),
                      ("Dynamic MLP-C", "dmlp_dynamic_mlp_c", "dynamic_mlp/synthetic/dynamic_mlp_c.yaml",
                       True)]


def dynamic_mlp_section(sets: dict[str, Path], out_dir: Path, plan: Plan, jobs: Jobs) -> tuple[list[dict], str]:
    rows = _train_rows(DYNAMIC_MLP_MODELS, sets, out_dir, plan, plan.starts, jobs)
    mech = MECHANISM["dynamic_mlp"][2]
    table = markdown_table([{
        "model": r["label"], "start": START_WORDS[r["start"]],
        "plain: test top-1": _mean_std(_values(r, "plain", "top1")),
        f"{mech}: test top-1": _mean_std(_values(r, "mechanism", "top1")),
        f"{mech}: test top-5": _mean_std(_values(r, "mechanism", "top5")),
        "params (M)": f"{r['sets']['plain'][0]['params_m']:.2f}"} for r in rows])
    first = {r["stem"]: r for r in rows if r["start"] == plan.starts[0]}
    sentence = both_sets_sentence(
        lambda w: _values(first["dmlp_dynamic_mlp_c"], w, "top1"),
        lambda w: _values(first["dmlp_concat"], w, "top1"), "Dynamic MLP-C", "concat", mech,
        "The paper's claim predicts the second gap larger than the first: where a detail means one species "
        "in one region and its sibling in another, only a fusion that conditions the image features on the "
        "place can read it.")
    print(f"\nDynamic MLP: what location and date add (plain vs {mech})\n\n{table}\n\n{sentence}\n")
    return rows, "\n".join([
        f"## Dynamic MLP: what location and date add (plain vs {mech})", "",
        "The iNat-2021-format species set (32 species in 8 genera, chance 3.1 %); concat and Dynamic MLP-C read "
        f"latitude, longitude and date. With {mech}, siblings share their range and swap looks between its two "
        "regions (docs/synthetic.md). Test = the official `val` split, once per run, on the checkpoint with the "
        "best hold-out accuracy.", "", table, "", sentence, "", *_commands(rows),
        *dynamic_mlp_analysis(out_dir, rows, plan)])


def dynamic_mlp_analysis(out_dir: Path, rows: list[dict], plan: Plan) -> list[str]:
    """The runs through ``fgvc compare`` and, on the mechanism set, the t-SNE of one genus (first seed)."""
    runs = [out_dir / run["name"] for r in rows for w in r["sets"] for run in r["sets"][w]]
    _, csv_path, table = write_comparison(runs, out_dir / "comparison")
    pair = [out_dir / next(r for r in rows if r["stem"] == stem)["sets"]["mechanism"][0]["name"]
            for stem in ("dmlp_image_only", "dmlp_dynamic_mlp_c")]
    genus = run_classes(load_run(pair[0]))[0].split()[0]
    tsne = embedding_analysis(pair, genus=f"{genus} ", out=out_dir / "analysis")
    scores = ", ".join(f"{p['run']} " + ("n/a" if p["silhouette_features"] is None
                                          else f"{p['silhouette_features']:.2f}") for p in tsne["panels"])
    return ["The same runs as `fgvc compare` prints them (rows: run names without the seed suffix; "
            f"[CSV]({csv_path.relative_to(out_dir)})):", "", table, "",
            f"t-SNE of what the classifier reads (`fgvc analyze embedding`), test images of the "
            f"{len(tsne['classes'])} species of the genus *{genus}* on the {MECHANISM['dynamic_mlp'][2]} set, "
            f"seed {plan.seeds[0]}: image-only (pooled image feature) vs Dynamic MLP-C (fused feature). "
            f"Silhouette of the species in feature space: {scores}.", "", "![t-SNE](analysis/embedding.png)", ""]


# --- RMG-PMSI: the same images without metadata ------------------------------------------------------

RMG_PMSI_MODELS = [("baseline (linear classifier)", "rmg_baseline", "rmg_pmsi/synthetic/baseline.yaml", True),
                   ("PMG (jigsaw, progressive)", "rmg_pmg", "rmg_pmsi/synthetic/pmg.yaml", False),
                   ("RMG-PMSI", "rmg_pmsi", "rmg_pmsi/synthetic/rmg_pmsi.yaml", True)]


def _robustness(cfg: Config, report: dict) -> dict:
    best = cfg.run_dir / "checkpoints" / "best.pt"
    robust = evaluate_robustness(cfg, best, ["color_jitter", "gaussian_noise"])
    worst = {r["corruption"]: r for r in robust["rows"]}  # the last (strongest) severity of each
    return {"mix": report["test"].get("rules", {}).get("mix", {}).get("top1"),
            "jitter_drop": worst["color_jitter"]["drop"], "noise_drop": worst["gaussian_noise"]["drop"]}


def rmg_pmsi_section(sets: dict[str, Path], out_dir: Path, plan: Plan, jobs: Jobs) -> tuple[list[dict], str]:
    rows = _train_rows(RMG_PMSI_MODELS, sets, out_dir, plan, plan.starts, jobs, _robustness)
    mech = MECHANISM["rmg_pmsi"][2]
    table = markdown_table([{
        "model": r["label"], "start": START_WORDS[r["start"]],
        "plain: top-1 (P_concat)": _mean_std(_values(r, "plain", "top1")),
        f"{mech}: top-1 (P_concat)": _mean_std(_values(r, "mechanism", "top1")),
        f"{mech}: P_mix": _mean_std(_values(r, "mechanism", "mix")),
        "plain: drop, colour jitter s=1": _mean_std(_values(r, "plain", "jitter_drop")),
        "plain: drop, noise σ=0.2": _mean_std(_values(r, "plain", "noise_drop")),
        "params (M)": f"{r['sets']['plain'][0]['params_m']:.2f}"} for r in rows])
    first = {r["stem"]: r for r in rows if r["start"] == plan.starts[0]}
    sentence = both_sets_sentence(
        lambda w: _values(first["rmg_pmsi"], w, "top1"), lambda w: _values(first["rmg_baseline"], w, "top1"),
        "RMG-PMSI", "the baseline", mech,
        "The paper's claim predicts a gain where the deciding detail is a small mark at a random place.")
    title = f"RMG-PMSI: fine-grained recognition from images alone (plain vs {mech})"
    print(f"\n{title}\n\n{table}\n\n{sentence}\n")
    return rows, "\n".join([
        f"## {title}", "",
        "The same iNat-format images without location or date, 64-px crops of 73-px resizes. PMG and RMG-PMSI "
        "run 4 phases per batch (3 stage phases on jigsaw / recursive-mosaic inputs, then the original image). "
        f"With {mech}, the siblings of a genus differ only by one small mark at a random place on the object. "
        "Drops are clean minus corrupted test top-1 at the strongest severity (each run's "
        "`report_robustness.md` has all).", "", table, "", sentence, "", *_commands(rows)])


# --- the erudite model: the four multi-domain sets as one label space --------------------------------

ERUDITE_CONFIG = "erudite/synthetic/_synthetic.yaml"


def erudite_variants(plan: Plan) -> list[str]:
    return ["baseline", "baseline_plus", "baseline_plusplus", "ours"] if plan.full else ["baseline", "ours"]


def erudite_section(sets: dict[str, Path], out_dir: Path, plan: Plan, jobs: Jobs) -> tuple[dict, str]:
    variants = erudite_variants(plan)
    results: dict = {}  # start -> set -> seed -> method -> scores
    keys, bases = [], []
    for start in plan.starts:
        for which, folder in sets.items():
            for seed in plan.seeds:
                name = f"erudite_{which}_{start}_seed{seed}"
                bases.append(demo_config(ERUDITE_CONFIG, folder, out_dir, name, seed, plan, start))
                keys.append((start, which, seed))
    for (start, which, seed), scores in zip(keys, jobs.map(erudite_mixture, bases, [variants] * len(bases))):
        results.setdefault(start, {}).setdefault(which, {})[seed] = scores
    mech = MECHANISM["erudite"][2]
    rows = []
    for start in plan.starts:
        for method in ["single", *variants]:
            row = {"method": LABELS[method], "start": START_WORDS[start]}
            for which, words in (("plain", "plain"), ("mechanism", mech)):
                per_seed = results[start][which]
                means = [_domain_mean(per_seed[s][method]) for s in plan.seeds]
                singles = [_domain_mean(per_seed[s]["single"]) for s in plan.seeds]
                row[f"{words}: mean top-1"] = _mean_std(means)
                row[f"{words}: Δ vs Single"] = "" if method == "single" else _mean_std(
                    [m - s for m, s in zip(means, singles)], sign="+")
                if method != "single":
                    counts = [sum(per_seed[s][method][k] for s in plan.seeds) for k in ("_positive", "_tied",
                                                                                         "_negative")]
                    row[f"{words}: positive / tied / negative"] = " / ".join(map(str, counts))
                else:
                    row[f"{words}: positive / tied / negative"] = ""
            rows.append(row)
    table = markdown_table(rows)
    start = plan.starts[0]

    def deltas(which: str, method: str) -> list[float]:
        per_seed = results[start][which]
        return [_domain_mean(per_seed[s][method]) for s in plan.seeds]

    sentence = both_sets_sentence(
        lambda w: deltas(w, "ours"), lambda w: deltas(w, "single"), "Ours", "Single", mech,
        "The paper's claim predicts joint training above Single where the domains share a cue, and the "
        "experts keeping what is specific to each.")
    print(f"\nThe erudite model: one model for four domains (plain vs {mech})\n\n{table}\n\n{sentence}\n")
    return results, "\n".join([
        f"## The erudite model: one model for four domains (plain vs {mech})", "",
        "The four multi-domain sets (bird-, car-, aircraft- and flower-like look-alikes, 9 classes each, in the "
        "CUB, Cars, FGVC-Aircraft and Flowers layouts) as one 36-class label space, each batch 8 images per "
        f"domain, 64 px. With {mech}, one detail axis of every domain is drawn as a badge that looks the same in "
        "all four. Single = one model per domain plus a coarse classifier that picks the domain; a prediction "
        "counts only if it is the right class of the union. Mean of the per-domain test top-1, Δ against "
        "Single, and the classes whose accuracy rose / tied / fell against Single (summed over seeds). Every "
        "mixture and variant: `fgvc protocol erudite configs/erudite/synthetic/_synthetic.yaml`.", "",
        table, "", sentence, "", "Reproduce the rows of each set (first seed):", "", "```bash",
        *(protocol_command(w, sets[w], out_dir, plan, start, variants) for start in plan.starts for w in sets),
        "```", ""])


def erudite_mixture(base: Config, variants: list[str]) -> dict:
    """Single, the coarse classifier and ``variants`` on the four domains of ``base`` (in a worker)."""
    log.info("demo: erudite model, %s", base.name)
    return run_mixture(base, list(base.data.joint), variants, base.name)


def protocol_command(which: str, data_dir: Path, out_dir: Path, plan: Plan, start: str,
                     variants: list[str]) -> str:
    """The ``fgvc protocol erudite`` line that trains one set's Single and variants as the demo does
    (the same run names: the protocol prefixes them with the config's name)."""
    name = f"erudite_{which}_{start}_seed{plan.seeds[0]}"
    base = demo_config(ERUDITE_CONFIG, data_dir, out_dir, name, plan.seeds[0], plan, start)
    overrides = command(ERUDITE_CONFIG, base, start).split(" ", 4)[4]
    return (f"{ONE_THREAD} fgvc protocol erudite configs/{ERUDITE_CONFIG} --sizes 4 --variants {' '.join(variants)} "
            f"{overrides}")


def _domain_mean(scores: dict) -> float:
    accuracies = [v for k, v in scores.items() if not k.startswith("_")]
    return sum(accuracies) / len(accuracies)


# --- CTC: discriminability on three domains, transferability to the held-out fourth ------------------

CTC_MODELS = [("vanilla (cross-entropy)", "ctc_vanilla", "ctc/synthetic/vanilla.yaml", True),
              ("CTC, transferability setting", "ctc_transfer", "ctc/synthetic/ctc_transfer.yaml", True)]
CTC_TARGET = "ctc/synthetic/flowers_target.yaml"


def ctc_analysis(runs: list[Path], first_seed: list[Path], target: Path, out: Path,
                 information: InformationSettings) -> tuple[list[dict], list[dict]]:
    """One set's probe rows over every epoch of ``runs`` and MINE rows of ``first_seed`` (in a worker)."""
    transfer = analyse_transfer(runs, shipped_config(CTC_TARGET), out, ProbeSettings(), progress=False,
                                target_overrides=[f"data.root={target}"])
    return transfer["rows"], analyse_information(first_seed, out, information, progress=False)["rows"]


def ctc_section(sets: dict[str, Path], out_dir: Path, plan: Plan, jobs: Jobs) -> tuple[dict, str]:
    """From scratch, as the paper trains; the probe reads every epoch's checkpoint."""
    rows = _train_rows(CTC_MODELS, sets, out_dir, plan, ("random",), jobs)
    results = {"rows": rows, "probes": {}, "information": {}}
    steps = 100 if plan.quick else 400 if plan.full else 200  # MINE's Adam steps per estimate
    information = InformationSettings(steps=steps, last_epoch_only=not plan.full)  # the table reads the last
    runs = [[out_dir / run["name"] for r in rows for run in r["sets"][w]] for w in sets]
    first_seed = [[out_dir / r["sets"][w][0]["name"] for r in rows] for w in sets]
    targets = [sets[w] / "multi" / "flowers" for w in sets]
    analyses = jobs.map(ctc_analysis, runs, first_seed, targets, [out_dir / f"ctc_analysis_{w}" for w in sets],
                        [information] * len(sets))
    for which, (probes, estimates) in zip(sets, analyses):
        results["probes"][which], results["information"][which] = probes, estimates
    cfg = demo_config(CTC_MODELS[1][2], sets["plain"], out_dir, "probe", 0, plan, "random")
    switch = switch_epoch(cfg)
    mech = MECHANISM["ctc"][2]
    table_rows = []
    for r in rows:
        for which, words in (("plain", "plain"), ("mechanism", mech)):
            curves = [{p["epoch"]: p for p in results["probes"][which] if p["run"] == run["name"]}
                      for run in r["sets"][which]]
            last = max(curves[0])
            first_run = r["sets"][which][0]["name"]
            info = {p["epoch"]: p for p in results["information"][which] if p["run"] == first_run}
            table_rows.append({
                "model": r["label"], "set": words, "source test top-1": _mean_std(_values(r, which, "top1")),
                "probe at init": _mean_std([c[0]["target_top1"] for c in curves]),
                f"probe, epoch {switch}": _mean_std([c[switch]["target_top1"] for c in curves]),
                "probe, last epoch": _mean_std([c[last]["target_top1"] for c in curves]),
                "best probe − last": _mean_std([max(p["target_top1"] for p in c.values())
                                                - c[last]["target_top1"] for c in curves]),
                "I(X;T), I(T;Y) last epoch, first seed": f"{info[last]['i_xt']:.2f}, {info[last]['i_ty']:.2f}"})
    table = markdown_table(table_rows)

    def last_probe(stem: str, which: str) -> list[float]:
        row = next(r for r in rows if r["stem"] == stem)
        out = []
        for run in row["sets"][which]:
            curve = {p["epoch"]: p["target_top1"] for p in results["probes"][which]
                     if p["run"] == run["name"]}
            out.append(curve[max(curve)])
        return out

    sentence = both_sets_sentence(
        lambda w: last_probe("ctc_transfer", w), lambda w: last_probe("ctc_vanilla", w),
        "CTC's last-epoch probe", "vanilla's", f"the {mech}",
        "The paper's claim predicts CTC's probe above vanilla's late in training, where the source images "
        "hold target detail the source labels never need; 'best probe − last' measures how far each curve has "
        "fallen from its peak.")
    print(f"\nCTC: discriminability vs transferability (plain vs {mech})\n\n{table}\n\n{sentence}\n")
    return results, "\n".join([
        f"## CTC: discriminability vs transferability (plain vs {mech})", "",
        f"Source: the bird-, car- and aircraft-like sets as one 27-class label space, from scratch (as the paper "
        f"trains), 64 px, {cfg.schedule.epochs} epochs; CTC switches to its temporal snapshot at epoch {switch}. "
        "Target: the flower-like domain, never trained on — a logistic-regression probe on the frozen pooled "
        "features of every epoch's checkpoint (`fgvc analyze transfer`), fitted on its train split and scored on "
        f"its test split. With the {mech} switch, the flowers' first detail is a badge that every source image "
        "carries at a random level. MINE estimates (nats) on the source test split, first seed "
        "(`fgvc analyze information`).", "", table, "", sentence, "",
        "![transfer](ctc_analysis_plain/transfer.png)",
        "![transfer, mechanism](ctc_analysis_mechanism/transfer.png)",
        "", *_commands(rows)])

