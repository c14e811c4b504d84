"""The plan: inventory + catalog -> MoSCoW priorities, placements, findings, roadmap, memberships.

`build_plan` is deterministic: the same inventory and catalog give the same plan. Every number in
it that is estimated says so, and `notes` says what the estimates rest on.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog, DeviceKind
from wavefleet.plan.actual import ActualDraw
from wavefleet.plan.claims import ClaimsFile, ClaimVerdict, Verdict, evaluate_claims
from wavefleet.plan.findings import DeploymentSizing, Finding, check_inventory
from wavefleet.plan.inventory import FleetDevice, GoalWorkload, Inventory, fleet_devices
from wavefleet.plan.memberships import MembershipReport, membership_reports
from wavefleet.plan.moscow import MoscowSummary, ServicePlan, prioritize
from wavefleet.plan.musts import resolve_musts
from wavefleet.plan.placement import NotPlaced, Placement, ServingLoad, place_models, serving_load
from wavefleet.plan.roadmap import Phase, build_roadmap

__all__ = ["DeviceSummary", "HostPower", "MemoryBar", "Plan", "WorkloadSummary", "build_plan"]

NOTES = [
    "Memory and speed figures are estimates from first principles on catalog facts (wave size explains "
    "each): weights = params x bits per weight; KV = 2 x layers x KV heads x head dim x bytes per token; "
    "decode bound = memory bandwidth / bytes read per token; prefill = FLOPs / peak compute at 50%.",
    "A claim above a bound is physically ruled out (error); above the estimate but under the bound, unlikely "
    "(warning). Measure with `wave bench` and compare with the roadmap's criteria.",
]


class DeviceSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    host: str
    name: str
    kind: DeviceKind
    memory_gib: float
    memory_bandwidth_gbs: float
    compute_capability: str | None


class MemoryBar(BaseModel):
    """One row of the memory-fit chart: what a placement or deployment puts on a device."""

    model_config = ConfigDict(extra="forbid")

    label: str
    kind: str = Field(description="placement or deployment")
    device: str
    weights_gib: float
    kv_gib: float
    overhead_gib: float
    budget_gib: float
    capacity_gib: float
    fits: bool


class HostPower(BaseModel):
    """What a host's devices may draw at full load, and what a day of that costs (an upper estimate)."""

    model_config = ConfigDict(extra="forbid")

    host: str
    devices_tdp_w: float = Field(description="sum of the devices' TDPs (inventory overrides applied)")
    kwh_per_day_at_tdp: float
    cost_per_day_at_tdp: float
    currency: str


class WorkloadSummary(BaseModel):
    """The workload the plan is sized for: who uses the fleet and what each goal asks at once."""

    model_config = ConfigDict(extra="forbid")

    users: int
    typical_context: int = Field(
        description="speeds are quoted at this context unless a figure says otherwise"
    )
    goals: dict[str, GoalWorkload]
    serving: ServingLoad = Field(description="the workload placements are sized for")


class PlanSummary(BaseModel):
    """What to read first: the errors that block the plan, the three most important actions, and
    how the checked document's claims fared."""

    model_config = ConfigDict(extra="forbid")

    blocking: list[str] = Field(description="error findings, as subject: message")
    actions: list[str] = Field(description="the three most important next steps, in order")
    claims: dict[str, int] = Field(description="verdict -> count")


class Plan(BaseModel):
    """Everything `wave plan` reports; its JSON form is a contract scripts read (docs/plan.md)."""

    model_config = ConfigDict(extra="forbid")

    inventory: str
    summary: PlanSummary
    devices: list[DeviceSummary]
    services: list[ServicePlan]
    moscow: MoscowSummary
    findings: list[Finding]
    workload: WorkloadSummary
    placements: list[Placement]
    not_placed: list[NotPlaced]
    roadmap: list[Phase]
    claims_document: str = Field(description="the document the claims quote; empty when none was checked")
    claims: list[ClaimVerdict]
    memberships: list[MembershipReport]
    memory: list[MemoryBar]
    power: list[HostPower]
    notes: list[str]
    actual: ActualDraw | None = Field(
        default=None, description="`wave plan --actual`: each host's estimate beside its energy counters"
    )


def build_plan(inventory: Inventory, catalog: Catalog, claims: ClaimsFile | None = None) -> Plan:
    devices = fleet_devices(inventory, catalog)
    services, summary = prioritize(inventory, catalog, devices)
    findings, sizings = check_inventory(inventory, catalog, devices)
    load = serving_load(inventory, catalog)
    placements, not_placed = place_models(catalog, devices, load, inventory.models or None)
    goals = {
        g.tag: work for g in inventory.goals if g.weight > 0 and (work := inventory.workload.for_goal(g.tag))
    }
    services, summary = resolve_musts(services, summary, inventory, placements, findings)
    verdicts = (
        evaluate_claims(
            claims,
            catalog,
            findings,
            placements,
            inventory.workload.typical_context,
            {d.hardware.id: d.host.ram_gib for d in devices},
        )
        if claims is not None
        else []
    )
    roadmap = build_roadmap(
        services, placements, findings, {h.id: h.hostname or h.address or h.id for h in inventory.hosts}
    )
    workload = WorkloadSummary(
        users=inventory.workload.users,
        typical_context=inventory.workload.typical_context,
        goals=goals,
        serving=load,
    )
    return Plan(
        inventory=inventory.name,
        summary=_plan_summary(findings, roadmap, verdicts),
        devices=[_summary(d) for d in devices],
        services=services,
        moscow=summary,
        findings=findings,
        workload=workload,
        placements=placements,
        not_placed=not_placed,
        roadmap=roadmap,
        claims_document=claims.document if claims is not None else "",
        claims=verdicts,
        memberships=membership_reports(list(inventory.memberships), catalog, services),
        memory=_memory_bars(devices, placements, sizings),
        power=_power(inventory, devices),
        notes=list(NOTES),
    )


def _plan_summary(findings: list[Finding], roadmap: list[Phase], verdicts: list[ClaimVerdict]) -> PlanSummary:
    blocking = [f"{f.subject}: {f.message}" for f in findings if f.severity.value == "error"]
    actions = []
    if blocking:
        subjects = sorted({f.subject for f in findings if f.severity.value == "error"})
        actions.append(
            f"Fix the {len(blocking)} blocking error(s) on {', '.join(subjects)} before deploying the configs as written"
        )
    first = next((s for phase in roadmap for s in phase.steps if s.command), None)
    if first is not None:
        actions.append(f"{first.action.split(';')[0]}, then check it: {first.command}")
    contradicted = [v for v in verdicts if v.verdict.value == "contradicted"]
    if contradicted:
        actions.append(
            f"Do not rely on the {len(contradicted)} contradicted claim(s) of the checked report; "
            f'the first: "{contradicted[0].quote}" ({contradicted[0].where}): {contradicted[0].right}'
        )
    for phase in roadmap:
        for step in phase.steps:
            if len(actions) >= 3:
                break
            if step.command and step is not first:
                actions.append(f"{step.action.split(';')[0]}, then check it: {step.command}")
    counts = {v.value: 0 for v in Verdict}
    for verdict in verdicts:
        counts[verdict.verdict.value] += 1
    return PlanSummary(blocking=blocking, actions=actions[:3], claims=counts)


def _power(inventory: Inventory, devices: list[FleetDevice]) -> list[HostPower]:
    """Device TDPs only: the rest of each machine (board, disks, fans, PSU losses) comes on top."""
    out = []
    for host in inventory.hosts:
        watts = sum(d.hardware.tdp_w for d in devices if d.host.id == host.id)
        kwh = watts * 24 / 1000
        out.append(
            HostPower(
                host=host.id,
                devices_tdp_w=round(watts, 1),
                kwh_per_day_at_tdp=round(kwh, 2),
                cost_per_day_at_tdp=round(kwh * inventory.power_price_per_kwh, 2),
                currency=inventory.currency,
            )
        )
    return out


def _summary(device: FleetDevice) -> DeviceSummary:
    hw = device.hardware
    return DeviceSummary(
        key=device.key,
        host=device.host.id,
        name=hw.name,
        kind=hw.kind,
        memory_gib=round(device.memory_gib, 2),
        memory_bandwidth_gbs=hw.memory_bandwidth_gbs,
        compute_capability=hw.compute_capability,
    )


def _memory_bars(
    devices: list[FleetDevice], placements: list[Placement], sizings: list[DeploymentSizing]
) -> list[MemoryBar]:
    capacity = {d.key: round(d.memory_gib, 2) for d in devices}
    bars = [
        MemoryBar(
            label=f"plan: {p.model} {p.quant} ({p.engine})",
            kind="placement",
            device=p.device,
            weights_gib=p.weights_gib,
            kv_gib=round(p.sequences * p.kv_gib_per_sequence, 3),
            overhead_gib=p.overhead_gib,
            budget_gib=p.budget_gib,
            capacity_gib=capacity[p.device],
            fits=True,
        )
        for p in placements
    ]
    for s in sizings:
        r = s.result
        # vLLM-like engines take their whole KV budget up front; llama.cpp allocates its slots.
        kv = (
            max(r.kv_budget_gib, 0.0)
            if s.engine != "llama.cpp"
            else r.max_concurrent_sequences * r.kv_gib_per_sequence
        )
        bars.append(
            MemoryBar(
                label=f"{s.deployment} ({s.engine})",
                kind="deployment",
                device=s.device,
                weights_gib=round(r.weights_gib, 3),
                kv_gib=round(kv if r.fits else r.kv_gib_per_sequence, 3),
                overhead_gib=round(r.overhead_gib, 3),
                budget_gib=round(r.budget_gib, 3),
                capacity_gib=capacity[s.device],
                fits=r.fits,
            )
        )
    bars.sort(key=lambda b: (b.device, b.kind != "placement", b.label))
    return bars
