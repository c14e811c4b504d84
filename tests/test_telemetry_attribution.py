"""Energy per request: the attribution closes on the counter's total, recovers known energies,
keeps idle draw apart, and the cost follows the inventory's tariff."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavefleet.catalog import Catalog
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.telemetry.attribution import (
    EQUAL_WEIGHTS,
    EnergySample,
    RequestSpan,
    TokenWeights,
    attribute,
    combine,
    idle_power,
)
from wavefleet.telemetry.cost import Tariff
from wavefleet.telemetry.counter import EnergyTotal
from wavefleet.telemetry.energy_log import EnergyLog


def trace(power: list[tuple[float, float]], until: float, step: float = 0.5) -> list[EnergySample]:
    """Cumulative energy sampled every `step` s of a device drawing power[i][1] W from power[i][0] s."""
    samples, joules, t = [EnergySample(0.0, 0.0)], 0.0, 0.0
    while t < until:
        nxt = min(t + step, until)
        joules += _energy_between(power, t, nxt)
        samples.append(EnergySample(nxt, joules))
        t = nxt
    return samples


def _energy_between(power: list[tuple[float, float]], a: float, b: float) -> float:
    total = 0.0
    for i, (start, watts) in enumerate(power):
        end = power[i + 1][0] if i + 1 < len(power) else float("inf")
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += watts * (hi - lo)
    return total


def test_a_request_alone_gets_the_energy_above_idle_and_idle_is_reported_apart() -> None:
    # 50 W idle; 250 W while the request runs from 2 s to 6 s
    samples = trace([(0, 50), (2, 250), (6, 50)], until=8)
    request = RequestSpan(id="a", start=2, first_token=3, end=6, prompt_tokens=100, completion_tokens=40)
    result = attribute(samples, [request], weights=EQUAL_WEIGHTS, idle_w=50)
    energy = result.requests["a"]
    assert energy.energy_j == pytest.approx(200 * 4)
    assert energy.idle_j == pytest.approx(50 * 4)
    assert result.unattributed_j == pytest.approx(50 * 4)  # 0-2 s and 6-8 s: nothing ran
    assert result.total_j == pytest.approx(250 * 4 + 50 * 4)
    assert result.closure_error < 1e-12
    assert energy.j_per_output_token() == pytest.approx(800 / 40)
    assert energy.j_per_output_token(include_idle=True) == pytest.approx(1000 / 40)


def test_two_requests_alike_at_once_share_evenly() -> None:
    samples = trace([(0, 100), (1, 300), (5, 100)], until=6)
    spans = [
        RequestSpan(id=n, start=1, first_token=1, end=5, prompt_tokens=0, completion_tokens=80)
        for n in ("a", "b")
    ]
    result = attribute(samples, spans, weights=EQUAL_WEIGHTS, idle_w=100)
    assert result.requests["a"].energy_j == pytest.approx(400)
    assert result.requests["b"].energy_j == pytest.approx(400)
    assert result.requests["a"].busy_s == pytest.approx(2)


def test_concurrent_requests_recover_the_energy_each_caused() -> None:
    """A device whose draw is idle plus each request's tokens/s x J per token of its phase: with
    samples at least at every change, attribution gives back each request's own energy."""
    weights = TokenWeights(prefill=0.05, decode=2.0, basis="the device's true J per token")
    spans = [
        RequestSpan(
            id="long", start=0.0, first_token=4.0, end=9.0, prompt_tokens=8000, completion_tokens=100
        ),
        RequestSpan(
            id="short", start=1.0, first_token=1.5, end=7.0, prompt_tokens=200, completion_tokens=220
        ),
        RequestSpan(
            id="late", start=6.0, first_token=6.5, end=10.0, prompt_tokens=1000, completion_tokens=70
        ),
    ]
    idle = 60.0
    cuts = sorted({t for r in spans for t in (r.start, r.first_token, r.end)} | {x / 4 for x in range(45)})
    samples, joules = [EnergySample(cuts[0], 0.0)], 0.0
    for a, b in zip(cuts, cuts[1:], strict=False):
        watts = idle + sum(
            work / (pe - pb) for r in spans for (pb, pe, work, _) in r.phases(weights) if pb <= a and pe >= b
        )
        joules += watts * (b - a)
        samples.append(EnergySample(b, joules))
    result = attribute(samples, spans, weights=weights, idle_w=idle)
    for r in spans:
        own = r.prompt_tokens * weights.prefill + r.completion_tokens * weights.decode
        assert result.requests[r.id].energy_j == pytest.approx(own, rel=1e-9)
        assert result.requests[r.id].prefill_j == pytest.approx(r.prompt_tokens * weights.prefill, rel=1e-9)
    assert result.closure_error < 1e-12


def test_a_queued_request_does_no_work_until_the_engine_takes_it() -> None:
    samples = trace([(0, 0), (0, 100)], until=10)
    waits = RequestSpan(
        id="w", start=0, first_token=9, end=10, prompt_tokens=10, completion_tokens=10, prefill_s=1
    )
    runs = RequestSpan(id="r", start=0, first_token=1, end=8, prompt_tokens=10, completion_tokens=70)
    result = attribute(samples, [waits, runs], weights=EQUAL_WEIGHTS, idle_w=0)
    # 0-8 s: only r works (w waits in the queue): all 800 J of those 8 s are r's
    assert result.requests["r"].energy_j == pytest.approx(800)
    assert result.requests["w"].energy_j == pytest.approx(200)


def test_requests_alive_but_idle_share_evenly() -> None:
    samples = trace([(0, 10)], until=4)
    spans = [RequestSpan(id=n, start=0, end=4) for n in ("a", "b")]  # no tokens counted
    result = attribute(samples, spans, weights=EQUAL_WEIGHTS, idle_w=0)
    assert result.requests["a"].energy_j == pytest.approx(20)
    assert result.closure_error < 1e-12


def test_a_request_partly_outside_the_window_says_how_much_was_measured() -> None:
    samples = trace([(0, 100)], until=4)
    result = attribute(
        samples,
        [RequestSpan(id="a", start=2, end=6, first_token=2, completion_tokens=4)],
        weights=EQUAL_WEIGHTS,
        idle_w=0,
    )
    assert result.requests["a"].coverage == pytest.approx(0.5)
    assert result.requests["a"].energy_j == pytest.approx(200)


def test_idle_power_is_the_mean_draw_while_nothing_ran() -> None:
    samples = trace([(0, 40), (3, 200), (5, 40)], until=10)
    assert idle_power(samples, [RequestSpan(id="a", start=3, end=5)]) == pytest.approx(40)
    assert idle_power(samples, [RequestSpan(id="a", start=0, end=10)]) is None


def test_weights_from_timings_and_from_solo_runs() -> None:
    timed = TokenWeights.from_timings(prompt_per_second=9000, predicted_per_second=270)
    assert timed.decode / timed.prefill == pytest.approx(9000 / 270)
    samples = trace([(0, 100), (1, 400), (2, 200), (6, 100)], until=7)
    solo = attribute(
        samples,
        [RequestSpan(id="s", start=1, first_token=2, end=6, prompt_tokens=600, completion_tokens=100)],
        weights=EQUAL_WEIGHTS,
        idle_w=100,
    )
    measured = TokenWeights.from_solo_runs(solo.requests.values())
    assert measured.prefill == pytest.approx(300 / 600)
    assert measured.decode == pytest.approx(400 / 100)


def test_a_request_on_two_devices_sums_its_shares() -> None:
    span = RequestSpan(id="a", start=0, first_token=0, end=2, completion_tokens=10)
    gpu0 = attribute(trace([(0, 100)], until=2), [span], weights=EQUAL_WEIGHTS, idle_w=0)
    gpu1 = attribute(trace([(0, 50)], until=2), [span], weights=EQUAL_WEIGHTS, idle_w=0)
    assert combine([gpu0, gpu1])["a"].energy_j == pytest.approx(300)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 2, "end": 1}, "before it starts"),
        ({"start": 0, "end": 1, "first_token": 2}, "outside its lifetime"),
        ({"start": 0, "end": 1, "prompt_tokens": -1}, "negative token count"),
    ],
)
def test_impossible_requests_are_refused_with_the_reason(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RequestSpan(id="x", **kwargs)  # type: ignore[arg-type]


def test_raw_counters_that_go_down_are_refused() -> None:
    with pytest.raises(ValueError, match="EnergyTotal"):
        attribute([EnergySample(0, 5), EnergySample(1, 3)], [], weights=EQUAL_WEIGHTS, idle_w=0)


# --- the property: attributed + idle shares + unattributed == counter total -------------------


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[EnergySample], list[RequestSpan], float]:
    n = draw(st.integers(2, 40))
    gaps = draw(st.lists(st.floats(0.01, 5), min_size=n - 1, max_size=n - 1))
    powers = draw(st.lists(st.floats(0, 700), min_size=n - 1, max_size=n - 1))
    samples, t, joules = [EnergySample(0.0, 0.0)], 0.0, 0.0
    for gap, watts in zip(gaps, powers, strict=True):
        t, joules = t + gap, joules + gap * watts
        samples.append(EnergySample(t, joules))
    spans = []
    for i in range(draw(st.integers(0, 12))):
        start = draw(st.floats(-5, t + 5))
        end = start + draw(st.floats(0, t + 5))
        first = draw(st.one_of(st.none(), st.floats(start, end)))
        spans.append(
            RequestSpan(
                id=f"r{i}",
                start=start,
                end=end,
                first_token=first,
                prompt_tokens=draw(st.integers(0, 5000)),
                completion_tokens=draw(st.integers(0, 500)),
                prefill_s=draw(st.one_of(st.none(), st.floats(0, 10))),
            )
        )
    return samples, spans, draw(st.floats(0, 400))


@settings(max_examples=200, deadline=None)
@given(
    runs(),
    st.sampled_from([EQUAL_WEIGHTS, TokenWeights(0.02, 1.5, "fitted"), TokenWeights(0, 1, "decode only")]),
)
def test_attribution_always_closes_on_the_counter_total(
    run: tuple[list[EnergySample], list[RequestSpan], float], weights: TokenWeights
) -> None:
    samples, spans, idle_w = run
    result = attribute(samples, spans, weights=weights, idle_w=idle_w)
    assert result.attributed_j + result.unattributed_j == pytest.approx(result.total_j, rel=1e-9, abs=1e-9)
    for r in spans:
        energy = result.requests[r.id]
        assert energy.energy_j >= -1e-9 and energy.idle_j >= -1e-9
        assert energy.busy_s <= (r.end - r.start) + 1e-9


# --- raw counters ---------------------------------------------------------------------------------


def test_a_rapl_counter_that_wraps_keeps_counting() -> None:
    total = EnergyTotal(scale=1e-6, wraps_at=262_143_328_850)
    total.update(262_000_000_000)
    assert total.update(1_000_000) == pytest.approx((262_143_328_850 - 262_000_000_000 + 1_000_000) * 1e-6)
    assert total.wraps == 1 and total.restarts == 0


def test_an_nvml_counter_reset_by_a_driver_reload_counts_from_zero() -> None:
    total = EnergyTotal(scale=1e-3)
    total.update(5_000_000)
    total.update(5_400_000)
    assert total.update(300) == pytest.approx(400 + 0.3)
    assert total.restarts == 1


# --- cost -----------------------------------------------------------------------------------------


def test_cost_is_energy_at_the_tariff_plus_amortisation_for_the_device_time_held(tmp_path: Path) -> None:
    samples = trace([(0, 360)], until=10)
    result = attribute(
        samples,
        [RequestSpan(id="a", start=0, first_token=0, end=10, completion_tokens=100)],
        weights=EQUAL_WEIGHTS,
        idle_w=0,
    )
    tariff = Tariff(price_per_kwh=0.30, currency="EUR", amortisation_per_hour=0.36)
    cost = tariff.request_cost(result.requests["a"])
    assert cost.energy == pytest.approx(3600 / 3.6e6 * 0.30)  # 1 Wh at 0.30/kWh
    assert cost.amortisation == pytest.approx(0.001)  # 10 s of 0.36/h
    assert cost.per_output_token == pytest.approx((0.0003 + 0.001) / 100)
    assert cost.currency == "EUR"


def test_the_tariff_comes_from_the_inventory_with_a_hosts_amortisation(tmp_path: Path) -> None:
    catalog = Catalog.load()
    text = default_inventory_path().read_text()
    host = load_inventory(default_inventory_path(), catalog).hosts[0]
    assert (
        Tariff.from_inventory(
            load_inventory(default_inventory_path(), catalog), host.id
        ).amortisation_per_hour
        == 0
    )
    edited = text.replace(f"- id: {host.id}\n", f"- id: {host.id}\n    amortisation_per_hour: 0.05\n", 1)
    assert edited != text
    path = tmp_path / "inventory.yaml"
    path.write_text(edited)
    inventory = load_inventory(path, catalog)
    tariff = Tariff.from_inventory(inventory, host.id)
    assert (tariff.price_per_kwh, tariff.currency, tariff.amortisation_per_hour) == (0.12, "USD", 0.05)


# --- the energy log between collectors and attribution --------------------------------------------


def test_the_energy_log_gives_the_readings_around_a_request() -> None:
    log = EnergyLog(keep_s=100)
    for t in range(20):
        log.record(float(t), {"gpu0": 10.0 * t, "cpu": 2.0 * t})
    window = log.samples("gpu0", since=5.5, until=8.2)
    assert [s.t for s in window] == [5, 6, 7, 8, 9]  # one reading on each side of the request
    result = attribute(
        window,
        [RequestSpan(id="a", start=5.5, first_token=5.5, end=8.2, completion_tokens=3)],
        weights=EQUAL_WEIGHTS,
        idle_w=0,
    )
    assert result.requests["a"].energy_j == pytest.approx(10 * 2.7)
    assert log.devices() == ["cpu", "gpu0"]


def test_the_energy_log_forgets_old_readings_and_restarts_on_a_fresh_total() -> None:
    log = EnergyLog(keep_s=10)
    for t in range(30):
        log.record(float(t), {"gpu0": float(t)})
    assert log.samples("gpu0", since=0, until=30)[0].t == 19
    log.record(30.0, {"gpu0": 0.5})  # the collector started over
    log.record(30.0, {"gpu0": 99.0})  # the same moment again: ignored
    log.record(31.0, {"gpu0": 1.5})
    assert [(s.t, s.joules) for s in log.samples("gpu0", since=0, until=40)] == [(30.0, 0.5), (31.0, 1.5)]
    assert log.samples("nothing", since=0, until=1) == []
