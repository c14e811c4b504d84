"""Sizing a model on a device: memory fit, KV cache, context, concurrency and speed, as estimates.

All arithmetic is first principles on catalog facts; every result lists the assumptions it rests
on (`estimate_basis`). GiB = 2^30 bytes; GB/s = 10^9 bytes per second.

    weights      = params x bits_per_weight / 8   (or the tensor bytes of a real GGUF file)
    KV/token     = 2 (K and V) x layers x kv_heads x head_dim x bytes(kv dtype)
    budget       = device memory x memory_utilization  (vLLM: share of TOTAL memory)
    kv_budget    = budget - weights - engine overhead
    sequences    = floor(kv_budget / KV(context)), capped by max_num_seqs
    decode bound = bandwidth / (bytes read per token: weights + KV at the context)

Speeds are quoted at two contexts: the typical request's (`typical_context`, a few thousand
tokens: what a person chatting holds) and the sized one (the longest a request may be).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog.models import DeviceKind, Hardware, ModelArch, Quantization
from wavefleet.engines import sizing_kind
from wavefleet.errors import UsageError
from wavefleet.plan.speed import (
    BANDWIDTH_EFFICIENCY,
    PREFILL_COMPUTE_EFFICIENCY,
    STEP_OVERHEAD_S,
    ComputeRate,
    assumed_rate,
    compute_rate,
    decode_step_seconds,
)

__all__ = [
    "GIB",
    "EngineEstimate",
    "SizingInput",
    "SizingResult",
    "TYPICAL_CONTEXT",
    "estimate_engine",
    "kv_bytes_for_tokens",
    "llama_cpp_compute_bytes",
    "llama_cpp_output_bytes",
    "size_model",
]

GIB = 2**30


# vLLM-like engines (vLLM, SGLang, TensorRT-LLM) reserve memory the same three ways:
# CUDA context and libraries outside PyTorch ("non_torch_memory": 0.33 GiB and 0.39 GiB in the
# startup logs of vllm-project/vllm#14452 and #11251), the peak activation of the profiling run
# (scales with --max-num-batched-tokens), and CUDA graphs (vLLM logs "Estimated CUDA graph memory:
# 0.36 GiB", gpustack/runner#251; "took 0.21 GiB" for Llama-3.2-1B, vllm-project/vllm#11349;
# counted inside the budget since vLLM 0.21).
VLLM_NON_TORCH_GIB = 0.35
VLLM_CUDA_GRAPHS_GIB = 0.40
# --max-num-batched-tokens of vLLM's OpenAI server on GPUs under 70 GiB (8192 above), same source.
VLLM_MAX_NUM_BATCHED_TOKENS = 2048
# llama.cpp: what a llama-server process holds on the GPU beyond the buffers it logs (CUDA context,
# cuBLAS handles, kernels): NVML's per-process memory minus the sizing engine's buffers, 0.57 GiB for
# three shapes (135M to 8B, 4k-32k context, 1-16 slots) on an H200 with driver 580
# (docs/measurements/2026-12-03-agent-gpu.md); other GPUs and drivers differ by tens of MiB.
LLAMA_CPP_CUDA_CONTEXT_GIB = 0.57
# llama.cpp's default --ubatch-size. Its compute buffer with flash attention (llama-server's
# `-fa auto` turns it on) holds a micro-batch's activations plus an f16 attention mask of
# n_ubatch x context; see `llama_cpp_compute_bytes` for what each engine reserves.
LLAMA_CPP_UBATCH = 512
# Context sized when none is given and not even one sequence of the model's maximum fits
# (llama.cpp's long-standing default -c).
FALLBACK_CONTEXT = 4096
# Tokens a person's request typically holds (prompt, history and answer of a chat): speeds are
# quoted here unless a figure says otherwise. The plan's workload uses it too (inventory
# `workload.typical_context`).
TYPICAL_CONTEXT = 4096
# Host RAM bandwidth assumed for the CPU part of a layer split when no host CPU is given:
# dual-channel DDR4-3200 = 2 x 8 B x 3.2 GT/s = 51.2 GB/s.
DEFAULT_HOST_BANDWIDTH_GBS = 51.2
# Quantization formats whose engines keep the token embedding and lm_head in 16 bits: vLLM's
# online FP8 quantizes "all Linear modules (except for the final lm_head)" (docs.vllm.ai
# quantization/fp8); AWQ/GPTQ checkpoints likewise leave embeddings and lm_head unquantized.
FORMATS_WITH_16BIT_EMBEDDINGS = frozenset({"fp8", "awq", "gptq", "int8", "int4", "fp4", "nvfp4", "mxfp4"})


class SizingInput(BaseModel):
    """One question: this model, in this quantization, on this device, under this engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelArch
    device: Hardware
    quant: Quantization
    kv_dtype: Quantization | None = Field(default=None, description="None: fp16/bf16, 2 bytes")
    context: int | None = Field(
        default=None, gt=0, description="tokens per sequence; None: model max or what fits"
    )
    typical_context: int = Field(
        default=TYPICAL_CONTEXT,
        gt=0,
        description="tokens a typical request holds; the headline speeds are quoted here (at most `context`)",
    )
    memory_utilization: float = Field(default=0.9, gt=0, le=1, description="vLLM's --gpu-memory-utilization")
    max_num_seqs: int | None = Field(default=None, gt=0, description="engine cap on concurrent sequences")
    engine: str = Field(default="vllm", description="service id: vllm, llama.cpp, sglang, tensorrt-llm …")
    host_ram_gib: float | None = Field(default=None, gt=0, description="for CPUs and CPU/GPU layer split")
    host: Hardware | None = Field(default=None, description="the CPU beside a GPU, for layer-split speed")
    weights_bytes: int | None = Field(
        default=None, gt=0, description="measured weight bytes (a real GGUF file); overrides params x bpw"
    )
    output_rows: int | None = Field(
        default=None,
        gt=0,
        description="llama.cpp: logit rows reserved per micro-batch; llama-server reserves one per slot, "
        "None: the whole micro-batch (llama-cpp-python)",
    )


class SizingResult(BaseModel):
    """Estimates, with `estimate_basis` saying what each rests on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights_gib: float
    kv_bytes_per_token: int
    kv_gib_per_sequence: float
    overhead_gib: float
    budget_gib: float
    kv_budget_gib: float
    context: int = Field(
        description="tokens per sequence the memory is sized for: the longest a request may be"
    )
    typical_context: int = Field(
        description="tokens of the typical request the `_at_typical` speeds are quoted at"
    )
    max_context: int
    max_concurrent_sequences: int
    fits: bool = Field(description="fits whole on the device with at least one sequence of `context`")
    gpu_layers: int | None = Field(
        description="layers on the GPU when it does not fit whole; None when it does"
    )
    total_layers: int
    decode_tokens_per_s_at_typical: float = Field(description="one stream at `typical_context` (upper bound)")
    prefill_tokens_per_s_at_typical: float = Field(
        description="prompt tokens per second at `typical_context`"
    )
    decode_tokens_per_s_upper_bound: float = Field(description="one stream at `context` (upper bound)")
    batched_decode_tokens_per_s: float = Field(
        description="all `max_concurrent_sequences` together, each at `context` (estimate)"
    )
    prefill_tokens_per_s: float = Field(description="prompt tokens per second at `context`")
    estimate_basis: list[str]
    warnings: list[str]


class EngineEstimate(BaseModel):
    """What a simulated engine or the router seeds from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefill_tokens_per_s: float
    decode_tokens_per_s: float = Field(description="single stream, with the bandwidth efficiency applied")
    max_num_seqs: int
    kv_capacity_tokens: int
    itl_at_batch: list[tuple[int, float]] = Field(description="(running sequences, inter-token latency s)")
    basis: list[str]


@dataclass(frozen=True)
class _Memory:
    """Byte counts shared by the memory and speed halves."""

    weights: float
    embedding_table: float  # bytes of the input embedding matrix alone
    kv_per_layer_token: float
    overhead: float
    budget: float


@dataclass(frozen=True)
class _Split:
    """A model that does not fit whole on a GPU, run as a layer split sized for one sequence."""

    gpu_layers: int
    sequences: int
    max_context: int
    decode_bound: float


def size_model(inp: SizingInput) -> SizingResult:
    """Size `inp.model` on `inp.device`: what fits, how many sequences, how fast (estimates)."""
    basis: list[str] = []
    speed_basis: list[str] = []
    warnings: list[str] = []
    model = inp.model
    warnings += _compatibility_warnings(inp)
    memory = _memory(inp, basis, warnings)
    kv_budget = memory.budget - memory.weights - memory.overhead
    max_context = min(model.max_context, _tokens_fitting(model, memory.kv_per_layer_token, kv_budget))
    context = _context(inp, max_context, warnings)
    kv_sequence = kv_bytes_for_tokens(model, memory.kv_per_layer_token, context)
    sequences = _sequences(inp, kv_budget, kv_sequence, context, basis)
    fits = memory.weights + memory.overhead < memory.budget and sequences >= 1
    if _has_sliding_window(model):
        basis.append(
            f"sliding window: {model.sliding_window}-token window on {_local_layers(model)} of "
            f"{model.layers} layers, whose KV stops growing past the window (engines with a hybrid or "
            "SWA cache: vLLM's hybrid allocator, llama.cpp's SWA cache)"
        )
    if not fits:
        warnings += _misfit_warnings(inp, memory, context, max_context, kv_sequence)
    # The headline speeds: a request of typical length on the engine as sized for `context`.
    typical = min(inp.typical_context, context)
    typical_basis: list[str] = []
    split: _Split | None = None
    if not fits and inp.device.kind is DeviceKind.GPU:
        split = _layer_split(inp, memory, context, speed_basis, warnings)
        sequences, max_context, decode_bound = split.sequences, split.max_context, split.decode_bound
    else:
        decode_bound = _whole_decode_bound(inp, memory, kv_sequence, context, speed_basis)
    typical_bound = (
        _decode_bound_at(inp, memory, typical, split, typical_basis) if typical < context else decode_bound
    )
    if _expert_share(model, 1) is not None:
        basis.append(
            f"mixture of experts: all {model.params_b:g}e9 parameters stay in memory; a token reads the shared "
            f"weights and {model.experts_per_token} of {model.experts} experts ({model.active_params_b:g}e9 active "
            "parameters), and a batch reads the union of the experts its tokens route to"
        )
    batched, prefill = _throughput(inp, memory, context, sequences, split is not None, speed_basis, warnings)
    typical_prefill = (
        _prefill_tokens_per_s(model, typical, compute_rate(inp.device, inp.quant, inp.engine))
        if typical < context
        else prefill
    )
    if typical < context and typical_prefill > 0:
        typical_basis.append(
            f"prefill at {typical} tokens (the typical request): the arithmetic below = {typical_prefill:.0f} tokens/s"
        )
    return SizingResult(
        weights_gib=memory.weights / GIB,
        kv_bytes_per_token=round(memory.kv_per_layer_token * model.layers),
        kv_gib_per_sequence=kv_sequence / GIB,
        overhead_gib=memory.overhead / GIB,
        budget_gib=memory.budget / GIB,
        kv_budget_gib=kv_budget / GIB,
        context=context,
        typical_context=typical,
        max_context=max(max_context, 0),
        max_concurrent_sequences=max(sequences, 0),
        fits=fits,
        gpu_layers=split.gpu_layers if split is not None else None,
        total_layers=model.layers,
        decode_tokens_per_s_at_typical=typical_bound,
        prefill_tokens_per_s_at_typical=typical_prefill,
        decode_tokens_per_s_upper_bound=decode_bound,
        batched_decode_tokens_per_s=batched,
        prefill_tokens_per_s=prefill,
        estimate_basis=basis + typical_basis + speed_basis,
        warnings=warnings,
    )


def _context(inp: SizingInput, max_context: int, warnings: list[str]) -> int:
    """The context to size: the one asked for (at most the model's), else the model's whole context
    when one sequence of it fits, else the longest that fits, else a fallback when none does."""
    model = inp.model
    requested = inp.context
    if requested is not None and requested > model.max_context:
        warnings.append(
            f"context {requested} exceeds the model's maximum {model.max_context}; sized at {model.max_context}"
        )
        requested = model.max_context
    if requested is not None:
        return requested
    if max_context >= model.max_context:
        return model.max_context
    if max_context <= 0:
        context = min(model.max_context, FALLBACK_CONTEXT)
        warnings.append(
            f"no sequence fits whole on the device; sized at {context} tokens (give a context to change it)"
        )
        return context
    warnings.append(
        f"the model's full context ({model.max_context}) does not fit; sized at {max_context} tokens, "
        "the longest single sequence that fits"
    )
    return max_context


def _default_max_num_seqs(engine: str) -> int | None:
    """The engine's default cap on concurrent sequences (engines table), None when it has none."""
    kind = sizing_kind(engine)
    return kind.traits.slots.count if kind is not None else None


def _sequences(inp: SizingInput, kv_budget: float, kv_sequence: float, context: int, basis: list[str]) -> int:
    """Sequences of `context` tokens the KV budget holds at once, capped by the engine's limit."""
    cap = inp.max_num_seqs or _default_max_num_seqs(inp.engine)
    by_memory = math.floor(kv_budget / kv_sequence) if kv_budget > 0 else 0
    basis.append(
        f"concurrency: floor(kv_budget / KV of one {context}-token sequence) = {by_memory}"
        + (f", capped at max_num_seqs {cap}" if cap else "")
        + "; every sequence counted at its full context (worst case)"
    )
    return min(by_memory, cap) if cap else by_memory


def _misfit_warnings(
    inp: SizingInput, memory: _Memory, context: int, max_context: int, kv_sequence: float
) -> list[str]:
    """Why the model does not fit whole: a shorter context that would, and (off GPUs) the sum that fails."""
    found = []
    if memory.weights + memory.overhead < memory.budget and max_context > 0:
        found.append(
            f"the weights fit but one {context}-token sequence does not: a context of at most {max_context} fits whole"
        )
    if inp.device.kind is not DeviceKind.GPU:
        found.append(
            f"does not fit: weights {memory.weights / GIB:.2f} GiB + overhead {memory.overhead / GIB:.2f} GiB + "
            f"KV {kv_sequence / GIB:.2f} GiB for one sequence exceed the {memory.budget / GIB:.2f} GiB budget"
        )
    return found


def _layer_split(
    inp: SizingInput, memory: _Memory, context: int, speed_basis: list[str], warnings: list[str]
) -> _Split:
    model = inp.model
    gpu_layers = _gpu_layers(model, memory, context)
    warnings.append(
        f"does not fit whole: {gpu_layers} of {model.layers} layers fit on the GPU leaving room for "
        f"one {context}-token sequence; the rest run from host RAM"
        + (
            ""
            if inp.engine == "llama.cpp"
            else f" (llama.cpp -ngl {gpu_layers}; {inp.engine} would need CPU offload)"
        )
    )
    _check_host_ram(inp, memory, gpu_layers, context, warnings)
    decode_bound = _split_decode_bound(inp, memory, gpu_layers, context, speed_basis)
    # The split is sized for one sequence of `context`, its KV beside the GPU layers.
    return _Split(
        gpu_layers=gpu_layers,
        sequences=1 if gpu_layers > 0 else 0,
        max_context=context if gpu_layers > 0 else 0,
        decode_bound=decode_bound,
    )


def _whole_decode_bound(
    inp: SizingInput, memory: _Memory, kv_sequence: float, context: int, speed_basis: list[str]
) -> float:
    """Single-stream decode bound of a model held whole: bandwidth over the bytes read per token."""
    device = inp.device
    bytes_read = _bytes_read_per_token(inp.model, memory) + kv_sequence
    decode_bound = _bandwidth(device) / bytes_read
    efficiency, step = BANDWIDTH_EFFICIENCY[device.kind], STEP_OVERHEAD_S[device.kind]
    expected = 1 / (1 / (decode_bound * efficiency) + step)
    speed_basis.append(
        f"decode upper bound: {device.memory_bandwidth_gbs:g} GB/s / {bytes_read / 1e9:.2f} GB read per "
        f"token (weights + KV at {context} tokens) = {decode_bound:.1f} tokens/s, single stream; "
        f"expect ~{expected:.0f} tokens/s ({efficiency:.0%} of peak bandwidth plus {step * 1e3:g} ms per "
        "token, assumptions; llama.cpp on an H200 reached 26-65% of the bound)"
    )
    return decode_bound


def _decode_bound_at(
    inp: SizingInput, memory: _Memory, tokens: int, split: _Split | None, speed_basis: list[str]
) -> float:
    """Single-stream decode bound of a request holding `tokens`, the layers placed as sized."""
    if split is not None:
        return _split_decode_bound(inp, memory, split.gpu_layers, tokens, speed_basis)
    kv = kv_bytes_for_tokens(inp.model, memory.kv_per_layer_token, tokens)
    return _whole_decode_bound(inp, memory, kv, tokens, speed_basis)


def _throughput(
    inp: SizingInput,
    memory: _Memory,
    context: int,
    sequences: int,
    split: bool,
    speed_basis: list[str],
    warnings: list[str],
) -> tuple[float, float]:
    """Batched decode at `sequences` (none estimated for a layer split) and prefill, in tokens/s."""
    device = inp.device
    rate = compute_rate(device, inp.quant, inp.engine)
    batched = 0.0 if split else _batched_tokens_per_s(inp, memory, context, max(sequences, 0), rate)
    if not split and sequences >= 1:
        ceiling = (
            f"or 2 x params x batch FLOPs at {PREFILL_COMPUTE_EFFICIENCY:.0%} of {rate.precision} peak, whichever is slower"
            if rate.flops_per_s > 0
            else "(compute ceiling unknown: memory time only, so an upper estimate)"
        )
        speed_basis.append(
            f"batched decode at {sequences} sequences of {context} tokens: each step reads the weights once plus every sequence's KV, "
            f"over {BANDWIDTH_EFFICIENCY[device.kind]:.0%} of peak bandwidth, {ceiling}, plus "
            f"{STEP_OVERHEAD_S[device.kind] * 1e3:g} ms fixed per step (fit to llama.cpp on an H200) = {batched:.0f} tokens/s"
        )
    prefill = _prefill_tokens_per_s(inp.model, context, rate)
    if prefill > 0:
        speed_basis.append(
            f"prefill at {context} tokens: (2 x params + attention) FLOPs per token over {rate.flops_per_s / 1e12:g} "
            f"TFLOPS {rate.precision} ({rate.reason}) at {PREFILL_COMPUTE_EFFICIENCY:.0%} efficiency = {prefill:.0f} tokens/s"
        )
    else:
        warnings.append(f"prefill speed unknown: {rate.reason}")
    if split and prefill > 0:
        warnings.append(
            "prefill estimate assumes the whole model computes on the GPU; a layer split is slower"
        )
    return batched, prefill


def estimate_engine(inp: SizingInput) -> EngineEstimate:
    """Seed values for a simulated engine or the router: speeds, capacity and an ITL curve."""
    result = size_model(inp)
    model, device = inp.model, inp.device
    memory = _memory(inp, [], [])
    rate = compute_rate(device, inp.quant, inp.engine)
    capacity = max(result.max_concurrent_sequences, 1)
    kv_sequence = kv_bytes_for_tokens(model, memory.kv_per_layer_token, result.context)
    curve: list[tuple[int, float]] = []
    for batch in _batch_points(capacity):
        if result.gpu_layers is not None:
            itl = 1 / (result.decode_tokens_per_s_upper_bound * BANDWIDTH_EFFICIENCY[device.kind])
            itl += STEP_OVERHEAD_S[device.kind]
        else:
            itl = _step_seconds(inp, memory, kv_sequence, batch, rate)
        curve.append((batch, itl))
    single_itl = curve[0][1]
    prefill = result.prefill_tokens_per_s
    guessed: list[str] = []
    if prefill <= 0:
        guess = assumed_rate(device)
        prefill = _prefill_tokens_per_s(model, result.context, guess)
        guessed.append(f"prefill {prefill:.0f} tokens/s from a {guess.reason}")
    kv_budget = max(memory.budget - memory.weights - memory.overhead, 0.0)
    kv_per_token = memory.kv_per_layer_token * model.layers
    return EngineEstimate(
        prefill_tokens_per_s=prefill,
        decode_tokens_per_s=1 / single_itl,
        max_num_seqs=capacity,
        kv_capacity_tokens=int(kv_budget // kv_per_token) if result.gpu_layers is None else result.context,
        itl_at_batch=curve,
        basis=[
            *result.estimate_basis,
            f"ITL curve: decode step time at each batch size, every sequence at {result.context} tokens of KV",
            *guessed,
            *(f"warning: {w}" for w in result.warnings),
        ],
    )


def _compatibility_warnings(inp: SizingInput) -> list[str]:
    quant, device = inp.quant, inp.device
    found: list[str] = []
    if quant.engines and inp.engine not in quant.engines:
        found.append(f"{quant.id} is listed for {', '.join(quant.engines)}, not {inp.engine}")
    if device.kind is DeviceKind.CPU and not quant.runs_on_cpu:
        found.append(f"{quant.id} is not marked as running on CPUs")
    needed = quant.native_min_compute_capability
    if (
        needed
        and device.kind is not DeviceKind.CPU
        and _version(device.compute_capability) < _version(needed)
    ):
        found.append(
            f"{quant.id} runs natively from compute capability {needed}; {device.id} "
            f"({device.compute_capability or 'no CC'}) emulates or upcasts it: slower than estimated"
        )
    return found


def _version(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")) if text else (0,)


# --- memory -------------------------------------------------------------------------------------


def kv_bytes_for_tokens(model: ModelArch, kv_per_layer_token: float, tokens: int) -> float:
    """KV bytes one sequence of `tokens` holds; sliding-window layers stop at the window."""
    if not _has_sliding_window(model):
        return kv_per_layer_token * model.layers * tokens
    assert model.sliding_window is not None
    global_layers = model.layers - _local_layers(model)
    return kv_per_layer_token * (
        global_layers * tokens + _local_layers(model) * min(tokens, model.sliding_window)
    )


def llama_cpp_compute_bytes(model: ModelArch, *, context: int, output_rows: int | None) -> float:
    """llama.cpp's compute buffer with flash attention, for sequences of `context` tokens.

    `output_rows` None: the engine reserves logits for the whole micro-batch (llama-cpp-python),
    n_ubatch x 4 B x vocab, which dominates. Otherwise (llama-server: one row per slot) the
    activations of one micro-batch dominate: measured against llama-server's log for SmolLM2-135M
    and synthetic shapes (hidden 256-2048, ffn 512-2048), they are 4 x hidden + 3 x ffn fp32 values
    per token in a model whose feed-forward runs on every token, and 4 x hidden + max(hidden,
    2 x KV width) in the attention part. Both add an f16 attention mask of n_ubatch x `context`
    (tokens per sequence: the cache is split per slot). llama-server's micro-batch is 512 tokens, or
    its whole context (all slots) when that is smaller: llama.cpp caps it there.
    """
    if output_rows is None:
        return LLAMA_CPP_UBATCH * (4 * max(model.vocab_size, 2 * model.intermediate_size) + context * 2)
    ubatch = min(LLAMA_CPP_UBATCH, context * output_rows)
    mask = ubatch * context * 2
    hidden, ffn = model.hidden_size, model.intermediate_size
    kv_width = model.kv_heads * model.head_dim
    per_token = max(4 * hidden + 3 * ffn, 4 * hidden + max(hidden, 2 * kv_width))
    return ubatch * 4 * per_token + mask


def llama_cpp_output_bytes(model: ModelArch, rows: int) -> float:
    """llama.cpp's output buffer: `rows` fp32 logit rows over the vocabulary (llama-server: one per slot)."""
    return rows * model.vocab_size * 4


def _memory(inp: SizingInput, basis: list[str], warnings: list[str]) -> _Memory:
    model, quant = inp.model, inp.quant
    params = model.params_b * 1e9
    embedding_params = model.vocab_size * model.hidden_size
    head_and_embedding = embedding_params if model.tied_embeddings else 2 * embedding_params
    ties = "tied (one matrix serves input and output)" if model.tied_embeddings else "untied (two matrices)"
    if inp.weights_bytes is not None:
        weights = float(inp.weights_bytes)
        embedding_table = embedding_params * weights / params
        basis.append(
            f"weights: {weights / GIB:.2f} GiB, the tensor bytes of the file itself (not params x bpw)"
        )
    elif quant.format in FORMATS_WITH_16BIT_EMBEDDINGS:
        weights = (params - head_and_embedding) * quant.bits_per_weight / 8 + head_and_embedding * 2
        embedding_table = embedding_params * 2.0
        basis.append(
            f"weights: ({model.params_b:g}e9 params - {head_and_embedding / 1e9:.2f}e9 embedding/lm_head) x "
            f"{quant.bits_per_weight:g} bits / 8 + embeddings at 16 bits = {weights / GIB:.2f} GiB; "
            f"embeddings {ties}; {quant.name} leaves embeddings and lm_head in 16 bits"
        )
    else:
        weights = params * quant.bits_per_weight / 8
        embedding_table = embedding_params * quant.bits_per_weight / 8
        basis.append(
            f"weights: {model.params_b:g}e9 params x {quant.bits_per_weight:g} bits / 8 = {weights / GIB:.2f} GiB; "
            f"embeddings {ties}"
            + (
                "; GGUF keeps some tensors (output, token_embd, norms) at higher precision: the "
                "catalog's bits per weight is the whole-file average, so it includes them"
                if quant.format == "gguf"
                else ""
            )
        )
    kv_bytes = 2.0 if inp.kv_dtype is None else inp.kv_dtype.bits_per_weight / 8
    kv_name = "fp16/bf16" if inp.kv_dtype is None else inp.kv_dtype.name
    if inp.kv_dtype is not None and not inp.kv_dtype.kv_cache:
        warnings.append(f"{inp.kv_dtype.id} is not marked in the catalog as a KV-cache dtype")
    kv_per_layer_token = 2 * model.kv_heads * model.head_dim * kv_bytes
    basis.append(
        f"KV per token: 2 x {model.layers} layers x {model.kv_heads} KV heads x {model.head_dim} head_dim x "
        f"{kv_bytes:g} bytes ({kv_name}) = {kv_per_layer_token * model.layers:,.0f} bytes"
        + (" (GQA)" if model.kv_heads < model.attention_heads else "")
    )
    budget = _budget(inp, basis)
    overhead = _overhead(inp, basis)
    return _Memory(weights, embedding_table, kv_per_layer_token, overhead, budget)


def _budget(inp: SizingInput, basis: list[str]) -> float:
    device = inp.device
    if device.kind is DeviceKind.CPU or device.memory_gib is None:
        if inp.host_ram_gib is None:
            raise UsageError(
                f"{device.id} has no device memory of its own: give the host's RAM (host_ram_gib, "
                "`wave size --host-ram-gib N`)"
            )
        total = inp.host_ram_gib
        where = "host RAM"
    else:
        total = device.memory_gib
        where = (
            "shared CPU+GPU memory (the OS takes part of it)"
            if device.kind is DeviceKind.SOC
            else "device memory"
        )
    budget = total * inp.memory_utilization * GIB
    basis.append(
        f"budget: {total:g} GiB {where} x memory_utilization {inp.memory_utilization:g} = {budget / GIB:.2f} GiB "
        "(vLLM semantics: the share of TOTAL memory this instance may use)"
    )
    return budget


def _overhead(inp: SizingInput, basis: list[str]) -> float:
    model, device = inp.model, inp.device
    on_gpu = device.kind is not DeviceKind.CPU
    if inp.engine == "llama.cpp" or not on_gpu:
        context = inp.context or model.max_context
        rows = inp.output_rows
        compute_buffer = llama_cpp_compute_bytes(model, context=context, output_rows=rows)
        outputs = llama_cpp_output_bytes(model, rows) if rows is not None else 0.0
        cuda = LLAMA_CPP_CUDA_CONTEXT_GIB * GIB if on_gpu else 0.0
        if rows is None:
            buffers = (
                f"compute buffer {compute_buffer / GIB:.2f} GiB (ubatch {LLAMA_CPP_UBATCH} x "
                f"fp32 logits over the vocabulary, plus a {context}-token attention mask; flash attention assumed)"
            )
        else:
            buffers = (
                f"compute buffer {compute_buffer / GIB:.3f} GiB (a micro-batch's activations, "
                f"max(4 x hidden + 3 x ffn, 5-6 x hidden) fp32 per token, plus a {context}-token attention mask; "
                f"flash attention assumed) + output buffer {outputs / GIB:.3f} GiB ({rows} logit rows, one per slot)"
            )
        basis.append(
            f"overhead (llama.cpp-style): {buffers}"
            + (
                f" + CUDA context {LLAMA_CPP_CUDA_CONTEXT_GIB} GiB (measured on an H200)"
                if on_gpu
                else "; weights in RAM"
            )
        )
        return compute_buffer + outputs + cuda
    seqs = inp.max_num_seqs or _default_max_num_seqs(inp.engine) or 256
    activation = VLLM_MAX_NUM_BATCHED_TOKENS * (3 * model.intermediate_size + 4 * model.hidden_size) * 2
    sampler = seqs * model.vocab_size * 4 * 2
    overhead = VLLM_NON_TORCH_GIB * GIB + VLLM_CUDA_GRAPHS_GIB * GIB + activation + sampler
    basis.append(
        f"overhead ({inp.engine}): CUDA context and libraries {VLLM_NON_TORCH_GIB} GiB + CUDA graphs "
        f"{VLLM_CUDA_GRAPHS_GIB} GiB (vLLM startup logs) + profiling-run activations {activation / GIB:.2f} GiB "
        f"({VLLM_MAX_NUM_BATCHED_TOKENS} batched tokens x (3 x intermediate + 4 x hidden) x 2 bytes) + sampler "
        f"{sampler / GIB:.2f} GiB ({seqs} seqs x vocab x fp32, twice) = {overhead / GIB:.2f} GiB"
    )
    return overhead


def _tokens_fitting(model: ModelArch, kv_per_layer_token: float, kv_budget: float) -> int:
    """The longest single sequence whose KV fits in `kv_budget`."""
    if kv_budget <= 0:
        return 0
    full = math.floor(kv_budget / (kv_per_layer_token * model.layers))
    if not _has_sliding_window(model):
        return full
    assert model.sliding_window is not None
    window = model.sliding_window
    if full <= window:
        return full
    global_layers = model.layers - _local_layers(model)
    if global_layers == 0:
        return model.max_context
    local_bytes = kv_per_layer_token * _local_layers(model) * window
    return math.floor((kv_budget - local_bytes) / (kv_per_layer_token * global_layers))


def _has_sliding_window(model: ModelArch) -> bool:
    return model.sliding_window is not None and model.sliding_window < model.max_context


def _local_layers(model: ModelArch) -> int:
    if model.sliding_window is None:
        return 0
    return model.layers - (model.global_layers or 0)


def _gpu_layers(model: ModelArch, memory: _Memory, context: int) -> int:
    per_layer_weights = (memory.weights - memory.embedding_table) / model.layers
    per_layer_kv = kv_bytes_for_tokens(model, memory.kv_per_layer_token, context) / model.layers
    room = memory.budget - memory.overhead
    if room <= 0:
        return 0
    return max(0, min(model.layers - 1, math.floor(room / (per_layer_weights + per_layer_kv))))


def _check_host_ram(
    inp: SizingInput, memory: _Memory, gpu_layers: int, context: int, warnings: list[str]
) -> None:
    if inp.host_ram_gib is None:
        warnings.append("host RAM not given: cannot check that the CPU part fits in RAM")
        return
    model = inp.model
    cpu_share = (model.layers - gpu_layers) / model.layers
    cpu_bytes = (memory.weights - memory.embedding_table) * cpu_share + memory.embedding_table
    cpu_bytes += kv_bytes_for_tokens(model, memory.kv_per_layer_token, context) * cpu_share
    if cpu_bytes > inp.host_ram_gib * inp.memory_utilization * GIB:
        warnings.append(
            f"the CPU part ({cpu_bytes / GIB:.1f} GiB) does not fit in {inp.host_ram_gib:g} GiB host RAM either"
        )


# --- speed --------------------------------------------------------------------------------------


def _bandwidth(device: Hardware) -> float:
    return device.memory_bandwidth_gbs * 1e9


def _bytes_read_per_token(model: ModelArch, memory: _Memory, batch: int = 1) -> float:
    """Weight bytes a decode step of `batch` sequences reads.

    An untied input embedding is a lookup of one row, so it is not read whole. A mixture of experts
    reads its shared weights and only the experts its tokens route to: with E experts and k per
    token, expert weights X and shared S solve P = S + X and A = S + X k/E (P total, A active
    parameters), and a batch touches X (1 - (1 - k/E)^batch) of the experts on average.
    """
    read = memory.weights if model.tied_embeddings else memory.weights - memory.embedding_table
    share = _expert_share(model, batch)
    if share is None:
        return read
    expert_fraction, touched = share
    return read * (1 - expert_fraction) + read * expert_fraction * touched


def _expert_share(model: ModelArch, batch: int) -> tuple[float, float] | None:
    """(expert share of all parameters, share of experts a batch touches), or None when dense."""
    if not (model.active_params_b and model.experts and model.experts_per_token):
        return None
    per_token = model.experts_per_token / model.experts
    if per_token >= 1:
        return None
    expert_params = (model.params_b - model.active_params_b) / (1 - per_token)
    expert_fraction = min(max(expert_params / model.params_b, 0.0), 1.0)
    return expert_fraction, 1 - (1 - per_token) ** batch


def _flops_params(model: ModelArch) -> float:
    """Parameters a token multiplies by: the active ones for a mixture of experts."""
    return (model.active_params_b or model.params_b) * 1e9


def _split_decode_bound(
    inp: SizingInput, memory: _Memory, gpu_layers: int, context: int, basis: list[str]
) -> float:
    model = inp.model
    # A mixture of experts reads only its routed experts' share of each layer.
    dense_read = memory.weights if model.tied_embeddings else memory.weights - memory.embedding_table
    read_share = _bytes_read_per_token(model, memory) / dense_read
    layer_bytes = (memory.weights - memory.embedding_table) / model.layers * read_share
    kv_layer = kv_bytes_for_tokens(model, memory.kv_per_layer_token, context) / model.layers
    gpu_bytes = gpu_layers * (layer_bytes + kv_layer)
    cpu_bytes = (model.layers - gpu_layers) * (layer_bytes + kv_layer)
    if model.tied_embeddings:
        cpu_bytes += memory.embedding_table
    host_gbs = inp.host.memory_bandwidth_gbs if inp.host else DEFAULT_HOST_BANDWIDTH_GBS
    seconds = gpu_bytes / _bandwidth(inp.device) + cpu_bytes / (host_gbs * 1e9)
    bound = 1 / seconds
    basis.append(
        f"decode upper bound (layer split): {gpu_bytes / 1e9:.2f} GB over {inp.device.memory_bandwidth_gbs:g} GB/s "
        f"+ {cpu_bytes / 1e9:.2f} GB over {host_gbs:g} GB/s host RAM"
        + ("" if inp.host else " (assumed dual-channel DDR4-3200)")
        + f" = {bound:.1f} tokens/s, single stream"
    )
    return bound


def _step_seconds(
    inp: SizingInput, memory: _Memory, kv_sequence: float, batch: int, rate: ComputeRate
) -> float:
    device = inp.device
    bytes_read = _bytes_read_per_token(inp.model, memory, batch) + batch * kv_sequence
    flops = 2 * _flops_params(inp.model) * batch
    return decode_step_seconds(
        bytes_read,
        flops,
        _bandwidth(device),
        rate,
        BANDWIDTH_EFFICIENCY[device.kind],
        STEP_OVERHEAD_S[device.kind],
    )


def _batched_tokens_per_s(
    inp: SizingInput, memory: _Memory, context: int, sequences: int, rate: ComputeRate
) -> float:
    if sequences < 1:
        return 0.0
    kv_sequence = kv_bytes_for_tokens(inp.model, memory.kv_per_layer_token, context)
    return sequences / _step_seconds(inp, memory, kv_sequence, sequences, rate)


def _prefill_tokens_per_s(model: ModelArch, context: int, rate: ComputeRate) -> float:
    if rate.flops_per_s <= 0:
        return 0.0
    # Per prompt token: 2 FLOPs per weight, plus attention (QK^T and AV, 2 x 2 FLOPs per
    # head dimension per earlier token) at the average position context / 2.
    attention = 2 * model.layers * model.attention_heads * model.head_dim * context
    flops_per_token = 2 * _flops_params(model) + attention
    return rate.flops_per_s * PREFILL_COMPUTE_EFFICIENCY / flops_per_token


def _batch_points(capacity: int) -> list[int]:
    points = [1]
    while points[-1] * 2 < capacity:
        points.append(points[-1] * 2)
    if capacity > 1:
        points.append(capacity)
    return points
