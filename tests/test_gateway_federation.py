"""`wave serve` in front of fleet agents: two `wave agent`s on loopback, each with its own model
(the bundled SmolLM2 in real llama-server), behind one gateway, used with the official openai
client. One agent comes from wave.yaml's `agents:`, the other from `--agent URL`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import openai
import pytest

from agent_support import mutual_tls, needs_llama_server, serving_agent, smol, unloadable_gguf
from helpers import (
    chat_body,
    free_port,
    http_request,
    run_wave,
    serving_wave,
    start_wave,
    wait_until,
    wave_env,
)
from wavefleet.cli.serve import build_config, parse_agent
from wavefleet.errors import ConfigError, UsageError
from wavefleet.gateway.config import load_gateway_config
from wavefleet.gateway.federation import loaded_first
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.routing.base import Candidate

SECRET_A, SECRET_B = "secret-of-desk", "secret-of-xps13"


@pytest.mark.slow
def test_two_agents_behind_one_gateway_serve_their_models_to_the_openai_client(tmp_path: Path) -> None:
    needs_llama_server()
    with (
        serving_agent(tmp_path / "desk", [smol("chat-short", 256)], secret=SECRET_A) as desk,
        serving_agent(tmp_path / "xps13", [smol("chat-long", 1024)], secret=SECRET_B) as xps13,
    ):
        (tmp_path / "desk.secret").write_text(SECRET_A + "\n")
        config = tmp_path / "wave.yaml"
        config.write_text(
            json.dumps(
                {
                    "agents": [
                        {"name": "desk", "url": desk.url, "secret": {"file": str(tmp_path / "desk.secret")}}
                    ]
                }
            )
        )
        env = wave_env(WAVE_AGENT_SECRET=SECRET_B)
        with serving_wave("--config", str(config), "--agent", f"xps13={xps13.url}", env=env) as gateway:
            code, _, body = http_request("GET", f"{gateway}/health")
            health = json.loads(body)
            assert code == 200, health
            assert health["backends"]["desk"]["models"] == ["chat-short"]
            assert health["backends"]["xps13"]["states"] == {"chat-long": "stopped"}

            client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="none", max_retries=0, timeout=120)
            assert sorted(m.id for m in client.models.list()) == ["chat-long", "chat-short"]
            for model, agent in (("chat-short", desk), ("chat-long", xps13)):
                reply = client.chat.completions.with_raw_response.create(
                    model=model, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
                )
                assert reply.headers["x-wave-backend"] == ("desk" if agent is desk else "xps13")
                assert reply.parse().choices[0].message.content is not None
                assert agent.model(model)["state"] == "ready"  # the agent started it on demand
            stream = client.chat.completions.create(
                model="chat-long", messages=[{"role": "user", "content": "Count"}], max_tokens=6, stream=True
            )
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

            def seen_ready() -> bool:
                states = json.loads(http_request("GET", f"{gateway}/health")[2])["backends"]["xps13"][
                    "states"
                ]
                return bool(states == {"chat-long": "ready"})

            wait_until(seen_ready, timeout_s=10, message="the gateway did not see chat-long ready")

        # a gateway with the wrong secret is refused by the agent: the agent counts as down
        port = free_port()
        gateway = f"http://127.0.0.1:{port}"
        refused = start_wave(
            "serve",
            "--port",
            str(port),
            "--agent",
            f"xps13={xps13.url}",
            env=wave_env(WAVE_AGENT_SECRET="wrong"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            code, _, body = wait_until(lambda: answer(f"{gateway}/health"), timeout_s=60)
            backend = json.loads(body)["backends"]["xps13"]
            assert code == 503 and backend["healthy"] is False
            assert "refused the secret" in backend["error"]
            assert xps13.model("chat-long")["inflight"] == 0
        finally:
            refused.terminate()
            refused.wait(timeout=20)


def answer(url: str) -> tuple[int, dict[str, str], bytes] | None:
    try:
        return http_request("GET", url, timeout=2)
    except OSError:
        return None


def test_agents_in_wave_yaml_and_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "wave.yaml"
    config.write_text("agents:\n  - {name: desk, url: 'http://desk:9190', secret: {env: DESK_SECRET}}\n")
    loaded = load_gateway_config(config)
    assert [(a.name, str(a.url)) for a in loaded.agents] == [("desk", "http://desk:9190/")]

    monkeypatch.setenv("DESK_SECRET", "s")
    monkeypatch.delenv("WAVE_AGENT_SECRET", raising=False)
    merged = build_config(config, None, None, (), None, ("http://127.0.0.1:9191",), None)
    assert [a.name for a in merged.agents] == ["desk", "127.0.0.1-9191"]
    assert merged.agents[1].secret is None
    monkeypatch.setenv("WAVE_AGENT_SECRET", "t")
    assert parse_agent("x=http://h:1", None).name == "x"

    monkeypatch.delenv("DESK_SECRET")
    with pytest.raises(UsageError, match=r"\$DESK_SECRET is unset or empty"):
        build_config(config, None, None, (), None)
    with pytest.raises(UsageError, match="expected URL or NAME=URL"):
        parse_agent("desk:9190", None)
    config.write_text(
        "agents:\n  - {name: a, url: 'http://a:1'}\nbackends:\n  - {name: a, url: 'http://b:1'}\n"
    )
    with pytest.raises(ConfigError, match="differ from the backends'; repeated: a"):
        load_gateway_config(config)
    config.write_text("agents:\n  - {name: a, url: 'http://a:1', secret: {key: inline}}\n")
    with pytest.raises(ConfigError, match="remove 'key'"):
        load_gateway_config(config)


@pytest.mark.slow
def test_a_model_loaded_on_one_agent_is_routed_there_not_to_an_agent_that_would_load_it(
    tmp_path: Path,
) -> None:
    needs_llama_server()
    with (
        serving_agent(tmp_path / "desk", [smol("shared", 256)]) as desk,
        serving_agent(tmp_path / "xps13", [smol("shared", 256)]) as xps13,
    ):
        code, _, body = http_request("POST", f"{xps13.url}/agent/v1/models/shared/load", {}, timeout=120)
        assert code == 200 and json.loads(body)["state"] == "ready"
        with serving_wave("--agent", f"desk={desk.url}", "--agent", f"xps13={xps13.url}") as gateway:
            served = []
            for _ in range(4):
                code, headers, body = http_request(
                    "POST",
                    f"{gateway}/v1/chat/completions",
                    {"model": "shared", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                    timeout=120,
                )
                assert code == 200, body
                served.append(headers["x-wave-backend"])
            assert served == ["xps13"] * 4
            assert desk.model("shared")["state"] == "stopped"  # never loaded for nothing


@pytest.mark.slow
def test_a_model_loaded_nowhere_goes_to_the_agent_with_room_for_it(tmp_path: Path) -> None:
    needs_llama_server()
    # on desk a pinned model holds 129 MiB of 300: "shared" (177 MiB) has no room there
    crowded = [smol("pinned", 256, pinned=True), smol("shared", 2048)]
    with (
        serving_agent(tmp_path / "desk", crowded, budget="300MiB") as desk,
        serving_agent(tmp_path / "xps13", [smol("shared", 2048)]) as xps13,
    ):
        wait_until(lambda: desk.model("pinned")["state"] == "ready", timeout_s=60)
        assert desk.model("shared")["room"] is False and xps13.model("shared")["room"] is True
        with serving_wave("--agent", f"desk={desk.url}", "--agent", f"xps13={xps13.url}") as gateway:
            for _ in range(3):
                code, headers, body = http_request(
                    "POST",
                    f"{gateway}/v1/chat/completions",
                    {"model": "shared", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                    timeout=120,
                )
                assert code == 200, body
                assert headers["x-wave-backend"] == "xps13"
        shared = desk.model("shared")
        assert (shared["state"], shared["loads"], shared["last_error"]) == ("stopped", 0, "")  # never tried


def test_an_agent_that_lists_no_model_takes_no_model_name(tmp_path: Path) -> None:
    """An agent not reached yet is no wildcard: unknown names are 404."""
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    dead = f"http://127.0.0.1:{free_port()}"
    process = start_wave(
        "serve",
        "--port",
        str(port),
        "--agent",
        f"gone={dead}",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        code, _, body = wait_until(lambda: answer(f"{gateway}/health"), timeout_s=60)
        assert code == 503 and json.loads(body)["backends"]["gone"]["healthy"] is False
        code, _, body = http_request(
            "POST",
            f"{gateway}/v1/chat/completions",
            {"model": "anything", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        )
        assert code == 404, body
        assert "model 'anything' is not served here" in json.loads(body)["error"]["message"]
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.slow
def test_mutual_tls_between_the_gateway_and_an_agent(tmp_path: Path) -> None:
    needs_llama_server()
    certs = mutual_tls(tmp_path / "pki")
    with serving_agent(tmp_path / "desk", [smol("chat", 256)], secret=SECRET_A, tls=certs) as desk:
        assert desk.url.startswith("https://") and desk.model("chat")["state"] == "stopped"
        (tmp_path / "desk.secret").write_text(SECRET_A + "\n")
        agent = {"name": "desk", "url": desk.url, "secret": {"file": str(tmp_path / "desk.secret")}}
        tls = {"ca": str(certs.ca), "cert": str(certs.client_cert), "key": str(certs.client_key)}
        config = tmp_path / "wave.yaml"
        config.write_text(json.dumps({"agents": [{**agent, "tls": tls}]}))
        with serving_wave("--config", str(config)) as gateway:
            client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="none", max_retries=0, timeout=120)
            reply = client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2
            )
            assert reply.choices[0].message.content is not None
        shown = run_wave(
            "agent", "status", "--url", desk.url, "--tls-ca", str(certs.ca), "--tls-cert", str(certs.client_cert),
            "--tls-key", str(certs.client_key), env=wave_env(WAVE_AGENT_SECRET=SECRET_A),
        )  # fmt: skip
        assert shown.returncode == 0 and "chat" in shown.stdout and "ready" in shown.stdout, shown.stderr

        # without a client certificate the agent refuses the connection: it counts as down
        config.write_text(json.dumps({"agents": [{**agent, "tls": {"ca": str(certs.ca)}}]}))
        port = free_port()
        refused = start_wave(
            "serve",
            "--port",
            str(port),
            "--config",
            str(config),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            code, _, body = wait_until(lambda: answer(f"http://127.0.0.1:{port}/health"), timeout_s=60)
            backend = json.loads(body)["backends"]["desk"]
            assert code == 503 and backend["healthy"] is False, backend
            assert (
                "closed the TLS connection: if it requires a client certificate" in backend["error"]
            ), backend
        finally:
            refused.terminate()
            refused.wait(timeout=20)


def _health_states(gateway: str, agent: str) -> dict[str, str]:
    states: dict[str, str] = json.loads(http_request("GET", f"{gateway}/health")[2])["backends"][agent][
        "states"
    ]
    return states


@pytest.mark.slow
def test_a_model_that_failed_on_an_agent_is_answered_with_its_failure_not_a_404(tmp_path: Path) -> None:
    """Through the gateway and from the agent alone: a configured model that failed on its host is
    a 503 naming the model, the host, the reason and what to do; one whose restart is pending is
    a 503 with Retry-After. Neither is ever an unknown model."""
    needs_llama_server()
    broken = {"name": "broken", "gguf": str(unloadable_gguf(tmp_path / "broken.gguf")), "threads": 1}
    exits = ["sh", "-c", "echo 'cannot open the model: boom'; exit 3"]
    flaky = {"name": "flaky", "command": exits, "memory": "16MiB", "load_timeout": "1s"}
    with (
        serving_agent(tmp_path / "desk", [broken, smol("fine", 256)], defaults={"max_restarts": 0}) as desk,
        serving_agent(tmp_path / "xps13", [flaky], defaults={"backoff": {"base": 60, "max": 60}}) as xps13,
    ):
        code, _, body = http_request("POST", f"{desk.url}/agent/v1/models/broken/load", {}, timeout=120)
        assert code == 200 and json.loads(body)["state"] == "failed", body
        with serving_wave("--agent", f"desk={desk.url}", "--agent", f"xps13={xps13.url}") as gateway:
            wait_until(lambda: _health_states(gateway, "desk").get("broken") == "failed", timeout_s=10)
            for url, via in ((gateway, "gateway"), (desk.url, "agent")):
                for stream in (False, True):
                    code, headers, body = http_request(
                        "POST",
                        f"{url}/v1/chat/completions",
                        chat_body(model="broken", max_tokens=1, stream=stream),
                        timeout=30,
                    )
                    error = json.loads(body)["error"]
                    assert code == 503, (via, stream, body)
                    assert error["code"] == "model_failed", error
                    message = error["message"]
                    assert "model 'broken' failed on host 'desk'" in message, message
                    assert "while loading" in message, message  # why
                    assert "/agent/v1/models/broken/load" in message, message  # what to do
                    assert "Retry-After" not in headers  # nothing will bring it back by itself
                    if via == "gateway":
                        assert headers["x-wave-backend"] == "desk"
            listed = {m["id"] for m in json.loads(http_request("GET", f"{gateway}/v1/models")[2])["data"]}
            assert {"broken", "fine", "flaky"} <= listed

            # a restart pending: the request waits its load timeout, then 503 with Retry-After
            for _ in range(2):
                code, headers, body = http_request(
                    "POST",
                    f"{gateway}/v1/chat/completions",
                    chat_body(model="flaky", max_tokens=1),
                    timeout=30,
                )
                message = json.loads(body)["error"]["message"]
                assert code == 503, body
                assert float(headers["Retry-After"]) >= 30, headers
                assert "model 'flaky' on host 'xps13' was not ready within 1 s" in message, message
                assert "restart 1 of" in message and "exit 3" in message, message
            assert _health_states(gateway, "xps13") == {"flaky": "starting"}


def test_agents_where_the_model_failed_come_last_after_those_that_would_load_it() -> None:
    monitor = StaticMonitor()
    states = {"failed-here": "failed", "no-room": "stopped", "loaded": "ready", "room": "stopped"}
    for backend, state in states.items():
        monitor.set(backend, model_states=(("m", state),), no_room=("m",) if backend == "no-room" else ())
    ranked = [Candidate(backend, "m") for backend in states]
    assert [c.backend for c in loaded_first(ranked, monitor)] == ["loaded", "room", "no-room", "failed-here"]
