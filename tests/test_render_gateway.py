"""The rendered `wave.yaml` and `agent.yaml` files drive the real gateway and real agents:
`wave serve --config` federates the `wave agent` of each host render wrote an agent.yaml for, and
each model reaches the host render placed it on. The engines are simulated ones on loopback, and
each agent runs its rendered models pointed at them (`url:`), on a loopback port: the only
changes made to the rendered files, standing in for the fleet's LAN addresses and engines."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from openai import OpenAI

from agent_support import serving_agent
from helpers import serving_wave, wave_env
from render_example import example_fleet  # tests/ is on pytest's pythonpath
from wavefleet.engines import Api, EngineKind
from wavefleet.render.render import render_to
from wavefleet.sim.fleet import ThreadedSimFleet
from wavefleet.sim.profile import SimProfile

SECRET = "rendered-fleet-secret"
ROOT = Path(__file__).resolve().parent.parent


def sim_profile(name: str, kind: EngineKind, model: str) -> SimProfile:
    return SimProfile.model_validate(
        {
            "name": name,
            "dialect": kind.value,
            "model": model,
            "prefill_tokens_per_s": 50000.0,
            "itl_at_batch": [(1, 0.001), (8, 0.002)],
            "max_num_seqs": 8,
            "kv_capacity_tokens": 65536,
            "max_model_len": 4096,
        }
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fleet = example_fleet()
    out = tmp_path_factory.mktemp("render-gateway") / "out"
    render_to(fleet, out)
    rendered = yaml.safe_load((out / fleet.gateway.nginx_node / "wave.yaml").read_text())
    profiles = [sim_profile(e.name, e.kind, e.model) for e in fleet.engines]
    secret_file = tmp_path_factory.mktemp("secret") / "agent.secret"
    secret_file.write_text(SECRET + "\n")
    with ThreadedSimFleet(profiles, speed=10) as sims, ExitStack() as agents:
        for backend in rendered["backends"]:
            backend["url"] = sims.urls[backend["name"]]
        for ref in rendered["agents"]:
            node = ref["name"]
            placed = [e for e in fleet.engines_on(node) if e.kind.traits.api is Api.OPENAI]
            models = yaml.safe_load((out / node / "agent.yaml").read_text())["models"]
            assert len(models) == len(placed)
            looped = [
                {"name": m["name"], "kind": m.get("kind", "llamacpp"), "url": sims.urls[engine.name]}
                for m, engine in zip(models, placed, strict=True)
            ]
            folder = tmp_path_factory.mktemp("agents") / node
            agent = agents.enter_context(serving_agent(folder, looped, secret=SECRET))
            ref["url"] = agent.url
            ref["secret"] = {"file": str(secret_file)}
        config = tmp_path_factory.mktemp("gateway") / "wave.yaml"
        config.write_text(yaml.safe_dump(rendered))
        with serving_wave("--config", str(config), env=wave_env(WAVE_API_KEY="")) as url:
            yield url


@pytest.mark.parametrize(
    ("model", "backend"),
    [
        ("llama-3.1-8b", "schlimers-server"),  # vllm-desktop, behind its host's agent
        ("llama-3.2-1b", "xps15-lxc-107"),  # llamacpp-gtx1650, behind its host's agent
        ("qwen2.5-0.5b", "triton-desktop"),  # Triton's KServe v2: a backend of its own
    ],
)
def test_each_model_reaches_the_host_render_placed_it_on(gateway: str, model: str, backend: str) -> None:
    with OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        reply = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "hello there"}], max_tokens=5
        )
    assert reply.headers["x-wave-backend"] == backend
    completion = reply.parse()
    assert completion.model == model and completion.choices[0].message.content


def test_the_gateway_lists_every_rendered_model(gateway: str) -> None:
    with OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0) as client:
        served = {m.id for m in client.models.list()}
    assert {e.model for e in example_fleet().engines} <= served
