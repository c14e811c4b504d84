"""Hostile and careless input at the gateway: every answer OpenAI-shaped JSON, never a 5xx of its
own, nothing an engine got wrong passed on as a success, no client able to grow its memory."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

import pytest

from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.base import BackendRequest
from wavefleet.gateway.backends.fake import FakeBackend, FakeReply, echo
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.runner import GatewayRunner

KEY = "sk-test-0123456789"
CHAT = {"model": "m1", "messages": [{"role": "user", "content": "hello there"}]}


def _config(backends: list[dict[str, Any]], **extra: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({"backends": backends, "api_keys": [{"key": KEY}], **extra})


@contextmanager
def gateway(
    backends: dict[str, FakeBackend] | None = None,
    config: GatewayConfig | None = None,
    monitor: Any = None,
) -> Iterator[str]:
    """A gateway in a thread, behind the runner `wave serve` uses; its base URL."""
    if config is None:
        assert backends is not None
        config = _config(
            [{"name": n, "url": "http://127.0.0.1:9", "models": list(b._models)} for n, b in backends.items()]
        )
    app = create_app(config, monitor or StaticMonitor(), backends=backends)
    with serve_in_thread(app, runner_class=GatewayRunner) as server:
        yield server.url


def raw_http(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` bytes as they are; the status, headers and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0].split()[1]), headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, body = out + rest[:size], rest[size + 2 :]
    return out


def request(
    url: str, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", f"Authorization: Bearer {KEY}", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return raw_http(url, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def openai_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The `error` object of an OpenAI-shaped answer (asserting it is one)."""
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    error = json.loads(body)["error"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert "Traceback" not in error["message"]
    return dict(error)


# -- deep JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("security", [False, True], ids=["plain", "security-layer"])
def test_deeply_nested_json_is_a_400_not_a_traceback(security: bool) -> None:
    backend = FakeBackend("a", echo, models=["m1"])
    extra: dict[str, Any] = {"security": {"screening": {"default": "flag"}}} if security else {}
    config = _config([{"name": "a", "url": "http://127.0.0.1:9", "models": ["m1"]}], **extra)
    nested = b'{"model": "m1", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with gateway({"a": backend}, config) as url:
        status, headers, body = request(url, "POST", "/v1/chat/completions", nested)
        after = request(url, "POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    assert len(nested) < 2100
    assert status == 400, body
    error = openai_error(status, headers, body)
    assert "nested" in error["message"]
    assert after[0] == 200
    assert backend.requests[-1].body["messages"] == CHAT["messages"]  # only the good one reached it


# -- the HTTP layer's own answers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/v1/nope", 404),
        ("GET", "/v1/chat/completions", 405),
        ("DELETE", "/v1/models", 405),
    ],
)
def test_unknown_paths_and_wrong_methods_answer_in_openai_format(method: str, path: str, status: int) -> None:
    with gateway({"a": FakeBackend("a", echo, models=["m1"])}) as url:
        got, headers, body = request(url, method, path)
    assert got == status
    error = openai_error(got, headers, body)
    assert error["code"] in ("not_found", "method_not_allowed")


@pytest.mark.parametrize(
    "bad_header",
    [b"X-Bad: a\x00b", b"X-Long: " + b"a" * 20000, b"Bad Header Name: x"],
    ids=["nul-byte", "oversized", "space-in-name"],
)
def test_malformed_http_answers_in_openai_format(bad_header: bytes) -> None:
    with gateway({"a": FakeBackend("a", echo, models=["m1"])}) as url:
        status, headers, body = raw_http(
            url, b"GET /v1/models HTTP/1.1\r\nHost: test\r\n" + bad_header + b"\r\nConnection: close\r\n\r\n"
        )
        still = request(url, "GET", "/v1/models")
    assert 400 <= status < 500
    openai_error(status, headers, body)
    assert still[0] == 200


# -- what engines get wrong ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"choices": [oops]}', b'{"id": "x", "choices": [{"message": {"content": "cut', b"{}}"],
    ids=["not-json-inside", "truncated", "extra-brace"],
)
def test_broken_json_from_an_engine_is_a_502(body: bytes) -> None:
    backend = FakeBackend(
        "a", lambda r: FakeReply(200, body if body.endswith(b"}") else body + b"}"), models=["m1"]
    )
    with gateway({"a": backend}) as url:
        status, headers, answer = request(url, "POST", "/v1/chat/completions", json.dumps(CHAT).encode())
    assert status == 502, answer
    assert openai_error(status, headers, answer)["code"] == "upstream_error"


class CloseDelimitedEngine:
    """An engine that streams SSE with neither chunked encoding nor a length, ending the body by
    closing the connection, as HTTP/1.0-style servers and some proxies do."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        if head.startswith(b"GET"):
            body = b'{"object": "list", "data": [{"id": "m1", "object": "model"}]}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            for event in self.events:
                writer.write(event)
                await writer.drain()
        writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "model": "m1"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(body).encode() + b"\n\n"


@contextmanager
def close_delimited(events: list[bytes]) -> Iterator[str]:
    engine = CloseDelimitedEngine(events)
    ready: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        async with engine.serving() as url:
            ready["url"] = url
            ready["stop"] = asyncio.Event()
            await ready["stop"].wait()

    import threading

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while "stop" not in ready and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield ready["url"]
    finally:
        loop.call_soon_threadsafe(ready["stop"].set)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize(
    ("events", "complete"),
    [
        ([_chunk({"role": "assistant", "content": "Hel"}), _chunk({"content": "lo"})], False),
        ([_chunk({"role": "assistant", "content": "Hi"}), _chunk({}, "stop")], True),
        ([_chunk({"role": "assistant", "content": "Hi"}), _chunk({}, "stop"), b"data: [DONE]\n\n"], True),
    ],
    ids=["cut-mid-answer", "finish-reason-no-done", "done"],
)
def test_a_stream_that_ends_without_done_or_finish_reason_is_an_upstream_failure(
    events: list[bytes], complete: bool
) -> None:
    with close_delimited(events) as engine_url:
        config = _config([{"name": "a", "url": engine_url, "models": ["m1"], "kind": "openai"}])
        app = create_app(config, StaticMonitor())
        with serve_in_thread(app, runner_class=GatewayRunner) as server:
            status, _, body = request(
                server.url, "POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode()
            )
            _, _, metrics = request(server.url, "GET", "/metrics")
    assert status == 200
    events_seen = [e for e in body.split(b"\n\n") if e.startswith(b"data: ")]
    counted = re.findall(rb'wave_requests_total\{backend="a",model="m1",status="(\d+)"\} 1', metrics)
    if complete:
        assert b'"error"' not in body
        assert counted == [b"200"]
    else:
        last = json.loads(events_seen[-1][6:])
        assert last["error"]["code"] == "upstream_error"
        assert "ended" in last["error"]["message"]
        assert counted == [b"502"]


# -- memory a client can grow ----------------------------------------------------------------------


def test_model_names_a_backend_does_not_list_share_one_metrics_label() -> None:
    backend = FakeBackend("a", echo)  # lists no models: takes any name
    config = _config([{"name": "a", "url": "http://127.0.0.1:9"}])
    with gateway({"a": backend}, config) as url:
        for i in range(200):
            status, _, _ = request(
                url, "POST", "/v1/chat/completions", json.dumps({**CHAT, "model": f"junk-{i}"}).encode()
            )
            assert status == 200
        _, _, metrics = request(url, "GET", "/metrics")
    labels = set(re.findall(rb'model="([^"]*)"', metrics))
    assert not any(label.startswith(b"junk-") for label in labels)
    assert len(labels) <= 3, labels
    assert len(backend.requests) == 200 and backend.requests[-1].body["model"] == "junk-199"


# -- the circuit breaker's probe ---------------------------------------------------------------------


def test_a_half_open_probe_given_back_frees_the_slot_at_once() -> None:
    now = [1000.0]
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, base_cooldown_s=5), lambda: now[0])
    breaker.record(False)
    now[0] += 6
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # the probe's client went away before the backend answered
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED
    breaker.release()  # nothing granted: no effect
    assert breaker.state is BreakerState.CLOSED


class ProbeMonitor(StaticMonitor):
    """One backend whose breaker is half-open: it grants one probe until told how it went."""

    def __init__(self) -> None:
        super().__init__()
        now = [1000.0]
        self.breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, base_cooldown_s=5), lambda: now[0])
        self.breaker.record(False)
        now[0] += 6

    def available(self, backend: str) -> bool:
        return self.breaker.allow()

    def record_outcome(self, backend: str, ok: bool) -> None:
        super().record_outcome(backend, ok)
        self.breaker.record(ok)

    def release(self, backend: str) -> None:
        self.breaker.release()


def test_a_probe_whose_client_disconnects_does_not_block_the_backend() -> None:
    gate = asyncio.Event()
    loop_box: dict[str, asyncio.AbstractEventLoop] = {}

    async def slow_then_fast(request: BackendRequest) -> FakeReply:
        if not gate.is_set():
            loop_box["loop"] = asyncio.get_running_loop()
            await asyncio.sleep(30)  # the probe: its client leaves first
        return FakeReply.chat("ok", model="m1")

    monitor = ProbeMonitor()
    backend = FakeBackend("a", slow_then_fast, models=["m1"])
    with ExitStack() as stack:
        url = stack.enter_context(gateway({"a": backend}, monitor=monitor))
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps(CHAT).encode()
        probe = socket.create_connection((host, int(port)))
        probe.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 10
        while not backend.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        assert backend.requests, "the probe never reached the backend"
        probe.close()
        loop_box["loop"].call_soon_threadsafe(gate.set)
        deadline = time.monotonic() + 5
        status = 0
        while time.monotonic() < deadline:
            status, _, _ = request(url, "POST", "/v1/chat/completions", body)
            if status == 200:
                break
            time.sleep(0.05)
    assert status == 200
    assert monitor.breaker.state is BreakerState.CLOSED


def test_engines_that_answer_well_still_do() -> None:
    """The checks above cost nothing to a good engine: JSON and streams pass as they came."""
    engine = FakeOpenAIEngine("a", ["m1"], delay_s=0.0)
    with ExitStack() as stack:
        upstream = stack.enter_context(serve_in_thread(engine.app()))
        config = _config([{"name": "a", "url": upstream.url, "models": ["m1"]}])
        server = stack.enter_context(
            serve_in_thread(create_app(config, StaticMonitor()), runner_class=GatewayRunner)
        )
        plain = request(server.url, "POST", "/v1/chat/completions", json.dumps(CHAT).encode())
        streamed = request(
            server.url, "POST", "/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode()
        )
    assert (
        plain[0] == 200 and json.loads(plain[2])["choices"][0]["message"]["content"] == "a says: hello there"
    )
    assert streamed[0] == 200 and b"data: [DONE]" in streamed[2] and b'"error"' not in streamed[2]


# -- a client that closes early ----------------------------------------------------------------------


def test_a_stream_the_client_closes_is_audited_and_charged_for_what_was_streamed(tmp_path: Any) -> None:
    from wavefleet.gateway.security.audit import AuditQuery, query_audit
    from wavefleet.gateway.security.db import connect

    async def slow_stream(request: BackendRequest) -> FakeReply:
        class Slow(FakeReply):
            async def chunks(self) -> AsyncIterator[bytes]:
                for event in self._events:
                    if self.closed:
                        return
                    yield event
                    await asyncio.sleep(0.05)

        return Slow.stream([f"w{i}" for i in range(200)], model="m1")

    backend = FakeBackend("a", slow_stream, models=["m1"])
    audit_db = tmp_path / "audit.db"
    config = _config(
        [{"name": "a", "url": "http://127.0.0.1:9", "models": ["m1"]}],
        security={"audit": True, "audit_db": str(audit_db), "static_limits": {"tpm": 100000}},
    )
    body = json.dumps({**CHAT, "stream": True, "max_tokens": 400}).encode()
    with gateway({"a": backend}, config) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while received.count(b"data: ") < 10:
                received += sock.recv(65536)
        deadline = time.monotonic() + 10
        while not backend.replies[0].closed and time.monotonic() < deadline:
            time.sleep(0.02)
    rows = list(query_audit(connect(audit_db), AuditQuery()))
    assert [row["status"] for row in rows] == [499]
    completion = rows[0]["completion_tokens"]
    assert isinstance(completion, int) and 9 <= completion < 60  # what was streamed, not nothing nor all
    assert rows[0]["prompt_tokens"] == 2  # "hello there": 11 characters at 4 a token
