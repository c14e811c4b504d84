"""Fairness between concurrent requests, on a synthetic GPU whose power and energy counter behave
like an H200's under llama.cpp (wavefleet.telemetry.gpu_model): a long-prompt request served
beside a short one is charged in the ratio of their energies alone, within 15 %."""

from __future__ import annotations

import pytest

from wavefleet.telemetry.attribution import (
    EQUAL_WEIGHTS,
    EnergySample,
    PhasePower,
    Placement,
    RequestSpan,
    TokenWeights,
    attribute,
    smooth_counter,
)
from wavefleet.telemetry.gpu_model import GpuModel, Job
from wavefleet.telemetry.replay import RunRequest, evaluate, samples_of


def run_of(model: GpuModel, repeats: int = 2) -> tuple[list[list[float | None]], list[RunRequest]]:
    run = model.check_run(repeats=repeats)
    return run["readings"], [RunRequest.from_json(r) for r in run["requests"]]


def test_spreading_tokens_over_their_phases_undercharges_a_long_prompt_served_beside_a_short_one() -> None:
    readings, requests = run_of(GpuModel())
    spread = evaluate(readings, requests)["schemes"]["spread"]
    assert spread["closure_error"] < 1e-9
    # the scheme the H200 measured (-20 to -52 %) fails here too, the same way round
    assert all(row["deviation"] < -0.3 for row in spread["repeats"])


@pytest.mark.parametrize("scheme", ["streamed", "pooled"])
def test_placing_work_in_its_phase_at_solo_power_keeps_the_ratio_of_solo_energies_and_closes(
    scheme: str,
) -> None:
    readings, requests = run_of(GpuModel())
    result = evaluate(readings, requests)["schemes"][scheme]
    assert result["closure_error"] < 1e-9
    assert result["worst_deviation"] <= 0.15


@pytest.mark.parametrize(
    "model",
    [
        GpuModel(prefill_w=700, decode_w=250),  # prefill far hungrier than decode
        GpuModel(prefill_w=300, decode_w=300, chunk_tokens=512),  # alike, small chunks
        GpuModel(prefill_tokens_per_s=8000, step_s=1 / 60, idle_w=40),  # a smaller card
    ],
)
def test_pooling_busy_stretches_is_fair_across_gpus_unlike_spreading(model: GpuModel) -> None:
    result = evaluate(*run_of(model))
    assert result["goals"]["pooled"] == {"closure_within_2pct": True, "ratio_within_15pct": True}
    assert result["schemes"]["pooled"]["worst_deviation"] < 0.08
    assert result["goals"]["spread"]["ratio_within_15pct"] is False


def test_moment_by_moment_split_overcharges_decode_riding_along_small_prefill_chunks() -> None:
    # 24 chunks of 512: each carries one of the short request's tokens, priced at a solo decode
    # step's cost though it shares the chunk's step; pooling over the stretch does not care
    result = evaluate(*run_of(GpuModel(prefill_w=300, decode_w=300, chunk_tokens=512)))
    assert result["schemes"]["streamed"]["worst_deviation"] > 0.15
    assert result["schemes"]["pooled"]["worst_deviation"] < 0.08


def test_solo_power_per_phase_is_learned_from_moments_one_request_ran_alone() -> None:
    model = GpuModel(prefill_w=600, decode_w=300)
    readings, requests = run_of(model, repeats=1)
    samples = smooth_counter(samples_of(readings))
    alone = [r.span() for r in requests if r.kind.endswith("alone")]
    power = PhasePower.observe(samples, alone, idle_w=model.idle_w)
    assert power.prefill_w == pytest.approx(600, rel=0.1)
    assert power.decode_w == pytest.approx(300, rel=0.05)
    weights = power.token_weights(prompt_per_second=20_000, predicted_per_second=190)
    assert weights.prefill == pytest.approx(600 / 20_000, rel=0.1)
    assert weights.decode == pytest.approx(300 / 190, rel=0.05)


def test_without_a_solo_phase_seen_tokens_are_priced_by_device_time() -> None:
    weights = PhasePower().token_weights(prompt_per_second=1000, predicted_per_second=50)
    assert weights == TokenWeights.from_timings(1000, 50)


def test_a_decoding_request_is_charged_for_the_tokens_it_streamed_during_a_neighbours_prefill() -> None:
    # 100 W above idle throughout; b's prefill runs 0-1 s while a makes one token (streamed at
    # 1 s), then a makes 9 tokens from 1 s to 2 s alone
    samples = [EnergySample(t / 10, 100.0 * t / 10) for t in range(21)]
    a = RequestSpan(
        id="a",
        start=0,
        end=2,
        first_token=0,
        completion_tokens=10,
        token_times=(0.0, 1.0, *(1 + k / 9 for k in range(1, 10))),
    )
    b = RequestSpan(id="b", start=0, end=1, first_token=1, prompt_tokens=1000, prefill_s=1.0)
    weights = TokenWeights(0.001, 0.1, "test")  # 1000 prompt tokens cost 10 generated ones
    streamed = attribute(samples, [a, b], weights=weights, idle_w=0, placement=Placement.STREAMED)
    # first second: a did one token's work (0.1), b its whole prefill (1.0)
    assert streamed.requests["b"].energy_j == pytest.approx(100 * 1.0 / 1.1)
    assert streamed.closure_error < 1e-12
    spread = attribute(samples, [a, b], weights=weights, idle_w=0, placement=Placement.SPREAD)
    # a's ten tokens spread evenly over 0-2 s: five against b's prefill
    assert spread.requests["b"].energy_j == pytest.approx(100 * 1.0 / 1.5)
    # pooled over the 2 s stretch: a's ten tokens (1.0) against b's prefill (1.0)
    pooled = attribute(samples, [a, b], weights=weights, idle_w=0, placement=Placement.POOLED)
    assert pooled.requests["b"].energy_j == pytest.approx(100)
    assert pooled.requests["a"].decode_j == pytest.approx(100)
    assert pooled.closure_error < 1e-12


def test_pooling_starts_afresh_after_the_device_had_no_request() -> None:
    samples = [EnergySample(float(t), 100.0 * t) for t in range(7)]  # 100 W, idle 0
    a = RequestSpan(id="a", start=0, end=2, first_token=0, completion_tokens=1)
    b = RequestSpan(id="b", start=3, end=4, first_token=3, completion_tokens=50)
    result = attribute(samples, [a, b], weights=EQUAL_WEIGHTS, idle_w=0, placement=Placement.POOLED)
    assert result.requests["a"].energy_j == pytest.approx(200)
    assert result.requests["b"].energy_j == pytest.approx(100)
    assert result.unattributed_j == pytest.approx(300)


def test_events_arriving_together_share_the_step_that_made_them() -> None:
    span = RequestSpan(id="a", start=0, end=3, first_token=1, completion_tokens=4, token_times=(1, 2, 2, 3))
    pieces = [p for p in span.phases(EQUAL_WEIGHTS, Placement.STREAMED) if p[3] == "decode"]
    assert pieces == [(1, 2, pytest.approx(8 / 3), "decode"), (2, 3, pytest.approx(4 / 3), "decode")]


def test_token_times_outside_the_lifetime_are_refused() -> None:
    with pytest.raises(ValueError, match="token times must rise within its lifetime"):
        RequestSpan(id="a", start=0, end=1, first_token=0.5, token_times=(0.5, 2.0))


def test_smoothing_keeps_the_readings_where_the_counter_moved() -> None:
    stairs = [EnergySample(t / 100, float(t // 10)) for t in range(35)]
    kept = smooth_counter(stairs)
    assert [s.t for s in kept] == [0.0, 0.1, 0.2, 0.3, 0.34]
    assert kept[-1].joules == stairs[-1].joules


def test_the_model_serves_a_prefill_in_chunks_while_a_neighbour_decodes() -> None:
    run = GpuModel().serve(
        [
            Job(id="short", arrive=0.0, prompt_tokens=20, max_tokens=50),
            Job(id="long", arrive=0.001, prompt_tokens=8192, max_tokens=4),
        ],
        until=2,
    )
    short, long = run.requests
    during = [t for t in short.token_times if long.first_token is not None and t < long.first_token]
    assert len(during) <= 6  # one token per prefill chunk of 2048, not a solo decode pace
    assert long.prompt_per_second == pytest.approx(20_000, rel=0.05)


def test_pooling_stays_fair_when_the_engine_takes_lone_requests_up_late() -> None:
    # as llama-server on the H200: a lone request waited 0.05-1.2 s, the GPU above idle meanwhile
    run = GpuModel(pickup_w=115).check_run(repeats=3, pickups=(0.05, 1.1, 0.9))
    result = evaluate(run["readings"], [RunRequest.from_json(r) for r in run["requests"]])
    assert result["schemes"]["pooled"]["worst_deviation"] < 0.08
    assert result["schemes"]["pooled"]["closure_error"] < 1e-9


def test_energy_above_idle_while_no_request_works_is_unattributed_unless_some_work_is_unknown() -> None:
    samples = [EnergySample(float(t), 100.0 * t) for t in range(5)]  # 100 W, idle 20 W
    waiting = RequestSpan(id="w", start=0, first_token=4, end=4, prompt_tokens=10, prefill_s=2.0)
    result = attribute(samples, [waiting], weights=EQUAL_WEIGHTS, idle_w=20, placement=Placement.POOLED)
    assert result.requests["w"].energy_j == pytest.approx(80 * 2)  # its prefill only
    assert result.requests["w"].idle_j == pytest.approx(20 * 4)  # idle shares while it was alive
    assert result.unattributed_j == pytest.approx(80 * 2)  # the 2 s before the engine took it up
    failed = RequestSpan(id="f", start=0, end=2)  # no token counts: its work is unknown
    result = attribute(
        samples, [waiting, failed], weights=EQUAL_WEIGHTS, idle_w=20, placement=Placement.POOLED
    )
    assert result.requests["f"].energy_j == pytest.approx(80 * 2)
    assert result.unattributed_j == pytest.approx(0)
    assert result.closure_error < 1e-12
    spread = attribute(samples, [waiting], weights=EQUAL_WEIGHTS, idle_w=20, placement=Placement.SPREAD)
    assert spread.requests["w"].energy_j == pytest.approx(80 * 4)
