"""The plan as one self-contained HTML page: inline CSS, inline SVG, no external assets."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import jinja2

from wavefleet.plan.planner import MemoryBar, Plan
from wavefleet.plan.report.common import (
    ACTUAL_COLUMNS,
    ACTUAL_TITLE,
    FIT_MARK,
    TIER_ORDER,
    actual_rows,
    key_reason,
    services_by_tier,
)

__all__ = ["render_html"]

CHART_WIDTH = 560  # px for the bar area
LABEL_WIDTH = 320  # px for the deployment names left of the bars
# px right of the bars for "13.84 of 14.33 GiB — does not fit" at 11 px (about 6 px a character)
VALUE_WIDTH = 240
ROW_HEIGHT = 22


@dataclass(frozen=True)
class BarGeometry:
    bar: MemoryBar
    y: int
    weights: float
    kv: float
    overhead: float
    budget_x: float
    capacity_x: float
    clipped: bool


def render_html(plan: Plan) -> str:
    template_text = (resources.files("wavefleet.plan.report") / "templates" / "plan.html.j2").read_text(
        encoding="utf-8"
    )
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    template = env.from_string(template_text)
    return template.render(
        plan=plan,
        tiers=services_by_tier(plan.services),
        tier_order=TIER_ORDER,
        fit_mark=FIT_MARK,
        key_reason=key_reason,
        charts=_charts(plan),
        scales=[_scale(capacity) for capacity in _capacities(plan)],
        chart_width=CHART_WIDTH,
        svg_width=LABEL_WIDTH + CHART_WIDTH + VALUE_WIDTH,
        label_width=LABEL_WIDTH,
        row_height=ROW_HEIGHT,
        actual_title=ACTUAL_TITLE,
        actual_columns=ACTUAL_COLUMNS,
        actual_rows=actual_rows(plan),
    )


def _charts(plan: Plan) -> list[tuple[str, int, list[BarGeometry]]]:
    """Per device: its title, SVG height and bars scaled to 1.25 x its capacity (longer bars clip)."""
    charts = []
    for device in plan.devices:
        bars = [b for b in plan.memory if b.device == device.key]
        if not bars:
            continue
        scale = CHART_WIDTH / (1.25 * device.memory_gib)
        geometry = []
        for index, bar in enumerate(bars):
            total = bar.weights_gib + bar.kv_gib + bar.overhead_gib
            geometry.append(
                BarGeometry(
                    bar=bar,
                    y=index * ROW_HEIGHT,
                    weights=min(bar.weights_gib * scale, CHART_WIDTH),
                    kv=max(0.0, min(bar.kv_gib * scale, CHART_WIDTH - bar.weights_gib * scale)),
                    overhead=max(
                        0.0,
                        min(bar.overhead_gib * scale, CHART_WIDTH - (bar.weights_gib + bar.kv_gib) * scale),
                    ),
                    budget_x=bar.budget_gib * scale,
                    capacity_x=device.memory_gib * scale,
                    clipped=total * scale > CHART_WIDTH,
                )
            )
        title = f"{device.key} ({device.host}): {device.memory_gib:g} GiB {'device memory' if device.kind != 'cpu' else 'host RAM'}"
        charts.append((title, len(bars) * ROW_HEIGHT + 26, geometry))
    return charts


def _capacities(plan: Plan) -> list[float]:
    """Device memory of each charted device, in chart order."""
    return [d.memory_gib for d in plan.devices if any(b.device == d.key for b in plan.memory)]


def _scale(capacity: float) -> list[tuple[str, float]]:
    """Axis ticks (label, x) over the chart's 1.25 x capacity, at a round step."""
    span = 1.25 * capacity
    step = next(s for s in (0.5, 1, 2, 4, 8, 16, 32, 64, 128) if span / s <= 8)
    scale = CHART_WIDTH / span
    ticks = []
    value = 0.0
    while value <= span + 1e-9:
        ticks.append((f"{value:g}", value * scale))
        value += step
    return ticks
