"""Each metrics dialect parsed from exposition text in the engine's own format."""

from __future__ import annotations

import pytest

from wavefleet.engines import EngineKind
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor.dialects.base import PollError, metrics_url, models_from_json
from wavefleet.gateway.monitor.dialects.llamacpp import (
    parse_llamacpp_metrics,
    parse_llamacpp_props,
    parse_llamacpp_slots,
)
from wavefleet.gateway.monitor.dialects.nim import parse_nim_metrics
from wavefleet.gateway.monitor.dialects.sglang import parse_sglang_metrics
from wavefleet.gateway.monitor.dialects.tgi import parse_tgi_metrics
from wavefleet.gateway.monitor.dialects.triton import parse_triton_metrics
from wavefleet.gateway.monitor.dialects.vllm import parse_vllm_metrics

# vLLM >= 0.11, data parallel size 2: one series per `engine`.
VLLM_NEW = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 4.0
vllm:num_requests_waiting{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.25
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",num_gpu_blocks="27306"} 1.0
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 18231.0
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 40.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 5.2
"""

# vLLM <= 0.10: the KV gauge is still `gpu_cache_usage_perc`, one engine.
VLLM_OLD = """\
# HELP vllm:num_requests_running Number of requests currently running on GPU.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="Qwen/Qwen2.5-7B-Instruct"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.0
# HELP vllm:gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="Qwen/Qwen2.5-7B-Instruct"} 0.8125
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",max_num_seqs="256",num_gpu_blocks="2048"} 1.0
"""

LLAMACPP = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1021
# HELP llamacpp:tokens_predicted_total Number of generation tokens processed.
# TYPE llamacpp:tokens_predicted_total counter
llamacpp:tokens_predicted_total 4096
# HELP llamacpp:predicted_tokens_seconds Average generation throughput in tokens/s.
# TYPE llamacpp:predicted_tokens_seconds gauge
llamacpp:predicted_tokens_seconds 38.2
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 5
"""

LLAMACPP_SLOTS = [
    {"id": 0, "id_task": 12, "n_ctx": 4096, "is_processing": True, "next_token": {"n_decoded": 31}},
    {"id": 1, "id_task": -1, "n_ctx": 4096, "is_processing": False, "next_token": {"n_decoded": 0}},
    {"id": 2, "id_task": 15, "n_ctx": 4096, "is_processing": True, "next_token": {"n_decoded": 2}},
    {"id": 3, "id_task": -1, "n_ctx": 4096, "is_processing": False, "next_token": {"n_decoded": 0}},
]

SGLANG = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="0"} 6.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="0"} 2.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="0"} 0.37
# HELP sglang:gen_throughput The generation throughput (token/s).
# TYPE sglang:gen_throughput gauge
sglang:gen_throughput{model_name="meta-llama/Llama-3.1-8B-Instruct",tp_rank="0"} 412.5
"""

TRITON_TRTLLM = """\
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="ensemble",version="1"} 0
nv_inference_pending_request_count{model="tensorrt_llm",version="1"} 1
# HELP nv_trt_llm_request_metrics TRT LLM request metrics
# TYPE nv_trt_llm_request_metrics gauge
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="waiting",version="1"} 3
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="context",version="1"} 1
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="scheduled",version="1"} 8
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="max",version="1"} 64
nv_trt_llm_request_metrics{model="tensorrt_llm",request_type="active",version="1"} 8
# HELP nv_trt_llm_kv_cache_block_metrics TRT LLM KV cache block metrics
# TYPE nv_trt_llm_kv_cache_block_metrics gauge
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction",model="tensorrt_llm",version="1"} 0.42
nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used",model="tensorrt_llm",version="1"} 430
"""

TRITON_PLAIN = """\
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="llama",version="1"} 4
nv_inference_pending_request_count{model="embedder",version="1"} 9
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="llama",version="1"} 120
"""

TGI = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 4
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 12
# TYPE tgi_batch_current_max_tokens gauge
tgi_batch_current_max_tokens 8192
# TYPE tgi_request_duration histogram
tgi_request_duration_bucket{le="0.5"} 3
tgi_request_duration_bucket{le="+Inf"} 10
tgi_request_duration_sum 12.1
tgi_request_duration_count 10
"""

NIM = """\
# HELP num_requests_running Number of requests currently running on GPU.
# TYPE num_requests_running gauge
num_requests_running{model_name="meta/llama-3.1-8b-instruct"} 2.0
# HELP num_requests_waiting Number of requests waiting.
# TYPE num_requests_waiting gauge
num_requests_waiting{model_name="meta/llama-3.1-8b-instruct"} 1.0
# HELP num_request_max Max number of concurrently running requests.
# TYPE num_request_max gauge
num_request_max{model_name="meta/llama-3.1-8b-instruct"} 256.0
# HELP gpu_cache_usage_perc GPU KV-cache usage. 1 means 100 percent usage.
# TYPE gpu_cache_usage_perc gauge
gpu_cache_usage_perc{model_name="meta/llama-3.1-8b-instruct"} 0.0625
"""


def test_vllm_new_names_sum_over_engines() -> None:
    load = parse_vllm_metrics(VLLM_NEW)
    assert (load.running, load.waiting) == (5, 5)
    assert load.kv_usage == pytest.approx(0.375)  # mean of the two engines' fractions
    assert load.slots_total is None  # cache_config_info without max_num_seqs


def test_vllm_old_kv_name_is_the_fallback() -> None:
    load = parse_vllm_metrics(VLLM_OLD)
    assert (load.running, load.waiting, load.slots_total) == (7, 0, 256)
    assert load.kv_usage == pytest.approx(0.8125)


def test_vllm_new_kv_name_wins_over_old() -> None:
    both = VLLM_NEW + "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.99\n"
    assert parse_vllm_metrics(both).kv_usage == pytest.approx(0.375)


def test_vllm_without_gauges_reports_unknown_not_zero() -> None:
    load = parse_vllm_metrics("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.0\n")
    assert (load.running, load.waiting, load.kv_usage) == (None, None, None)


def test_garbage_metrics_raise_poll_error() -> None:
    with pytest.raises(PollError, match="unreadable metrics"):
        parse_vllm_metrics("<html>502 Bad Gateway</html>\n")


def test_llamacpp_metrics_slots_and_props() -> None:
    load = parse_llamacpp_metrics(LLAMACPP)
    assert (load.running, load.waiting, load.kv_usage) == (2, 5, None)
    slots = parse_llamacpp_slots(LLAMACPP_SLOTS)
    assert (slots.running, slots.slots_total) == (2, 4)
    assert parse_llamacpp_props({"total_slots": 4, "is_sleeping": False}) == 4
    assert parse_llamacpp_props({"default_generation_settings": {}}) is None
    with pytest.raises(PollError):
        parse_llamacpp_slots({"error": {"code": 501, "message": "This server does not support slots"}})


def test_sglang() -> None:
    load = parse_sglang_metrics(SGLANG)
    assert (load.running, load.waiting) == (6, 2)
    assert load.kv_usage == pytest.approx(0.37)


def test_triton_trtllm_gauges_win_over_pending_count() -> None:
    load = parse_triton_metrics(TRITON_TRTLLM)
    assert (load.running, load.waiting, load.slots_total) == (8, 3, 64)
    assert load.kv_usage == pytest.approx(0.42)


def test_triton_pending_count_filtered_by_model() -> None:
    assert parse_triton_metrics(TRITON_PLAIN).waiting == 13
    only_llama = parse_triton_metrics(TRITON_PLAIN, model="llama")
    assert (only_llama.waiting, only_llama.running) == (4, None)


def test_metrics_url_default_port_and_override() -> None:
    plain = BackendConfig(name="t", url="http://jetson:8000", kind=EngineKind.TRITON)  # type: ignore[arg-type]
    assert metrics_url(plain) == "http://jetson:8002/metrics"
    nim = BackendConfig(name="n", url="http://desktop:8000/", kind=EngineKind.NIM)  # type: ignore[arg-type]
    assert metrics_url(nim) == "http://desktop:8000/v1/metrics"
    moved = BackendConfig(
        name="t",
        url="http://jetson:8000",  # type: ignore[arg-type]
        kind=EngineKind.TRITON,
        metrics_url="http://jetson:9102/metrics",  # type: ignore[arg-type]
    )
    assert metrics_url(moved) == "http://jetson:9102/metrics"


def test_tgi() -> None:
    load = parse_tgi_metrics(TGI)
    assert (load.running, load.waiting, load.kv_usage) == (12, 4, None)


def test_nim_unprefixed_and_prefixed() -> None:
    load = parse_nim_metrics(NIM)
    assert (load.running, load.waiting, load.slots_total) == (2, 1, 256)
    assert load.kv_usage == pytest.approx(0.0625)
    assert parse_nim_metrics(VLLM_NEW).running == 5  # a NIM build that keeps vLLM's prefix


def test_models_from_openai_list() -> None:
    body = {
        "object": "list",
        "data": [{"id": "smollm2", "object": "model"}, {"id": "qwen", "object": "model"}],
    }
    assert models_from_json(body) == ("smollm2", "qwen")
    with pytest.raises(PollError):
        models_from_json({"models": []})


VLLM_TIMED = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="27306"} 1.0
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 40000.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 50.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 9.0
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 6000.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 120.0
"""

# the same engine once requests have finished: prefill time (scheduled -> first token) and the
# finished requests' prompt lengths are reported, so the queue is left out of the prefill figure
VLLM_FINISHED = (
    VLLM_TIMED
    + """\
# TYPE vllm:request_prefill_time_seconds histogram
vllm:request_prefill_time_seconds_count{engine="0",model_name="m"} 40.0
vllm:request_prefill_time_seconds_sum{engine="0",model_name="m"} 4.0
# TYPE vllm:request_prompt_tokens histogram
vllm:request_prompt_tokens_count{engine="0",model_name="m"} 40.0
vllm:request_prompt_tokens_sum{engine="0",model_name="m"} 32000.0
"""
)


def test_vllm_reports_its_own_timings_and_kv_size() -> None:
    load = parse_vllm_metrics(VLLM_TIMED)
    assert load.kv_capacity_tokens == 27306 * 16
    assert load.timings is not None
    assert (load.timings.requests, load.timings.prefill_tokens, load.timings.prefill_s) == (50, 40000.0, 9.0)
    assert (load.timings.decode_tokens, load.timings.decode_s) == (6000.0, 120.0)
    finished = parse_vllm_metrics(VLLM_FINISHED).timings
    assert finished is not None
    assert (finished.requests, finished.prefill_tokens, finished.prefill_s) == (40, 32000.0, 4.0)
    assert parse_vllm_metrics(VLLM_OLD).timings is None  # nothing timed yet: no figures, not zeros


def test_llamacpp_reports_its_own_timings() -> None:
    timed = LLAMACPP + (
        "# TYPE llamacpp:prompt_seconds_total counter\nllamacpp:prompt_seconds_total 4.0\n"
        "# TYPE llamacpp:tokens_predicted_seconds_total counter\nllamacpp:tokens_predicted_seconds_total 128.0\n"
    )
    timings = parse_llamacpp_metrics(timed).timings
    assert timings is not None and timings.requests is None
    assert (timings.prefill_tokens, timings.prefill_s, timings.decode_tokens, timings.decode_s) == (
        1021.0,
        4.0,
        4096.0,
        128.0,
    )
    assert parse_llamacpp_metrics(LLAMACPP).timings is None  # without the seconds counters
