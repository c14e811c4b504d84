#!/usr/bin/env python3
"""Screenshots of the example plan's HTML report in headless Chromium, for docs/plan.md: the first
view at desktop width (1280 x 800) and at phone width (390 x 844), and the memory charts.

    PYTHONPATH=src python scripts/plan_report_screenshots.py [OUT_DIR]   # default docs/images
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium helper the report's browser test uses

from browser import Chromium  # noqa: E402
from wavefleet.catalog import Catalog  # noqa: E402
from wavefleet.plan.claims import default_claims_path, load_claims  # noqa: E402
from wavefleet.plan.inventory import default_inventory_path, load_inventory  # noqa: E402
from wavefleet.plan.planner import build_plan  # noqa: E402
from wavefleet.plan.report import Format, render  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.load()
    plan = build_plan(
        load_inventory(default_inventory_path(), catalog), catalog, load_claims(default_claims_path())
    )
    with tempfile.TemporaryDirectory() as tmp, Chromium.start() as browser:
        report = Path(tmp) / "plan.html"
        report.write_text(render(plan, Format.HTML), encoding="utf-8")
        shots = {
            "plan-report-desktop.png": (browser.open(report.as_uri(), width=1280, height=800), None),
            "plan-report-phone.png": (
                browser.open(report.as_uri(), width=390, height=844, mobile=True),
                None,
            ),
            "plan-report-memory.png": (browser.open(report.as_uri(), width=1280, height=800), "memory"),
        }
        for name, (page, section) in shots.items():
            if section == "memory":
                page.evaluate(
                    "[...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Memory')).scrollIntoView()"
                )
            problems = page.problems()
            if problems:
                raise SystemExit(f"the report logged problems: {problems}")
            (out / name).write_bytes(page.screenshot())
            print(out / name)


if __name__ == "__main__":
    main()
