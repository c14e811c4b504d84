"""Small helpers the renderers share: symbols, short reasons, grouping."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wavefleet.plan.moscow import Fit, ServicePlan, Tier, TierRule

if TYPE_CHECKING:
    from wavefleet.plan.planner import Plan

__all__ = [
    "ACTUAL_COLUMNS",
    "ACTUAL_TITLE",
    "FIT_MARK",
    "TIER_ORDER",
    "actual_rows",
    "key_reason",
    "services_by_tier",
]

FIT_MARK = {Fit.OK: "✓", Fit.PARTIAL: "~", Fit.NO: "✗"}
TIER_ORDER = (Tier.MUST, Tier.SHOULD, Tier.COULD, Tier.WONT)


def services_by_tier(services: list[ServicePlan]) -> dict[Tier, list[ServicePlan]]:
    return {tier: [s for s in services if s.moscow is tier] for tier in TIER_ORDER}


def key_reason(service: ServicePlan) -> str:
    """The one reason behind the tier (`decided_by`); a tier the score decided shows the goals
    behind the score, the first of the service's reasons."""
    if service.decided_by.rule is TierRule.SCORE:
        return service.reasons[0]
    return service.decided_by.reason


ACTUAL_TITLE = "Planned vs measured energy"
ACTUAL_COLUMNS = (
    "host",
    "period (UTC)",
    "hours",
    "TDP estimate kWh",
    "estimate cost",
    "measured kWh",
    "measured cost",
    "mean W",
    "measured / estimate",
    "measured from",
)


def actual_rows(plan: Plan) -> list[list[str]]:
    """`wave plan --actual`'s comparison as text cells, one row per host (ACTUAL_COLUMNS)."""
    if plan.actual is None:
        return []
    rows = []
    for h in plan.actual.hosts:

        def number(value: float | None, fmt: str, unit: str = "") -> str:
            return "-" if value is None else f"{value:{fmt}}{unit}"

        rows.append(
            [
                h.host,
                f"{h.start} to {h.end}" if h.start else "not measured",
                number(h.hours, ".2f"),
                number(h.estimate_kwh, ".3f"),
                number(h.estimate_cost, ".4f", f" {h.currency}"),
                number(h.measured_kwh, ".3f"),
                number(h.measured_cost, ".4f", f" {h.currency}"),
                number(h.measured_mean_w, ".1f"),
                number(h.measured_share_of_estimate, ".0%"),
                "; ".join(h.sources),
            ]
        )
    return rows
