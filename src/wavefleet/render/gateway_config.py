"""The Wavefleet gateway's own `wave.yaml`: each host's `wave agent` under `agents:`, and the
engines no agent serves (Triton's KServe v2 API, which the agent does not forward) as backends.

The agents are the ones `render.agent_config` writes agent.yaml for, at the same address and port,
with the fleet's shared secret file and, with `agent_tls_dir`, mutual TLS: the gateway federates
exactly the agents the same render produced.
"""

from __future__ import annotations

import yaml

from wavefleet.agent.config import Defaults
from wavefleet.engines import Api
from wavefleet.gateway.config import BackendConfig, GatewayConfig, PolicyName, Timeouts
from wavefleet.render.agent_config import AGENT_SECRET_FILE, agent_engines, agent_nodes, agent_ref
from wavefleet.render.spec import EngineSpec, FleetSpec

__all__ = ["backend_url", "dump_gateway_config", "gateway_config"]


def backend_url(fleet: FleetSpec, engine: EngineSpec) -> str:
    return f"http://{fleet.node(engine.node).address}:{engine.port}"


def gateway_config(fleet: FleetSpec) -> GatewayConfig:
    """Listens on loopback of the NGINX node: NGINX (TLS, Authentik, rate limit) is the way in."""
    nodes = agent_nodes(fleet)
    fronted = {e.name for node in nodes for e in agent_engines(fleet, node)}
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
        if engine.name not in fronted
    ]
    agents = [agent_ref(fleet, node) for node in nodes]
    # the wave policy predicts from each backend's profile; an agent has none
    profiled = backends and not agents and all(b.profile for b in backends)
    policy = PolicyName.WAVE if profiled else PolicyName.LEAST_LOADED
    timeouts = Timeouts()
    if agents:  # a request may first wait for its model to load on the agent (its load timeout)
        timeouts = Timeouts(first_byte_s=Defaults().load_timeout + timeouts.first_byte_s)
    return GatewayConfig(
        host="127.0.0.1",
        port=fleet.gateway.wave_port,
        policy=policy,
        backends=backends,
        agents=agents,
        timeouts=timeouts,
    )


def dump_gateway_config(fleet: FleetSpec, config: GatewayConfig) -> str:
    data = config.model_dump(mode="json", exclude_none=True)
    header = f"# Rendered by `wave render` for fleet {fleet.name}. Run: wave serve --config wave.yaml\n"
    if config.agents:
        header += (
            f"# Each host's `wave agent` (its agent.yaml) is under agents:; put the fleet's shared secret in\n"
            f"# {AGENT_SECRET_FILE} here as on every agent host.\n"
        )
    if config.backends:
        header += (
            "# Backend profiles are estimates from the sizing engine (see each profile's basis);\n"
            "# the wave policy starts from them and learns from finished requests.\n"
        )
    return header + yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=True)
