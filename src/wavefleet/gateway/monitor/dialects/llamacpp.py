"""llama.cpp `llama-server`: `/health`, `/metrics` (only with `--metrics`), `/slots`, `/props`.

`/health` answers 503 "Loading model" until the model is in memory. `/metrics` answers 501
without `--metrics`; `llamacpp:requests_processing` and `requests_deferred` are the load gauges
and there is no KV gauge (removed upstream, PR #13660); its prompt and generation timers
(`prompt_seconds_total`, `tokens_predicted_seconds_total`) become `EngineTimings`. `/slots` lists every slot with
`is_processing`: it gives the slot count and, without `/metrics`, the running count. With
`--no-slots` the slot count comes from `/props` `total_slots` instead.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import (
    EngineLoad,
    HttpProbe,
    PollError,
    as_int,
    base_url,
    health_url,
    metrics_url,
    parse_or_fail,
)
from wavefleet.gateway.monitor.snapshot import EngineTimings

__all__ = ["LlamaCppDialect", "parse_llamacpp_metrics", "parse_llamacpp_props", "parse_llamacpp_slots"]


def parse_llamacpp_metrics(text: str) -> EngineLoad:
    metrics = parse_or_fail(text)
    timers = [
        metrics.total(f"llamacpp:{name}")
        for name in ("prompt_tokens_total", "prompt_seconds_total", "tokens_predicted_total", "tokens_predicted_seconds_total")
    ]  # fmt: skip
    prefill_tokens, prefill_s, decode_tokens, decode_s = (value or 0.0 for value in timers)
    timed = prefill_tokens and prefill_s and decode_tokens and decode_s
    return EngineLoad(
        running=as_int(metrics.total("llamacpp:requests_processing")),
        waiting=as_int(metrics.total("llamacpp:requests_deferred")),
        timings=EngineTimings(
            requests=None,
            prefill_tokens=prefill_tokens,
            prefill_s=prefill_s,
            decode_tokens=decode_tokens,
            decode_s=decode_s,
        )
        if timed
        else None,
    )


def parse_llamacpp_slots(body: object) -> EngineLoad:
    """`/slots` JSON: running = slots with `is_processing`, slots_total = their count."""
    if not isinstance(body, list):
        raise PollError("/slots: expected a JSON list of slots")
    busy = sum(1 for slot in body if isinstance(slot, dict) and slot.get("is_processing"))
    return EngineLoad(running=busy, slots_total=len(body))


def parse_llamacpp_props(body: object) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("total_slots"), int):
        return int(body["total_slots"])
    return None


class LlamaCppDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        root = base_url(backend)
        health = await http.get(health_url(backend))
        if health.status == 503:
            raise PollError("loading model (llama.cpp /health 503)")
        if health.status != 200:
            raise PollError(f"GET {health_url(backend)}: HTTP {health.status}")
        metrics = await http.get(metrics_url(backend))
        from_metrics = parse_llamacpp_metrics(metrics.text) if metrics.status == 200 else None
        slots = await http.get(f"{root}/slots")
        if slots.status == 200:
            from_slots = parse_llamacpp_slots(slots.json())
            slots_total = from_slots.slots_total
            running_from_slots = from_slots.running
        else:  # started with --no-slots
            props = await http.get(f"{root}/props")
            slots_total = parse_llamacpp_props(props.json()) if props.status == 200 else None
            running_from_slots = None
        if from_metrics is not None:
            return EngineLoad(
                running=from_metrics.running,
                waiting=from_metrics.waiting,
                slots_total=slots_total,
                timings=from_metrics.timings,
            )
        return EngineLoad(running=running_from_slots, slots_total=slots_total)
