"""Musts a person can act on: every Must engine has something placed on it, and no two Musts fight
over one device.

Runs after the MoSCoW tiers and the placements:

1. conflict: two Must engines whose inventory deployments oversubscribe one GPU (the
   `gpu-oversubscribed` finding) cannot both be deployed as written; the lower-scoring one, unless
   the plan places it elsewhere (which resolves it), is demoted to Should, saying with which and
   where;
2. not placed: a Must serving engine (category inference or serving) with no placement in the plan
   and no inventory deployment free of errors would be a Must nothing runs on; it is demoted to
   Should, saying so.

Demotions only lower a tier, so what a service depends on stays at least its tier.
"""

from __future__ import annotations

from wavefleet.plan.findings import Finding, FindingCode, Severity
from wavefleet.plan.inventory import Inventory
from wavefleet.plan.moscow import MoscowSummary, ServicePlan, Tier, TierDecision, TierRule
from wavefleet.plan.placement import Placement

__all__ = ["ENGINE_CATEGORIES", "resolve_musts"]

ENGINE_CATEGORIES = frozenset({"inference", "serving"})


def resolve_musts(
    services: list[ServicePlan],
    summary: MoscowSummary,
    inventory: Inventory,
    placements: list[Placement],
    findings: list[Finding],
) -> tuple[list[ServicePlan], MoscowSummary]:
    """Services with conflicting or unplaced Must engines demoted to Should, and the summary's effort."""
    by_id = {s.id: s for s in services}
    service_of = {d.id: d.service for d in inventory.deployments}
    demoted: dict[str, TierDecision] = {}
    placed = {p.engine for p in placements}
    for finding in findings:
        if finding.code is not FindingCode.GPU_OVERSUBSCRIBED:
            continue
        users = [u.split(" ")[0] for u in str(finding.numbers.get("deployments", "")).split(", ") if u]
        musts = sorted(
            {service_of[u] for u in users if u in service_of and by_id[service_of[u]].moscow is Tier.MUST},
            key=lambda sid: (-by_id[sid].score, sid),
        )
        for loser in musts[1:]:
            # A Must the plan places elsewhere is resolved by that placement, not demoted.
            if loser in demoted or loser in placed:
                continue
            demoted[loser] = TierDecision(
                rule=TierRule.MUST_CONFLICT,
                reason=(
                    f"demoted Must -> Should: it conflicts with {musts[0]} (Must, score "
                    f"{by_id[musts[0]].score:.2f} > {by_id[loser].score:.2f}) on {finding.subject}, whose memory "
                    "both claim at start (gpu-oversubscribed); deploy it there only instead of, or after resizing, "
                    f"{musts[0]}"
                ),
            )
    failing = {f.subject for f in findings if f.severity is Severity.ERROR}
    working = {d.service for d in inventory.deployments if d.id not in failing and d.model is not None}
    for service in services:
        if (
            service.moscow is Tier.MUST
            and service.category in ENGINE_CATEGORIES
            and service.id not in placed
            and service.id not in working
            and service.id not in demoted
        ):
            demoted[service.id] = TierDecision(
                rule=TierRule.NOT_PLACED,
                reason=(
                    "demoted Must -> Should: the plan places no model on it and no deployment of it in the "
                    "inventory works as written, so nothing would run on it in Week 1"
                ),
            )
    if not demoted:
        return services, summary
    out = []
    for service in services:
        decision = demoted.get(service.id)
        if decision is None:
            out.append(service)
            continue
        out.append(
            service.model_copy(
                update={
                    "moscow": Tier.SHOULD,
                    "reasons": [*service.reasons, decision.reason],
                    "decided_by": decision,
                }
            )
        )
    out.sort(key=lambda p: (-p.moscow.rank, -p.score, p.id))
    effort = {tier: round(sum(s.effort_days for s in out if s.moscow is tier), 2) for tier in Tier}
    planned = effort[Tier.MUST] + effort[Tier.SHOULD] + effort[Tier.COULD]
    share = effort[Tier.MUST] / planned if planned else 0.0
    within = share <= summary.limit
    head = (
        f"Must effort is {share:.0%} of the plan's effort, within DSDM's 60%"
        if within
        else summary.explanation
    )
    note = f"; {', '.join(sorted(demoted))} demoted to Should (a Must must be deployable: see their reasons)"
    return out, summary.model_copy(
        update={
            "effort_days": effort,
            "must_share": round(share, 3),
            "within_limit": within,
            "explanation": head + note,
        }
    )
