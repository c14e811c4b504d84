"""vLLM: `GET /health` (503 once the engine died), load gauges at `/metrics`.

Names are the v1 engine's (`vllm/v1/metrics/loggers.py`). `kv_cache_usage_perc` replaced
`gpu_cache_usage_perc` (deprecated 0.9.2, gone in 0.12): read the new name, fall back to the old.
Under data parallelism every gauge has one series per `engine`: counts are summed, KV usage is
the mean of the engines' fractions (each is 0..1 of its own cache). The engine's own timing
histograms (sums and counts) become `EngineTimings`, its KV size (`cache_config_info` blocks x
block size) `kv_capacity_tokens`.
"""

from __future__ import annotations

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import (
    EngineLoad,
    HttpProbe,
    as_int,
    health_url,
    metrics_url,
    parse_or_fail,
)
from wavefleet.gateway.monitor.prometheus import MetricsText
from wavefleet.gateway.monitor.snapshot import EngineTimings

__all__ = ["VllmDialect", "load_from_vllm_metrics", "parse_vllm_metrics"]


def parse_vllm_metrics(text: str) -> EngineLoad:
    return load_from_vllm_metrics(parse_or_fail(text), prefix="vllm:")


def load_from_vllm_metrics(metrics: MetricsText, prefix: str) -> EngineLoad:
    """Shared with NIM, whose 1.x/2.x containers expose vLLM's gauges without the prefix."""
    kv = metrics.mean(f"{prefix}kv_cache_usage_perc")
    if kv is None:
        kv = metrics.mean(f"{prefix}gpu_cache_usage_perc")
    return EngineLoad(
        running=as_int(metrics.total(f"{prefix}num_requests_running")),
        waiting=as_int(metrics.total(f"{prefix}num_requests_waiting")),
        kv_usage=kv,
        slots_total=_max_num_seqs(metrics, prefix),
        kv_capacity_tokens=_kv_capacity(metrics, prefix),
        timings=_timings(metrics, prefix),
    )


def _kv_capacity(metrics: MetricsText, prefix: str) -> int | None:
    sizes = [
        int(labels["num_gpu_blocks"]) * int(labels["block_size"])
        for labels in metrics.labels(f"{prefix}cache_config_info")
        if labels.get("num_gpu_blocks", "").isdigit() and labels.get("block_size", "").isdigit()
    ]
    return sum(sizes) if sizes else None


def _timings(metrics: MetricsText, prefix: str) -> EngineTimings | None:
    # the ITL histogram's name before vLLM 0.11 was time_per_output_token_seconds
    for itl in ("inter_token_latency_seconds", "time_per_output_token_seconds"):
        decode_tokens = metrics.total(f"{prefix}{itl}_count")
        decode_s = metrics.total(f"{prefix}{itl}_sum")
        if decode_tokens:
            break
    # prefill time (scheduled -> first token) and prompt lengths are recorded as requests finish;
    # until some have, TTFT over the prompt tokens prefilled so far (queue included)
    requests = metrics.total(f"{prefix}request_prefill_time_seconds_count")
    prefill_s = metrics.total(f"{prefix}request_prefill_time_seconds_sum")
    prefill_tokens = metrics.total(f"{prefix}request_prompt_tokens_sum")
    if not requests or metrics.total(f"{prefix}request_prompt_tokens_count") != requests:
        requests = metrics.total(f"{prefix}time_to_first_token_seconds_count")
        prefill_s = metrics.total(f"{prefix}time_to_first_token_seconds_sum")
        prefill_tokens = metrics.total(f"{prefix}prompt_tokens_total")
    if not (requests and prefill_s and prefill_tokens and decode_tokens and decode_s):
        return None
    return EngineTimings(
        requests=round(requests),
        prefill_tokens=prefill_tokens,
        prefill_s=prefill_s,
        decode_tokens=decode_tokens,
        decode_s=decode_s,
    )


def _max_num_seqs(metrics: MetricsText, prefix: str) -> int | None:
    # cache_config_info carries CacheConfig fields (block_size, num_gpu_blocks, ...); builds that
    # add the scheduler's max_num_seqs label get it used, others leave slots unknown.
    seqs = [
        int(labels["max_num_seqs"])
        for labels in metrics.labels(f"{prefix}cache_config_info")
        if labels.get("max_num_seqs", "").isdigit()
    ]
    if seqs:
        return sum(seqs)
    request_max = metrics.total(f"{prefix}num_request_max")  # NIM's gauge of the same thing
    return as_int(request_max)


class VllmDialect:
    async def poll(self, http: HttpProbe, backend: BackendConfig) -> EngineLoad:
        await http.get_ok(health_url(backend))
        reply = await http.get_ok(metrics_url(backend))
        return parse_vllm_metrics(reply.text)
