"""Small helpers the renderers share: symbols, short reasons, grouping."""

from __future__ import annotations

from wavefleet.plan.moscow import Fit, ServicePlan, Tier

__all__ = ["FIT_MARK", "TIER_ORDER", "key_reason", "services_by_tier"]

FIT_MARK = {Fit.OK: "✓", Fit.PARTIAL: "~", Fit.NO: "✗"}
TIER_ORDER = (Tier.MUST, Tier.SHOULD, Tier.COULD, Tier.WONT)


def services_by_tier(services: list[ServicePlan]) -> dict[Tier, list[ServicePlan]]:
    return {tier: [s for s in services if s.moscow is tier] for tier in TIER_ORDER}


def key_reason(service: ServicePlan) -> str:
    """The one reason that decided the tier: a promotion, demotion or ceiling, else the score."""
    for prefix in ("promoted", "demoted", "Won't", "at most"):
        for reason in service.reasons:
            if reason.startswith(prefix):
                return reason
    for reason in service.reasons:
        if reason.startswith(("goals:", "none of your goals")):
            return reason
    return service.reasons[0] if service.reasons else ""
