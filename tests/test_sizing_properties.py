"""Properties any honest sizing must keep, checked over many generated inputs (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wavefleet.catalog.models import Hardware, ModelArch, Quantization
from wavefleet.plan.sizing import SizingInput, SizingResult, size_model

from .test_sizing_arithmetic import FP8, GEMMA3_4B, LLAMA_8B, Q4_K_M, Q8_0, RTX_5070_TI, RYZEN_9900X, SRC

MODELS = st.sampled_from([LLAMA_8B, GEMMA3_4B])
ENGINES = st.sampled_from(["vllm", "llama.cpp"])
MEMORY_GIB = st.floats(min_value=2.0, max_value=96.0)
UTILIZATION = st.floats(min_value=0.3, max_value=1.0)
CONTEXT = st.integers(min_value=256, max_value=131072)
BITS = st.floats(min_value=2.0, max_value=16.0)
SETTINGS = settings(max_examples=150, deadline=None)


def gpu(memory_gib: float) -> Hardware:
    return RTX_5070_TI.model_copy(update={"memory_gib": memory_gib})


def quant(bits: float, fmt: str = "gguf") -> Quantization:
    return Quantization(
        id="q", name=f"{bits:.2f} bpw", bits_per_weight=bits, format=fmt, engines=["x"], sources=SRC
    )


def sized(
    model: ModelArch, memory_gib: float, q: Quantization, engine: str, context: int, util: float = 0.9
) -> SizingResult:
    return size_model(
        SizingInput(
            model=model,
            device=gpu(memory_gib),
            quant=q,
            engine=engine,
            context=context,
            memory_utilization=util,
        )
    )


@SETTINGS
@given(MODELS, MEMORY_GIB, MEMORY_GIB, UTILIZATION, UTILIZATION, CONTEXT, ENGINES)
def test_more_memory_or_utilization_never_lowers_concurrency(
    model: ModelArch, mem_a: float, mem_b: float, util_a: float, util_b: float, context: int, engine: str
) -> None:
    small, large = sorted((mem_a, mem_b))
    low, high = sorted((util_a, util_b))
    less = sized(model, small, Q4_K_M, engine, context, low)
    more = sized(model, large, Q4_K_M, engine, context, high)
    assert more.max_concurrent_sequences >= less.max_concurrent_sequences
    assert more.max_context >= less.max_context
    assert more.fits or not less.fits


@SETTINGS
@given(MODELS, BITS, BITS, MEMORY_GIB, CONTEXT, ENGINES, st.sampled_from(["gguf", "fp8"]))
def test_smaller_quantization_never_needs_more_memory(
    model: ModelArch, bits_a: float, bits_b: float, memory: float, context: int, engine: str, fmt: str
) -> None:
    fewer, more_bits = sorted((bits_a, bits_b))
    small = sized(model, memory, quant(fewer, fmt), engine, context)
    large = sized(model, memory, quant(more_bits, fmt), engine, context)
    assert small.weights_gib <= large.weights_gib
    assert small.weights_gib + small.overhead_gib <= large.weights_gib + large.overhead_gib
    assert small.max_concurrent_sequences >= large.max_concurrent_sequences
    assert small.fits or not large.fits


@SETTINGS
@given(MODELS, MEMORY_GIB, CONTEXT, CONTEXT, ENGINES, st.sampled_from([None, FP8, Q8_0]))
def test_longer_context_never_raises_concurrency(
    model: ModelArch, memory: float, ctx_a: int, ctx_b: int, engine: str, kv: Quantization | None
) -> None:
    short, long = sorted((ctx_a, ctx_b))
    base = SizingInput(
        model=model, device=gpu(memory), quant=Q4_K_M, engine=engine, kv_dtype=kv, max_num_seqs=100000
    )
    at_short = size_model(base.model_copy(update={"context": short}))
    at_long = size_model(base.model_copy(update={"context": long}))
    assert at_long.max_concurrent_sequences <= at_short.max_concurrent_sequences
    assert at_long.kv_gib_per_sequence >= at_short.kv_gib_per_sequence


@SETTINGS
@given(MODELS, MEMORY_GIB, CONTEXT, CONTEXT, ENGINES)
def test_decode_bound_decreases_with_context(
    model: ModelArch, memory: float, ctx_a: int, ctx_b: int, engine: str
) -> None:
    short, long = sorted((ctx_a, ctx_b))
    at_short = sized(model, memory, Q4_K_M, engine, short)
    at_long = sized(model, memory, Q4_K_M, engine, long)
    assert at_long.decode_tokens_per_s_upper_bound <= at_short.decode_tokens_per_s_upper_bound


@SETTINGS
@given(MODELS, MEMORY_GIB, CONTEXT, CONTEXT, ENGINES)
def test_the_typical_speed_is_quoted_at_most_at_the_sized_context_and_never_slower(
    model: ModelArch, memory: float, context: int, typical: int, engine: str
) -> None:
    result = size_model(
        SizingInput(
            model=model,
            device=gpu(memory),
            quant=Q4_K_M,
            engine=engine,
            context=context,
            typical_context=typical,
        )
    )
    assert result.typical_context == min(typical, result.context)
    assert result.decode_tokens_per_s_at_typical >= result.decode_tokens_per_s_upper_bound
    assert result.prefill_tokens_per_s_at_typical >= result.prefill_tokens_per_s


@SETTINGS
@given(MODELS, MEMORY_GIB, CONTEXT, ENGINES)
def test_concurrency_is_what_the_kv_budget_holds(
    model: ModelArch, memory: float, context: int, engine: str
) -> None:
    result = sized(model, memory, Q4_K_M, engine, context)
    if result.fits:
        # the sequences counted fit in the KV budget, and the bound is the bandwidth bound
        assert result.max_concurrent_sequences * result.kv_gib_per_sequence <= result.kv_budget_gib + 1e-9
        assert result.weights_gib + result.overhead_gib < result.budget_gib
        assert result.gpu_layers is None
    else:
        assert result.gpu_layers is not None and 0 <= result.gpu_layers < result.total_layers


@SETTINGS
@given(MODELS, MEMORY_GIB, MEMORY_GIB, CONTEXT)
def test_more_host_ram_never_lowers_cpu_concurrency(
    model: ModelArch, ram_a: float, ram_b: float, context: int
) -> None:
    small, large = sorted((ram_a, ram_b))
    base = SizingInput(model=model, device=RYZEN_9900X, quant=Q4_K_M, engine="llama.cpp", context=context)
    less = size_model(base.model_copy(update={"host_ram_gib": small}))
    more = size_model(base.model_copy(update={"host_ram_gib": large}))
    assert more.max_concurrent_sequences >= less.max_concurrent_sequences
    assert more.gpu_layers is None and less.gpu_layers is None  # no layer split on a CPU
