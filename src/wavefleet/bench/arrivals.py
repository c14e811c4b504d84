"""Open-loop arrival times: Poisson or bursty (Gamma) gaps, with an optional linear ramp-up.

Gaps follow vLLM's `bench serve`: gap ~ Gamma(shape=b, scale=1/(rate*b)), so b=1 is a Poisson
process (exponential gaps, CV 1) and the gaps' coefficient of variation is 1/sqrt(b). Unlike
vLLM, the times are not rescaled so that the last send lands at N/rate: the gaps keep exactly
this distribution.

A ramp-up makes the rate grow linearly from 0 to `rate` over `ramp_up_s` seconds. Gaps are
drawn with mean 1 in "expected arrivals" and mapped to time through the inverse of the
cumulative rate Λ(t) = rate*t²/(2R) for t < R, rate*R/2 + rate*(t - R) after (time rescaling).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

__all__ = ["arrival_offsets", "expected_span"]


def arrival_offsets(
    rate: float,
    *,
    burstiness: float = 1.0,
    ramp_up_s: float = 0.0,
    seed: int = 0,
    batch: int = 1024,
) -> Iterator[float]:
    """Endless send times in seconds from the start (the first at 0), for `rate` requests/s."""
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive finite number, not {rate}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be positive, not {burstiness}")
    rng = np.random.default_rng(seed)
    expected = 0.0  # Λ: the expected number of arrivals so far
    ramp_mass = rate * ramp_up_s / 2.0
    yield 0.0  # the first request goes at once, as in vLLM; the gaps follow it
    while True:
        for gap in rng.gamma(shape=burstiness, scale=1.0 / burstiness, size=batch):
            expected += float(gap)
            if expected < ramp_mass:
                yield math.sqrt(2.0 * ramp_up_s * expected / rate)
            else:
                yield ramp_up_s + (expected - ramp_mass) / rate


def expected_span(rate: float, count: float, *, ramp_up_s: float = 0.0) -> float:
    """Seconds that `count` arrivals take on average: when the next one after them is due.

    The inverse of Λ above: count/rate without a ramp-up.
    """
    ramp_mass = rate * ramp_up_s / 2.0
    if count < ramp_mass:
        return math.sqrt(2.0 * ramp_up_s * count / rate)
    return ramp_up_s + (count - ramp_mass) / rate
