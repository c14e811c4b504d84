"""Each engine host's `agent.yaml` (`wave agent --config`), from the plan's placements.

Each placement is served under its model's name (a second replica of a model on the same host
under its engine's name). A llama.cpp placement becomes a model the agent starts itself (llama-server on the GGUF under
`MODELS_DIR`, the placement's context and slots, on its GPU or the CPU); any other placement
is run by the node's compose file, and the agent fronts it by its published port (`url:`).
The file is checked by loading it with the agent's own config loader (files not required to
exist here: they are on the host).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from wavefleet.agent.config import DEFAULT_PORT, AgentConfig
from wavefleet.engines import EngineKind
from wavefleet.errors import UsageError
from wavefleet.render.services import MODELS_DIR
from wavefleet.render.spec import EngineSpec, FleetSpec, NodeSpec

__all__ = ["AGENT_FILE", "AGENT_SECRET_FILE", "agent_settings", "agent_yaml", "check_agent_yaml"]

AGENT_FILE = "agent.yaml"
AGENT_SECRET_FILE = "/etc/wavefleet/agent.secret"


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


def agent_settings(fleet: FleetSpec, node: NodeSpec) -> dict[str, Any] | None:
    """What `node`'s agent.yaml says (every placement's context and slots written out), or None
    when nothing is placed there."""
    engines = fleet.engines_on(node.name)
    if not engines:
        return None
    devices: dict[str, dict[str, Any]] = {"cpu": {}}
    ram = [e.host_ram_gib for e in engines if e.host_ram_gib is not None]
    if ram:
        devices["cpu"] = {"budget": f"{min(ram):g}GiB"}
    for engine in engines:
        if engine.gpu_index is not None and engine.kind is EngineKind.LLAMACPP:
            devices[_device(engine)] = {"gpu": engine.gpu_index}
    return {
        "name": node.name,
        "host": node.address,
        "port": DEFAULT_PORT,
        "secret": {"file": AGENT_SECRET_FILE},
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
