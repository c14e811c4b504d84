"""Every source a user can open: a URL or a file in the repository, never a path outside it."""

from __future__ import annotations

import re
from pathlib import Path

from wavefleet.catalog import Catalog
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.plan.planner import build_plan
from wavefleet.plan.report import Format, render

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"/work/|shared/|reference/|nvidia-facts")


def test_no_catalog_entry_code_or_example_cites_a_path_outside_the_repository() -> None:
    files = [
        *(ROOT / "src" / "wavefleet" / "catalog" / "data").glob("*.yaml"),
        *(ROOT / "src" / "wavefleet" / "catalog" / "statements").glob("*.yaml"),
        *(ROOT / "src" / "wavefleet" / "plan").rglob("*.py"),
        *(ROOT / "src" / "wavefleet" / "plan").rglob("*.yaml"),
        *(ROOT / "examples").glob("*.yaml"),
    ]
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []


def test_no_reason_or_finding_in_the_plan_cites_a_path_outside_the_repository() -> None:
    catalog = Catalog.load()
    plan = build_plan(load_inventory(default_inventory_path(), catalog), catalog)
    text = render(plan, Format.JSON)
    assert OUTSIDE.search(text) is None, OUTSIDE.search(text)
