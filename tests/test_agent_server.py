"""`wave agent` over HTTP: the official openai client against real llama-server engines started on
demand, the shared secret, 503 with Retry-After while a model cannot load, keep_alive, the
control API, a crash under a running request, and `wave agent status`."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web

from agent_support import needs_llama_server, serving_agent, smol
from helpers import chat_body, http_request, run_wave, wait_until, wave_env
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread

pytestmark = pytest.mark.slow
SECRET = "agent-test-secret"


@pytest.fixture(autouse=True)
def _llama_server() -> None:
    needs_llama_server()


def test_one_agent_serves_two_models_on_demand_to_the_openai_client(tmp_path: Path) -> None:
    with serving_agent(tmp_path / "desk", [smol("short", 256), smol("long", 1024)], secret=SECRET) as agent:
        assert {m["name"]: m["state"] for m in agent.status()["models"]} == {
            "short": "stopped",
            "long": "stopped",
        }
        client = openai.OpenAI(base_url=f"{agent.url}/v1", api_key=SECRET, max_retries=0, timeout=120)
        assert sorted(m.id for m in client.models.list()) == ["long", "short"]

        reply = client.chat.completions.create(
            model="short", messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
        )
        assert reply.model and reply.choices[0].message.content is not None
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        stream = client.chat.completions.create(
            model="long", messages=[{"role": "user", "content": "Count"}], max_tokens=8, stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text

        short, long = agent.model("short"), agent.model("long")
        assert (short["state"], long["state"]) == ("ready", "ready")
        assert short["memory"]["estimate"] < long["memory"]["estimate"]  # distinct models: distinct KV
        assert long["memory"]["buffers"] and long["cold_start"]["total"] > 0 and long["loads"] == 1
        code, _, body = http_request("GET", f"{agent.url}/metrics", headers=agent.headers())
        metrics = body.decode()
        assert code == 200
        assert 'wave_engine_state{engine="long",model="long",state="ready"} 1.0' in metrics
        assert 'wave_engine_cold_start_seconds_count{model="short",phase="total"} 1.0' in metrics
        assert 'wave_engine_memory_estimate_error_ratio{model="long"}' in metrics

        shown = run_wave("agent", "status", "--url", agent.url, env=wave_env(WAVE_AGENT_SECRET=SECRET))
        assert shown.returncode == 0, shown.stderr
        assert "short" in shown.stdout and "long" in shown.stdout and "ready" in shown.stdout


def test_the_shared_secret_guards_the_api_and_the_control_api(tmp_path: Path) -> None:
    with serving_agent(tmp_path / "desk", [smol("a", 256)], secret=SECRET) as agent:
        for path, method, body in (
            ("/agent/v1/status", "GET", None),
            ("/agent/v1/models/a/load", "POST", {}),
            ("/v1/chat/completions", "POST", chat_body(model="a", max_tokens=1)),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                code, _, answer = http_request(method, f"{agent.url}{path}", body, headers=headers)
                assert code == 401, (path, headers, answer)
                assert json.loads(answer)["error"]["message"]
        assert agent.model("a")["state"] == "stopped"  # nothing refused started it
        refused = run_wave("agent", "status", "--url", agent.url, env=wave_env(WAVE_AGENT_SECRET="wrong"))
        assert refused.returncode != 0 and "refused the secret" in refused.stderr


def test_a_model_that_cannot_load_in_time_answers_503_with_retry_after(tmp_path: Path) -> None:
    never_ready = {"name": "stuck", "command": ["sleep", "60"], "memory": "16MiB", "load_timeout": "1s"}
    with serving_agent(tmp_path / "desk", [never_ready, smol("a", 256)]) as agent:
        began = time.monotonic()
        code, headers, body = http_request(
            "POST", f"{agent.url}/v1/chat/completions", chat_body(model="stuck", max_tokens=1), timeout=30
        )
        assert code == 503, body
        assert time.monotonic() - began < 10
        assert float(headers["Retry-After"]) >= 1
        message = json.loads(body)["error"]["message"]
        assert "model 'stuck' on host 'desk' was not ready within 1 s" in message and "waiting for" in message
        code, _, body = http_request("POST", f"{agent.url}/v1/chat/completions", chat_body(model="nope"))
        assert code == 404 and "known models: a, stuck" in body.decode()


def test_keep_alive_zero_unloads_after_the_reply_and_the_control_api_loads_and_drains(tmp_path: Path) -> None:
    with serving_agent(tmp_path / "desk", [smol("a", 256), smol("b", 512)]) as agent:
        code, _, body = http_request(
            "POST",
            f"{agent.url}/v1/chat/completions",
            chat_body(model="a", max_tokens=2, keep_alive=0),
            timeout=120,
        )
        assert code == 200, body
        wait_until(lambda: agent.model("a")["state"] == "stopped", timeout_s=20)
        assert "keep_alive" in agent.model("a")["detail"]

        code, _, body = http_request(
            "POST", f"{agent.url}/agent/v1/models/b/load", {"wait": True}, timeout=120
        )
        assert code == 200 and json.loads(body)["state"] == "ready"
        code, _, body = http_request(
            "POST", f"{agent.url}/agent/v1/models/b/drain", {"timeout": "5s"}, timeout=60
        )
        drained = json.loads(body)
        assert code == 200 and drained["state"] == "stopped" and drained["cut"] == 0
        code, _, body = http_request("POST", f"{agent.url}/agent/v1/models/b/load", {"timeout": "forever"})
        assert code == 400 and "timeout" in json.loads(body)["error"]["message"]


def test_a_request_running_on_an_engine_that_is_killed_fails_at_once_naming_the_crash(tmp_path: Path) -> None:
    with serving_agent(tmp_path / "desk", [smol("a", 1024)]) as agent:
        client = openai.OpenAI(base_url=f"{agent.url}/v1", api_key="none", max_retries=0, timeout=120)
        stream = client.chat.completions.create(
            model="a",
            messages=[{"role": "user", "content": "Write a long story about the sea."}],
            max_tokens=900,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)  # it is running
        pid = agent.model("a")["pid"]
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(openai.APIError) as caught:
            for _ in chunks:
                pass
        assert time.monotonic() - killed < 5
        assert "the engine serving 'a' killed by SIGKILL mid-answer" in str(caught.value)
        back = wait_until(lambda: agent.model("a")["state"] == "ready" and agent.model("a"), timeout_s=60)
        assert back["restarts"] == 1 and back["pid"] != pid
        reply = client.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
        assert reply.choices[0].message.content is not None


def test_a_request_queued_in_an_engine_that_is_killed_waits_for_the_restart(tmp_path: Path) -> None:
    # One slot: the second request reaches the engine and waits there behind the first; the engine
    # dies before answering it anything, so it is sent again once the engine is back.
    with serving_agent(tmp_path / "desk", [smol("a", 1024)]) as agent:
        client = openai.OpenAI(base_url=f"{agent.url}/v1", api_key="none", max_retries=0, timeout=120)
        stream = client.chat.completions.create(
            model="a",
            messages=[{"role": "user", "content": "Write a long story about the sea."}],
            max_tokens=900,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)  # the first runs in the only slot
        engine = agent.model("a")
        with ThreadPoolExecutor(1) as pool:
            queued = pool.submit(
                client.chat.completions.create,
                model="a",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=2,
            )

            def deferred() -> bool:
                code, _, body = http_request("GET", f"http://127.0.0.1:{engine['port']}/metrics")
                return code == 200 and "llamacpp:requests_deferred 1" in body.decode()

            wait_until(deferred, timeout_s=30, message="the second request never reached the engine")
            os.kill(engine["pid"], signal.SIGKILL)
            with pytest.raises(openai.APIError):
                for _ in chunks:
                    pass
            reply = queued.result(timeout=60)
        assert reply.choices[0].message.content is not None
        assert agent.model("a")["restarts"] == 1


def test_hostile_control_calls_get_a_clear_4xx(tmp_path: Path) -> None:
    idle = {"name": "idle", "command": ["sleep", "60"], "memory": "16MiB"}
    with serving_agent(tmp_path / "desk", [idle]) as agent:
        for method, path, body, status, words in (
            ("POST", "/agent/v1/models/nope/load", {}, 404, "configured: idle"),
            ("GET", "/agent/v1/models/..%2F..%2Fetc/status", None, 404, "not configured"),
            ("GET", "/agent/v1/status?log_lines=-1", None, 400, "whole number of lines"),
            ("POST", "/agent/v1/models/idle/load", b"[1, 2]", 400, "must be a JSON object"),
            ("POST", "/agent/v1/models/idle/load", b"{not json", 400, "not JSON"),
            ("POST", "/agent/v1/models/idle/load", {"wait": "yes"}, 400, "`wait` must be true or false"),
            ("POST", "/agent/v1/models/idle/drain", {"timeout": -5}, 400, "`timeout`"),
        ):
            code, _, answer = http_request(method, f"{agent.url}{path}", body)
            assert code == status, (path, answer)
            assert words in json.loads(answer)["error"]["message"], (path, answer)
        assert agent.model("idle")["state"] == "stopped"
        assert agent.process.poll() is None


def test_the_agent_refuses_to_listen_beyond_loopback_without_a_secret(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("models:\n  - {name: m, command: [sleep, '60'], memory: 16MiB}\n")
    env = wave_env()
    env.pop("WAVE_AGENT_SECRET", None)
    done = run_wave("agent", "--config", str(config), "--host", "0.0.0.0", "--port", "0", env=env, timeout=60)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a shared secret" in " ".join(done.stderr.split())


def test_streams_keep_their_connection_to_engines_other_than_llama_server(tmp_path: Path) -> None:
    """llama-server drops a kept-alive connection after a stream, so streams to it go with
    `Connection: close`; any other engine keeps one connection for stream after stream."""
    peers: dict[str, set[object]] = {"vllm-like": set(), "llama-like": set()}

    def counted(name: str) -> web.Application:
        @web.middleware
        async def note_peer(request: web.Request, handler: Any) -> web.StreamResponse:
            assert request.transport is not None
            peers[name].add(request.transport.get_extra_info("peername"))
            answer: web.StreamResponse = await handler(request)
            return answer

        app = FakeOpenAIEngine(name, models=[name], delay_s=0).app()
        app.middlewares.append(note_peer)
        return app

    with serve_in_thread(counted("vllm-like")) as vllm, serve_in_thread(counted("llama-like")) as llama:
        models = [
            {"name": "vllm-like", "kind": "openai", "url": vllm.url},
            {"name": "llama-like", "kind": "llamacpp", "url": llama.url},
        ]
        with serving_agent(tmp_path / "desk", models) as agent:
            for name in peers:
                for _ in range(3):
                    code, _, body = http_request(
                        "POST", f"{agent.url}/v1/chat/completions", chat_body("hi", model=name, stream=True)
                    )
                    assert code == 200 and b"[DONE]" in body, body
    assert len(peers["vllm-like"]) == 1  # one kept-alive connection
    assert len(peers["llama-like"]) == 3  # a fresh connection for each stream
