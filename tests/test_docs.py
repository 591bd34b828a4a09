"""The README stays a user's first page (short), and the pages it sends readers to exist: every
relative link in README.md, RELIABILITY.md and docs/*.md resolves to a file (and to a heading when it
names one), and every source file the text names by path is still there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_CHARS = 20_000
PAGES = [README, ROOT / "RELIABILITY.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A path in backticks or plain text: prune_dagster/…, core/…, defs/…, fixtures/…, benchmarks/…, tests/… ending .py
SOURCE_PATH = re.compile(r"(?<![\w/.])((?:prune_dagster|core|defs|fixtures|benchmarks|tests)/[\w/]*\w\.py)\b")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # a '# comment' in code is no heading
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def broken_links(text: str, page: Path) -> list[str]:
    """Relative links in `text` (found on `page`) whose file or heading does not exist."""
    bad = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{page.name}: {target} (no heading #{anchor} in {dest.name})")
    return bad


def missing_sources(text: str) -> list[str]:
    """Source files named in `text` that do not exist (core/… and defs/… are under prune_dagster/)."""
    out = []
    for path in sorted(set(SOURCE_PATH.findall(text))):
        full = ROOT / path if path.split("/")[0] in ("prune_dagster", "benchmarks", "tests") else \
            ROOT / "prune_dagster" / path
        if not full.exists():
            out.append(path)
    return out


def test_readme_is_short():
    n = len(README.read_text())
    assert n <= MAX_README_CHARS, (f"README.md has {n} characters (at most {MAX_README_CHARS}): move details "
                                   "to a docs/ page and link it")


def test_readme_links_every_docs_page():
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text()) if t.startswith("docs/")}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= linked, f"docs pages the README never links: {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    assert not broken_links(page.read_text(), page)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_source_files_exist(page):
    missing = missing_sources(page.read_text())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_checks_can_fail(tmp_path):
    page = tmp_path / "README.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "steps.md").write_text("# Steps\n\n## The graph\n")
    text = "[a](docs/steps.md) [b](docs/gone.md) [c](docs/steps.md#the-graph) [d](docs/steps.md#nope) [e](https://x.y)"
    assert broken_links(text, page) == ["README.md: docs/gone.md (no such file)",
                                        "README.md: docs/steps.md#nope (no heading #nope in steps.md)"]
    assert missing_sources("see `core/sources.py` and `prune_dagster/core/data/sources.py`") == ["core/sources.py"]
    assert slug("Known-defect benchmark (`python benchmarks/defects.py`, 3 seeds, 55 s)") == \
        "known-defect-benchmark-python-benchmarksdefectspy-3-seeds-55-s"
