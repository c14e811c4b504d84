"""The gateway end to end: real fake engines on loopback, the gateway in a thread, the official
`openai` client for the happy paths and raw HTTP for the error cases."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import openai
import pytest

from helpers import http_request
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, FakeTritonEngine, serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.wire import Fault

KEY = "sk-test-0123456789"


@contextmanager
def gateway_in_front_of(
    engines: dict[str, FakeOpenAIEngine | FakeTritonEngine],
    monitor: StaticMonitor | None = None,
    kinds: dict[str, str] | None = None,
    declare_models: bool = True,
    **config: Any,
) -> Iterator[str]:
    """Start the engines and a gateway in front of them; yield the gateway's base URL."""
    with ExitStack() as stack:
        backends = []
        for name, engine in engines.items():
            server = stack.enter_context(serve_in_thread(engine.app()))
            entry: dict[str, Any] = {"name": name, "url": server.url, "kind": (kinds or {}).get(name, "vllm")}
            if declare_models:
                entry["models"] = engine.models
            backends.append(entry)
        gateway_config = GatewayConfig.model_validate(
            {"backends": backends, "api_keys": [{"key": KEY}], **config}
        )
        gateway = stack.enter_context(serve_in_thread(create_app(gateway_config, monitor or StaticMonitor())))
        yield gateway.url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=20)


def post(
    url: str, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return http_request(
        "POST", f"{url}{path}", body, {"Authorization": f"Bearer {KEY}", **(headers or {})}, timeout=20
    )


def get(url: str, path: str) -> tuple[int, bytes]:
    status, _, body = http_request(
        "GET", f"{url}{path}", headers={"Authorization": f"Bearer {KEY}"}, timeout=20
    )
    return status, body


def metrics_once(url: str, line: bytes, within_s: float = 5.0) -> bytes:
    """/metrics as soon as it holds `line`, or as it is after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        _, metrics = get(url, "/metrics")
        if line in metrics or time.monotonic() > deadline:
            return metrics
        time.sleep(0.02)


CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hello there"}]}


def test_chat_completion_through_openai_client_names_the_backend() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    with gateway_in_front_of({"a": engine}) as url:
        raw = client(url).chat.completions.with_raw_response.create(model="m1", messages=CHAT["messages"])
        completion = raw.parse()
    assert raw.headers["x-wave-backend"] == "a"
    assert completion.choices[0].message.content == "a says: hello there"
    assert completion.usage is not None and completion.usage.prompt_tokens == 7
    assert engine.requests[0]["model"] == "m1"


def test_stream_relays_every_event_and_strips_the_usage_it_injected() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    with gateway_in_front_of({"a": engine}) as url:
        chunks = list(client(url).chat.completions.create(model="m1", messages=CHAT["messages"], stream=True))
        status, headers, body = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a says: hello there "
    assert all(c.usage is None for c in chunks)  # the usage chunk the gateway asked for is gone
    assert engine.requests[0]["stream_options"] == {"include_usage": True}  # ... but was asked for
    assert status == 200 and headers["x-wave-backend"] == "a"
    assert body.endswith(b"data: [DONE]\n\n")
    assert b": ping" not in body
    assert body.count(b"data: ") == 6  # 4 words, the finish chunk, [DONE]


def test_stream_keeps_usage_when_the_client_asked() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    with gateway_in_front_of({"a": engine}) as url:
        chunks = list(
            client(url).chat.completions.create(
                model="m1", messages=CHAT["messages"], stream=True, stream_options={"include_usage": True}
            )
        )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_unknown_model_is_404_listing_the_models() -> None:
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1", "m2"])}, aliases={"fast": "m1"}) as url:
        status, _, body = post(url, "/v1/chat/completions", {**CHAT, "model": "gpt-9"})
    error = json.loads(body)["error"]
    assert status == 404
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "gpt-9" in error["message"] and "fast, m1, m2" in error["message"]


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (b'{"model": "m1", "messages": [', None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (json.dumps({"messages": CHAT["messages"]}).encode(), "model", "`model`"),
        (json.dumps({"model": "m1", "messages": []}).encode(), "messages", "`messages`"),
        (json.dumps({"model": "m1", "messages": [{"content": "x"}]}).encode(), "messages[0]", "role"),
        (json.dumps({**CHAT, "stream": "yes"}).encode(), "stream", "`stream`"),
        (json.dumps({**CHAT, "max_tokens": 0}).encode(), "max_tokens", "positive"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(body: bytes, param: str | None, words: str) -> None:
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1"])}) as url:
        status, _, answer = post(url, "/v1/chat/completions", body)
    error = json.loads(answer)["error"]
    assert status == 400
    assert error["param"] == param
    assert words in error["message"]


def test_body_over_the_limit_is_413() -> None:
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1"])}, max_body_bytes=1024) as url:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4000}]}
        status, _, body = post(url, "/v1/chat/completions", big)
    assert status == 413
    assert "1024 bytes" in json.loads(body)["error"]["message"]


def test_missing_or_wrong_key_is_401() -> None:
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1"])}) as url:
        wrong, _, _ = post(url, "/v1/chat/completions", CHAT, {"Authorization": "Bearer nope-nope-nope"})
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert wrong == 401


def test_no_available_backend_is_503_with_retry_after() -> None:
    monitor = StaticMonitor()
    monitor.set("a", healthy=False, error="connection refused")
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1"])}, monitor) as url:
        status, headers, body = post(url, "/v1/chat/completions", CHAT)
        health, health_body = get(url, "/health")
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert "a" in json.loads(body)["error"]["message"]
    assert health == 503 and json.loads(health_body)["backends"]["a"]["error"] == "connection refused"


def test_slow_first_byte_is_504() -> None:
    engine = FakeOpenAIEngine("a", ["m1"], delay_s=3)
    engine.fault = Fault.SLOW_FIRST_BYTE
    with gateway_in_front_of({"a": engine}, timeouts={"first_byte_s": 0.3}, retries=0) as url:
        status, headers, body = post(url, "/v1/chat/completions", CHAT)
    assert status == 504
    assert headers["x-wave-backend"] == "a"
    assert "0.3 s" in json.loads(body)["error"]["message"]


def test_garbage_answer_is_502() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    engine.fault = Fault.GARBAGE
    with gateway_in_front_of({"a": engine}, retries=0) as url:
        status, _, body = post(url, "/v1/chat/completions", CHAT)
    assert status == 502
    assert "not a JSON object" in json.loads(body)["error"]["message"]


def test_connection_refused_is_502() -> None:
    config = GatewayConfig.model_validate(
        {"backends": [{"name": "gone", "url": "http://127.0.0.1:9", "models": ["m1"]}], "retries": 0}
    )
    with serve_in_thread(create_app(config, StaticMonitor())) as gateway:
        status, _, body = post(gateway.url, "/v1/chat/completions", CHAT)
    assert status == 502
    assert "cannot connect to backend 'gone'" in json.loads(body)["error"]["message"]


def test_stream_cut_mid_way_ends_with_an_in_band_error() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    engine.fault = Fault.CUT
    with gateway_in_front_of({"a": engine}) as url:
        status, _, body = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
    events = [e for e in body.split(b"\n\n") if e]
    assert status == 200
    assert len(events) == 3  # two content events, then the gateway's error
    error = json.loads(events[-1].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_error" and "dropped the connection" in error["message"]


def test_in_band_error_from_the_engine_reaches_the_client() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    engine.fault = Fault.IN_BAND_ERROR
    with gateway_in_front_of({"a": engine}) as url:
        with pytest.raises(openai.APIError, match="ran out of KV cache"):
            list(client(url).chat.completions.create(model="m1", messages=CHAT["messages"], stream=True))
        # the client stops at the error event; the gateway counts the request when it has ended
        # the stream, a moment later
        metrics = metrics_once(url, b'wave_requests_total{backend="a",model="m1",status="500"} 1.0')
    assert b'wave_requests_total{backend="a",model="m1",status="500"} 1.0' in metrics


def test_idle_gap_mid_stream_ends_with_a_504_event() -> None:
    engine = FakeOpenAIEngine("a", ["m1"], delay_s=2)
    engine.fault = Fault.SLOW_STREAM
    with gateway_in_front_of({"a": engine}, timeouts={"idle_s": 0.3}) as url:
        status, _, body = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
    last = [e for e in body.split(b"\n\n") if e][-1]
    assert status == 200
    assert json.loads(last.removeprefix(b"data: "))["error"]["code"] == "upstream_timeout"


def test_client_disconnect_aborts_the_upstream_request() -> None:
    engine = FakeOpenAIEngine("a", ["m1"], delay_s=0.2)
    engine.fault = Fault.SLOW_STREAM
    with gateway_in_front_of({"a": engine}) as url:
        stream = client(url).chat.completions.create(model="m1", messages=CHAT["messages"], stream=True)
        first = next(iter(stream))
        stream.close()
        deadline = time.monotonic() + 10
        while not engine.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
    assert first.choices[0].delta.content == "w0 "
    assert len(engine.cancelled) == 1
    assert engine.completed == 0


def test_failure_before_the_first_byte_is_retried_on_another_backend() -> None:
    broken, healthy = FakeOpenAIEngine("a", ["m1"]), FakeOpenAIEngine("b", ["m1"])
    broken.fault = Fault.ERROR
    monitor = StaticMonitor()
    with gateway_in_front_of({"a": broken, "b": healthy}, monitor, policy="round-robin") as url:
        answers = [post(url, "/v1/chat/completions", CHAT) for _ in range(4)]
        _, metrics = get(url, "/metrics")
    assert [a[1]["x-wave-backend"] for a in answers] == ["b"] * 4
    assert all(a[0] == 200 for a in answers)
    assert len(broken.requests) == 2  # round-robin sent every other request to it first
    assert ("a", False) in monitor.outcomes
    assert b'wave_retries_total{backend="a"} 2.0' in metrics


def test_stream_that_times_out_before_its_first_byte_is_retried() -> None:
    cut, healthy = FakeOpenAIEngine("a", ["m1"], delay_s=3), FakeOpenAIEngine("b", ["m1"])
    cut.fault = Fault.SLOW_FIRST_BYTE
    with gateway_in_front_of(
        {"a": cut, "b": healthy}, policy="least-loaded", timeouts={"first_byte_s": 0.3}
    ) as url:
        status, headers, body = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
    assert status == 200 and headers["x-wave-backend"] == "b"
    assert b'"content": "b "' in body
    assert len(cut.requests) == 1


def test_models_lists_the_union_with_aliases_and_groups() -> None:
    monitor = StaticMonitor()
    engines = {"a": FakeOpenAIEngine("a", ["m1"]), "b": FakeOpenAIEngine("b", ["m2"])}
    with gateway_in_front_of(
        engines, monitor, aliases={"fast": "m1"}, groups={"chat": ["m2", "fast"]}
    ) as url:
        listed = client(url).models.list()
        monitor.set("b", healthy=False)
        _, body = get(url, "/v1/models")
    assert sorted(m.id for m in listed.data) == ["chat", "fast", "m1", "m2"]
    later = {m["id"]: m["wave"] for m in json.loads(body)["data"]}
    assert sorted(later) == ["chat", "fast", "m1"]  # m2's only backend is down
    assert later["chat"] == {"kind": "group", "members": ["fast"]}
    assert later["fast"] == {"kind": "alias", "target": "m1", "backends": ["a"]}


def test_group_request_goes_to_the_preferred_member() -> None:
    engines = {"a": FakeOpenAIEngine("a", ["small"]), "b": FakeOpenAIEngine("b", ["big"])}
    with gateway_in_front_of(engines, groups={"chat": ["big", "small"]}) as url:
        status, headers, _ = post(url, "/v1/chat/completions", {**CHAT, "model": "chat"})
    assert status == 200 and headers["x-wave-backend"] == "b"
    assert engines["b"].requests[0]["model"] == "big"  # the group name was replaced by the served name


def test_undeclared_models_are_discovered_and_a_silent_engine_takes_any_name() -> None:
    listing, silent = FakeOpenAIEngine("a", ["m1"]), FakeOpenAIEngine("b", [])
    with gateway_in_front_of({"a": listing}, declare_models=False) as url:
        found, _, _ = post(url, "/v1/chat/completions", CHAT)
        missing, _, _ = post(url, "/v1/chat/completions", {**CHAT, "model": "other"})
    with gateway_in_front_of({"b": silent}, declare_models=False) as url:
        anything, headers, _ = post(url, "/v1/chat/completions", {**CHAT, "model": "whatever"})
    assert (found, missing, anything) == (200, 404, 200)
    assert headers["x-wave-backend"] == "b"


def test_embeddings_and_completions_pass_through() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    with gateway_in_front_of({"a": engine}) as url:
        embedding = client(url).embeddings.create(model="m1", input="hi")
        completion = client(url).completions.create(model="m1", prompt="count to three")
    assert embedding.data[0].embedding == [0.1, 0.2, 0.3]
    assert completion.choices[0].text == "a says: count to three"


def test_metrics_count_requests_tokens_decisions_and_backend_state() -> None:
    monitor = StaticMonitor()
    monitor.set("a", running=3, waiting=1, slots_total=8, kv_usage=0.25)
    with gateway_in_front_of({"a": FakeOpenAIEngine("a", ["m1"])}, monitor) as url:
        post(url, "/v1/chat/completions", CHAT)
        list(client(url).chat.completions.create(model="m1", messages=CHAT["messages"], stream=True))
        post(url, "/v1/chat/completions", {**CHAT, "model": "nope"})
        status, body = get(url, "/metrics")
    text = body.decode()
    assert status == 200
    assert 'wave_requests_total{backend="a",model="m1",status="200"} 2.0' in text
    assert 'wave_requests_total{backend="",model="",status="404"} 1.0' in text
    assert 'wave_prompt_tokens_total{backend="a",model="m1"} 14.0' in text
    assert 'wave_completion_tokens_total{backend="a",model="m1"} 8.0' in text
    assert 'wave_routing_decisions_total{backend="a",reason="only-choice"} 2.0' in text
    assert 'wave_time_to_first_token_seconds_count{backend="a",model="m1"} 1.0' in text
    assert 'wave_inter_token_latency_seconds_count{backend="a",model="m1"}' in text
    assert 'wave_request_duration_seconds_count{backend="a",model="m1"} 2.0' in text
    assert 'wave_backend_load{backend="a"} 0.5' in text
    assert 'wave_backend_kv_usage{backend="a"} 0.25' in text


def test_inter_token_gaps_are_observed_per_chunk() -> None:
    engine = FakeOpenAIEngine("a", ["m1"], delay_s=0.01)
    engine.fault = Fault.SLOW_STREAM  # 50 events, 10 ms apart: each its own chunk
    with gateway_in_front_of({"a": engine}) as url:
        chunks = list(client(url).chat.completions.create(model="m1", messages=CHAT["messages"], stream=True))
        _, body = get(url, "/metrics")
    gaps = re.search(rb'wave_inter_token_latency_seconds_count\{backend="a",model="m1"\} (\d+)', body)
    assert len(chunks) == 51  # 50 words and the finish chunk
    assert gaps is not None and 40 <= int(gaps.group(1)) <= 50


def test_triton_generate_is_translated_both_ways() -> None:
    triton = FakeTritonEngine(["ensemble"])
    with gateway_in_front_of({"t": triton}, kinds={"t": "triton"}) as url:
        completion = client(url).chat.completions.create(
            model="ensemble", messages=CHAT["messages"], max_tokens=5
        )
        chunks = list(
            client(url).chat.completions.create(model="ensemble", messages=CHAT["messages"], stream=True)
        )
        triton.fault = Fault.IN_BAND_ERROR
        with pytest.raises(openai.APIError, match="GPU fell off the bus"):
            list(
                client(url).chat.completions.create(model="ensemble", messages=CHAT["messages"], stream=True)
            )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "triton says: user: hello there"
    model, request = triton.requests[0]
    assert model == "ensemble"
    assert request == {
        "text_input": "user: hello there\nassistant:",
        "parameters": {"max_tokens": 5, "stream": False},
    }
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "triton streams words"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_triton_discovers_models_from_its_repository_index() -> None:
    with gateway_in_front_of(
        {"t": FakeTritonEngine(["llama"])}, kinds={"t": "triton"}, declare_models=False
    ) as url:
        listed = client(url).models.list()
    assert [m.id for m in listed.data] == ["llama"]


class BreakerMonitor(StaticMonitor):
    """A monitor whose circuit breakers refuse the backends in `open`, and that counts the asks."""

    def __init__(self, open_breakers: set[str]) -> None:
        super().__init__()
        self.open_breakers = open_breakers
        self.asked: list[str] = []

    def available(self, backend: str) -> bool:
        self.asked.append(backend)
        return backend not in self.open_breakers


def test_breakers_are_asked_only_for_the_backend_about_to_be_used() -> None:
    monitor = BreakerMonitor({"a"})
    engines = {"a": FakeOpenAIEngine("a", ["m1"]), "b": FakeOpenAIEngine("b", ["m1"])}
    with gateway_in_front_of(engines, monitor, policy="round-robin") as url:
        served = [post(url, "/v1/chat/completions", CHAT)[1]["x-wave-backend"] for _ in range(2)]
        monitor.open_breakers = {"a", "b"}
        status, headers, body = post(url, "/v1/chat/completions", CHAT)
    assert served == ["b", "b"]
    assert monitor.asked[:3] == ["a", "b", "b"]  # the second request went to b first: one ask
    assert engines["a"].requests == []
    assert status == 503 and "circuit breakers open" in json.loads(body)["error"]["message"]
    assert int(headers["Retry-After"]) >= 1
