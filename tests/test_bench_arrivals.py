"""Statistics of the open-loop arrival process (fixed seeds, many samples)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wavefleet.bench.arrivals import arrival_offsets


def gaps(rate: float, burstiness: float, n: int = 40_000, seed: int = 3) -> np.ndarray:
    times = np.fromiter(itertools.islice(arrival_offsets(rate, burstiness=burstiness, seed=seed), n), float)
    assert times[0] == 0.0  # the first request is sent at once
    return np.diff(times)


def test_poisson_gaps_have_mean_one_over_rate_and_cv_one() -> None:
    g = gaps(rate=20.0, burstiness=1.0)
    assert g.mean() == pytest.approx(1 / 20.0, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.03)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_cv_to_one_over_sqrt_b(burstiness: float) -> None:
    g = gaps(rate=5.0, burstiness=burstiness)
    assert g.mean() == pytest.approx(1 / 5.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(1 / np.sqrt(burstiness), rel=0.05)


def test_linear_ramp_sends_a_quarter_of_the_ramp_traffic_in_its_first_half() -> None:
    # rate(t) = 100 * t/10 over the 10 s ramp: expected arrivals by t are 5*t^2,
    # so 125 by 5 s and 500 by 10 s, then 100/s after.
    times = np.fromiter(itertools.islice(arrival_offsets(100.0, ramp_up_s=10.0, seed=1), 3000), float)
    assert np.sum(times < 5.0) == pytest.approx(125, rel=0.2)
    assert np.sum(times < 10.0) == pytest.approx(500, rel=0.1)
    assert np.sum((times >= 10.0) & (times < 20.0)) == pytest.approx(1000, rel=0.1)


def test_same_seed_same_schedule_and_bad_rates_refused() -> None:
    first = list(itertools.islice(arrival_offsets(3.0, seed=9), 50))
    assert first == list(itertools.islice(arrival_offsets(3.0, seed=9), 50))
    assert first != list(itertools.islice(arrival_offsets(3.0, seed=10), 50))
    with pytest.raises(ValueError, match="rate"):
        next(arrival_offsets(0.0))
