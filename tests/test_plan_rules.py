"""The common-sense rules of docs/plan.md, each checked on the example plan."""

from __future__ import annotations

from collections import Counter

import pytest

from wavefleet.catalog import Catalog
from wavefleet.plan.inventory import (
    DEFAULT_GOAL_WORKLOADS,
    Inventory,
    default_inventory_path,
    fleet_devices,
    load_inventory,
)
from wavefleet.plan.moscow import Tier, TierRule
from wavefleet.plan.musts import ENGINE_CATEGORIES
from wavefleet.plan.placement import place_models, serving_load
from wavefleet.plan.planner import Plan, build_plan
from wavefleet.plan.roadmap import NOT_FOR_THIS_FLEET


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(scope="module")
def inventory(catalog: Catalog) -> Inventory:
    return load_inventory(default_inventory_path(), catalog)


@pytest.fixture(scope="module")
def plan(inventory: Inventory, catalog: Catalog) -> Plan:
    return build_plan(inventory, catalog)


def test_every_placement_meets_its_goals_floor(plan: Plan) -> None:
    assert plan.placements
    for p in plan.placements:
        assert p.per_request_tokens_per_s >= p.min_tokens_per_s, p.device
        assert p.ttft_s <= p.max_ttft_s, p.device
        assert p.max_concurrent_sequences >= p.sequences, p.device
        used = p.weights_gib + p.overhead_gib + p.sequences * p.kv_gib_per_sequence
        assert used <= p.budget_gib + 1e-6, p.device


def test_no_larger_model_meets_the_floor_on_the_same_device(
    plan: Plan, inventory: Inventory, catalog: Catalog
) -> None:
    devices = {d.key: d for d in fleet_devices(inventory, catalog)}
    load = serving_load(inventory, catalog)
    for p in plan.placements:
        params = catalog.models[p.model].params_b
        larger = [m for m in inventory.models if catalog.models[m].params_b > params]
        for model in larger:
            found, _ = place_models(catalog, [devices[p.device]], load, [model])
            assert found == [], (p.device, model)


def test_one_server_per_model_per_container(plan: Plan) -> None:
    per_container = Counter((p.host, p.container, p.model) for p in plan.placements if p.container)
    assert all(count == 1 for count in per_container.values()), per_container
    # LXC 107 holds the GTX 1650 and the host's CPU: the 3B on the GPU, not a second copy on the CPU.
    lxc = [p for p in plan.placements if p.container == "lxc-107"]
    assert [p.device for p in lxc] == ["gtx-1650"]


def test_every_must_engine_runs_something_and_musts_do_not_fight(plan: Plan) -> None:
    placed = {p.engine for p in plan.placements}
    for s in plan.services:
        if s.moscow is Tier.MUST and s.category in ENGINE_CATEGORIES:
            assert s.id in placed, s.id
    by_id = {s.id: s for s in plan.services}
    assert by_id["triton"].moscow is Tier.SHOULD
    assert by_id["triton"].decided_by.rule is TierRule.MUST_CONFLICT
    assert "vllm" in by_id["triton"].decided_by.reason and "rtx-5070-ti" in by_id["triton"].decided_by.reason
    assert by_id["openvino"].decided_by.rule is TierRule.NOT_PLACED


def test_no_load_test_where_nothing_is_rendered(inventory: Inventory, catalog: Catalog) -> None:
    patient = inventory.workload.model_copy(
        update={
            "goals": {
                "llm-serving": DEFAULT_GOAL_WORKLOADS["llm-serving"].model_copy(update={"max_ttft_s": 20})
            }
        }
    )
    plan = build_plan(inventory.model_copy(update={"workload": patient}), catalog)
    [xps13] = [p for p in plan.placements if p.device == "core-ultra-7-258v"]
    assert xps13.platform == "windows"
    steps = [s for phase in plan.roadmap for s in phase.steps if s.where == ["core-ultra-7-258v"]]
    assert steps and all(not s.criteria and not s.command for s in steps)
    assert "no load test" in steps[0].action


def test_what_the_fleet_cannot_run_is_not_in_the_weeks(plan: Plan) -> None:
    [elsewhere] = [phase for phase in plan.roadmap if phase.name == NOT_FOR_THIS_FLEET]
    names = {s.service for s in elsewhere.steps}
    assert {"aodt", "dynamo", "morpheus", "blueprint-rag"} <= names
    weeks = {
        s.service
        for phase in plan.roadmap
        if phase.tier in (Tier.MUST, Tier.SHOULD, Tier.COULD)
        for s in phase.steps
    }
    assert not names & weeks
    assert all("built for clusters or teams" in s.action for s in elsewhere.steps)
