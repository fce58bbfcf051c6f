"""What the peer runner does to any release: copy it, patch it in the open, import its network."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


class PeerError(Exception):
    """A release that is not the one the patch was written for, or an fgvc side that differs from it."""


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in ``file`` (``count`` occurrences, no more, no fewer), because ``why``."""

    file: str
    old: str
    new: str
    why: str
    count: int = 1


def copy_release(source: Path, target: Path) -> None:
    """A fresh copy of the user's clone (without its git data), so the clone itself is never changed."""
    if not source.is_dir():
        raise PeerError(f"--release {source}: not a folder (clone the release there)")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".git", "__pycache__"))


def apply_edits(root: Path, edits: list[Edit], commit: str) -> str:
    """Apply ``edits`` to the files under ``root``; return the unified diff with each edit's reason."""
    before: dict[str, str] = {}
    texts: dict[str, str] = {}
    reasons: dict[str, list[str]] = {}
    for edit in edits:
        path = root / edit.file
        if edit.file not in texts:
            if not path.is_file():
                raise PeerError(f"{edit.file}: not in the release (the patch was written for commit {commit})")
            before[edit.file] = texts[edit.file] = path.read_text()
        found = texts[edit.file].count(edit.old)
        if found != edit.count:
            raise PeerError(f"{edit.file}: expected {edit.count} x {edit.old!r}, found {found} (the patch was "
                            f"written for commit {commit}; check out that commit)")
        texts[edit.file] = texts[edit.file].replace(edit.old, edit.new)
        reasons.setdefault(edit.file, []).append(edit.why)
    diff = []
    for name, text in texts.items():
        (root / name).write_text(text)
        diff.append(f"# {name}: " + "; ".join(dict.fromkeys(reasons[name])) + "\n")
        diff.extend(difflib.unified_diff(before[name].splitlines(keepends=True), text.splitlines(keepends=True),
                                         f"a/{name}", f"b/{name}", n=0))
    return "".join(diff)


@contextlib.contextmanager
def import_from(folder: Path):
    """Import a release's modules from ``folder`` (``modules("model")``), then forget them again, so two
    releases with modules of the same name (``utils``) never meet in one process."""
    folder = str(folder.resolve())
    before = set(sys.modules)
    sys.path.insert(0, folder)
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(folder)
        def inside(module) -> bool:  # namespace packages (a folder without __init__.py) have no file
            places = [getattr(module, "__file__", None) or "", *getattr(module, "__path__", [])]
            return any(str(place).startswith(folder) for place in places)

        for name in [name for name in set(sys.modules) - before if inside(sys.modules[name])]:
            del sys.modules[name]
