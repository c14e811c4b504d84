"""vLLM bench serve's formulas on hand-made timelines, with the arithmetic in comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavefleet.bench.criteria import check, parse_criteria
from wavefleet.bench.metrics import Slo, Window, summarize
from wavefleet.bench.records import RequestRecord
from wavefleet.errors import UsageError


def record(
    index: int, start: float, chunks: list[float], out: int, prompt: int = 10, error: str = ""
) -> RequestRecord:
    return RequestRecord(
        index=index,
        level="test",
        scheduled=start,
        sent=start,
        chunk_times=chunks,
        done=chunks[-1] if chunks else start,
        prompt_tokens=prompt,
        output_tokens=out,
        tokens_from_usage=True,
        error=error,
    )


# Request A: sent at 0.0, choices chunks at 0.1, 0.3, 0.6 -> TTFT 100 ms, E2EL 600 ms,
#   gaps 200 and 300 ms, 5 output tokens -> TPOT = (600-100)/(5-1) = 125 ms.
# Request B: sent at 1.0, chunks at 1.25, 1.3125 -> TTFT 250 ms, E2EL 312.5 ms, gap 62.5 ms,
#   2 output tokens -> TPOT = (312.5-250)/(2-1) = 62.5 ms (binary fractions: exact in floats).
# Request C: failed, no chunks.
A = record(0, 0.0, [0.1, 0.3, 0.6], out=5, prompt=10)
B = record(1, 1.0, [1.25, 1.3125], out=2, prompt=20)
C = record(2, 2.0, [], out=0, error="HTTP 500: boom")


def test_latencies_follow_vllm_definitions() -> None:
    summary = summarize([A, B, C], duration_s=4.0, percentiles=(50, 99))
    ttft, tpot, itl, e2el = (summary.stats[k] for k in ("ttft", "tpot", "itl", "e2el"))
    assert ttft.mean == pytest.approx(175.0)  # (100 + 250) / 2
    assert ttft.median == pytest.approx(175.0)
    assert e2el.mean == pytest.approx(456.25)  # (600 + 312.5) / 2
    assert tpot.mean == pytest.approx(93.75)  # (125 + 62.5) / 2
    assert tpot.std == pytest.approx(31.25)  # population std of {125, 62.5}
    # ITL pools every gap of every request: {200, 300, 62.5}
    assert itl.count == 3
    assert itl.mean == pytest.approx(187.5)  # 562.5 / 3
    assert itl.median == pytest.approx(200.0)
    # np.percentile's linear interpolation: p99 of {62.5, 200, 300} = 200 + 0.98*(300-200) = 298
    assert itl.percentiles[99] == pytest.approx(298.0)
    assert itl.max == pytest.approx(300.0)


def test_throughputs_divide_by_the_benchmark_duration() -> None:
    summary = summarize([A, B, C], duration_s=4.0)
    assert (summary.completed, summary.failed) == (2, 1)
    assert summary.request_throughput == pytest.approx(0.5)  # 2 completed / 4 s
    assert summary.output_throughput == pytest.approx(1.75)  # (5 + 2) / 4
    assert summary.total_token_throughput == pytest.approx(9.25)  # (10 + 20 + 5 + 2) / 4
    assert summary.error_rate == pytest.approx(1 / 3)
    assert summary.errors == {"HTTP 500: boom": 1}


def test_goodput_counts_failures_in_the_denominator() -> None:
    # TTFT <= 150 ms keeps A (100) and drops B (250); C failed.
    summary = summarize([A, B, C], duration_s=4.0, slo=Slo(ttft_ms=150))
    assert summary.request_goodput == pytest.approx(0.25)  # 1 good / 4 s
    assert summary.good_fraction == pytest.approx(1 / 3)  # 1 good / (2 ok + 1 failed)
    # TPOT <= 62.5 ms keeps B (62.5) and drops A (125); the limit is inclusive (<=) as in vLLM.
    assert summarize([A, B, C], 4.0, Slo(tpot_ms=62.5)).request_goodput == pytest.approx(0.25)
    assert summarize([A, B, C], 4.0, Slo(tpot_ms=62.4)).request_goodput == 0.0
    both = summarize([A, B, C], 4.0, Slo(ttft_ms=1000, tpot_ms=100, e2el_ms=600))
    assert both.good_fraction == pytest.approx(1 / 3)  # only B: A's TPOT is 125


def test_one_token_answers_have_no_tpot_but_count_as_zero_for_goodput() -> None:
    single = record(0, 0.0, [0.05], out=1)
    summary = summarize([single], duration_s=1.0, slo=Slo(tpot_ms=1))
    assert summary.stats["tpot"].count == 0
    assert math.isnan(summary.stats["tpot"].mean)
    assert summary.good_fraction == 1.0


def test_percentiles_match_numpy_over_many_requests() -> None:
    rng = np.random.default_rng(7)
    ttfts = rng.exponential(0.2, size=500)
    records = [record(i, 0.0, [float(t), float(t) + 0.01], out=2) for i, t in enumerate(ttfts)]
    summary = summarize(records, duration_s=10.0, percentiles=(50, 90, 99.9))
    for p in (50, 90, 99.9):
        assert summary.stats["ttft"].percentiles[p] == pytest.approx(np.percentile(ttfts * 1000, p))
    flat = summary.flat()
    assert flat["p99.9_ttft_ms"] == summary.stats["ttft"].percentiles[99.9]
    assert flat["output_tps"] == pytest.approx(100.0)  # 500 requests * 2 tokens / 10 s


def test_clocks_start_at_the_scheduled_time_so_client_queueing_shows() -> None:
    # Planned at 0.0, sent at 0.4 (waited for a --max-concurrency slot), first chunk at 0.5:
    # TTFT is 500 ms, not 100 ms, and the 400 ms wait is reported as dispatch lag.
    queued = RequestRecord(0, "t", scheduled=0.0, sent=0.4, chunk_times=[0.5, 0.7], output_tokens=3)
    summary = summarize([queued], duration_s=1.0, percentiles=(50,))
    assert summary.stats["ttft"].mean == pytest.approx(500.0)
    assert summary.stats["dispatch_lag"].max == pytest.approx(400.0)
    assert summary.token_counts == "chunks"


# Request D: sent at 2.5, first chunk at 3.0 (TTFT 500 ms), last at 20.0: one slow answer that
# stretches the run to 20 s although every request arrived within the first 3 s.
D = record(3, 2.5, [3.0, 20.0], out=3, prompt=30)


def test_goodput_and_throughput_over_the_arrival_window_and_over_the_full_run() -> None:
    window = Window(kind="arrivals", seconds=3.0, end=3.0)
    summary = summarize([A, B, C, D], duration_s=20.0, slo=Slo(ttft_ms=1000), window=window)
    # A (100 ms), B (250 ms) and D (500 ms) meet TTFT <= 1 s; C failed.
    assert summary.request_goodput == pytest.approx(3 / 20)  # vLLM's: over the full run
    assert summary.request_goodput_window == pytest.approx(3 / 3)  # over the 3 s of arrivals
    assert summary.request_throughput == pytest.approx(3 / 20)
    assert summary.request_throughput_window == pytest.approx(1.0)
    assert summary.output_throughput_window == pytest.approx((5 + 2 + 3) / 3)
    assert summary.total_token_throughput_window == pytest.approx((10 + 20 + 30 + 5 + 2 + 3) / 3)
    flat = summary.flat()
    assert flat["goodput_rps"] == pytest.approx(0.15) and flat["goodput_rps_window"] == pytest.approx(1.0)
    assert flat["window_s"] == 3.0 and flat["request_tps_window"] == pytest.approx(1.0)


def test_the_closed_loop_window_counts_what_finished_while_every_worker_was_busy() -> None:
    # The workers held full concurrency until 1.5 s: A (done 0.6) and B (done 1.3125) ended by
    # then; D ended at 20 s, outside the window. A and B meet TTFT <= 1 s.
    window = Window(kind="full concurrency", seconds=1.5, end=1.5)
    summary = summarize([A, B, C, D], duration_s=20.0, slo=Slo(ttft_ms=1000), window=window)
    assert summary.request_goodput_window == pytest.approx(2 / 1.5)
    assert summary.request_throughput_window == pytest.approx(2 / 1.5)
    assert summary.output_throughput_window == pytest.approx((5 + 2) / 1.5)


def test_without_a_window_only_the_full_run_figures_exist() -> None:
    summary = summarize([A, B, C], duration_s=4.0, slo=Slo(ttft_ms=150))
    assert summary.request_goodput_window is None and summary.request_throughput_window is None
    assert "goodput_rps_window" not in summary.flat() and "window_s" not in summary.flat()


def test_the_all_requests_statistics_count_a_failure_as_infinitely_late() -> None:
    summary = summarize([A, B, C], duration_s=4.0, percentiles=(25, 50, 95))
    ttft = summary.stats["ttft_all"]
    assert ttft.count == 3  # 100, 250 and C's infinity
    assert ttft.percentiles[25] == pytest.approx(175.0)  # halfway from 100 to 250
    assert ttft.percentiles[50] == pytest.approx(250.0)
    assert ttft.percentiles[95] == math.inf  # between 250 and infinity: infinity
    assert ttft.max == math.inf and ttft.mean == math.inf and math.isnan(ttft.std)
    assert summary.stats["ttft"].count == 2 and summary.stats["ttft"].percentiles[95] == pytest.approx(242.5)
    assert summary.stats["tpot_all"].percentiles[50] == pytest.approx(125.0)  # 62.5, 125, inf
    assert summary.stats["e2el_all"].percentiles[50] == pytest.approx(600.0)  # 312.5, 600, inf
    every_ok = summarize([A, B], duration_s=4.0, percentiles=(95,))
    assert every_ok.stats["ttft_all"].percentiles == every_ok.stats["ttft"].percentiles


def test_criteria_take_the_window_and_all_requests_metrics() -> None:
    criteria = parse_criteria(
        "p95_ttft_all_ms<1000,median_ttft_all_ms<1000,goodput_rps_window>0.5,request_tps_window>0.5",
        with_goodput=True,
    )
    window = Window(kind="arrivals", seconds=3.0, end=3.0)
    summary = summarize([A, B, C, D], 20.0, Slo(ttft_ms=1000), percentiles=(95,), window=window)
    verdicts = {str(v.criterion): v for v in check(criteria, "test", summary)}
    assert verdicts["p95_ttft_all_ms<1000"].value == math.inf
    assert not verdicts["p95_ttft_all_ms<1000"].passed  # a quarter failed: P95 is infinite
    assert verdicts["median_ttft_all_ms<1000"].passed  # median of 100, 250, 500, inf = 375
    assert verdicts["goodput_rps_window>0.5"].passed and verdicts["request_tps_window>0.5"].passed
    with pytest.raises(UsageError, match="goodput_rps_window needs SLOs"):
        parse_criteria("goodput_rps_window>1", with_goodput=False)
