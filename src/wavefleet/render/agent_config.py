"""Each engine host's `agent.yaml` (`wave agent --config`), from the plan's placements.

Each placement is served under its model's name (a second replica of a model on the same host
under its engine's name). A llama.cpp placement becomes a model the agent starts itself (llama-server on the GGUF under
`MODELS_DIR`, the placement's context and slots, on its GPU or the CPU); any other placement
that serves OpenAI's API is run by the node's compose file, and the agent fronts it by its
published port (`url:`). Placements of engines with another API (Triton's KServe v2) stay out of
the agent: the gateway reaches them directly. The file is checked by loading it with the
agent's own config loader (files not required to exist here: they are on the host).

The gateway's wave.yaml (render.gateway_config) lists each of these agents under `agents:`
(`agent_ref`), with the same address, port, secret file and, with `agent_tls_dir`, mutual TLS.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from wavefleet.agent.config import DEFAULT_PORT, AgentConfig
from wavefleet.engines import EngineKind
from wavefleet.errors import UsageError
from wavefleet.gateway.config import AgentRef
from wavefleet.render.services import AGENT_SECRET_FILE, MODELS_DIR, agent_engines
from wavefleet.render.spec import EngineSpec, FleetSpec, NodeSpec

__all__ = [
    "AGENT_FILE",
    "AGENT_SECRET_FILE",
    "agent_engines",
    "agent_nodes",
    "agent_ref",
    "agent_settings",
    "agent_yaml",
    "check_agent_yaml",
    "served_names",
]

AGENT_FILE = "agent.yaml"


def agent_nodes(fleet: FleetSpec) -> list[NodeSpec]:
    """The nodes that run a `wave agent`: those with a placement it serves."""
    return [node for node in fleet.nodes if agent_engines(fleet, node)]


def _tls_files(fleet: FleetSpec, stem: str) -> tuple[str, str, str]:
    """(CA, certificate, key) under the fleet's agent TLS folder, for `stem` (a node, or gateway)."""
    folder = fleet.gateway.agent_tls_dir
    return f"{folder}/ca.pem", f"{folder}/{stem}.pem", f"{folder}/{stem}.key"


def agent_ref(fleet: FleetSpec, node: NodeSpec) -> AgentRef:
    """How the gateway reaches `node`'s agent: its address and port, the fleet's secret file,
    and with `agent_tls_dir` HTTPS presenting the gateway's client certificate."""
    tls = fleet.gateway.agent_tls_dir is not None
    ref: dict[str, Any] = {
        "name": node.name,
        "url": f"{'https' if tls else 'http'}://{node.address}:{DEFAULT_PORT}",
        "secret": {"file": AGENT_SECRET_FILE},
    }
    if tls:
        ca, cert, key = _tls_files(fleet, "gateway")
        ref["tls"] = {"ca": ca, "cert": cert, "key": key}
    return AgentRef.model_validate(ref)


def _device(engine: EngineSpec) -> str:
    return "cpu" if engine.gpu_index is None else f"gpu{engine.gpu_index}"


def _model(engine: EngineSpec, name: str) -> dict[str, Any]:
    if engine.kind is EngineKind.LLAMACPP:
        model: dict[str, Any] = {
            "name": name,
            "gguf": f"{MODELS_DIR}/{engine.weights}",
            "context": engine.max_model_len,
            "slots": engine.parallel,
            "device": _device(engine),
        }
        if engine.n_gpu_layers is not None and engine.gpu_index is not None:
            model["n_gpu_layers"] = engine.n_gpu_layers
        if engine.threads is not None:
            model["threads"] = engine.threads
        return model
    return {
        "name": name,
        "kind": engine.kind.value,
        "url": f"http://127.0.0.1:{engine.port}",
        "context": engine.max_model_len,
        "slots": engine.max_num_seqs,
    }


def _names(engines: list[EngineSpec]) -> list[str]:
    """The served name of each placement: its model, or its engine's name for a second replica of
    the same model on the host (one agent serves a name once)."""
    seen: set[str] = set()
    names = []
    for engine in engines:
        names.append(engine.model if engine.model not in seen else engine.name)
        seen.add(engine.model)
    return names


def served_names(fleet: FleetSpec, node: NodeSpec) -> list[tuple[EngineSpec, str]]:
    """Each placement `node`'s agent serves, with the model name it serves it under."""
    engines = agent_engines(fleet, node)
    return list(zip(engines, _names(engines), strict=True))


def agent_settings(fleet: FleetSpec, node: NodeSpec) -> dict[str, Any] | None:
    """What `node`'s agent.yaml says (every placement's context and slots written out), or None
    when nothing is placed there."""
    engines = agent_engines(fleet, node)
    if not engines:
        return None
    devices: dict[str, dict[str, Any]] = {"cpu": {}}
    ram = [e.host_ram_gib for e in engines if e.host_ram_gib is not None]
    if ram:
        devices["cpu"] = {"budget": f"{min(ram):g}GiB"}
    for engine in engines:
        if engine.gpu_index is not None and engine.kind is EngineKind.LLAMACPP:
            devices[_device(engine)] = {"gpu": engine.gpu_index}
    settings: dict[str, Any] = {
        "name": node.name,
        "host": node.address,
        "port": DEFAULT_PORT,
        "secret": {"file": AGENT_SECRET_FILE},
    }
    if fleet.gateway.agent_tls_dir is not None:
        ca, cert, key = _tls_files(fleet, node.name)
        settings["tls"] = {"cert": cert, "key": key, "client_ca": ca}
    return {
        **settings,
        "devices": devices,
        "models": [_model(e, name) for e, name in zip(engines, _names(engines), strict=True)],
        "defaults": {"ttl": -1},
    }


def agent_yaml(settings: dict[str, Any]) -> str:
    header = (
        f"# wave agent --config agent.yaml on {settings['name']}: the plan's placements, started on demand.\n"
        f"# Put the shared secret on the first line of {AGENT_SECRET_FILE} (e.g. openssl rand -hex 32).\n"
    )
    return header + yaml.safe_dump(settings, sort_keys=False)


def check_agent_yaml(text: str, where: str) -> AgentConfig:
    """`text` loaded as the agent loads its config (but for the model files, which are on the
    host); UsageError naming the file and the problem when the agent would refuse it."""
    try:
        return AgentConfig.model_validate(yaml.safe_load(text), context={"check_files": False})
    except (ValidationError, yaml.YAMLError) as exc:
        raise UsageError(f"{where}: the agent would refuse it: {exc}") from exc
