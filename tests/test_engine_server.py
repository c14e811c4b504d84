"""The real embedded engine (llama.cpp, bundled SmolLM2) under its supervisor."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import openai
import pytest
from openai import OpenAI
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion

from wavefleet.engine.model import bundled_model_path
from wavefleet.engine.settings import EngineSettings
from wavefleet.engine.supervisor import EngineSupervisor
from wavefleet.engines import EngineKind
from wavefleet.errors import EngineError
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor import PollingMonitor
from wavefleet.gateway.monitor.prometheus import parse_metrics

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello in one word."}]


def settings() -> EngineSettings:
    # one thread: CI boxes run other tests beside this one, and llama.cpp threads spin
    return EngineSettings(model_path=bundled_model_path(), model_name=MODEL, n_threads=1, n_ctx=1024)


class EngineInThread:
    """A supervisor running on its own event loop thread, so sync clients (openai) can call it."""

    def __init__(self, supervisor: EngineSupervisor) -> None:
        self.supervisor = supervisor
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> EngineSupervisor:
        self.thread.start()
        self.call(self.supervisor.start())
        return self.supervisor

    def call(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)  # type: ignore[arg-type]

    def __exit__(self, *exc: object) -> None:
        self.call(self.supervisor.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineSupervisor]:
    with EngineInThread(EngineSupervisor(settings(), backoff_s=0.1)) as supervisor:
        yield supervisor


def test_chat_completion_with_the_openai_client(engine: EngineSupervisor) -> None:
    client = OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert reply.choices[0].message.content
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_streaming_counts_tokens_exactly(engine: EngineSupervisor) -> None:
    client = OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish, first_delta = [], None, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if first_delta is None:
                first_delta = choice.delta
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert usage is not None and finish == "length"
    # No role-only chunk ahead of the first token: TTFT clocks stop at the first chunk.
    assert first_delta is not None and first_delta.role == "assistant" and first_delta.content
    assert usage.completion_tokens == 16
    whole = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        max_tokens=16,
        temperature=0,
    )
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: the same text either way


def test_every_body_validates_against_the_openai_clients_types(engine: EngineSupervisor) -> None:
    """The client parses without checking: each body is validated against its types as well."""
    client = OpenAI(base_url=f"{engine.url}/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0)  # type: ignore[arg-type]
    ChatCompletion.model_validate(chat.to_dict())
    text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, temperature=0)
    assert Completion.model_validate(text.to_dict()).choices[0].text == text.choices[0].text
    chunks = [
        c.to_dict()
        for c in client.completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=4, temperature=0, stream=True
        )
    ]
    choices = [choice for chunk in chunks for choice in chunk["choices"]]
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert "".join(c["text"] for c in choices) == text.choices[0].text  # greedy: the same text
    assert choices[-1]["finish_reason"] == "length"
    assert [Model.model_validate(m.to_dict()).id for m in client.models.list()] == [MODEL]
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=0)
    assert isinstance(caught.value.body, dict) and "max_tokens" in caught.value.body["message"]


def test_content_parts_are_read_and_bad_messages_get_a_400(engine: EngineSupervisor) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = f"{engine.url}/v1/chat/completions"
            parts = [{"type": "text", "text": "Say hello in one word."}]
            body = {"model": MODEL, "messages": [{"role": "user", "content": parts}], "max_tokens": 3}
            async with session.post(url, json=body) as response:
                assert response.status == 200
                assert (await response.json())["usage"]["prompt_tokens"] > 5
            for messages in ([{"content": "no role"}], ["just a string"]):
                async with session.post(url, json={"model": MODEL, "messages": messages}) as response:
                    assert response.status == 400
                    assert "role" in (await response.json())["error"]["message"]

    asyncio.run(scenario())


def test_the_llamacpp_dialect_reads_the_engine(engine: EngineSupervisor) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            backend = BackendConfig.model_validate(
                {"name": "e", "url": engine.url, "kind": EngineKind.LLAMACPP}
            )
            monitor = PollingMonitor([backend], session, interval_s=60)
            snapshot = await monitor.poll("e")
            assert snapshot.healthy, snapshot.error
            assert (snapshot.running, snapshot.waiting, snapshot.slots_total) == (0, 0, 1)
            assert snapshot.models == (MODEL,)

    asyncio.run(scenario())


def test_requests_queue_on_the_single_slot_and_the_metrics_show_it(engine: EngineSupervisor) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            body = {"model": MODEL, "messages": HELLO, "max_tokens": 48, "temperature": 0.9, "stream": True}

            async def one() -> int:
                async with session.post(f"{engine.url}/v1/chat/completions", json=body) as response:
                    text = await response.text()
                    return text.count("data: ")

            requests = [asyncio.create_task(one()) for _ in range(3)]
            backend = BackendConfig.model_validate(
                {"name": "e", "url": engine.url, "kind": EngineKind.LLAMACPP}
            )
            monitor = PollingMonitor([backend], session, interval_s=60)
            seen_waiting = 0
            while not all(r.done() for r in requests):
                snapshot = await monitor.poll("e")
                assert snapshot.running in (0, 1)
                seen_waiting = max(seen_waiting, snapshot.waiting or 0)
                await asyncio.sleep(0.01)
            assert all(count >= 3 for count in await asyncio.gather(*requests))
            assert seen_waiting >= 1  # two requests waited while one ran

    asyncio.run(scenario())


def test_a_client_that_leaves_mid_stream_stops_the_generation(engine: EngineSupervisor) -> None:
    async def predicted(session: aiohttp.ClientSession) -> float:
        async with session.get(f"{engine.url}/metrics") as response:
            metrics = parse_metrics(await response.text())
        return metrics.total("llamacpp:tokens_predicted_total") or 0.0

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            before = await predicted(session)
            body = {"model": MODEL, "messages": HELLO, "max_tokens": 900, "stream": True, "temperature": 1.5}
            body["messages"] = [{"role": "user", "content": "Write a very long essay about rivers."}]
            async with session.post(f"{engine.url}/v1/chat/completions", json=body) as response:
                for _ in range(3):
                    await response.content.readline()
                response.close()  # leave after the first events
            # the next request waits for the slot; it gets it once the abandoned generation stopped
            small = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
            async with session.post(f"{engine.url}/v1/chat/completions", json=small) as response:
                assert response.status == 200
                small_tokens = (await response.json())["usage"]["completion_tokens"]
            abandoned = await predicted(session) - before - small_tokens
            assert 1 <= abandoned < 900

    asyncio.run(scenario())


def test_supervisor_restarts_a_killed_engine_on_the_same_port() -> None:
    events: list[str] = []
    with EngineInThread(EngineSupervisor(settings(), backoff_s=0.1, on_event=events.append)) as supervisor:
        url, first_pid = supervisor.url, supervisor.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)  # type: ignore[arg-type]
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        assert supervisor.pid not in (None, first_pid)
        assert supervisor.restarts == 1
        assert any("restart 1/" in e for e in events)
    assert not Path(f"/proc/{first_pid}").exists()


def test_supervisor_gives_up_with_a_clear_error_after_bounded_restarts() -> None:
    async def scenario() -> None:
        back = asyncio.Event()

        def on_event(message: str) -> None:
            if message == "engine is back":
                back.set()

        supervisor = EngineSupervisor(settings(), backoff_s=0.05, max_restarts=1, on_event=on_event)
        await supervisor.start()
        try:
            first = supervisor.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)  # restarted: the one restart allowed
            await asyncio.wait_for(back.wait(), 60)
            second = supervisor.pid
            assert second not in (None, first)
            os.kill(second, signal.SIGKILL)  # one too many
            assert supervisor.failed is not None
            with pytest.raises(EngineError, match=r"(?s)was killed by SIGKILL, after 1 restart.*fix:"):
                await asyncio.wait_for(supervisor.failed, 60)
        finally:
            await supervisor.stop()

    asyncio.run(scenario())


def test_a_file_llama_cpp_cannot_load_fails_fast_with_its_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))

    async def scenario() -> None:
        supervisor = EngineSupervisor(
            EngineSettings(model_path=broken, model_name="broken", n_threads=1), backoff_s=0.05
        )
        with pytest.raises(EngineError, match="could not load"):
            await supervisor.start()
        assert supervisor.pid is None

    asyncio.run(scenario())
