"""The docs: manuals tell what the product does now; measurements are dated pages that rerun from a clone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT

DOCS = ROOT / "docs"
MEASUREMENTS = DOCS / "measurements"
MANUALS = sorted(DOCS.glob("*.md"))
PAGES = sorted(p for p in MEASUREMENTS.glob("*.md") if p.name != "README.md")

# Development history, and paths that exist on no user's machine.
HISTORY = {
    "an issue number": re.compile(r"\bissues? #?\d", re.I),
    "a session number": re.compile(r"\bsessions? \d", re.I),
    "a work period": re.compile(r"\bwork periods?\b", re.I),
    "what was tried": re.compile(r"\bwas tried\b", re.I),
    "a commit hash": re.compile(r"\bcommits?\W{0,3}[0-9a-f]{7,40}\b|\b[0-9a-f]{7,40}\W{0,3}commit", re.I),
}
OUTSIDE = {
    "a path of the development machine": re.compile(r"/work/"),
    "a folder beside the clone": re.compile(r"\.\./shared\b|\bshared/(bench|reference)/"),
}
PAGE_SECTIONS = ("## Question", "## Command", "## Machine", "## Result", "## What it means")


def hits(text: str, patterns: dict[str, re.Pattern[str]]) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        found += [
            f"line {number}: {what}: {line.strip()[:120]}" for what, p in patterns.items() if p.search(line)
        ]
    return found


@pytest.mark.parametrize("manual", MANUALS, ids=[m.name for m in MANUALS])
def test_a_manual_tells_no_development_history(manual: Path) -> None:
    found = hits(manual.read_text(), {**HISTORY, **OUTSIDE})
    assert not found, (
        f"{manual.relative_to(ROOT)} narrates history or names paths a user lacks:\n" + "\n".join(found)
    )


def test_the_history_check_catches_what_it_looks_for() -> None:
    lines = [
        "Measured for issue 3: within 3 %.",
        "wave rows: session 3's code",
        "The first fourteen work periods",
        "an index per slot was tried and not kept",
        "the final run (commit 605fa2c)",
        "python3 /work/shared/bench/gateway_overhead.py",
        "python3 ../shared/bench/gateway_overhead.py",
    ]
    assert all(hits(line, {**HISTORY, **OUTSIDE}) for line in lines)
    assert not hits("the issuer rotated its keys; a TLS session; audit rows are committed", HISTORY)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_a_measurement_page_is_dated_and_says_how_to_rerun_it(page: Path) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md", page.name), page.name
    text = page.read_text()
    missing = [s for s in PAGE_SECTIONS if s not in text]
    assert not missing, f"{page.name} lacks {missing}"
    assert page.name[:10] in text.splitlines()[0], f"{page.name}: the title names another date"
    command = text[text.index("## Command") : text.index("## Machine")]
    assert "```bash" in command, f"{page.name}: no command block"
    assert not hits(text, OUTSIDE), hits(text, OUTSIDE)
    for script in re.findall(r"\b(scripts/[\w/]+\.(?:py|sh))", command):
        assert (ROOT / script).is_file(), f"{page.name} runs {script}, which the clone lacks"


def test_the_index_lists_every_measurement_page() -> None:
    index = (MEASUREMENTS / "README.md").read_text()
    listed = set(re.findall(r"\]\((\d{4}-\d{2}-\d{2}-[a-z0-9-]+\.md)\)", index))
    assert listed == {p.name for p in PAGES}


@pytest.mark.parametrize("doc", [*MANUALS, *MEASUREMENTS.glob("*.md")], ids=lambda p: p.name)
def test_relative_links_point_at_files_in_the_clone(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to missing files: {broken}"
