"""The Wavefleet gateway's own `wave.yaml`: every planned engine as a backend."""

from __future__ import annotations

import yaml

from wavefleet.engines import Api
from wavefleet.gateway.config import BackendConfig, GatewayConfig, PolicyName
from wavefleet.render.spec import EngineSpec, FleetSpec

__all__ = ["backend_url", "dump_gateway_config", "gateway_config"]


def backend_url(fleet: FleetSpec, engine: EngineSpec) -> str:
    return f"http://{fleet.node(engine.node).address}:{engine.port}"


def gateway_config(fleet: FleetSpec) -> GatewayConfig:
    """Listens on loopback of the NGINX node: NGINX (TLS, Authentik, rate limit) is the way in."""
    backends = [
        BackendConfig.model_validate(
            {
                "name": engine.name,
                "url": backend_url(fleet, engine),
                "kind": engine.kind,
                "models": [engine.model],
                "host": engine.node,
                "device": engine.device,
                "gpu": engine.gpu_index is not None,
                "triton_model": engine.model if engine.kind.traits.api is Api.TRITON else None,
                "profile": engine.profile,
            }
        )
        for engine in fleet.engines
    ]
    policy = PolicyName.WAVE if backends and all(b.profile for b in backends) else PolicyName.LEAST_LOADED
    return GatewayConfig(host="127.0.0.1", port=fleet.gateway.wave_port, policy=policy, backends=backends)


def dump_gateway_config(fleet: FleetSpec, config: GatewayConfig) -> str:
    data = config.model_dump(mode="json", exclude_none=True)
    header = (
        f"# Rendered by `wave render` for fleet {fleet.name}. Run: wave serve --config wave.yaml\n"
        "# Backend profiles are estimates from the sizing engine (see each profile's basis);\n"
        "# the wave policy starts from them and learns from finished requests.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=True)
