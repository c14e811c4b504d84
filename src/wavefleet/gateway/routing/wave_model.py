"""What the wave policy believes about a backend: its prefill and decode speed, learned online
(`EngineSpeed`, one per engine, shared by its replicas), and the work sent to it (`BackendModel`).

Two straight lines, each fitted by an exponentially weighted least-squares fit that starts from
the backend's profile (the sizing engine's estimate, or a measured profile), else from what the
engine reports it has timed itself (`EngineTimings`), else from an assumed engine, and follows
what the gateway observes, so a mis-sized or throttled backend corrects itself within tens of
requests:

    ttft_s(uncached prompt tokens)   = prefill.intercept + prefill.slope × tokens   (no queueing)
    itl_s(sequences running at once) = itl.intercept + itl.slope × batch

The fit keeps a small permanent weight on the seed line, so samples that all share one x (say,
one prompt length) fix the level there without swinging the slope. A sample taken while the
engine was idle that contradicts the line by more than a factor of two rebases it (`rebase`):
nothing but a wrong belief explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wavefleet.gateway.config import BackendConfig, BackendProfile
from wavefleet.gateway.monitor.snapshot import EngineTimings

__all__ = [
    "ASSUMED_PROFILES",
    "MAX_SHARE",
    "BackendModel",
    "EngineSpeed",
    "EwmaLine",
    "seed_profile",
    "timed_enough",
]

_FLOOR_S = 1e-4  # no prediction below 0.1 ms: a line fitted to noise must not promise free work
_SEED_WEIGHT = 0.01  # permanent weight of the seed line against the decaying observations
MAX_SHARE = 0.95  # prefill never takes all of an engine's time: decode steps still run
# engine timings covering this much are a measurement to seed from (vLLM counts requests;
# llama.cpp only tokens)
_TIMED_REQUESTS = 4
_TIMED_PROMPT_TOKENS = 1024
_TIMED_TOKENS = 64
_RATE_MIN_FINISHED = 4.0  # finished requests in the window below which the rate is unknown

# Used when a backend has no profile: assumptions (a mid-range GPU engine serving an 8B model,
# a desktop CPU serving a 3B one), corrected by the first observed requests.
ASSUMED_PROFILES = {
    True: BackendProfile(
        prefill_tokens_per_s=5000.0,
        decode_tokens_per_s=40.0,
        max_num_seqs=64,
        batch_slowdown=0.01,
        basis="assumed GPU engine (no profile in the config); learned from observed requests",
    ),
    False: BackendProfile(
        prefill_tokens_per_s=150.0,
        decode_tokens_per_s=15.0,
        max_num_seqs=4,
        batch_slowdown=0.05,
        basis="assumed CPU engine (no profile in the config); learned from observed requests",
    ),
}


class EwmaLine:
    """y = intercept + slope × x, fitted by exponentially weighted least squares around a seed line."""

    __slots__ = ("_rate", "_seed", "_stats", "_xs", "intercept", "samples", "slope")

    def __init__(self, intercept: float, slope: float, seed_xs: tuple[float, float], rate: float) -> None:
        self._rate = rate
        self._xs = seed_xs
        self.intercept, self.slope = intercept, slope
        self.samples = 0
        self._seed = self._points_stats([(x, intercept + slope * x) for x in seed_xs])
        self._stats = list(self._seed)  # weight, Σx, Σxx, Σy, Σxy (weighted means)

    @staticmethod
    def _points_stats(points: list[tuple[float, float]]) -> list[float]:
        n = float(len(points))
        return [
            1.0,
            sum(x for x, _ in points) / n,
            sum(x * x for x, _ in points) / n,
            sum(y for _, y in points) / n,
            sum(x * y for x, y in points) / n,
        ]

    def at(self, x: float) -> float:
        value = self.intercept + self.slope * x
        return value if value > _FLOOR_S else _FLOOR_S

    def rebase(self, x: float, y: float) -> None:
        """Scale the line to pass through (x, y) and forget what it had learned, so the next
        samples weigh as much as the first ones did. The seed keeps its small permanent weight."""
        if not (math.isfinite(x) and math.isfinite(y)) or y <= 0:
            return
        value = self.intercept + self.slope * x
        if self.intercept <= 0.0 or value <= _FLOOR_S:
            # a line the samples forced through the origin has lost its shape: the seed's
            seed_w, seed_x, _, seed_y, _ = self._seed
            seed_slope = self._seed_slope()
            self.intercept, self.slope = seed_y / seed_w - seed_slope * seed_x / seed_w, seed_slope
            value = self.intercept + self.slope * x
        factor = y / value
        self.intercept *= factor
        self.slope *= factor
        self._stats = self._points_stats([(px, self.intercept + self.slope * px) for px in self._xs])
        self.samples = 0

    def observe(self, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)) or y <= 0:
            return
        # a running mean with the seed as one pseudo-observation at first, then the EWMA rate:
        # a few requests are enough to move far from a wrong seed
        rate = max(self._rate, 1.0 / (self.samples + 2))
        keep = 1.0 - rate
        stats = self._stats
        for i, value in enumerate((1.0, x, x * x, y, x * y)):
            stats[i] = keep * stats[i] + rate * value
        self.samples += 1
        self._solve()

    def _seed_slope(self) -> float:
        w, sx, sxx, sy, sxy = self._seed
        mean_x = sx / w
        return (sxy / w - mean_x * sy / w) / (sxx / w - mean_x * mean_x)

    def _solve(self) -> None:
        w, sx, sxx, sy, sxy = (s + _SEED_WEIGHT * p for s, p in zip(self._stats, self._seed, strict=True))
        mean_x, mean_y = sx / w, sy / w
        var_x = sxx / w - mean_x * mean_x
        if var_x > 1e-9 * max(1.0, mean_x * mean_x):
            slope = (sxy / w - mean_x * mean_y) / var_x
            if slope >= 0:
                self.slope = slope
        intercept = mean_y - self.slope * mean_x
        if intercept < 0.0:
            # a time is never negative, not even at x = 0: the best line through the origin (a
            # kept slope that would cross zero is too steep for these samples)
            self.slope = sxy / sxx if sxx > 0 else 0.0
            intercept = 0.0
        self.intercept = intercept


def seed_profile(config: BackendConfig, gpu: bool) -> BackendProfile:
    """The backend's configured profile, else the assumption for its kind of device."""
    return config.profile if config.profile is not None else ASSUMED_PROFILES[gpu]


def timed_enough(timings: EngineTimings | None) -> bool:
    """Whether the engine has timed enough work for its figures to seed the policy's lines."""
    if timings is None or timings.decode_tokens < _TIMED_TOKENS:
        return False
    if timings.requests is not None:
        return timings.requests >= _TIMED_REQUESTS
    return timings.prefill_tokens >= _TIMED_PROMPT_TOKENS


def timed_profile(timings: EngineTimings, assumed: BackendProfile) -> BackendProfile:
    """A profile from the engine's own figures: its mean prefill time per prompt token and its
    mean time between tokens, the latter taken at one sequence (the batch it was measured at is
    not reported, so the estimate errs slow); slots and batch slowdown stay assumed."""
    return assumed.model_copy(
        update={
            "prefill_tokens_per_s": timings.prefill_tokens / timings.prefill_s,
            "decode_tokens_per_s": timings.decode_tokens / timings.decode_s,
            "basis": "timed by the engine itself (its own TTFT/prefill and inter-token histograms)",
        }
    )


@dataclass(slots=True)
class EngineSpeed:
    """What is learned about an engine's speed, shared by its replicas (`WavePolicy.model` says which)."""

    prefill: EwmaLine  # TTFT without queueing, against uncached prompt tokens
    itl: EwmaLine  # inter-token latency, against the number of sequences running
    mean_prompt: float  # uncached prompt tokens of recent requests (EWMA)
    mean_output: float  # completion tokens of recent requests (EWMA)
    wait_scale: float = 1.0  # observed / predicted queue wait (EWMA in log space)
    tpot_scale: float = 1.0  # observed / predicted time per output token (EWMA in log space)
    step_wait_s: float = 0.0  # first-token wait per unit of prefill share: steps shared with others
    trusted: bool = True  # False while an assumed (not configured) profile has not been corrected yet
    finished: int = 0  # requests observed to finish

    def adopt(self, other: EngineSpeed) -> None:
        """Take `other`'s lines and means in place (replicas hold this very object)."""
        self.prefill, self.itl = other.prefill, other.itl
        self.mean_prompt, self.mean_output = other.mean_prompt, other.mean_output
        self.wait_scale, self.trusted = other.wait_scale, other.trusted
        self.tpot_scale = other.tpot_scale
        self.step_wait_s = other.step_wait_s

    @classmethod
    def timed(cls, timings: EngineTimings, assumed: BackendProfile, rate: float) -> EngineSpeed:
        """Seeded from what the engine has timed itself (`timed_enough` says when to trust it)."""
        speed = cls.seeded(timed_profile(timings, assumed), rate)
        if timings.requests:
            speed.mean_prompt = timings.prefill_tokens / timings.requests
        return speed

    @classmethod
    def seeded(cls, profile: BackendProfile, rate: float, trusted: bool = True) -> EngineSpeed:
        itl1 = 1.0 / profile.decode_tokens_per_s
        slope = itl1 * profile.batch_slowdown
        top = float(max(2, profile.max_num_seqs))
        return cls(
            # the first token comes at the end of a step that also decodes: one ITL on top
            prefill=EwmaLine(itl1, 1.0 / profile.prefill_tokens_per_s, (16.0, 1024.0), rate),
            itl=EwmaLine(itl1 - slope, slope, (1.0, top), rate),
            mean_prompt=256.0,  # replaced by the first observed request
            mean_output=128.0,
            trusted=trusted,
        )


@dataclass(slots=True)
class BackendModel:
    """One backend as the predictor sees it: its engine's learned speed plus the gateway-side
    state kept for this backend alone (work sent, work not yet done)."""

    speed: EngineSpeed  # shared with the backend's replicas
    backlog_until: float = 0.0  # when the prefill work the gateway sent here should be done
    dispatched: int = 0  # requests sent here (tie-breaks go to the least used)
    last_sent: float = 0.0  # when a request was last sent here (at first: when the policy met it)
    prefill_work_s: float = 0.0  # prefill seconds sent here, exponentially weighted by age
    work_at: float = 0.0  # when prefill_work_s was last brought up to date
    area_at_work: float = 0.0  # the prefill share integrated over time, up to work_at
    sent_work_s: float = 0.0  # prefill seconds sent here in all
    finished_weight: float = 0.0  # requests finished here, exponentially weighted by age
    finished_at: float = 0.0  # when finished_weight was last brought up to date
    first_finished_at: float | None = None
    probe_after: float = 0.0  # an idle backend may get a probe request from this time on
    probe_backoff_s: float = 0.0  # the wait after a probe that found it slow (doubles each time)

    def prefill_share(self, now: float, window_s: float) -> float:
        """Fraction of the engine's time the recently sent prefill work takes (at most 0.95)."""
        if self.prefill_work_s <= 0.0:
            return 0.0
        share = self.prefill_work_s * math.exp((self.work_at - now) / window_s) / window_s
        return share if share < MAX_SHARE else MAX_SHARE

    def add_finish(self, now: float, window_s: float) -> None:
        self.finished_weight = self.finished_weight * math.exp((self.finished_at - now) / window_s) + 1.0
        self.finished_at = now
        if self.first_finished_at is None:
            self.first_finished_at = now

    def finish_rate(self, now: float, window_s: float) -> float:
        """Requests finished per second over the recent window; 0 (unknown) until a full window
        has been seen or while fewer than a few requests finished in it (a backend that was sent
        little is not a slow one)."""
        if self.first_finished_at is None or now - self.first_finished_at < window_s:
            return 0.0
        recent = self.finished_weight * math.exp((self.finished_at - now) / window_s)
        return recent / window_s if recent >= _RATE_MIN_FINISHED else 0.0

    def share_area(self, now: float, window_s: float) -> float:
        """∫ prefill share dt up to `now` (uncapped): the share between two times is the
        difference over their distance."""
        return self.area_at_work + self.prefill_work_s * (1.0 - math.exp((self.work_at - now) / window_s))

    def forget_queue(self, now: float, window_s: float) -> None:
        """The engine reports itself idle: nothing the gateway sent is left to prefill."""
        if self.backlog_until > now:
            self.backlog_until = now
        if self.prefill_work_s > 0.0:
            self.area_at_work = self.share_area(now, window_s)
            self.prefill_work_s = 0.0
            self.work_at = now

    def add_prefill_work(self, now: float, work_s: float, window_s: float) -> None:
        self.area_at_work = self.share_area(now, window_s)
        self.prefill_work_s = self.prefill_work_s * math.exp((self.work_at - now) / window_s) + work_s
        self.work_at = now
