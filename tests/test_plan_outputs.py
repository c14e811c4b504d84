"""`wave plan` on the default inventory: the four outputs, the JSON contract, placements, roadmap."""

from __future__ import annotations

import html as html_lib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from click.testing import CliRunner

from helpers import run_wave
from wavefleet.catalog import Catalog
from wavefleet.cli.plan import plan as plan_command
from wavefleet.plan.findings import FindingCode
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.plan.moscow import TierRule
from wavefleet.plan.planner import Plan, build_plan
from wavefleet.plan.report import Format, render
from wavefleet.plan.roadmap import placement_criteria

TIERS = {"must", "should", "could", "wont"}
FITS = {"ok", "partial", "no"}
RULES = {rule.value for rule in TierRule}
CODES = {code.value for code in FindingCode}
CRITERION = re.compile(r"^(output_tps|p95_ttft_all_ms|median_tpot_all_ms|error_rate)([<>])(\d+(\.\d+)?)$")


@pytest.fixture(scope="module")
def plan() -> Plan:
    catalog = Catalog.load()
    return build_plan(load_inventory(default_inventory_path(), catalog), catalog)


@pytest.fixture(scope="module")
def contract(plan: Plan) -> dict[str, Any]:
    result = CliRunner().invoke(plan_command, ["--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert isinstance(data, dict)
    return data


def test_json_contract(contract: dict[str, Any], plan: Plan) -> None:
    for key in ("services", "findings", "placements", "roadmap", "memberships"):
        assert key in contract
    devices = {d["key"] for d in contract["devices"]}
    assert len(contract["services"]) == len(Catalog.load().services)
    for service in contract["services"]:
        assert {"id", "name", "moscow", "reasons", "effort_days", "fit"} <= service.keys()
        assert service["moscow"] in TIERS
        assert service["reasons"] and all(isinstance(r, str) for r in service["reasons"])
        assert (
            service["decided_by"]["rule"] in RULES and service["decided_by"]["reason"] in service["reasons"]
        )
        assert set(service["fit"]) == devices and set(service["fit"].values()) <= FITS
    for finding in contract["findings"]:
        assert {"severity", "code", "subject", "message", "numbers"} <= finding.keys()
        assert finding["severity"] in {"error", "warning", "info"}
        assert finding["code"] in CODES
        assert isinstance(finding["numbers"], dict)
    assert contract["services"] == json.loads(plan.model_dump_json())["services"]


def test_every_device_gets_a_placement_or_a_reason(plan: Plan) -> None:
    placed = {p.device for p in plan.placements}
    assert placed | {n.device for n in plan.not_placed} == {d.key for d in plan.devices}
    assert not placed & {n.device for n in plan.not_placed}
    gpu = next(p for p in plan.placements if p.device == "rtx-5070-ti")
    assert gpu.engine == "vllm"


def test_roadmap_criteria_are_bench_expressions_derived_from_estimates(plan: Plan) -> None:
    by_device = {p.device: p for p in plan.placements}
    steps = [s for phase in plan.roadmap for s in phase.steps if s.criteria and s.action.startswith("Serve ")]
    tested = [p for p in plan.placements if p.platform != "windows"]
    assert len(steps) == len(tested)
    assert all(CRITERION.match(c) for phase in plan.roadmap for s in phase.steps for c in s.criteria)
    for step in steps:
        placement = by_device[step.where[0]]
        criteria, _, _ = placement_criteria(placement)
        assert step.criteria == criteria
        assert f"--criteria '{','.join(criteria)}'" in step.command
        assert "estimates" in step.basis


def test_memberships_report_what_each_unlocks(plan: Plan) -> None:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    held = {m.program for m in plan.memberships if m.held}
    assert held == set(inventory.memberships)
    for report in plan.memberships:
        targets = {u.target for u in report.unlocks}
        opened = {s.id for s in catalog.services.values() if report.program in s.access.unlocked_by}
        assert opened <= targets
        if report.held:
            assert report.next_steps


class _Assets(HTMLParser):
    """Collects anything that would make the page fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.external.append(f"{tag} {name}={value}")


def test_html_is_self_contained_with_matrix_and_memory_chart(plan: Plan) -> None:
    html = render(plan, Format.HTML)
    parser = _Assets()
    parser.feed(html)
    assert parser.external == []
    assert "script" not in parser.tags and "link" not in parser.tags
    assert "<style>" in html and html.count("<svg") == len({b.device for b in plan.memory})
    for service in plan.services:
        assert service.name.replace("&", "&amp;") in html
    assert "does not fit" in html  # the seed's Jetson TensorRT-LLM deployment


def test_markdown_and_table_name_every_service(plan: Plan) -> None:
    markdown = render(plan, Format.MARKDOWN)
    table = render(plan, Format.TABLE, width=200)
    assert "## MoSCoW matrix" in markdown and "## Roadmap" in markdown
    for service in plan.services:
        assert f"| {service.id} |" in markdown
        assert service.id in table
    assert "port-clash" in table


def test_out_writes_whole_file_and_keeps_it_on_error(tmp_path: Path) -> None:
    out = tmp_path / "plan.html"
    runner = CliRunner()
    result = runner.invoke(plan_command, ["--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = out.read_text()
    assert first.startswith("<!DOCTYPE html>") and first.rstrip().endswith("</html>")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nhosts: []\npower_price_per_kwh: 0.1\n")
    result = runner.invoke(plan_command, ["--inventory", str(bad), "--format", "html", "--out", str(out)])
    assert result.exit_code != 0
    assert out.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "plan.html"]


def test_cli_exits_2_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        dedent(
            """\
            power_price_per_kwh: 0.12
            hosts:
              - id: desk
                name: desktop
                cpu: ryzen-9-9900x
                ram_gib: lots
            """
        )
    )
    result = run_wave("plan", "--inventory", str(path), "--format", "json")
    assert result.returncode == 2, result.stderr
    assert "inventory.yaml:6" in result.stderr.replace("\n", "")
    assert result.stdout == ""


def test_power_is_device_tdps_times_a_day_at_the_inventory_price(plan: Plan) -> None:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    for power in plan.power:
        host = inventory.host(power.host)
        refs = ([host.cpu] if host.cpu else []) + list(host.gpus)
        watts = sum(ref.tdp_w or catalog.hardware[ref.device].tdp_w for ref in refs)
        assert power.devices_tdp_w == pytest.approx(watts)
        assert power.cost_per_day_at_tdp == pytest.approx(
            watts * 24 / 1000 * inventory.power_price_per_kwh, abs=0.01
        )


def test_every_format_carries_the_summary_claims_and_criteria(plan: Plan) -> None:
    texts = {
        fmt: render(plan, fmt, width=400) for fmt in (Format.TABLE, Format.MARKDOWN, Format.HTML, Format.JSON)
    }
    criteria = [",".join(s.criteria) for phase in plan.roadmap for s in phase.steps if s.criteria]
    assert criteria
    for fmt, text in texts.items():
        flat = html_lib.unescape(text) if fmt is Format.HTML else text
        flat = flat.replace("\\u003c", "<").replace("\\u003e", ">").replace("\n", " ")
        for claim in plan.claims:
            assert claim.id in flat, (fmt, claim.id)
        for line in criteria:
            assert line in flat, (fmt, line)
        for action in plan.summary.actions:
            assert action.split(":")[0] in flat, (fmt, action)
    html = texts[Format.HTML]
    # the summary comes first, before the matrix and the findings
    assert html.index('id="summary"') < html.index("<h2>MoSCoW matrix</h2>") < html.index("<h2>Findings</h2>")


def test_html_bars_have_a_scale_and_numbers(plan: Plan) -> None:
    html = render(plan, Format.HTML)
    charts = html.count("<svg")
    assert charts and html.count('class="axis"') == charts
    assert html.count('class="bar-value"') == len(plan.memory)
    assert re.search(r">\d+(\.\d+)? of \d+\.\d\d GiB", html)


@pytest.fixture(scope="module")
def checked_plan() -> Plan:
    """What `wave plan` shows by default: the example fleet with the seed report's claims."""
    from wavefleet.plan.claims import default_claims_path, load_claims

    catalog = Catalog.load()
    return build_plan(
        load_inventory(default_inventory_path(), catalog), catalog, load_claims(default_claims_path())
    )


def test_table_keeps_every_claims_sources_and_line(checked_plan: Plan) -> None:
    # Text in brackets (the sources) is printed as is, never read as terminal markup.
    wide = render(checked_plan, Format.TABLE, width=3000)
    narrow = render(checked_plan, Format.TABLE, width=160)
    assert any(claim.sources for claim in checked_plan.claims)
    for claim in checked_plan.claims:
        for source in claim.sources:
            assert source in wide, (claim.id, source)
        assert claim.where.split()[0] in narrow, claim.where  # file:line whole at a terminal's width
