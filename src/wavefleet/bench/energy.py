"""Energy per token of a bench level, from the gateway's own energy counters.

A Wavefleet gateway started with `wave serve --telemetry` counts each request's energy and cost
on /metrics (`wave_request_energy_joules_total` and its neighbours, docs/telemetry.md). `wave
bench` reads them before and after each level; the difference, over the completion tokens of
the requests metered meanwhile, is the level's J per token and cost per 1M tokens. The gateway
settles a request's energy a moment after it ends, so the reading after a level waits (up to
`settle_s`) until the gateway has metered as many requests as the level completed.

The counters cover every request the gateway metered, other clients' too: bench a gateway that
serves nothing else. A server without these counters (an engine, or a gateway without
telemetry) gives no energy, and the report says nothing about it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from wavefleet.telemetry import names

__all__ = ["EnergyCounters", "LevelEnergy", "level_energy", "metrics_url", "read_counters"]

_SUMMED = {
    names.REQUEST_ENERGY.name: "energy_j",
    names.REQUEST_IDLE_ENERGY.name: "idle_j",
    names.REQUEST_ENERGY_MEASURED.name: "requests",
    names.REQUEST_ENERGY_TOKENS.name: "tokens",
}


@dataclass(frozen=True, kw_only=True)
class EnergyCounters:
    """The gateway's energy counters at one moment, summed over models, backends and keys."""

    energy_j: float = 0.0
    idle_j: float = 0.0
    requests: float = 0.0
    tokens: float = 0.0
    cost: dict[str, float] = field(default_factory=dict)  # currency -> cost


@dataclass(frozen=True, kw_only=True)
class LevelEnergy:
    """What the requests metered during a level drew, and what it cost."""

    energy_j: float
    idle_j: float
    requests: int
    tokens: int
    cost: float | None
    currency: str | None

    @property
    def j_per_token(self) -> float | None:
        return (self.energy_j + self.idle_j) / self.tokens if self.tokens else None

    @property
    def cost_per_million_tokens(self) -> float | None:
        return self.cost / self.tokens * 1e6 if self.cost is not None and self.tokens else None

    def to_dict(self) -> dict[str, object]:
        return {
            "energy_j": self.energy_j,
            "idle_j": self.idle_j,
            "metered_requests": self.requests,
            "metered_output_tokens": self.tokens,
            "j_per_output_token": self.j_per_token,
            "cost": self.cost,
            "currency": self.currency,
            "cost_per_1m_output_tokens": self.cost_per_million_tokens,
        }


def metrics_url(base_url: str) -> str:
    """The gateway's /metrics beside its OpenAI API (`http://host:8080/v1` -> `http://host:8080/metrics`)."""
    parts = urllib.parse.urlsplit(base_url)
    path = parts.path.rstrip("/")
    root = path.removesuffix("/v1")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, root + "/metrics", "", ""))


def read_counters(base_url: str, api_key: str | None = None) -> EnergyCounters | None:
    """The energy counters the server at `base_url` exposes, or None when it has none (or no /metrics)."""
    request = urllib.request.Request(metrics_url(base_url))
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    sums: dict[str, float] = {}
    cost: dict[str, float] = {}
    found = False
    try:
        for family in text_string_to_metric_families(text):
            # a counter with labels has no sample until its first request: its family says it is there
            found = found or family.name.removesuffix("_total") + "_total" in _SUMMED
            for sample in family.samples:
                if sample.name in _SUMMED:
                    key = _SUMMED[sample.name]
                    sums[key] = sums.get(key, 0.0) + sample.value
                elif sample.name == names.REQUEST_COST.name:
                    currency = sample.labels.get("currency", "")
                    cost[currency] = cost.get(currency, 0.0) + sample.value
    except ValueError:  # not Prometheus' text format: not a gateway
        return None
    if not found:
        return None
    return EnergyCounters(cost=cost, **sums)


def level_energy(
    before: EnergyCounters | None,
    read: Callable[[], EnergyCounters | None],
    *,
    completed: int,
    settle_s: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LevelEnergy | None:
    """The difference between `before` and a reading once `completed` more requests are metered
    (or `settle_s` has passed); None when the server has no energy counters."""
    if before is None:
        return None
    deadline = clock() + settle_s
    while True:
        after = read()
        if after is None:
            return None
        if after.requests - before.requests >= completed or clock() >= deadline:
            break
        sleep(0.2)
    spent = {c: after.cost.get(c, 0.0) - before.cost.get(c, 0.0) for c in after.cost}
    spent = {c: v for c, v in spent.items() if v > 0}
    currency, cost = next(iter(spent.items())) if len(spent) == 1 else (None, None)
    return LevelEnergy(
        energy_j=after.energy_j - before.energy_j,
        idle_j=after.idle_j - before.idle_j,
        requests=round(after.requests - before.requests),
        tokens=round(after.tokens - before.tokens),
        cost=cost,
        currency=currency,
    )
