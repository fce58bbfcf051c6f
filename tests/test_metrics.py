"""Metrics counted batch by batch equal the same metrics computed on all the scores at once, ties and
empty classes included; under DDP (two gloo processes) every sample is counted once and the ranks'
counts add up to the single-process figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fgvc.metrics import Counts, classification_metrics
from fgvc.engine.evaluate import ScoreFile, count_outputs, evaluate, metrics_from_counts

SRC = Path(__file__).parents[1] / "src"


def all_at_once(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, topk=(1, 5)) -> dict:
    """The metrics as computed before they were streamed: from the whole [N, C] matrix."""
    out = {"num_samples": len(labels)}
    for k in topk:
        hit = (logits.topk(min(k, logits.shape[1]), dim=1).indices == labels[:, None]).any(1)
        out[f"top{k}"] = 100.0 * hit.double().mean().item() if len(labels) else 0.0
    pred, true = logits.argmax(1).numpy(), labels.numpy()
    total = np.bincount(true, minlength=num_classes)
    correct = np.bincount(true[pred == true], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    out["mean_per_class"] = 100.0 * float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
    out["per_class"] = [None if np.isnan(a) else 100.0 * float(a) for a in per_class]
    wrong = pred != true
    pairs, counts = np.unique(np.stack([true[wrong], pred[wrong]], 1), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:10]
    out["confusions"] = [(int(pairs[i, 0]), int(pairs[i, 1]), int(counts[i])) for i in order]
    return out


def streamed(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, batch: int, topk=(1, 5)) -> dict:
    counts = Counts(num_classes, topk)
    for begin in range(0, len(labels), batch):
        counts.update(logits[begin:begin + batch], labels[begin:begin + batch])
    return counts.metrics()


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key in ("confusions", "num_samples"):
            assert got[key] == value, key
        elif key == "per_class":
            assert got[key] == pytest.approx(value, nan_ok=True), key
        else:
            assert got[key] == pytest.approx(value), key


@pytest.mark.parametrize("seed", range(4))
def test_streamed_counts_equal_the_all_logits_computation_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes, n = 13, 257
    logits = torch.randint(0, 4, (n, num_classes), generator=g).float()  # few values: many ties
    labels = torch.randint(0, num_classes - 2, (n,), generator=g)  # the last two classes have no sample
    for batch in (1, 7, 64, n):
        assert_same(streamed(logits, labels, num_classes, batch), all_at_once(logits, labels, num_classes))
    result = streamed(logits, labels, num_classes, 7)
    assert result["per_class"][-2:] == [None, None] and len(result["confusions"]) == 10


def test_edge_cases_k_beyond_the_classes_one_class_and_nothing():
    logits, labels = torch.tensor([[0.1, 0.9], [0.7, 0.3], [0.5, 0.5]]), torch.tensor([1, 1, 0])
    got = streamed(logits, labels, 2, 2, topk=(1, 5))
    assert got["top5"] == 100.0 and got["top1"] == pytest.approx(200 / 3)  # the tie goes to class 0
    assert got["confusions"] == [(1, 0, 1)] and got["per_class"] == [100.0, 50.0]
    single = streamed(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), 1, 3)
    assert single["top1"] == single["top5"] == single["mean_per_class"] == 100.0 and single["confusions"] == []
    empty = Counts(3).metrics()
    assert empty["num_samples"] == 0 and empty["top1"] == 0.0 and empty["mean_per_class"] == 0.0
    assert empty["per_class"] == [None] * 3 and empty["confusions"] == []
    assert classification_metrics(logits, labels, 2) == Counts(2).update(logits, labels).metrics()


def test_counts_of_disjoint_parts_combine_to_the_whole_and_survive_pickling():
    import pickle

    g = torch.Generator().manual_seed(5)
    logits, labels = torch.randn(100, 6, generator=g), torch.randint(0, 6, (100,), generator=g)
    whole = Counts(6).update(logits, labels)
    parts = [pickle.loads(pickle.dumps(Counts(6).update(logits[r::3], labels[r::3]))) for r in range(3)]
    assert Counts.combine(parts).metrics() == whole.metrics()


def test_groups_and_rules_from_counts_match_a_mask_over_samples():
    g = torch.Generator().manual_seed(2)
    logits, labels = torch.randn(60, 5, generator=g), torch.randint(0, 5, (60,), generator=g)
    counts = count_outputs([({"concat": logits[:30], "mix": -logits[:30]}, labels[:30]),
                            ({"concat": logits[30:], "mix": -logits[30:]}, labels[30:])], 5, (1, 2))
    m = metrics_from_counts(counts, groups=[("a", 2), ("b", 3)])
    correct = logits.argmax(1) == labels
    assert m["per_dataset"]["a"] == pytest.approx(100 * correct[labels < 2].double().mean().item())
    assert m["per_dataset"]["b"] == pytest.approx(100 * correct[labels >= 2].double().mean().item())
    assert m["rules"]["mix"]["top1"] == pytest.approx(100 * ((-logits).argmax(1) == labels).double().mean().item())


def test_score_file_keeps_rows_in_a_mapped_file_growing_as_needed():
    scores = ScoreFile()
    blocks = [torch.randn(100, 7) for _ in range(5)]  # beyond the first reservation of 256 rows
    for block in blocks:
        scores.append(block)
    assert isinstance(scores.array(), np.memmap)
    assert np.array_equal(scores.array(), torch.cat(blocks).numpy())


ITEMS = """
import torch
from torch.utils.data import Dataset

N, C = 23, 6


class Items(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, key):  # ResumableSampler gives (index, augmentation seed)
        i = key[0] if isinstance(key, tuple) else key
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randint(0, 3, (C,), generator=g).float(), "label": i % (C - 1), "index": i}


class TwoRules:
    def predict(self, model, batch):
        return {"concat": batch["image"], "mix": -batch["image"]}
"""

DDP_SCRIPT = """
import json, sys
import torch
from torch.utils.data import DataLoader
from fgvc.data.dataset import collate
from fgvc.data.samplers import ResumableSampler
from fgvc.engine.distributed import init_distributed
from fgvc.engine.evaluate import evaluate
from items import C, N, Items, TwoRules

ctx = init_distributed("cpu")
loader = DataLoader(Items(), batch_size=4, collate_fn=collate,
                    sampler=ResumableSampler(N, 0, shuffle=False, rank=ctx.rank, world_size=ctx.world_size))
seen = [int(i) for batch in loader for i in batch["index"]]
metrics = evaluate(torch.nn.Identity(), TwoRules(), loader, torch.device("cpu"), C, (1, 2),
                   groups=[("a", 2), ("b", 4)], gather=ctx.gather_object, progress=False)
everyone = ctx.gather_object(seen)
if ctx.is_main:
    json.dump({"metrics": metrics, "seen": everyone}, open(sys.argv[1], "w"))
"""


def test_two_gloo_processes_count_each_sample_once_and_reduce_to_one_process(tmp_path, monkeypatch):
    (tmp_path / "items.py").write_text(ITEMS)
    script, out = tmp_path / "evaluate_ddp.py", tmp_path / "metrics.json"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path}", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    seen = result["seen"]
    assert sorted(seen[0] + seen[1]) == list(range(23)) and len(seen[0]) == 12 and len(seen[1]) == 11

    monkeypatch.syspath_prepend(str(tmp_path))  # the same items and rules in this process, alone
    from items import Items, TwoRules
    from torch.utils.data import DataLoader

    from fgvc.data.dataset import collate

    loader = DataLoader(Items(), batch_size=5, collate_fn=collate)
    alone = evaluate(torch.nn.Identity(), TwoRules(), loader, torch.device("cpu"), 6, (1, 2),
                     groups=[("a", 2), ("b", 4)], progress=False)
    alone = json.loads(json.dumps(alone))  # tuples as lists, as in rank 0's JSON
    assert result["metrics"]["num_samples"] == 23
    assert result["metrics"] == alone
