"""From the planner's inventory to a simulated fleet and the gateway config that routes across it.

Each deployment whose service is an inference engine the simulator models (vLLM, llama.cpp,
SGLang, Triton / TensorRT-LLM) and that names a device, a model and a quantization becomes one
engine, profiled by the sizing engine; every other deployment is skipped with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from wavefleet.catalog import Catalog
from wavefleet.engines import EngineKind, sizing_engine
from wavefleet.files import write_atomic
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.plan.inventory import Deployment, Inventory, load_inventory
from wavefleet.sim.profile import SimProfile
from wavefleet.sim.profiles import ProfileSpec, profile_from_spec, simulated_kind

__all__ = ["PlannedFleet", "Skipped", "gateway_config", "plan_fleet", "write_gateway_config"]

# Context assumed when a deployment gives none (stated in the basis); slots come from the engines
# table's default.
DEFAULT_CONTEXT = {
    EngineKind.VLLM: 8192,
    EngineKind.LLAMACPP: 4096,
    EngineKind.SGLANG: 8192,
    EngineKind.TRITON: 4096,
}


@dataclass(frozen=True)
class Skipped:
    deployment: str
    reason: str


@dataclass
class PlannedFleet:
    profiles: list[SimProfile] = field(default_factory=list)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # profile name -> deployment
    skipped: list[Skipped] = field(default_factory=list)


def plan_fleet(path: Path, catalog: Catalog) -> PlannedFleet:
    """Load the inventory at `path` and profile every deployment the simulator can run."""
    return plan_fleet_from(load_inventory(path, catalog), catalog)


def plan_fleet_from(inventory: Inventory, catalog: Catalog) -> PlannedFleet:
    planned = PlannedFleet()
    for deployment in inventory.deployments:
        spec_or_reason = _spec(deployment, inventory)
        if isinstance(spec_or_reason, str):
            planned.skipped.append(Skipped(deployment.id, spec_or_reason))
            continue
        try:
            profile = profile_from_spec(spec_or_reason, catalog)
        except ValueError as exc:
            planned.skipped.append(Skipped(deployment.id, f"sizing: {exc}"))
            continue
        if deployment.n_gpu_layers is not None:
            profile.basis.insert(1, f"the inventory sets --n-gpu-layers {deployment.n_gpu_layers}; "
                                 "the estimate uses the layers the sizing engine finds fit")  # fmt: skip
        planned.profiles.append(profile)
        planned.deployments[profile.name] = deployment
    return planned


def _spec(deployment: Deployment, inventory: Inventory) -> ProfileSpec | str:
    engine = deployment.service
    dialect = simulated_kind(engine)
    if dialect is None:
        modelled = [s for k in EngineKind if k.traits.simulated for s in k.traits.services()]
        return f"service {engine!r} is not an inference engine the simulator models ({', '.join(modelled)})"
    missing = [name for name in ("device", "model", "quant") if getattr(deployment, name) is None]
    if missing:
        return f"it names no {' / '.join(missing)}, so the sizing engine has nothing to size"
    assert deployment.device and deployment.model and deployment.quant
    host = inventory.host(deployment.host)
    context = deployment.max_model_len or DEFAULT_CONTEXT[dialect]
    slots = (
        deployment.parallel if dialect is EngineKind.LLAMACPP else deployment.max_num_seqs
    ) or dialect.traits.slots.count
    assumed = []
    if deployment.max_model_len is None:
        assumed.append(f"context {context} assumed (the inventory gives none)")
    if (deployment.parallel if dialect is EngineKind.LLAMACPP else deployment.max_num_seqs) is None:
        assumed.append(f"{slots} concurrent sequences assumed (the engine's default)")
    cpu = host.cpu.device if host.cpu is not None else None
    return ProfileSpec(
        name=deployment.id,
        device=deployment.device,
        model=deployment.model,
        quant=deployment.quant,
        engine=sizing_engine(engine),
        context=context,
        max_num_seqs=slots,
        kv_dtype=deployment.kv_dtype,
        memory_utilization=deployment.gpu_memory_utilization or 0.9,
        host=cpu if cpu != deployment.device else None,
        host_ram_gib=host.ram_gib,
        note="; ".join([f"inventory deployment {deployment.id} on host {deployment.host}", *assumed]),
        kind=dialect,
    )


def gateway_config(planned: PlannedFleet, urls: dict[str, str], speed: float) -> GatewayConfig:
    """A gateway config listing every simulated engine as a backend, with its estimated profile."""
    backends = []
    for profile in planned.profiles:
        deployment = planned.deployments[profile.name]
        backends.append(
            BackendConfig.model_validate(
                {
                    "name": profile.name,
                    "url": urls[profile.name],
                    "kind": profile.dialect,
                    "models": [profile.model],
                    "host": deployment.host,
                    "device": profile.device,
                    "gpu": profile.gpu,
                    "profile": profile.to_backend_profile(speed),
                    # the simulator serves every engine's metrics on its HTTP port (Triton's too)
                    **(
                        {"metrics_url": urls[profile.name] + "/metrics"}
                        if profile.dialect.traits.metrics_port is not None
                        else {}
                    ),
                }
            )
        )
    return GatewayConfig(backends=backends)


def write_gateway_config(
    planned: PlannedFleet, urls: dict[str, str], speed: float, path: Path
) -> GatewayConfig:
    """Write the gateway config for the running fleet to `path`, whole or not at all."""
    config = gateway_config(planned, urls, speed)
    header = (
        "# Written by `wave sim --inventory`: simulated engines on this machine, not the real fleet.\n"
        "# Each backend's profile is a sizing estimate (see its basis); serve with `wave serve --config`.\n"
    )
    body = yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False, width=100)
    write_atomic(path, header + body)
    return config
