"""Every kind of server Wavefleet ships speaks OpenAI's wire format: the simulator (two dialects),
the fake engine, the in-process fake backend and the Triton translation, read by the official
`openai` client and validated against its types (the client itself checks nothing it parses).
The embedded engine's bodies are checked the same way in test_engine_server.py."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends import FakeBackend, echo
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.sim.fleet import ThreadedSimFleet
from wavefleet.sim.profile import SimProfile
from wavefleet.wire import DONE, Answer, Fault, error_body, sse_event, token_usage

MODEL = "m"
KINDS = ["sim-vllm", "sim-llamacpp", "fake-engine", "fake-backend", "triton"]
USER = [{"role": "user", "content": "one two three four"}]


def sim_profile(dialect: str) -> SimProfile:
    return SimProfile.model_validate(
        {
            "name": "sim",
            "dialect": dialect,
            "model": MODEL,
            "prefill_tokens_per_s": 50000.0,
            "itl_at_batch": [(1, 0.001)],
            "max_num_seqs": 4,
            "kv_capacity_tokens": 8192,
            "max_model_len": 2048,
        }
    )


def gateway(stack: ExitStack, config: dict[str, Any], **options: Any) -> str:
    """A gateway with `config` in a thread; its base URL."""
    app = create_app(GatewayConfig.model_validate(config), StaticMonitor(), **options)
    return stack.enter_context(serve_in_thread(app)).url


@contextmanager
def serving(kind: str) -> Iterator[str]:
    """The base URL of a server of `kind` that serves MODEL."""
    with ExitStack() as stack:
        if kind.startswith("sim-"):
            fleet = stack.enter_context(ThreadedSimFleet([sim_profile(kind[4:])], speed=4))
            yield fleet.urls["sim"]
        elif kind == "fake-engine":
            yield stack.enter_context(serve_in_thread(FakeOpenAIEngine("a", [MODEL]).app())).url
        elif kind == "fake-backend":
            backend = FakeBackend("fake", echo, models=[MODEL])
            yield gateway(
                stack, {"backends": [{"name": "fake", "url": "http://unused:1"}]}, backends={"fake": backend}
            )
        else:  # the gateway's Triton translation, in front of a simulated Triton
            fleet = stack.enter_context(ThreadedSimFleet([sim_profile("triton")], speed=4))
            backend = {"name": "t", "url": fleet.urls["sim"], "kind": "triton", "models": [MODEL]}
            yield gateway(stack, {"backends": [backend]})


@pytest.fixture(scope="module", params=KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, openai.OpenAI]]:
    with (
        serving(request.param) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=20) as client,
    ):
        yield request.param, client


def test_chat_completion(server: tuple[str, openai.OpenAI]) -> None:
    kind, client = server
    reply = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=5)  # type: ignore[arg-type]
    body = ChatCompletion.model_validate(reply.to_dict())
    assert body.object == "chat.completion" and body.model == MODEL
    assert body.choices[0].message.role == "assistant" and body.choices[0].message.content
    assert body.choices[0].finish_reason in ("stop", "length")
    assert (body.usage is None) == (kind == "triton")  # Triton reports no token counts


def test_chat_stream_with_usage(server: tuple[str, openai.OpenAI]) -> None:
    kind, client = server
    stream = client.chat.completions.create(
        model=MODEL,
        messages=USER,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = [ChatCompletionChunk.model_validate(chunk.to_dict()) for chunk in stream]
    with_choices = [c for c in chunks if c.choices]
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert with_choices[0].choices[0].delta.role == "assistant" and with_choices[0].choices[0].delta.content
    assert with_choices[-1].choices[0].finish_reason in ("stop", "length")
    assert len({c.id for c in chunks}) == 1
    if kind != "triton":
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert (
            chunks[-1].usage.total_tokens
            == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
        )


def test_text_completion(server: tuple[str, openai.OpenAI]) -> None:
    kind, client = server
    reply = client.completions.create(model=MODEL, prompt="one two three", max_tokens=5)
    body = Completion.model_validate(reply.to_dict())
    assert body.object == "text_completion" and body.model == MODEL
    assert body.choices[0].text and body.choices[0].finish_reason in ("stop", "length")
    assert (body.usage is None) == (kind == "triton")


def test_text_completion_stream(server: tuple[str, openai.OpenAI]) -> None:
    _, client = server
    stream = client.completions.create(model=MODEL, prompt="one two three", max_tokens=5, stream=True)
    # OpenAI's `Completion` type requires a finish_reason, which stream chunks leave null until the
    # last: each choice is checked for the fields a stream chunk carries instead.
    chunks = [chunk.to_dict() for chunk in stream]
    choices = [choice for chunk in chunks for choice in chunk["choices"]]
    assert all(chunk["object"] == "text_completion" and chunk["model"] == MODEL for chunk in chunks)
    assert all(
        isinstance(c["text"], str) and isinstance(c["index"], int) and "delta" not in c for c in choices
    )
    assert "".join(c["text"] for c in choices)
    assert choices[-1]["finish_reason"] in ("stop", "length")


def test_models(server: tuple[str, openai.OpenAI]) -> None:
    _, client = server
    models = [Model.model_validate(m.to_dict()) for m in client.models.list()]
    assert MODEL in [m.id for m in models]


def refused(kind: str, client: openai.OpenAI) -> None:
    """A request the server (not the gateway in front of it) refuses."""
    if kind.startswith("sim-"):
        client.chat.completions.create(model=MODEL, messages=USER, max_tokens=100_000)  # type: ignore[arg-type]
    elif kind == "fake-engine":
        client.chat.completions.create(
            model=MODEL, messages=USER, extra_headers={"x-fake-fault": Fault.ERROR}
        )  # type: ignore[arg-type]
    elif kind == "fake-backend":
        client.chat.completions.create(model="not-served", messages=USER)  # type: ignore[arg-type]
    else:
        client.completions.create(model=MODEL, prompt=" ")


def test_errors(server: tuple[str, openai.OpenAI]) -> None:
    kind, client = server
    with pytest.raises(openai.APIStatusError) as caught:
        refused(kind, client)
    error = caught.value.body
    assert isinstance(error, dict) and isinstance(error["message"], str) and isinstance(error["type"], str)
    assert error["message"] in caught.value.message
    assert error["type"] == ("invalid_request_error" if caught.value.status_code < 500 else "server_error")


def test_the_wire_module_is_a_leaf() -> None:
    """engine/, sim/ and gateway/ all import it: it may import nothing else of Wavefleet's."""
    code = "import sys, wavefleet.wire; print(' '.join(sorted(m for m in sys.modules if 'wavefleet' in m)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split() == [
        "wavefleet",
        "wavefleet.wire",
        "wavefleet.wire.bodies",
        "wavefleet.wire.faults",
        "wavefleet.wire.sse",
    ]


def test_events_are_framed_as_openai_streams_frame_them() -> None:
    answer = Answer("m", chat=True, id="chatcmpl-1", created=7)
    assert sse_event(answer.chunk("Hi", role=True)) == (
        b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":'
        b'[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}]}\n\n'
    )
    assert sse_event({"usage": None}, spaced=True) == b'data: {"usage": null}\n\n'
    assert DONE == b"data: [DONE]\n\n"
    assert answer.usage_chunk(token_usage(3, 2))["choices"] == []
    assert answer.usage_chunk(token_usage(3, 2))["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }


def test_error_bodies_take_openais_type_for_their_status() -> None:
    assert error_body("no", status=404) == {
        "error": {"message": "no", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert error_body("down")["error"]["type"] == "server_error"
    assert (
        error_body("busy", status=503, error_type="unavailable_error")["error"]["type"] == "unavailable_error"
    )


def test_the_gateway_manual_lists_every_fault_with_its_meaning() -> None:
    manual = (Path(__file__).parent.parent / "docs" / "gateway.md").read_text()
    table = manual.split("| `Fault` | what a client sees |", 1)[1].split("\n\n", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| (.+?) \|$", table, re.MULTILINE))
    assert rows == {fault.value: fault.meaning for fault in Fault}


async def outcome(url: str, fault: Fault) -> tuple[int | None, int, str, float]:
    """A stream request with `fault`: the status, the data events, how it ended, the seconds taken."""
    status, events, ending, started = None, 0, "end of body", time.monotonic()
    body = {"model": MODEL, "messages": USER, "stream": True}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=0.5)) as session:
        try:
            async with session.post(url, json=body, headers={"x-fake-fault": fault}) as reply:
                status = reply.status
                async for line in reply.content:
                    events += line.startswith(b"data: {")
                    if line.startswith(b'data: {"error"'):
                        ending = "error event"
                    elif line == b"data: [DONE]\n":
                        ending = "error event, [DONE]" if ending == "error event" else "[DONE]"
                    elif not line.startswith((b"data: ", b": ", b"\n")):
                        ending = "not SSE"
        except aiohttp.ClientPayloadError:
            ending = "dropped"
        except TimeoutError:
            ending = "silence"
    return status, events, ending, time.monotonic() - started


DELAY_S = 0.02
SERVED = {
    Fault.NONE: (200, 7, "[DONE]"),  # "a says: one two three four", then a finish chunk
    Fault.ERROR: (500, 0, "not SSE"),
    Fault.HANG: (None, 0, "silence"),
    Fault.SLOW_FIRST_BYTE: (200, 7, "[DONE]"),
    Fault.STALL: (200, 1, "silence"),
    Fault.SLOW_STREAM: (200, 51, "[DONE]"),
    Fault.CUT: (200, 2, "dropped"),
    Fault.IN_BAND_ERROR: (200, 2, "error event, [DONE]"),
    Fault.GARBAGE: (200, 0, "not SSE"),
}


@pytest.mark.parametrize("fault", list(Fault))
def test_the_fake_engine_serves_every_fault(fault: Fault) -> None:
    assert fault.meaning  # every fault says what a client sees
    with serve_in_thread(FakeOpenAIEngine("a", [MODEL], delay_s=DELAY_S).app()) as server:
        status, events, ending, took = asyncio.run(outcome(f"{server.url}/v1/chat/completions", fault))
    assert (status, events, ending) == SERVED[fault]
    if fault is Fault.SLOW_STREAM:
        assert took >= 50 * DELAY_S
    elif fault is Fault.SLOW_FIRST_BYTE:
        assert took >= DELAY_S
