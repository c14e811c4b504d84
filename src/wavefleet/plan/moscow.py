"""MoSCoW priorities for every catalog service, from the person's goals, fleet, memberships and effort.

The rules, in the order they apply (docs/plan.md explains them with the numbers):

1. relevance = sum of the weights of the person's goals the service serves.
2. fit per device: ok / partial / no, from the catalog's `supported_devices`, the host's platform,
   `needs_gpu`, minimum compute capability and GPU memory. Best fit across the fleet counts.
3. score = relevance x fit factor (ok 1.0, partial 0.5, no 0). Must >= 0.75, Should >= 0.4,
   Could >= 0.1, else Won't.
4. ceilings: no fitting device -> Won't; no access through a held membership -> at most Could;
   production use needs a membership not held -> at most Should; built for clusters or teams ->
   at most Could; a service is never above the ceiling of something it depends on.
5. alternatives: within the engine categories (inference, serving), a service whose goals and usable devices are a
   subset of another's (and neither depends on the other) is at most Could, as an alternative to
   the one preferred: the one the inventory deploys, else the higher score, the wider fit, the
   lower effort, the id.
6. dependencies: what a service depends on is promoted to at least its tier.
7. services the inventory says already run (a container's `runs`) count 0 days of effort.
8. DSDM: Must effort <= 60% of Must + Should + Could effort; while over, the lowest-scoring Must
   that is Must on its own merit is demoted to Should. If that cannot bring it under, the
   summary says so and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog, DeviceKind, Membership, Platform, Service
from wavefleet.plan.inventory import FleetDevice, Goal, Inventory

__all__ = [
    "CEILING_NO_ACCESS",
    "MUST_EFFORT_LIMIT",
    "THRESHOLDS",
    "Fit",
    "MoscowSummary",
    "ServicePlan",
    "Tier",
    "TierDecision",
    "TierRule",
    "device_fit",
    "prioritize",
]


class Tier(StrEnum):
    MUST = "must"
    SHOULD = "should"
    COULD = "could"
    WONT = "wont"

    @property
    def rank(self) -> int:
        return {"must": 3, "should": 2, "could": 1, "wont": 0}[self.value]

    @property
    def label(self) -> str:
        return {"must": "Must", "should": "Should", "could": "Could", "wont": "Won't"}[self.value]


class Fit(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    NO = "no"


FIT_FACTOR = {Fit.OK: 1.0, Fit.PARTIAL: 0.5, Fit.NO: 0.0}
THRESHOLDS = ((Tier.MUST, 0.75), (Tier.SHOULD, 0.4), (Tier.COULD, 0.1))
MUST_EFFORT_LIMIT = 0.6  # DSDM: Must Haves at most 60% of the timebox's effort
CEILING_NO_ACCESS = Tier.COULD
CEILING_NO_PRODUCTION = Tier.SHOULD
CEILING_NOT_SINGLE_USER = Tier.COULD
CEILING_ALTERNATIVE = Tier.COULD
# Categories whose services replace one another (one engine per device is enough); elsewhere
# (monitoring, data, training) services with the same goals complement each other.
ALTERNATIVE_CATEGORIES = frozenset({"inference", "serving"})


class TierRule(StrEnum):
    """The rule a service's tier is put down to (the numbered rules above)."""

    SCORE = "score"  # relevance x best fit against the thresholds; nothing else applied
    NO_FITTING_DEVICE = "no-fitting-device"
    NO_ACCESS = "no-access"
    NO_PRODUCTION_ACCESS = "no-production-access"
    NOT_SINGLE_USER = "not-single-user"
    ALTERNATIVE = "alternative"
    DEPENDENCY_CEILING = "dependency-ceiling"
    DSDM_DEMOTION = "dsdm-demotion"
    DEPENDENCY_PROMOTION = "dependency-promotion"
    MUST_CONFLICT = "must-conflict"  # two Musts claim one device (plan/musts.py)
    NOT_PLACED = "not-placed"  # a Must engine nothing is placed on (plan/musts.py)


class TierDecision(BaseModel):
    """Which rule a tier is put down to: a dependency promotion, else the DSDM demotion, else the
    first ceiling the service meets (no fitting device first), else its score."""

    model_config = ConfigDict(extra="forbid")

    rule: TierRule
    reason: str = Field(description="the entry of the service's `reasons` that states it")


class ServicePlan(BaseModel):
    """One service's priority, with the reasons a person can check."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    category: str
    purpose: str
    moscow: Tier
    score: float = Field(description="relevance x best fit factor")
    relevance: float
    reasons: list[str]
    decided_by: TierDecision
    effort_days: float
    fit: dict[str, Fit]
    fit_reasons: dict[str, str]
    access: str = Field(description="open, held or missing")
    depends_on: list[str]
    present_on: list[str] = Field(description="host/container where the inventory says it already runs")
    alternative_to: str | None = None


class MoscowSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    effort_days: dict[Tier, float]
    must_share: float = Field(description="Must effort / (Must + Should + Could effort)")
    limit: float = MUST_EFFORT_LIMIT
    within_limit: bool
    demoted: list[str]
    explanation: str


def device_fit(service: Service, device: FleetDevice) -> tuple[Fit, str]:
    """Whether `service` runs on `device` in its host, and the fact that decides it."""
    fit, reason = _rule_fit(service, device)
    listed = service.supported_devices.get(device.hardware.id, "").strip()
    word = listed.split()[0].strip(":,;.()").lower() if listed else ""
    if word not in {f.value for f in Fit}:
        return fit, reason
    source = next(
        (s.ref for s in service.sources if "supported_devices" in s.fields),
        service.sources[0].ref if service.sources else "",
    )
    catalog_says = f"catalog: {listed}" + (f" (source: {source})" if source else "")
    if Fit(word) is fit:
        return fit, f"{reason}; {catalog_says}"
    why = _note_about(service.notes, device)
    return Fit(word), f"{catalog_says}{': ' + why if why else ''}; by the rules alone: {fit.value} ({reason})"


def _note_about(notes: str, device: FleetDevice) -> str:
    """The sentence of the catalog's notes about this device (else its first): the fact behind a fit."""
    sentences = [part.strip().rstrip(".") for part in re.split(r"(?<=\.)\s+", notes) if part.strip()]
    if not sentences:
        return ""
    family = {"soc": "jetson", "gpu": "geforce"}.get(device.hardware.kind.value, device.hardware.id)
    names = {device.hardware.id, device.hardware.name.lower(), family}
    about = [s for s in sentences if any(n in s.lower() for n in names)]
    return (about or sentences)[0]


def _rule_fit(service: Service, device: FleetDevice) -> tuple[Fit, str]:
    """Fit from platform, GPU need, compute capability and memory alone."""
    hw = device.hardware
    platform_fit, platform_reason = _platform_fit(service, device)
    if platform_fit is Fit.NO:
        return platform_fit, platform_reason
    if hw.kind is DeviceKind.CPU:
        if service.needs_gpu:
            return Fit.NO, f"needs an NVIDIA GPU; {hw.id} is a CPU"
        return platform_fit, platform_reason or f"runs on the CPU ({hw.id})"
    if (
        service.min_compute_capability
        and hw.compute_capability
        and _cc(hw.compute_capability) < _cc(service.min_compute_capability)
    ):
        return Fit.NO, f"min CC {service.min_compute_capability} > {hw.name}'s {hw.compute_capability}"
    if service.needs_gpu and not hw.compute_capability:
        return Fit.NO, f"needs an NVIDIA GPU; {hw.id} has no CUDA compute capability"
    if service.min_gpu_memory_gib is not None and device.memory_gib < service.min_gpu_memory_gib:
        return (
            Fit.NO,
            f"needs {service.min_gpu_memory_gib:g} GiB of GPU memory; {hw.id} has {device.memory_gib:g} GiB",
        )
    detail = []
    if service.min_compute_capability and hw.compute_capability:
        detail.append(f"CC {hw.compute_capability} >= {service.min_compute_capability}")
    if service.min_gpu_memory_gib is not None:
        detail.append(f"{device.memory_gib:g} GiB >= {service.min_gpu_memory_gib:g} GiB")
    reason = "; ".join(filter(None, [", ".join(detail), platform_reason])) or f"runs on {device.host.id}"
    return platform_fit, reason


def _platform_fit(service: Service, device: FleetDevice) -> tuple[Fit, str]:
    platform = device.host.platform
    offered = set(service.platforms)
    if platform in offered:
        return Fit.OK, ""
    names = ", ".join(sorted(p.value for p in offered))
    if platform is Platform.WINDOWS and Platform.WSL in offered:
        return Fit.PARTIAL, f"{device.host.id} runs Windows: through WSL2 only"
    if platform is Platform.JETSON and Platform.ARM64 in offered:
        return Fit.PARTIAL, f"{device.host.id} is a Jetson: generic arm64 builds, not L4T-specific"
    return Fit.NO, f"platforms {names}; {device.host.id} is {platform.value}"


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)


@dataclass
class _Draft:
    service: Service
    relevance: float
    best: Fit
    score: float
    base: Tier
    ceiling: Tier
    score_reason: str
    reasons: list[str] = field(default_factory=list)
    effort: float = 0.0
    present_on: list[str] = field(default_factory=list)
    usable: frozenset[str] = frozenset()
    alternative_to: str | None = None
    ceilings: list[TierDecision] = field(default_factory=list)
    ceiling_tiers: list[Tier] = field(default_factory=list)  # the cap each of `ceilings` sets


def prioritize(
    inventory: Inventory, catalog: Catalog, devices: list[FleetDevice]
) -> tuple[list[ServicePlan], MoscowSummary]:
    """Every catalog service with its tier and reasons, and the effort summary (deterministic)."""
    held = set(inventory.memberships)
    drafts: dict[str, _Draft] = {}
    fits: dict[str, dict[str, tuple[Fit, str]]] = {}
    for service in sorted(catalog.services.values(), key=lambda s: s.id):
        per_device = {device.key: device_fit(service, device) for device in devices}
        fits[service.id] = per_device
        drafts[service.id] = _draft(service, inventory.goals, per_device, held)
        drafts[service.id].present_on = _present_on(inventory, service.id)
        drafts[service.id].effort = 0.0 if drafts[service.id].present_on else service.effort_days
    _mark_alternatives(drafts, {d.service for d in inventory.deployments})
    _propagate_ceilings(drafts)
    forced: set[str] = set()
    tiers, promoted = _promote(drafts, forced)
    summary_note = ""
    while True:
        effort = _effort(drafts, tiers)
        if _share(effort) <= MUST_EFFORT_LIMIT:
            break
        remaining_musts = [sid for sid, tier in tiers.items() if tier is Tier.MUST]
        needed = {dep for sid in remaining_musts for dep in drafts[sid].service.depends_on}
        candidates = [
            d
            for d in drafts.values()
            if tiers[d.service.id] is Tier.MUST
            and min(d.base, d.ceiling, key=lambda t: t.rank) is Tier.MUST
            and d.service.id not in forced
            and d.service.id not in needed
        ]
        if not candidates or len(remaining_musts) <= 1:
            summary_note = _still_over(effort, tiers, drafts, promoted)
            break
        victim = min(candidates, key=lambda d: (d.score, -d.effort, d.service.id))
        forced.add(victim.service.id)
        tiers, promoted = _promote(drafts, forced)
    effort = _effort(drafts, tiers)
    plans = []
    for sid, draft in drafts.items():
        reasons = list(draft.reasons) + [ceiling.reason for ceiling in draft.ceilings]
        demotion = None
        if sid in forced and tiers[sid] is not Tier.MUST:
            demotion = (
                f"demoted Must -> Should by DSDM's 60% rule: lowest score among Musts ({draft.score:.2f})"
            )
            reasons.append(demotion)
        reasons += promoted.get(sid, [])
        if draft.present_on:
            reasons.append(
                f"already runs on {', '.join(draft.present_on)} (inventory): 0 days of effort "
                f"(catalog: {draft.service.effort_days:g} to stand up)"
            )
        else:
            reasons.append(f"effort {draft.service.effort_days:g} day(s) (catalog estimate)")
        plans.append(
            ServicePlan(
                id=sid,
                name=draft.service.name,
                category=draft.service.category,
                purpose=draft.service.purpose,
                moscow=tiers[sid],
                score=round(draft.score, 3),
                relevance=round(draft.relevance, 3),
                reasons=reasons,
                decided_by=_decided_by(draft, demotion, promoted.get(sid, [])),
                effort_days=draft.effort,
                fit={key: fit for key, (fit, _) in fits[sid].items()},
                fit_reasons={key: why for key, (_, why) in fits[sid].items()},
                access=_access_word(draft.service, held),
                depends_on=list(draft.service.depends_on),
                present_on=draft.present_on,
                alternative_to=draft.alternative_to,
            )
        )
    plans.sort(key=lambda p: (-p.moscow.rank, -p.score, p.id))
    share = _share(effort)
    if summary_note:
        explanation = summary_note
    elif forced:
        explanation = (
            f"Must effort is {share:.0%} of {sum(effort[t] for t in (Tier.MUST, Tier.SHOULD, Tier.COULD)):g} "
            f"days after demoting {', '.join(sorted(forced))} (lowest-scoring Musts) to Should"
        )
    else:
        explanation = f"Must effort is {share:.0%} of the plan's effort, within DSDM's 60%"
    summary = MoscowSummary(
        effort_days={tier: round(effort[tier], 2) for tier in Tier},
        must_share=round(share, 3),
        within_limit=share <= MUST_EFFORT_LIMIT,
        demoted=sorted(forced),
        explanation=explanation,
    )
    return plans, summary


def _draft(
    service: Service, goals: list[Goal], per_device: dict[str, tuple[Fit, str]], held: set[Membership]
) -> _Draft:
    reasons: list[str] = []
    matched = [goal for goal in goals if goal.tag in service.serves_goals]
    relevance = sum(goal.weight for goal in matched)
    if matched:
        parts = " + ".join(f"{g.tag} {g.weight:g}" for g in matched)
        reasons.append(f"goals: {parts} = relevance {relevance:.2f}")
    else:
        reasons.append(
            f"none of your goals is one it serves ({', '.join(service.serves_goals) or 'none listed'})"
        )
    best = max((fit for fit, _ in per_device.values()), key=lambda f: FIT_FACTOR[f], default=Fit.NO)
    reasons.append(
        "fit: " + "; ".join(f"{key} {fit.value} ({why})" for key, (fit, why) in per_device.items())
    )
    score = relevance * FIT_FACTOR[best]
    base = next((tier for tier, floor in THRESHOLDS if score >= floor), Tier.WONT)
    score_reason = (
        f"score {relevance:.2f} x best fit {best.value} ({FIT_FACTOR[best]:g}) = {score:.2f} -> {base.label} "
        "(Must >= 0.75, Should >= 0.4, Could >= 0.1)"
    )
    reasons.append(score_reason)
    usable = frozenset(key for key, (fit, _) in per_device.items() if fit is not Fit.NO)
    draft = _Draft(service, relevance, best, score, base, Tier.MUST, score_reason, reasons, usable=usable)
    if best is Fit.NO:
        _lower(draft, Tier.WONT, TierRule.NO_FITTING_DEVICE, "Won't: no device in the fleet fits it")
    access = service.access
    if not _accessible(service, held):
        needed = ", ".join(m.value for m in access.unlocked_by)
        have = ", ".join(sorted(m.value for m in held)) or "none"
        _lower(
            draft,
            CEILING_NO_ACCESS,
            TierRule.NO_ACCESS,
            f"at most Could: needs one of {needed}; you hold {have}",
        )
    else:
        reasons.append(_access_reason(service, held))
    if access.production_requires is not None and access.production_requires not in held:
        _lower(
            draft,
            CEILING_NO_PRODUCTION,
            TierRule.NO_PRODUCTION_ACCESS,
            f"at most Should: production use needs {access.production_requires.value}, which you do "
            "not hold (development and test only)",
        )
    if not service.single_user_fit:
        _lower(
            draft,
            CEILING_NOT_SINGLE_USER,
            TierRule.NOT_SINGLE_USER,
            "at most Could: built for clusters or teams, not one person",
        )
    return draft


def _present_on(inventory: Inventory, service_id: str) -> list[str]:
    return [
        f"{host.id}/{container.id}"
        for host in inventory.hosts
        for container in host.containers
        if service_id in container.runs and not container.planned
    ]


def _mark_alternatives(drafts: dict[str, _Draft], deployed: set[str]) -> None:
    """Cap substitutes at Could: same category, goals and usable devices a subset of another's."""

    def preference(d: _Draft) -> tuple[bool, float, int, float, str]:
        return (d.service.id in deployed, d.score, len(d.usable), -d.effort, d.service.id)

    ranked = sorted(drafts.values(), key=preference, reverse=True)
    for index, alternative in enumerate(ranked):
        for preferred in ranked[:index]:
            a, b = alternative.service, preferred.service
            if (
                a.category == b.category
                and a.category in ALTERNATIVE_CATEGORIES
                and set(a.serves_goals) <= set(b.serves_goals)
                and alternative.usable <= preferred.usable
                and alternative.usable
                and a.id not in b.depends_on
                and b.id not in a.depends_on
                and preferred.alternative_to is None
            ):
                alternative.alternative_to = b.id
                _lower(
                    alternative,
                    CEILING_ALTERNATIVE,
                    TierRule.ALTERNATIVE,
                    f"at most Could: an alternative to {b.id} (same category {a.category}; its goals and "
                    f"usable devices are a subset of {b.id}'s"
                    + (", which your inventory deploys)" if b.id in deployed else ")"),
                )
                break


def _lower(draft: _Draft, ceiling: Tier, rule: TierRule, reason: str) -> None:
    if ceiling.rank < draft.ceiling.rank:
        draft.ceiling = ceiling
    draft.ceilings.append(TierDecision(rule=rule, reason=reason))
    draft.ceiling_tiers.append(ceiling)


def _decided_by(draft: _Draft, demotion: str | None, promotions: list[str]) -> TierDecision:
    if promotions:
        return TierDecision(rule=TierRule.DEPENDENCY_PROMOTION, reason=promotions[0])
    if demotion is not None:
        return TierDecision(rule=TierRule.DSDM_DEMOTION, reason=demotion)
    # A ceiling decides only when it is below what the score gives (no fitting device also zeroes
    # the score: the fit is the cause); then the first one that sets the binding (lowest) cap.
    if draft.ceilings and (draft.ceiling.rank < draft.base.rank or draft.best is Fit.NO):
        binding = [
            c for c, tier in zip(draft.ceilings, draft.ceiling_tiers, strict=True) if tier is draft.ceiling
        ]
        return binding[0]
    return TierDecision(rule=TierRule.SCORE, reason=draft.score_reason)


def _accessible(service: Service, held: Iterable[Membership]) -> bool:
    unlocked_by = set(service.access.unlocked_by)
    return Membership.NONE in unlocked_by or bool(unlocked_by & set(held))


def _access_word(service: Service, held: set[Membership]) -> str:
    if Membership.NONE in service.access.unlocked_by:
        return "open"
    return "held" if _accessible(service, held) else "missing"


def _access_reason(service: Service, held: set[Membership]) -> str:
    if Membership.NONE in service.access.unlocked_by:
        return f"access: open ({service.access.license})"
    via = sorted(m.value for m in set(service.access.unlocked_by) & held)
    return f"access: unlocked by {', '.join(via)}, which you hold ({service.access.license})"


def _propagate_ceilings(drafts: dict[str, _Draft]) -> None:
    """A service can be no higher than what it depends on can be (to a fixpoint; cycles are safe)."""
    changed = True
    while changed:
        changed = False
        for draft in drafts.values():
            for dep_id in draft.service.depends_on:
                dep = drafts.get(dep_id)
                if dep is None:
                    continue
                if dep.ceiling.rank < draft.ceiling.rank:
                    _lower(
                        draft,
                        dep.ceiling,
                        TierRule.DEPENDENCY_CEILING,
                        f"at most {dep.ceiling.label}: depends on {dep_id}, which can be at most "
                        f"{dep.ceiling.label}",
                    )
                    changed = True


def _promote(drafts: dict[str, _Draft], forced: set[str]) -> tuple[dict[str, Tier], dict[str, list[str]]]:
    """Tiers after ceilings, forced demotions and dependency promotion (to a fixpoint)."""
    tiers: dict[str, Tier] = {}
    for sid, draft in drafts.items():
        tier = min(draft.base, draft.ceiling, key=lambda t: t.rank)
        if sid in forced and tier is Tier.MUST:
            tier = Tier.SHOULD
        tiers[sid] = tier
    own = dict(tiers)
    by: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for sid in sorted(drafts):
            for dep_id in drafts[sid].service.depends_on:
                if dep_id in tiers and tiers[dep_id].rank < tiers[sid].rank:
                    tiers[dep_id] = tiers[sid]
                    by[dep_id] = sid
                    changed = True
    promoted = {
        dep: [f"promoted {own[dep].label} -> {tiers[dep].label}: {sid} ({tiers[sid].label}) depends on it"]
        for dep, sid in by.items()
    }
    return tiers, promoted


def _effort(drafts: dict[str, _Draft], tiers: dict[str, Tier]) -> dict[Tier, float]:
    effort: dict[Tier, float] = {tier: 0.0 for tier in Tier}
    for sid, draft in drafts.items():
        effort[tiers[sid]] += draft.effort
    return effort


def _share(effort: dict[Tier, float]) -> float:
    total = effort[Tier.MUST] + effort[Tier.SHOULD] + effort[Tier.COULD]
    return effort[Tier.MUST] / total if total else 0.0


def _still_over(
    effort: dict[Tier, float],
    tiers: dict[str, Tier],
    drafts: dict[str, _Draft],
    promoted: dict[str, list[str]],
) -> str:
    musts = sorted(sid for sid, tier in tiers.items() if tier is Tier.MUST)
    locked = sorted(sid for sid in musts if sid in promoted)
    total = effort[Tier.MUST] + effort[Tier.SHOULD] + effort[Tier.COULD]
    why = (
        f"{', '.join(locked)} are Must only because Musts depend on them"
        if locked
        else "demoting the last Must would leave no Must at all"
    )
    return (
        f"DSDM's 60% rule still breaks: Must effort {effort[Tier.MUST]:g} of {total:g} days "
        f"= {_share(effort):.0%} (Musts: {', '.join(musts)}); {why}. Add Should/Could work to the "
        "timebox or accept the risk knowingly"
    )
