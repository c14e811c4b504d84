"""Small helpers the renderers share: symbols, short reasons, grouping."""

from __future__ import annotations

from wavefleet.plan.moscow import Fit, ServicePlan, Tier, TierRule

__all__ = ["FIT_MARK", "TIER_ORDER", "key_reason", "services_by_tier"]

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
