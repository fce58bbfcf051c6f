"""The whole benchmark (iNat and the multi-domain formats) with its ``synth.json`` summary, cached."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

from fgvc.data.synthetic.options import MECHANISMS, SynthOptions
from fgvc.data.synthetic.writers import write_inat, write_multidomain
from fgvc.data.synthetic.writers.common import write_json

FORMAT_VERSION = 1
_DEFAULTS = dataclasses.asdict(SynthOptions())


def write_benchmark(out_dir: str | os.PathLike, opts: SynthOptions | None = None) -> dict:
    """Write ``inat/`` and ``multi/`` and the ``synth.json`` summary; a no-op if it already matches.

    ``synth.json`` is written last, so an interrupted run is redone rather than trusted. With
    other options, the folders of the previous benchmark (recognised by its ``synth.json``) are
    replaced.
    """
    opts = opts or SynthOptions()
    out = Path(out_dir)
    summary_path = out / "synth.json"
    options = _options_json(opts)
    if summary_path.is_file():
        try:
            existing = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            existing = None
        if existing and existing.get("version") == FORMAT_VERSION and existing.get("options") == options:
            return existing
        # Ours and stale: forget it first (an interrupted rewrite must not look complete), and drop
        # the old folders so no image or domain of the previous options lingers beside the new ones.
        summary_path.unlink()
        for sub in ("inat", "multi"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"version": FORMAT_VERSION, "options": options,
               "inat": {"root": "inat", **write_inat(out / "inat", opts)},
               "multi": write_multidomain(out / "multi", opts)}
    write_json(summary_path, summary)
    return summary


def _options_json(opts: SynthOptions) -> dict:
    """The options as they round-trip through JSON (tuples become lists).

    A mechanism switch is written only when on: a benchmark written before the switches existed
    keeps its summary, and stays valid as a cache.
    """
    options = dataclasses.asdict(opts)
    for name in MECHANISMS:
        if options[name] == _DEFAULTS[name]:
            del options[name]
    return json.loads(json.dumps(options))
