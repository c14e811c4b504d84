"""The simulated engine's OpenAI API, through the official openai client, plus fault injection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from wavefleet.sim.faults import FaultConfig
from wavefleet.sim.fleet import ThreadedSimFleet
from wavefleet.sim.profile import SimProfile


def profile(**changes: Any) -> SimProfile:
    base: dict[str, Any] = {
        "name": "api",
        "dialect": "vllm",
        "model": "sim-model",
        "prefill_tokens_per_s": 20000.0,
        "itl_at_batch": [(1, 0.002), (8, 0.004)],
        "max_num_seqs": 8,
        "kv_capacity_tokens": 16384,
        "max_model_len": 4096,
    }
    base.update(changes)
    return SimProfile.model_validate(base)


@pytest.fixture(scope="module")
def sim_engines() -> Iterator[ThreadedSimFleet]:
    with ThreadedSimFleet([profile()], speed=2) as running:
        yield running


def client(sim_engines: ThreadedSimFleet, name: str = "api", **options: Any) -> OpenAI:
    return OpenAI(base_url=sim_engines.urls[name] + "/v1", api_key="sim", max_retries=0, **options)


def test_chat_stream_with_usage(sim_engines: ThreadedSimFleet) -> None:
    with client(sim_engines) as c:
        chunks = list(
            c.chat.completions.create(
                model="sim-model",
                messages=[{"role": "user", "content": "one two three four"}],
                max_tokens=7,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert len(content) == 7
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 7)  # role marker + 4 words
    assert len("".join(c or "" for c in content).split()) == 7
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk(sim_engines: ThreadedSimFleet) -> None:
    with client(sim_engines) as c:
        chunks = list(
            c.chat.completions.create(
                model="sim-model", messages=[{"role": "user", "content": "hi"}], max_tokens=3, stream=True
            )
        )
    assert len(chunks) == 3 and all(c.choices for c in chunks)


def test_completions_non_stream_and_stream(sim_engines: ThreadedSimFleet) -> None:
    with client(sim_engines) as c:
        _completions(c)


def _completions(c: OpenAI) -> None:
    done = c.completions.create(model="sim-model", prompt="a b c", max_tokens=4)
    assert done.usage is not None and (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 4)
    assert len(done.choices[0].text.split()) == 4
    streamed = list(
        c.completions.create(
            model="sim-model",
            prompt="a b c",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert sum(1 for s in streamed if s.choices) == 5
    assert streamed[-1].usage is not None and streamed[-1].usage.completion_tokens == 5


def test_models_and_errors(sim_engines: ThreadedSimFleet) -> None:
    with client(sim_engines) as c:
        _models_and_errors(c)
    with urllib.request.urlopen(sim_engines.urls["api"] + "/health") as response:
        assert response.status == 200


def _models_and_errors(c: OpenAI) -> None:
    assert [m.id for m in c.models.list()] == ["sim-model"]
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="other", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        c.completions.create(model="sim-model", prompt="x", max_tokens=5000)


def test_fault_error_returns_500() -> None:
    with (
        ThreadedSimFleet([profile()], faults=FaultConfig(error_rate=1.0)) as sim_engines,
        client(sim_engines) as c,
    ):
        with pytest.raises(openai.InternalServerError):
            c.completions.create(model="sim-model", prompt="x", max_tokens=3)
        request = urllib.request.Request(
            sim_engines.urls["api"] + "/v1/completions",
            data=json.dumps({"prompt": "x", "max_tokens": 2}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        with caught.value as error:
            assert error.code == 500
            assert json.loads(error.read())["error"]["type"] == "server_error"


def test_fault_cut_raises_mid_stream() -> None:
    with (
        ThreadedSimFleet([profile()], faults=FaultConfig(cut_rate=1.0)) as sim_engines,
        client(sim_engines) as c,
    ):
        stream = c.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "x"}], max_tokens=50, stream=True
        )
        received = []
        with pytest.raises((httpx.HTTPError, openai.APIError)):
            for chunk in stream:
                received.append(chunk)
        assert 1 <= len(received) < 50


def test_fault_inband_error_arrives_after_200() -> None:
    with (
        ThreadedSimFleet([profile()], faults=FaultConfig(inband_error_rate=1.0)) as sim_engines,
        client(sim_engines) as c,
    ):
        stream = c.completions.create(model="sim-model", prompt="x", max_tokens=40, stream=True)
        received = []
        with pytest.raises(openai.APIError, match="mid-stream failure"):
            for chunk in stream:
                received.append(chunk)
        assert 1 <= len(received) < 40


def test_fault_hang_never_answers() -> None:
    with (
        ThreadedSimFleet([profile()], faults=FaultConfig(hang_rate=1.0)) as sim_engines,
        client(sim_engines, timeout=0.5) as c,
        pytest.raises(openai.APITimeoutError),
    ):
        c.completions.create(model="sim-model", prompt="x", max_tokens=3)


def test_fault_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="more than 1"):
        FaultConfig(error_rate=0.6, cut_rate=0.6)
