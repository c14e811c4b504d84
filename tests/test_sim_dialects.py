"""Each dialect's metrics, scraped over HTTP and parsed with prometheus_client's text parser, follow
the engine's running/waiting state; llama.cpp's /slots and /props and Triton's generate work."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from wavefleet.engines import EngineKind
from wavefleet.sim.fleet import SimFleet
from wavefleet.sim.profile import SimProfile

# metric names: (running, waiting, generated tokens counter sample, kv usage or None)
NAMES: dict[EngineKind, tuple[str, str, str, str | None]] = {
    EngineKind.VLLM: (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc",
    ),
    EngineKind.LLAMACPP: (
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
        "llamacpp:tokens_predicted_total",
        None,
    ),
    EngineKind.SGLANG: (
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:generation_tokens_total",
        "sglang:token_usage",
    ),
    EngineKind.TRITON: ("", "nv_inference_pending_request_count", "", "nv_trt_llm_kv_cache_block_metrics"),
}


def profile(dialect: EngineKind) -> SimProfile:
    return SimProfile(
        name=f"sim-{dialect.value}",
        dialect=dialect,
        model="m",
        prefill_tokens_per_s=50000.0,
        itl_at_batch=[(1, 0.01), (2, 0.01)],
        max_num_seqs=2,
        kv_capacity_tokens=8192,
        jitter_sigma=0.0,
    )


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matches = [v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(matches) == 1, f"{name}{labels}: {found.get(name)}"
    return matches[0]


async def stream_completion(session: aiohttp.ClientSession, url: str, max_tokens: int) -> int:
    body = {"model": "m", "prompt": "a b c d", "max_tokens": max_tokens, "stream": True}
    events = 0
    async with session.post(url + "/v1/completions", json=body) as response:
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"data: {"):
                events += 1
    return events


@pytest.mark.parametrize("dialect", [k for k in EngineKind if k.traits.simulated])
def test_metrics_follow_running_and_waiting(dialect: EngineKind) -> None:
    running_name, waiting_name, tokens_name, kv_name = NAMES[dialect]

    async def main() -> None:
        async with SimFleet([profile(dialect)], speed=1) as fleet, aiohttp.ClientSession() as session:
            url = fleet.urls[f"sim-{dialect.value}"]
            engine = fleet.servers[f"sim-{dialect.value}"].engine
            idle = samples(await (await session.get(url + "/metrics")).text())
            if running_name:
                assert value(idle, running_name) == 0
            assert value(idle, waiting_name) == 0
            tasks = [asyncio.create_task(stream_completion(session, url, 40)) for _ in range(3)]
            await engine.wait_for(lambda: engine.num_running == 2 and engine.num_waiting == 1)
            busy = samples(await (await session.get(url + "/metrics")).text())
            if running_name:
                assert value(busy, running_name) == 2
            assert value(busy, waiting_name) == 1
            if kv_name == "nv_trt_llm_kv_cache_block_metrics":
                assert value(busy, kv_name, kv_cache_block_type="fraction") > 0
                assert value(busy, "nv_trt_llm_request_metrics", request_type="waiting") == 1
            elif kv_name:
                assert 0 < value(busy, kv_name) <= 1
            assert await asyncio.gather(*tasks) == [40, 40, 40]
            done = samples(await (await session.get(url + "/metrics")).text())
            if running_name:
                assert value(done, running_name) == 0
            assert value(done, waiting_name) == 0
            if tokens_name:
                assert value(done, tokens_name) == 120
            if dialect is EngineKind.VLLM:
                assert value(done, "vllm:request_success_total", finished_reason="length") == 3
                assert value(done, "vllm:time_to_first_token_seconds_count") == 3
                assert value(done, "vllm:inter_token_latency_seconds_count") == 3 * 39
            if dialect is EngineKind.TRITON:
                assert value(done, "nv_inference_request_success") == 3

    asyncio.run(main())


def test_llamacpp_slots_props_health() -> None:
    async def main() -> None:
        async with SimFleet([profile(EngineKind.LLAMACPP)]) as fleet, aiohttp.ClientSession() as session:
            url = fleet.urls["sim-llamacpp"]
            engine = fleet.servers["sim-llamacpp"].engine
            assert (await (await session.get(url + "/props")).json())["total_slots"] == 2
            assert await (await session.get(url + "/health")).json() == {"status": "ok"}
            tasks = [asyncio.create_task(stream_completion(session, url, 30)) for _ in range(2)]
            await engine.wait_for(lambda: engine.num_running == 2)
            slots: list[dict[str, Any]] = await (await session.get(url + "/slots")).json()
            assert [s["is_processing"] for s in slots] == [True, True]
            full = await session.get(url + "/slots?fail_on_no_slot=1")
            assert full.status == 503
            await asyncio.gather(*tasks)
            slots = await (await session.get(url + "/slots")).json()
            assert [s["is_processing"] for s in slots] == [False, False]
            assert (await session.get(url + "/slots?fail_on_no_slot=1")).status == 200

    asyncio.run(main())


def test_triton_generate_and_generate_stream() -> None:
    async def main() -> None:
        async with (
            SimFleet([profile(EngineKind.TRITON)], speed=5) as fleet,
            aiohttp.ClientSession() as session,
        ):
            url = fleet.urls["sim-triton"]
            body = {"text_input": "hello there", "parameters": {"max_tokens": 6}}
            answer = await (await session.post(url + "/v2/models/m/generate", json=body)).json()
            assert answer["model_name"] == "m" and len(answer["text_output"].split()) == 6
            events = []
            async with session.post(url + "/v2/models/m/generate_stream", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        events.append(json.loads(line[6:]))
            assert len(events) == 6 and all("text_output" in e for e in events)
            missing = await session.post(url + "/v2/models/other/generate", json=body)
            assert missing.status == 400
            assert (await session.get(url + "/v2/health/ready")).status == 200

    asyncio.run(main())
