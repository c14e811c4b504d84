"""What each of the person's memberships unlocks in the catalog, what it does not, and what to do next."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog, Membership, MembershipInfo
from wavefleet.plan.moscow import ServicePlan, Tier

__all__ = ["MembershipReport", "Unlocked", "membership_reports"]


class Unlocked(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str = Field(description="a service id, or a named benefit")
    name: str
    moscow: Tier | None = Field(description="the service's tier in this plan; None for a benefit")
    detail: str


class MembershipReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    program: Membership
    name: str
    held: bool
    unlocks: list[Unlocked]
    does_not_cover: list[str]
    next_steps: list[str]
    cost: str = ""


def membership_reports(
    held: list[Membership], catalog: Catalog, services: list[ServicePlan]
) -> list[MembershipReport]:
    """One report per held membership, then any program not held that gates a planned service."""
    plans = {s.id: s for s in services}
    reports = [_report(program, True, held, catalog, plans) for program in held]
    gating = {
        m
        for s in catalog.services.values()
        for m in [*s.access.unlocked_by, s.access.production_requires]
        if m is not None and m is not Membership.NONE and m not in held
    }
    for program in sorted(gating, key=lambda m: m.value):
        report = _report(program, False, held, catalog, plans)
        if any(u.moscow in (Tier.MUST, Tier.SHOULD, Tier.COULD) for u in report.unlocks):
            reports.append(report)
    return reports


def _info(catalog: Catalog, program: Membership) -> MembershipInfo | None:
    return next((m for m in catalog.memberships.values() if m.program is program), None)


def _report(
    program: Membership,
    is_held: bool,
    held: list[Membership],
    catalog: Catalog,
    plans: dict[str, ServicePlan],
) -> MembershipReport:
    info = _info(catalog, program)
    unlocks: dict[str, Unlocked] = {}
    does_not_cover: list[str] = []
    for service in sorted(catalog.services.values(), key=lambda s: s.id):
        access = service.access
        opens = program in access.unlocked_by
        for_production = access.production_requires is program
        if not (opens or for_production):
            continue
        tier = plans[service.id].moscow if service.id in plans else None
        open_anyway = Membership.NONE in access.unlocked_by
        if for_production and not opens:
            detail = f"production use ({access.license})"
        elif open_anyway:
            detail = f"also open to anyone ({access.license}); the program adds access paths or support"
        else:
            detail = f"access ({access.license})"
        unlocks[service.id] = Unlocked(target=service.id, name=service.name, moscow=tier, detail=detail)
        needs = access.production_requires
        if opens and needs is not None and needs is not program and needs not in held:
            does_not_cover.append(
                f"production use of {service.name}: needs {needs.value}, which you do not hold"
            )
    if info is not None:
        for unlock in info.unlocks:
            service_plan = plans.get(unlock.target)
            unlocks[unlock.target] = Unlocked(
                target=unlock.target,
                name=service_plan.name if service_plan else unlock.target,
                moscow=service_plan.moscow if service_plan else None,
                detail=unlock.detail,
            )
        does_not_cover += [item for item in info.does_not_cover if item not in does_not_cover]
    ordered = sorted(unlocks.values(), key=lambda u: (-(u.moscow.rank if u.moscow else -1), u.target))
    return MembershipReport(
        program=program,
        name=info.name if info else program.value,
        held=is_held,
        unlocks=ordered,
        does_not_cover=does_not_cover,
        next_steps=list(info.next_steps) if info else [],
        cost=info.cost if info else "",
    )
