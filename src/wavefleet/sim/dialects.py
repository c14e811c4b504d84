"""Each engine's `/metrics`, with the names, types and labels the real engine exports.

    vLLM      vllm:* (vllm/v1/metrics/loggers.py), labels model_name and engine
    llama.cpp llamacpp:* (tools/server/server.cpp), no labels; load is requests_processing/deferred
    SGLang    sglang:* (python/sglang/srt/metrics/collector.py), label model_name
    Triton    nv_inference_* (docs/user_guide/metrics.md) plus TensorRT-LLM's nv_trt_llm_*

Values are read from the engine at scrape time; times are wall seconds (see docs/sim.md on --speed).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from wavefleet.engines import EngineKind
from wavefleet.sim.engine import SimEngine
from wavefleet.sim.stats import Histogram

__all__ = ["CONTENT_TYPE", "metric_families", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render_metrics(engine: SimEngine) -> bytes:
    """The Prometheus text exposition of the engine's metrics in its profile's dialect."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(engine))
    return generate_latest(registry)


class _Collector:
    def __init__(self, engine: SimEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterable[Metric]:
        return metric_families(self._engine)


def metric_families(engine: SimEngine) -> list[Metric]:
    dialect = engine.profile.dialect
    if dialect is EngineKind.VLLM:
        return _vllm(engine)
    if dialect is EngineKind.LLAMACPP:
        return _llamacpp(engine)
    if dialect is EngineKind.SGLANG:
        return _sglang(engine)
    return _triton(engine)


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _triton_counter(name: str, doc: str, value: float, labels: dict[str, str]) -> Metric:
    # Triton's counters carry no `_total` suffix; prometheus_client would add one to a counter.
    family = Metric(name, doc, "untyped")
    family.add_sample(name, labels, value)
    return family


def _histogram(name: str, doc: str, hist: Histogram, labels: dict[str, str]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), hist.buckets(), hist.sum)
    return family


def _vllm(engine: SimEngine) -> list[Metric]:
    stats, profile = engine.stats, engine.profile
    labels = {"model_name": profile.model, "engine": "0"}
    success = CounterMetricFamily(
        "vllm:request_success",
        "Count of successfully processed requests.",
        labels=[*labels, "finished_reason"],
    )
    for reason in ("stop", "length", "abort"):
        success.add_metric([*labels.values(), reason], stats.finished[reason])
    cache_info = GaugeMetricFamily(
        "vllm:cache_config_info",
        "Information of the LLMEngine CacheConfig",
        labels=["block_size", "num_gpu_blocks"],
    )
    cache_info.add_metric([str(profile.block_size), str(profile.kv_capacity_tokens // profile.block_size)], 1)
    return [
        _gauge("vllm:num_requests_running", "Number of requests in model execution batches.", engine.num_running, labels),
        _gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", engine.num_waiting, labels),
        _gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", engine.kv_usage, labels),
        cache_info,
        _counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", stats.preemptions, labels),
        _counter("vllm:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens, labels),
        _counter("vllm:generation_tokens", "Number of generation tokens processed.", stats.generation_tokens, labels),
        _counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", stats.prefix_queries, labels),
        _counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", stats.prefix_hits, labels),
        success,
        _histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", stats.ttft, labels),
        _histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", stats.itl, labels),
        _histogram("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", stats.tpot, labels),
        _histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", stats.e2e, labels),
        _histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", stats.queue_time, labels),
        _histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", stats.prefill_time, labels),
        _histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", stats.decode_time, labels),
        _histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", stats.prompt_len, labels),
        _histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", stats.output_len, labels),
    ]  # fmt: skip


def _llamacpp(engine: SimEngine) -> list[Metric]:
    stats, profile = engine.stats, engine.profile
    prompt_rate = stats.prompt_tokens / stats.prompt_seconds if stats.prompt_seconds else 0.0
    predicted_rate = stats.generation_tokens / stats.decode_seconds if stats.decode_seconds else 0.0
    busy = stats.busy_slots_per_decode_sum / stats.decode_steps if stats.decode_steps else 0.0
    return [
        _counter("llamacpp:prompt_tokens", "Number of prompt tokens processed.", stats.prompt_tokens),
        _counter("llamacpp:prompt_seconds", "Prompt process time", stats.prompt_seconds),
        _counter("llamacpp:tokens_predicted", "Number of generation tokens processed.", stats.generation_tokens),
        _counter("llamacpp:tokens_predicted_seconds", "Predict process time", stats.decode_seconds),
        _counter("llamacpp:n_decode", "Total number of llama_decode() calls", stats.decode_steps),
        _gauge("llamacpp:n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", busy),
        _gauge("llamacpp:prompt_tokens_seconds", "Average prompt throughput in tokens/s.", prompt_rate),
        _gauge("llamacpp:predicted_tokens_seconds", "Average generation throughput in tokens/s.", predicted_rate),
        _gauge("llamacpp:n_tokens_max", "Largest observed n_tokens.", max((s.context_tokens for s in engine.running), default=0)),
        _gauge("llamacpp:requests_processing", "Number of requests processing.", engine.num_running),
        _gauge("llamacpp:requests_deferred", "Number of requests deferred.", engine.num_waiting),
        _gauge("llamacpp:n_ctx_slot", "Context size per slot (simulator extra).", profile.kv_capacity_tokens // profile.max_num_seqs),
    ]  # fmt: skip


def _sglang(engine: SimEngine) -> list[Metric]:
    stats, profile = engine.stats, engine.profile
    labels = {"model_name": profile.model}
    hit_rate = stats.prefix_hits / stats.prefix_queries if stats.prefix_queries else 0.0
    recent = stats.generation_tokens / stats.decode_seconds if stats.decode_seconds else 0.0
    return [
        _gauge("sglang:num_running_reqs", "The number of running requests.", engine.num_running, labels),
        _gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", engine.num_waiting, labels),
        _gauge("sglang:num_used_tokens", "The number of used tokens.", engine.kv_used_tokens, labels),
        _gauge("sglang:token_usage", "The token usage.", engine.kv_usage, labels),
        _gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", profile.kv_capacity_tokens, labels),
        _gauge("sglang:gen_throughput", "The generation throughput (token/s).", recent, labels),
        _gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", hit_rate, labels),
        _counter("sglang:prompt_tokens", "Number of prefill tokens processed.", stats.prompt_tokens, labels),
        _counter("sglang:generation_tokens", "Number of generation tokens processed.", stats.generation_tokens, labels),
        _histogram("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", stats.ttft, labels),
        _histogram("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", stats.itl, labels),
        _histogram("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", stats.e2e, labels),
    ]  # fmt: skip


def _triton(engine: SimEngine) -> list[Metric]:
    stats, profile = engine.stats, engine.profile
    labels = {"model": profile.model, "version": "1"}
    success = sum(stats.finished[r] for r in ("stop", "length"))
    block = profile.block_size
    max_blocks = profile.kv_capacity_tokens // block
    used_blocks = engine.kv_used_tokens // block
    requests = GaugeMetricFamily(
        "nv_trt_llm_request_metrics", "TRT LLM request metrics", labels=["model", "version", "request_type"]
    )
    context = sum(1 for s in engine.running if s.to_prefill > 0)
    kind: str
    value: float
    for kind, value in (
        ("active", engine.num_running),
        ("max", profile.max_num_seqs),
        ("scheduled", engine.num_running),
        ("context", context),
        ("waiting", engine.num_waiting),
    ):
        requests.add_metric([*labels.values(), kind], value)
    kv_blocks = GaugeMetricFamily(
        "nv_trt_llm_kv_cache_block_metrics",
        "TRT LLM KV cache block metrics",
        labels=["model", "version", "kv_cache_block_type"],
    )
    for kind, value in (
        ("max", max_blocks),
        ("free", max_blocks - used_blocks),
        ("used", used_blocks),
        ("tokens_per", block),
        ("fraction", engine.kv_usage),
    ):
        kv_blocks.add_metric([*labels.values(), kind], value)
    return [
        _triton_counter("nv_inference_request_success", "Number of successful inference requests, all batch sizes", success, labels),
        _triton_counter("nv_inference_request_failure", "Number of failed inference requests, all batch sizes", stats.failed, labels),
        _triton_counter("nv_inference_count", "Number of inferences performed (does not include cached requests)", success, labels),
        _triton_counter("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)", stats.decode_steps, labels),
        _gauge("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution per-model.", engine.num_waiting, labels),
        _triton_counter("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds (includes cached requests)", stats.request_us, labels),
        _triton_counter("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds (includes cached requests)", stats.queue_us, labels),
        _triton_counter("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds (does not include cached requests)", (stats.prompt_seconds + stats.decode_seconds) * 1e6, labels),
        requests,
        kv_blocks,
    ]  # fmt: skip
