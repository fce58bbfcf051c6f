"""Metrics to ``metrics.csv``, ``metrics.jsonl`` and TensorBoard, one row per epoch."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLog:
    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = run_dir
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        if not resume:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training
        self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def rows(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]

    def truncate(self, epochs_done: int) -> None:
        """On resume: drop rows of epochs the resumed run will redo (rows count epochs from 1)."""
        rows = [r for r in self.rows() if r["epoch"] <= epochs_done]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._write_csv(rows)

    def _write_csv(self, rows: list[dict]) -> None:
        if not rows:
            self.csv.unlink(missing_ok=True)
            return
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with self.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def epoch(self, row: dict) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv(self.rows())
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.tb.add_scalar(f"epoch/{key}", value, row["epoch"])
        self.tb.flush()

    def step(self, step: int, **scalars: float) -> None:
        for key, value in scalars.items():
            self.tb.add_scalar(f"step/{key}", value, step)

    def close(self) -> None:
        self.tb.close()
