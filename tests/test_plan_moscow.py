"""MoSCoW rules on small catalogs built here, so each rule is checked on its own."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wavefleet.catalog import Access, Catalog, Hardware, Membership, Service, Source
from wavefleet.plan.inventory import Goal, Host, Inventory, fleet_devices
from wavefleet.plan.moscow import MUST_EFFORT_LIMIT, Fit, ServicePlan, Tier, TierRule, prioritize
from wavefleet.plan.report.common import key_reason
from wavefleet.plan.roadmap import build_roadmap

SRC = [Source(ref="test fixture")]
TAGS = ["llm-serving", "rag", "observability", "security", "telecom"]


def hardware() -> dict[str, Hardware]:
    common: dict[str, Any] = {"sources": SRC, "vendor": "x", "architecture": "x", "tdp_w": 50}
    items = [
        Hardware(
            id="big-gpu",
            name="Big GPU",
            kind="gpu",
            memory_gib=16,
            memory_bandwidth_gbs=896,
            compute_capability="12.0",
            **common,
        ),
        Hardware(
            id="old-gpu",
            name="GTX 1650",
            kind="gpu",
            memory_gib=4,
            memory_bandwidth_gbs=128,
            compute_capability="7.5",
            **common,
        ),
        Hardware(id="cpu", name="CPU", kind="cpu", memory_bandwidth_gbs=90, cores=12, **common),
    ]
    return {h.id: h for h in items}


def service(
    sid: str,
    *,
    goals: list[str],
    effort: float = 1.0,
    needs_gpu: bool = False,
    min_cc: str | None = None,
    unlocked_by: list[Membership] | None = None,
    production: Membership | None = None,
    depends_on: list[str] | None = None,
    category: str = "misc",
) -> Service:
    return Service(
        id=sid,
        name=sid.upper(),
        sources=SRC,
        vendor="x",
        category=category,
        purpose="p",
        serves_goals=goals,
        needs_gpu=needs_gpu,
        min_compute_capability=min_cc,
        platforms=["x86_64"],
        access=Access(
            license="L", unlocked_by=unlocked_by or [Membership.NONE], production_requires=production
        ),
        depends_on=depends_on or [],
        effort_days=effort,
    )


def inventory(
    gpus: list[str], goals: dict[str, float], memberships: list[Membership] | None = None
) -> Inventory:
    host = Host(id="h", name="h", cpu={"device": "cpu"}, ram_gib=64, gpus=[{"device": g} for g in gpus])
    return Inventory(
        power_price_per_kwh=0.1,
        hosts=[host],
        memberships=memberships or [],
        goals=[Goal(tag=t, weight=w) for t, w in goals.items()],
    )


def plan(services: list[Service], inv: Inventory) -> tuple[dict[str, ServicePlan], Any]:
    catalog = Catalog(hardware=hardware(), services={s.id: s for s in services})
    plans, summary = prioritize(inv, catalog, fleet_devices(inv, catalog))
    return {p.id: p for p in plans}, summary


def decided(plan: ServicePlan) -> TierRule:
    """The rule behind the tier, after checking that its reason is one the plan lists."""
    assert plan.decided_by.reason in plan.reasons
    return plan.decided_by.rule


def test_a_tier_the_score_alone_decides_says_so() -> None:
    plans, _ = plan([service("a", goals=["rag"])], inventory([], {"rag": 0.5}))
    assert plans["a"].moscow is Tier.SHOULD
    assert decided(plans["a"]) is TierRule.SCORE
    assert plans["a"].decided_by.reason.startswith("score 0.50")


def test_gpu_only_service_without_a_fitting_device_is_wont_and_says_why() -> None:
    needs_ada = service("fp8-engine", goals=["llm-serving"], needs_gpu=True, min_cc="8.9")
    plans, _ = plan([needs_ada], inventory(["old-gpu"], {"llm-serving": 1.0}))
    assert plans["fp8-engine"].moscow is Tier.WONT
    assert plans["fp8-engine"].fit == {"cpu": Fit.NO, "old-gpu": Fit.NO}
    assert "min CC 8.9 > GTX 1650's 7.5" in plans["fp8-engine"].fit_reasons["old-gpu"]
    assert decided(plans["fp8-engine"]) is TierRule.NO_FITTING_DEVICE
    # The same service on a fleet that has a new enough GPU is Must.
    plans, _ = plan([needs_ada], inventory(["old-gpu", "big-gpu"], {"llm-serving": 1.0}))
    assert plans["fp8-engine"].moscow is Tier.MUST


def test_service_without_access_is_never_must() -> None:
    gated = service("gated", goals=["llm-serving"], unlocked_by=[Membership.NVAIE])
    plans, _ = plan([gated], inventory([], {"llm-serving": 1.0}, [Membership.DEVELOPER_PROGRAM]))
    assert plans["gated"].moscow is Tier.COULD
    assert plans["gated"].access == "missing"
    assert any("needs one of nvidia-ai-enterprise" in r for r in plans["gated"].reasons)
    assert decided(plans["gated"]) is TierRule.NO_ACCESS
    plans, _ = plan([gated], inventory([], {"llm-serving": 1.0}, [Membership.NVAIE]))
    assert plans["gated"].moscow is Tier.MUST


def test_production_requirement_not_held_caps_at_should() -> None:
    nim = service(
        "nim", goals=["llm-serving"], unlocked_by=[Membership.DEVELOPER_PROGRAM], production=Membership.NVAIE
    )
    plans, _ = plan([nim], inventory([], {"llm-serving": 1.0}, [Membership.DEVELOPER_PROGRAM]))
    assert plans["nim"].moscow is Tier.SHOULD
    assert any("production use needs nvidia-ai-enterprise" in r for r in plans["nim"].reasons)
    assert decided(plans["nim"]) is TierRule.NO_PRODUCTION_ACCESS


def test_dependencies_of_a_must_are_promoted_with_a_reason() -> None:
    runtime = service("runtime", goals=[], effort=0.25)
    engine = service("engine", goals=["llm-serving"], depends_on=["runtime"])
    filler = service("dash", goals=["observability"], effort=2)
    plans, _ = plan([runtime, engine, filler], inventory([], {"llm-serving": 1.0, "observability": 0.5}))
    assert plans["engine"].moscow is Tier.MUST
    assert plans["runtime"].moscow is Tier.MUST
    assert "promoted Won't -> Must: engine (Must) depends on it" in plans["runtime"].reasons
    assert decided(plans["runtime"]) is TierRule.DEPENDENCY_PROMOTION
    assert plans["runtime"].decided_by.reason == "promoted Won't -> Must: engine (Must) depends on it"


def test_a_service_is_capped_by_what_it_depends_on() -> None:
    gpu_only = service("gpu-lib", goals=[], needs_gpu=True)
    app = service("app", goals=["rag"], depends_on=["gpu-lib"])
    plans, _ = plan([gpu_only, app], inventory([], {"rag": 1.0}))
    assert plans["gpu-lib"].moscow is Tier.WONT
    assert plans["app"].moscow is Tier.WONT
    assert any("depends on gpu-lib" in r for r in plans["app"].reasons)
    assert decided(plans["app"]) is TierRule.DEPENDENCY_CEILING
    assert decided(plans["gpu-lib"]) is TierRule.NO_FITTING_DEVICE


def test_dsdm_rule_demotes_the_lowest_scoring_must() -> None:
    a = service("a", goals=["llm-serving"], effort=3)
    b = service("b", goals=["rag"], effort=3)
    c = service("c", goals=["security"], effort=2)
    plans, summary = plan([a, b, c], inventory([], {"llm-serving": 1.0, "rag": 0.9, "security": 0.4}))
    # Before the rule: a and b are Must (6 of 8 days = 75%); b scores lower, so it goes.
    assert plans["a"].moscow is Tier.MUST
    assert plans["b"].moscow is Tier.SHOULD
    assert summary.demoted == ["b"]
    assert summary.must_share <= MUST_EFFORT_LIMIT
    assert any("DSDM" in r for r in plans["b"].reasons)
    assert decided(plans["b"]) is TierRule.DSDM_DEMOTION
    assert decided(plans["a"]) is TierRule.SCORE


def test_dsdm_rule_says_so_when_it_cannot_hold() -> None:
    only = service("only", goals=["llm-serving"], effort=5)
    plans, summary = plan([only], inventory([], {"llm-serving": 1.0}))
    assert plans["only"].moscow is Tier.MUST
    assert not summary.within_limit
    assert "still breaks" in summary.explanation


def test_alternative_engines_are_capped_at_could() -> None:
    vllm = service("vllm", goals=["llm-serving", "rag"], category="inference", needs_gpu=True)
    other = service("other", goals=["llm-serving"], category="inference", needs_gpu=True)
    plans, _ = plan([vllm, other], inventory(["big-gpu"], {"llm-serving": 1.0, "rag": 0.5}))
    assert plans["vllm"].moscow is Tier.MUST
    assert plans["other"].moscow is Tier.COULD
    assert plans["other"].alternative_to == "vllm"
    assert decided(plans["other"]) is TierRule.ALTERNATIVE


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[list[Service], Inventory]:
    count = draw(st.integers(1, 7))
    services = []
    for index in range(count):
        sid = f"s{index}"
        deps = (
            draw(st.lists(st.sampled_from([f"s{i}" for i in range(index)]), max_size=2, unique=True))
            if index
            else []
        )
        access = draw(st.sampled_from([[Membership.NONE], [Membership.NGC], [Membership.NVAIE]]))
        services.append(
            service(
                sid,
                goals=draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True)),
                effort=draw(st.sampled_from([0.25, 0.5, 1, 2, 5])),
                needs_gpu=draw(st.booleans()),
                min_cc=draw(st.sampled_from([None, "7.5", "8.9", "9.0"])),
                unlocked_by=access,
                production=draw(st.sampled_from([None, Membership.NVAIE])),
                depends_on=deps,
                category=draw(st.sampled_from(["inference", "monitoring", "data"])),
            )
        )
    goals = draw(
        st.dictionaries(st.sampled_from(TAGS), st.sampled_from([0.0, 0.1, 0.5, 0.8, 1.0]), max_size=4)
    )
    gpus = draw(st.lists(st.sampled_from(["big-gpu", "old-gpu"]), max_size=2, unique=True))
    held = draw(st.lists(st.sampled_from([Membership.NGC, Membership.DEVELOPER_PROGRAM]), unique=True))
    return services, inventory(gpus, goals, held)


@settings(max_examples=150, deadline=None)
@given(catalogs())
def test_moscow_invariants(case: tuple[list[Service], Inventory]) -> None:
    services, inv = case
    plans, summary = plan(services, inv)
    held = set(inv.memberships)
    for s in services:
        p = plans[s.id]
        unlocked = Membership.NONE in s.access.unlocked_by or bool(set(s.access.unlocked_by) & held)
        if not unlocked:
            assert p.moscow is not Tier.MUST, p.reasons
        decided(p)
        if all(fit is Fit.NO for fit in p.fit.values()):
            assert p.moscow is Tier.WONT, p.reasons
            assert p.decided_by.rule is TierRule.NO_FITTING_DEVICE, p.reasons
        for dep in s.depends_on:
            # What a service depends on is never below it.
            assert plans[dep].moscow.rank >= p.moscow.rank, (s.id, dep, p.reasons, plans[dep].reasons)
    assert summary.within_limit or "still breaks" in summary.explanation
    musts = sum(p.effort_days for p in plans.values() if p.moscow is Tier.MUST)
    planned = sum(p.effort_days for p in plans.values() if p.moscow is not Tier.WONT)
    if summary.within_limit and planned:
        assert musts <= MUST_EFFORT_LIMIT * planned + 1e-9


def test_a_team_tool_is_capped_at_could_by_its_own_rule() -> None:
    team = service("team", goals=["rag"]).model_copy(update={"single_user_fit": False})
    plans, _ = plan([team], inventory([], {"rag": 1.0}))
    assert plans["team"].moscow is Tier.COULD
    assert decided(plans["team"]) is TierRule.NOT_SINGLE_USER


def test_the_matrix_and_the_roadmap_show_the_deciding_reason() -> None:
    gpu_only = service("gpu-lib", goals=["rag"], needs_gpu=True)
    plain = service("plain", goals=["rag"])
    plans, _ = plan([gpu_only, plain], inventory([], {"rag": 1.0}))
    # A tier the score decided is shown by the goals behind the score; any other by its rule's reason.
    assert key_reason(plans["plain"]) == "goals: rag 1 = relevance 1.00"
    assert key_reason(plans["gpu-lib"]) == "Won't: no device in the fleet fits it"
    [wont] = [phase for phase in build_roadmap(list(plans.values()), [], []) if phase.tier is Tier.WONT]
    assert [step.action for step in wont.steps] == ["Not now: GPU-LIB: Won't: no device in the fleet fits it"]


def test_a_ceiling_above_the_score_does_not_decide_the_tier() -> None:
    # Riva on the home lab: no goal is speech (score 0, Won't) while production needs a membership
    # not held (at most Should). The score put it at Won't, so the score is what decided it.
    speech = service(
        "speech",
        goals=["telecom"],
        unlocked_by=[Membership.DEVELOPER_PROGRAM],
        production=Membership.NVAIE,
    )
    plans, _ = plan([speech], inventory([], {"rag": 1.0}, [Membership.DEVELOPER_PROGRAM]))
    assert plans["speech"].moscow is Tier.WONT
    assert decided(plans["speech"]) is TierRule.SCORE
    # Two ceilings: the lower one is what binds.
    gated_team = service("gt", goals=["rag"], production=Membership.NVAIE).model_copy(
        update={"single_user_fit": False}
    )
    plans, _ = plan([gated_team], inventory([], {"rag": 1.0}))
    assert plans["gt"].moscow is Tier.COULD
    assert decided(plans["gt"]) is TierRule.NOT_SINGLE_USER
