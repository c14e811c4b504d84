"""The simulated engine's latency model, driven directly (no HTTP), with time compressed by --speed.

Latency comparisons use modelled gaps of 10x or more, so busy CI cores cannot flip them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from wavefleet.errors import ConfigError
from wavefleet.sim.engine import RequestRejected, SimEngine, SimSequence
from wavefleet.sim.profile import SimProfile, load_profile, save_profile
from wavefleet.sim.tokens import encode


def profile(**changes: Any) -> SimProfile:
    base: dict[str, Any] = {
        "name": "test",
        "dialect": "vllm",
        "model": "m",
        "prefill_tokens_per_s": 2000.0,
        "itl_at_batch": [(1, 0.01), (8, 0.1)],
        "max_num_seqs": 8,
        "kv_capacity_tokens": 65536,
        "max_model_len": 16384,
        "jitter_sigma": 0.0,
    }
    base.update(changes)
    return SimProfile.model_validate(base)


def words(n: int, salt: str = "w") -> list[int]:
    return encode(" ".join(f"{salt}{i}" for i in range(n)))


def run(engine: SimEngine, body: Callable[[SimEngine], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        await engine.start()
        try:
            return await body(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


async def drain(seq: SimSequence) -> list[int]:
    return [n async for n in seq.tokens()]


def ttft(seq: SimSequence) -> float:
    assert seq.first_token_at is not None
    return seq.first_token_at - seq.arrival


def mean_itl(seq: SimSequence) -> float:
    assert seq.first_token_at is not None and seq.last_token_at is not None
    return (seq.last_token_at - seq.first_token_at) / (seq.generated - 1)


def test_itl_curve_interpolates_and_extends() -> None:
    p = profile(itl_at_batch=[(1, 0.01), (4, 0.04), (8, 0.06)])
    assert p.itl_at(1) == pytest.approx(0.01)
    assert p.itl_at(2) == pytest.approx(0.02)
    assert p.itl_at(6) == pytest.approx(0.05)
    assert p.itl_at(10) == pytest.approx(0.07)  # along the last segment
    assert profile(itl_at_batch=[(1, 0.02)]).itl_at(5) == pytest.approx(0.02)


def test_ttft_grows_with_prompt_length() -> None:
    async def body(engine: SimEngine) -> tuple[SimSequence, SimSequence]:
        short = engine.submit(words(20), 2)
        await drain(short)
        long = engine.submit(words(4000, "x"), 2)  # 2 s of prefill at 2000 tok/s, 0.5 s at speed 4
        await drain(long)
        return short, long

    short, long = run(SimEngine(profile(), speed=4), body)
    assert ttft(long) > 4 * ttft(short)  # modelled: 200x
    assert short.generated == long.generated == 2


def test_slot_limit_queues_the_next_request_fifo() -> None:
    async def body(engine: SimEngine) -> list[SimSequence]:
        seqs = [engine.submit(words(10, f"s{i}"), 30) for i in range(3)]
        await engine.wait_for(lambda: engine.num_running > 0)
        assert (engine.num_running, engine.num_waiting) == (2, 1)
        await asyncio.gather(*(drain(s) for s in seqs))
        return seqs

    first, second, third = run(SimEngine(profile(max_num_seqs=2), speed=20), body)
    assert first.last_token_at is not None and third.first_token_at is not None
    assert third.first_token_at >= min(first.last_token_at, second.last_token_at or 0)
    assert ttft(third) > ttft(first)


def test_ttft_grows_with_queue() -> None:
    async def body(engine: SimEngine) -> list[SimSequence]:
        seqs = [engine.submit(words(50, f"q{i}"), 40) for i in range(4)]
        await asyncio.gather(*(drain(s) for s in seqs))
        return seqs

    seqs = run(SimEngine(profile(max_num_seqs=1), speed=2), body)
    ttfts = [ttft(s) for s in seqs]
    assert ttfts == sorted(ttfts)
    # each waits for the whole of the ones before it (25 ms prefill + 40 x 10 ms): modelled 51x
    assert ttfts[3] > 5 * ttfts[0]


def test_itl_grows_with_batch() -> None:
    async def body(engine: SimEngine) -> tuple[SimSequence, list[SimSequence]]:
        alone = engine.submit(words(10), 10)
        await drain(alone)
        batch = [engine.submit(words(10, f"b{i}"), 10) for i in range(8)]
        await asyncio.gather(*(drain(s) for s in batch))
        return alone, batch

    alone, batch = run(SimEngine(profile(), speed=1), body)
    assert min(mean_itl(s) for s in batch) > 4 * mean_itl(alone)  # modelled: 0.1 s vs 0.01 s


def test_kv_capacity_forces_queueing() -> None:
    async def body(engine: SimEngine) -> list[SimSequence]:
        # each reserves 300 + 200 = 500 tokens of a 1024-token cache: two fit, the third waits
        seqs = [engine.submit(words(300, f"k{i}"), 200) for i in range(3)]
        await engine.wait_for(lambda: engine.num_running > 0)
        assert (engine.num_running, engine.num_waiting) == (2, 1)
        assert 0 < engine.kv_usage <= 1
        await asyncio.gather(*(drain(s) for s in seqs))
        return seqs

    seqs = run(SimEngine(profile(kv_capacity_tokens=1024, max_model_len=1024), speed=50), body)
    assert all(s.generated == 200 for s in seqs)


def test_preempt_mode_preempts_and_recomputes() -> None:
    async def body(engine: SimEngine) -> list[SimSequence]:
        seqs = [engine.submit(words(100, f"p{i}"), 150) for i in range(3)]
        await asyncio.gather(*(drain(s) for s in seqs))
        return seqs

    engine = SimEngine(profile(kv_capacity_tokens=512, max_model_len=512, kv_admission="preempt"), speed=50)
    seqs = run(engine, body)
    assert engine.stats.preemptions > 0
    assert [s.generated for s in seqs] == [150, 150, 150]


def test_prefix_hit_lowers_ttft() -> None:
    prompt = words(3000)

    async def body(engine: SimEngine) -> tuple[SimSequence, SimSequence]:
        cold = engine.submit(prompt, 2)
        await drain(cold)
        warm = engine.submit(prompt + words(5, "tail"), 2)
        await drain(warm)
        return cold, warm

    engine = SimEngine(profile(), speed=5)
    cold, warm = run(engine, body)
    assert cold.cached_tokens == 0
    assert warm.cached_tokens == 3000 // 16 * 16
    assert ttft(warm) * 5 < ttft(cold)
    assert engine.stats.prefix_hits == warm.cached_tokens


def test_prefill_stalls_decode_of_the_running_batch() -> None:
    async def body(engine: SimEngine) -> list[float]:
        runner = engine.submit(words(10), 60)
        gaps: list[float] = []
        last = None
        async for n in runner.tokens():
            now = asyncio.get_running_loop().time()
            if last is not None:
                gaps.append(now - last)
            last = now
            if n == 20:
                engine.submit(words(4000, "big"), 2)  # 2 s of unchunked prefill
        return gaps

    gaps = run(SimEngine(profile(prefill_chunk_tokens=None), speed=5), body)
    assert max(gaps) > 10 * sorted(gaps)[len(gaps) // 2]  # modelled: 2 s stall vs 10 ms steps


def test_stop_early_at_sampled_length_unless_ignore_eos() -> None:
    async def body(engine: SimEngine) -> tuple[list[SimSequence], SimSequence]:
        natural = [engine.submit(words(5, f"n{i}"), 200) for i in range(6)]
        forced = engine.submit(words(5), 200, ignore_eos=True)
        await asyncio.gather(*(drain(s) for s in [*natural, forced]))
        return natural, forced

    natural, forced = run(SimEngine(profile(natural_length_mean=5.0), speed=50), body)
    assert forced.generated == 200 and forced.finish_reason == "length"
    assert any(s.generated < 200 and s.finish_reason == "stop" for s in natural)


def test_rejects_requests_that_can_never_fit() -> None:
    async def body(engine: SimEngine) -> None:
        with pytest.raises(RequestRejected, match="maximum context length"):
            engine.submit(words(100), 1000)

    run(SimEngine(profile(max_model_len=512, kv_capacity_tokens=4096)), body)


def test_cancel_frees_the_slot() -> None:
    async def body(engine: SimEngine) -> SimSequence:
        hog = engine.submit(words(10), 10_000 // 2)
        nxt = engine.submit(words(10, "n"), 3)
        await engine.wait_for(lambda: engine.num_running > 0)
        engine.cancel(hog)
        await drain(nxt)
        return nxt

    engine = SimEngine(profile(max_num_seqs=1), speed=1)
    nxt = run(engine, body)
    assert nxt.generated == 3
    assert engine.stats.finished["abort"] == 1


def test_profile_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    original = profile(basis=["measured here"])
    path = tmp_path / "p.yaml"
    save_profile(original, path)
    assert load_profile(path) == original
    path.write_text(path.read_text() + "prefil_rate: 3\n")
    with pytest.raises(ConfigError, match="prefil_rate") as caught:
        load_profile(path)
    assert caught.value.problems[0].line is not None
