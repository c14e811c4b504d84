"""The plan's HTML report as a person sees it: rendered by a real headless Chromium, at desktop and
phone width, with positions measured in the page (DevTools `Runtime.evaluate`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from browser import Chromium, Page, chromium_path  # tests/ is on pytest's pythonpath
from wavefleet.catalog import Catalog
from wavefleet.plan.claims import default_claims_path, load_claims
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.plan.planner import Plan, build_plan
from wavefleet.plan.report import Format, render

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs chromium (./dev test installs it)")

VIEWPORTS: dict[str, dict[str, Any]] = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844, "mobile": True},
}

# Where each part of the page is, in CSS pixels from the top left of the first viewport.
LAYOUT = """(() => {
  const box = el => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const summary = document.querySelector('#summary');
  return {
    viewport: {width: document.documentElement.clientWidth, height: innerHeight},
    scrollWidth: document.documentElement.scrollWidth,
    summary: box(summary),
    blocking: [...summary.querySelectorAll('h3.sev-error + ul > li')].map(box),
    headings: [...document.querySelectorAll('h2')].map(h => ({text: h.textContent, ...box(h)})),
    charts: [...document.querySelectorAll('svg')].map(svg => ({
      svg: box(svg),
      ticks: [...svg.querySelectorAll('.axis text')].map(t => ({text: t.textContent, ...box(t)})),
      values: [...svg.querySelectorAll('.bar-value')].map(t => ({text: t.textContent, ...box(t)})),
    })),
  };
})()"""


@pytest.fixture(scope="module")
def plan() -> Plan:
    # What `wave plan --format html` shows: the example fleet with the seed report's claims.
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    return build_plan(inventory, catalog, load_claims(default_claims_path()))


@pytest.fixture(scope="module")
def report_url(plan: Plan, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "plan.html"
    path.write_text(render(plan, Format.HTML), encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium.start() as started:
        yield started


@pytest.fixture(scope="module", params=list(VIEWPORTS))
def shown(
    request: pytest.FixtureRequest, browser: Chromium, report_url: str
) -> tuple[str, Page, dict[str, Any]]:
    """The report open at one viewport: its name, the page, and where everything is."""
    page = browser.open(report_url, **VIEWPORTS[request.param])
    return request.param, page, page.evaluate(LAYOUT)


def _inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    return bool(
        inner["left"] >= outer["left"] - 0.5
        and inner["right"] <= outer["right"] + 0.5
        and inner["top"] >= outer["top"] - 0.5
        and inner["bottom"] <= outer["bottom"] + 0.5
    )


def test_summary_opens_the_page_with_the_blocking_errors_in_view(
    shown: tuple[str, Page, dict[str, Any]], plan: Plan
) -> None:
    name, page, layout = shown
    height = layout["viewport"]["height"]
    assert layout["summary"]["top"] < height / 4, layout["summary"]
    others = [h for h in layout["headings"] if h["text"] != "Summary"]
    assert all(h["top"] > layout["summary"]["bottom"] for h in others)
    blocking = layout["blocking"]
    assert len(blocking) == len(plan.summary.blocking) > 0
    # A desktop shows every blocking error without scrolling; a phone at least the first.
    in_view = blocking if name == "desktop" else blocking[:1]
    assert all(b["bottom"] <= height for b in in_view), (height, [b["bottom"] for b in blocking])
    assert not page.problems()


def test_nothing_is_wider_than_the_screen(shown: tuple[str, Page, dict[str, Any]]) -> None:
    # Wide tables and charts scroll inside their own box; the page never scrolls sideways.
    _, _, layout = shown
    assert layout["scrollWidth"] <= layout["viewport"]["width"], layout["scrollWidth"]


def test_memory_bars_show_their_scale_and_numbers(
    shown: tuple[str, Page, dict[str, Any]], plan: Plan
) -> None:
    charts = shown[2]["charts"]
    assert charts and sum(len(c["values"]) for c in charts) == len(plan.memory)
    for chart in charts:
        ticks = chart["ticks"]
        assert ticks[0]["text"] == "0" and ticks[-1]["text"] == "GiB" and len(ticks) >= 3
        for label in ticks + chart["values"]:
            assert _inside(label, chart["svg"]), (label, chart["svg"])
        for value in chart["values"]:
            assert " of " in value["text"] and "GiB" in value["text"]
            assert value["right"] > value["left"]  # drawn, not empty


def test_screenshot_is_a_png_of_the_viewport(shown: tuple[str, Page, dict[str, Any]]) -> None:
    name, page, _ = shown
    png = page.screenshot()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (VIEWPORTS[name]["width"], VIEWPORTS[name]["height"])
    assert _dark_share(png) > 0.01  # text drawn (dark on white), not a blank tab


def test_a_page_error_is_reported(browser: Chromium, tmp_path: Path) -> None:
    # The helper itself: a console error and an uncaught exception are both caught.
    broken = tmp_path / "broken.html"
    broken.write_text("<script>console.error('boom'); undefinedFunction();</script>", encoding="utf-8")
    problems = browser.open(broken.as_uri(), **VIEWPORTS["desktop"]).problems()
    assert {p.source for p in problems} >= {"console", "exception"}
    assert any("boom" in p.text for p in problems) and any("undefinedFunction" in p.text for p in problems)


def _dark_share(png: bytes) -> float:
    gray = Image.open(io.BytesIO(png)).convert("L")
    return sum(gray.histogram()[:128]) / (gray.width * gray.height)


def test_tabs_screenshot_in_any_order(browser: Chromium, report_url: str) -> None:
    # The helper itself: a tab behind another is brought to the front before its screenshot.
    phone = browser.open(report_url, **VIEWPORTS["phone"])
    desktop = browser.open(report_url, **VIEWPORTS["desktop"])
    for page in (phone, desktop, phone):
        assert _dark_share(page.screenshot()) > 0.01
    phone.close()
    assert _dark_share(desktop.screenshot()) > 0.01
