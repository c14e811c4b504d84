"""The circuit breaker on a clock the test moves by hand."""

from __future__ import annotations

from wavefleet.gateway.monitor.breaker import BreakerPolicy, BreakerState, CircuitBreaker


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


POLICY = BreakerPolicy(failure_threshold=3, base_cooldown_s=5, max_cooldown_s=40, stable_after_s=60)


def make() -> tuple[CircuitBreaker, ManualClock]:
    clock = ManualClock()
    return CircuitBreaker(POLICY, clock), clock


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record(False)


def test_opens_after_threshold_failures_in_a_row() -> None:
    breaker, _ = make()
    fail(breaker, 2)
    breaker.record(True)  # a success in between resets the count
    fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.status().reopens_in_s == 5


def test_half_opens_after_cooldown_with_one_probe_then_closes_on_success() -> None:
    breaker, clock = make()
    fail(breaker, 3)
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.2)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record(True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow() and breaker.allow()


def test_unanswered_probe_frees_its_slot_after_probe_timeout() -> None:
    breaker, clock = make()
    fail(breaker, 3)
    clock.advance(5)
    assert breaker.allow()
    clock.advance(POLICY.probe_timeout_s + 1)
    assert breaker.allow()


def test_failed_probe_reopens_with_doubled_cooldown() -> None:
    breaker, clock = make()
    fail(breaker, 3)
    clock.advance(5)
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.status().cooldown_s == 10


def test_flapping_backend_cooldown_grows_to_the_cap_and_resets_when_stable() -> None:
    breaker, clock = make()
    cooldowns = []
    for _ in range(5):
        fail(breaker, 3)
        cooldowns.append(breaker.status().cooldown_s)
        clock.advance(breaker.status().cooldown_s)
        assert breaker.allow()
        breaker.record(True)  # recovers ...
        clock.advance(1)  # ... and fails again soon after
    assert cooldowns == [5, 10, 20, 40, 40]
    clock.advance(POLICY.stable_after_s)  # stays up for a while
    fail(breaker, 3)
    assert breaker.status().cooldown_s == 5


def test_poll_failures_open_and_a_good_poll_half_opens_at_once() -> None:
    breaker, _ = make()
    for _ in range(3):
        breaker.record_poll(False)
    assert breaker.state is BreakerState.OPEN
    breaker.record_poll(True)  # the engine is back: try one request without waiting the cool-down
    assert breaker.state is BreakerState.HALF_OPEN


def test_good_polls_do_not_shorten_a_cooldown_opened_by_failed_requests() -> None:
    breaker, clock = make()
    fail(breaker, 3)
    breaker.record_poll(True)
    assert breaker.state is BreakerState.OPEN
    clock.advance(5)
    assert breaker.state is BreakerState.HALF_OPEN


def test_polling_monitor_snapshot_shows_half_open_when_the_cool_down_ends_without_a_poll() -> None:
    """Routers filter on `snapshot().breaker`; a stale "open" would starve the probe forever."""
    import asyncio

    import aiohttp

    from wavefleet.gateway.config import BackendConfig
    from wavefleet.gateway.monitor.polling import PollingMonitor

    async def main() -> list[str]:
        clock = ManualClock()
        async with aiohttp.ClientSession() as session:
            backend = BackendConfig(name="a", url="http://127.0.0.1:9", models=["m"])
            monitor = PollingMonitor([backend], session, interval_s=3600, breaker=POLICY, clock=clock)
            for _ in range(POLICY.failure_threshold):
                monitor.record_outcome("a", False)
            seen = [monitor.snapshot("a").breaker]
            clock.advance(POLICY.base_cooldown_s + 0.1)
            seen.append(monitor.snapshot("a").breaker)
            return seen

    assert asyncio.run(main()) == ["open", "half-open"]
