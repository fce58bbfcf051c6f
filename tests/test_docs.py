"""The project's own documentation: every page it cites exists, and every relative link in a page resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITING = [ROOT / "README.md", *(ROOT / d for d in ("src", "tests", "configs", "benchmarks", "docs"))]
SUFFIXES = {".py", ".md", ".yaml"}
CITATION = re.compile(r"docs/[\w/]+\.md")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def files() -> list[Path]:
    out = []
    for place in CITING:
        out += [place] if place.is_file() else [p for p in sorted(place.rglob("*")) if p.suffix in SUFFIXES]
    return out


def test_every_cited_docs_page_exists():
    missing = [f"{path.relative_to(ROOT)}: {page}" for path in files()
               for page in sorted(set(CITATION.findall(path.read_text(encoding="utf-8"))))
               if not (ROOT / page).is_file()]
    assert not missing, "cited pages that do not exist:\n" + "\n".join(missing)


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
         *(p for d in ("configs", "src", "benchmarks", "tools")
           for p in sorted((ROOT / d).rglob("README.md")))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    targets = [t for t in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in t]
    broken = [t for t in targets if not (page.parent / t).exists()]
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def test_each_method_has_its_page():
    methods = {p.stem for p in (ROOT / "src" / "fgvc" / "methods").glob("*.py")} - {"__init__", "base"}
    pages = {p.stem for p in (ROOT / "docs" / "methods").glob("*.md")}
    # supervised and priors are Dynamic MLP's image-only / fusion / PriorsNet rows; progressive is RMG-PMSI
    covered = {"supervised": "dynamic_mlp", "priors": "dynamic_mlp", "progressive": "rmg_pmsi"}
    assert {covered.get(m, m) for m in methods} <= pages
