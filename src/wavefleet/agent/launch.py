"""The command line, environment and checks of one model's engine, from the engines table.

    launch = engine_launch(model, port=8123, binary=find_llama_server(), gpu=None)
    launch.argv, launch.env            # what to execute
    launch.health_path                 # polled until it answers 200 (the kind's health path)
    launch.probe_path, launch.probe    # then one request with max_tokens 1 (embeddings: one input)

llama.cpp models run llama-server through `LlamaServerArgs`, with `-lv 4` so it logs each buffer
it allocates (the agent reads its real memory use from those lines). Other kinds use their row's
`Launch`; a model's own `command` is a template whose {port}, {host}, {model}, {context},
{slots} and {ctx_size} are filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wavefleet.agent.config import ModelConfig, resolve_gguf
from wavefleet.engines import EngineKind
from wavefleet.engines.llama_server import LlamaServerArgs, LlamaServerBinary
from wavefleet.errors import EngineError

__all__ = ["ENGINE_HOST", "EngineLaunch", "engine_launch", "fill_template"]

ENGINE_HOST = "127.0.0.1"  # engines listen on loopback only: clients reach them through the agent


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineLaunch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    probe_path: str = "/v1/completions"
    probe: dict[str, Any] = field(default_factory=dict)


def fill_template(words: list[str], values: dict[str, object]) -> list[str]:
    """Each word with its {name} fields filled in; EngineError naming an unknown field."""
    try:
        return [word.format(**values) for word in words]
    except (KeyError, IndexError, ValueError) as exc:
        raise EngineError(
            f"command template {words!r}: {exc}; the fields are {', '.join('{' + k + '}' for k in values)}"
        ) from exc


def engine_launch(
    model: ModelConfig, *, port: int, binary: LlamaServerBinary | None, gpu: int | None
) -> EngineLaunch:
    """How to start `model`'s engine on `port`, on GPU `gpu` (an NVML index) or on the CPU."""
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "" if gpu is None else str(gpu)}
    env.update(model.env)
    traits = model.kind.traits
    probe_path, probe = _probe(model)
    if model.command is not None:
        values: dict[str, object] = {
            "port": port,
            "host": ENGINE_HOST,
            "model": str(resolve_gguf(model.gguf)) if model.gguf else (model.model or model.name),
            "name": model.name,
            "context": model.context,
            "slots": model.slots,
            "ctx_size": model.context * model.slots,
        }
        argv = fill_template(model.command, values) + list(model.args)
        return EngineLaunch(
            argv=argv, env=env, health_path=traits.health_path, probe_path=probe_path, probe=probe
        )
    if model.kind is EngineKind.LLAMACPP:
        if binary is None:
            raise EngineError("llama-server is not available to start llama.cpp models")
        assert model.gguf is not None
        layers = model.n_gpu_layers if model.n_gpu_layers is not None else ("all" if gpu is not None else 0)
        args = LlamaServerArgs(
            model_path=resolve_gguf(model.gguf),
            alias=model.name,
            port=port,
            host=ENGINE_HOST,
            context=model.context,
            parallel=model.slots,
            threads=model.threads,
            gpu_layers=layers,
            embedding=model.embedding,
            extra=("-lv", "4", *model.args),  # -lv 4: each buffer's size, for the measured memory
        )
        return EngineLaunch(
            argv=args.command(binary),
            env=env,
            health_path=traits.health_path,
            probe_path=probe_path,
            probe=probe,
        )
    launch = traits.launch
    assert launch is not None  # the config refuses kinds without one
    argv, launch_env = launch.arguments(
        model=model.model, port=port, context=model.context, slots=model.slots
    )
    return EngineLaunch(
        argv=argv + list(model.args),
        env={**env, **launch_env},
        health_path=traits.health_path,
        probe_path=probe_path,
        probe=probe,
    )


def _probe(model: ModelConfig) -> tuple[str, dict[str, Any]]:
    """The smallest real request: one generated token from a one-word prompt (or one embedding)."""
    if model.embedding:
        return "/v1/embeddings", {"model": model.name, "input": "ok"}
    return "/v1/completions", {"model": model.name, "prompt": "ok", "max_tokens": 1, "temperature": 0}
