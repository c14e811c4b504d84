"""The plan as an inventory: the same fleet, with the plan's placements as its deployments.

`wave plan --write-inventory FILE` writes it, so `wave sim --inventory FILE` simulates what the
plan proposes and `wave bench` checks each roadmap criterion against it. Deployment ids and ports
are the ones the roadmap's `wave bench` commands use.
"""

from __future__ import annotations

from typing import Any

import yaml

from wavefleet.plan.inventory import Deployment, Inventory
from wavefleet.plan.planner import Plan
from wavefleet.plan.roadmap import placement_deployment_id, placement_port

__all__ = ["planned_deployments", "planned_inventory", "planned_inventory_yaml"]


def planned_deployments(plan: Plan) -> list[Deployment]:
    out = []
    for placement in plan.placements:
        vllm_like = placement.engine != "llama.cpp"
        out.append(
            Deployment(
                id=placement_deployment_id(placement),
                service=placement.engine,
                host=placement.host,
                container=placement.container,
                device=placement.device.split("@")[0],
                model=placement.model,
                quant=placement.quant,
                kv_dtype=placement.kv_dtype,
                # llama.cpp's --ctx-size is shared by its --parallel slots
                max_model_len=placement.context if vllm_like else placement.context * placement.sequences,
                max_num_seqs=max(placement.max_concurrent_sequences, 1) if vllm_like else None,
                parallel=None if vllm_like else placement.sequences,
                port=placement_port(placement, plan.placements),
                notes=f"planned by `wave plan` for the {placement.goal} workload",
            )
        )
    return out


def planned_inventory(inventory: Inventory, plan: Plan) -> Inventory:
    """`inventory` with its deployments replaced by the plan's placements (facts and claims dropped)."""
    return inventory.model_copy(update={"deployments": planned_deployments(plan), "facts": []})


def planned_inventory_yaml(inventory: Inventory, plan: Plan) -> str:
    data: dict[str, Any] = planned_inventory(inventory, plan).model_dump(
        mode="json", by_alias=True, exclude_defaults=True
    )
    header = (
        "# Written by `wave plan --write-inventory`: the fleet with the plan's placements as its deployments.\n"
        "# Simulate it with `wave sim --inventory THIS_FILE`; check the roadmap with its `wave bench` commands.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=100)
