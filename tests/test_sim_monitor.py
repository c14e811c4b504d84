"""The gateway's own load monitor reads every simulated dialect: what it sees follows the engine."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from wavefleet.engines import EngineKind
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects import HttpProbe, dialect_for
from wavefleet.sim.fleet import SimFleet
from wavefleet.sim.profile import SimProfile


def profile(dialect: EngineKind) -> SimProfile:
    return SimProfile(
        name=f"mon-{dialect.value}",
        dialect=dialect,
        model="m",
        prefill_tokens_per_s=50000.0,
        itl_at_batch=[(1, 0.01)],
        max_num_seqs=2,
        kv_capacity_tokens=4096,
        jitter_sigma=0.0,
    )


async def hold(session: aiohttp.ClientSession, url: str) -> None:
    body = {"prompt": "a b c", "max_tokens": 60, "stream": True}
    async with session.post(url + "/v1/completions", json=body) as response:
        async for _ in response.content:
            pass


@pytest.mark.parametrize("dialect", [k for k in EngineKind if k.traits.simulated])
def test_gateway_monitor_reads_the_simulated_load(dialect: EngineKind) -> None:
    async def main() -> None:
        p = profile(dialect)
        async with SimFleet([p]) as fleet, aiohttp.ClientSession() as session:
            url = fleet.urls[p.name]
            config = {"name": p.name, "url": url, "kind": dialect, "models": ["m"]}
            if dialect is EngineKind.TRITON:
                config["metrics_url"] = url + "/metrics"
            backend = BackendConfig.model_validate(json.loads(json.dumps(config)))
            monitor = dialect_for(backend.kind)
            probe = HttpProbe(session, timeout_s=5.0)
            idle = await monitor.poll(probe, backend)
            assert (idle.running or 0, idle.waiting or 0) == (0, 0)
            engine = fleet.servers[p.name].engine
            tasks = [asyncio.create_task(hold(session, url)) for _ in range(3)]
            await engine.wait_for(lambda: engine.num_running == 2 and engine.num_waiting == 1)
            busy = await monitor.poll(probe, backend)
            assert (busy.running, busy.waiting) == (2, 1)
            if dialect is EngineKind.LLAMACPP:
                assert busy.slots_total == 2 and busy.running == 2
            if dialect in (EngineKind.VLLM, EngineKind.SGLANG, EngineKind.TRITON):
                assert busy.kv_usage is not None and 0 < busy.kv_usage <= 1
            await asyncio.gather(*tasks)

    asyncio.run(main())
