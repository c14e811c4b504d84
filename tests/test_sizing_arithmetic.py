"""Hand-worked sizing cases: the arithmetic is written out in comments and checked against the code."""

from __future__ import annotations

import pytest

from wavefleet.catalog.models import DeviceKind, Hardware, ModelArch, Quantization, Source
from wavefleet.errors import UsageError
from wavefleet.plan.sizing import GIB, SizingInput, estimate_engine, size_model

# Real numbers: meta-llama/Llama-3.1-8B-Instruct config.json; Gemma 3 4B config.json
# (google/gemma-3-4b-it: 34 layers, 4 KV heads, head_dim 256, sliding_window 1024, every 6th
# layer global -> 5 global); RTX 5070 Ti datasheet (16 GB GDDR7, 896 GB/s, CC 12.0); GTX 1650
# mobile (4 GB, 128 GB/s, CC 7.5, no tensor cores); Ryzen 9 9900X (DDR5-5600 x 2 = 89.6 GB/s).
SRC = [Source(ref="tests: hand-built from config.json and datasheets")]

LLAMA_8B = ModelArch(
    id="llama-3.1-8b",
    name="Llama 3.1 8B Instruct",
    family="llama-3",
    params_b=8.03,
    layers=32,
    hidden_size=4096,
    attention_heads=32,
    kv_heads=8,
    head_dim=128,
    intermediate_size=14336,
    vocab_size=128256,
    max_context=131072,
    sources=SRC,
)
GEMMA3_4B = ModelArch(
    id="gemma-3-4b",
    name="Gemma 3 4B",
    family="gemma-3",
    params_b=4.3,
    layers=34,
    hidden_size=2560,
    attention_heads=8,
    kv_heads=4,
    head_dim=256,
    intermediate_size=10240,
    vocab_size=262208,
    max_context=131072,
    tied_embeddings=True,
    sliding_window=1024,
    global_layers=5,
    sources=SRC,
)
RTX_5070_TI = Hardware(
    id="rtx-5070-ti",
    name="GeForce RTX 5070 Ti",
    vendor="nvidia",
    kind=DeviceKind.GPU,
    architecture="Blackwell GB203",
    memory_gib=15.92,
    memory_bandwidth_gbs=896,
    compute_capability="12.0",
    tensor_precisions=["fp16", "bf16", "fp8", "fp4", "int8"],
    # Derived, not a datasheet line: 1406 AI TOPS (FP4, sparse) / 4 = 351.5 dense FP8; 16-bit with
    # FP32 accumulate is 1/16 of it on GeForce (87.9); matches the ratios measured on an RTX 5060 Ti
    # (QuantumDrizzy/BLACKWALL: 184.6 TFLOPS FP8, 47.0 BF16 from 759 AI TOPS).
    dense_tflops={"fp16": 87.9, "bf16": 87.9, "fp8": 351.5},
    tdp_w=300,
    sources=SRC,
)
GTX_1650 = Hardware(
    id="gtx-1650-mobile",
    name="GeForce GTX 1650 Mobile",
    vendor="nvidia",
    kind=DeviceKind.GPU,
    architecture="Turing TU117",
    memory_gib=3.82,
    memory_bandwidth_gbs=128,
    compute_capability="7.5",
    dense_tflops={"fp32": 3.2, "fp16": 6.4},
    tdp_w=50,
    sources=SRC,
)
RYZEN_9900X = Hardware(
    id="ryzen-9-9900x",
    name="Ryzen 9 9900X",
    vendor="amd",
    kind=DeviceKind.CPU,
    architecture="Zen 5",
    memory_bandwidth_gbs=89.6,
    isa=["avx2", "avx512"],
    cores=12,
    threads=24,
    tdp_w=120,
    sources=SRC,
)
FP16 = Quantization(id="bf16", name="BF16", bits_per_weight=16, format="float", engines=["vllm"], sources=SRC)
FP8 = Quantization(
    id="fp8", name="FP8 E4M3", bits_per_weight=8, format="fp8", engines=["vllm"], kv_cache=True, sources=SRC
)
Q4_K_M = Quantization(
    id="q4_k_m", name="GGUF Q4_K_M", bits_per_weight=4.89, format="gguf", engines=["llama.cpp"], sources=SRC
)
Q8_0 = Quantization(
    id="q8_0",
    name="GGUF Q8_0",
    bits_per_weight=8.5,
    format="gguf",
    engines=["llama.cpp"],
    kv_cache=True,
    sources=SRC,
)


def test_llama_8b_kv_per_token_fp16_and_fp8() -> None:
    # fp16 KV: 2 (K,V) x 32 layers x 8 KV heads x 128 head_dim x 2 bytes = 131072 bytes/token
    fp16 = size_model(SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=FP8, context=8192))
    assert fp16.kv_bytes_per_token == 131072
    # 8192 tokens x 131072 bytes = 2^30 bytes = exactly 1 GiB per sequence
    assert fp16.kv_gib_per_sequence == pytest.approx(1.0)
    # fp8 KV: half of that, 65536 bytes/token
    fp8 = size_model(SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=FP8, kv_dtype=FP8, context=8192))
    assert fp8.kv_bytes_per_token == 65536
    # q8_0 KV: 8.5 bits = 1.0625 bytes -> 2 x 32 x 8 x 128 x 1.0625 = 69632 bytes/token
    q8 = size_model(
        SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=Q4_K_M, kv_dtype=Q8_0, engine="llama.cpp")
    )
    assert q8.kv_bytes_per_token == 69632


def test_llama_8b_q4_k_m_weights_and_decode_bound() -> None:
    # weights: 8.03e9 x 4.89 / 8 = 4.908e9 bytes = 4.571 GiB (the whole-file average bpw)
    result = size_model(
        SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=Q4_K_M, engine="llama.cpp", context=4096)
    )
    assert result.weights_gib == pytest.approx(8.03e9 * 4.89 / 8 / GIB)
    assert result.weights_gib == pytest.approx(4.571, abs=0.001)
    # bytes read per token: weights minus the input embedding (a lookup reads one row:
    # 128256 x 4096 x 4.89/8 = 0.321e9 bytes) plus KV at 4096 tokens (4096 x 131072 = 0.537e9)
    # = 4.908e9 - 0.321e9 + 0.537e9 = 5.124e9 bytes; 896e9 / 5.124e9 = 174.9 tokens/s
    read = 8.03e9 * 4.89 / 8 - 128256 * 4096 * 4.89 / 8 + 4096 * 131072
    assert result.decode_tokens_per_s_upper_bound == pytest.approx(896e9 / read)
    assert result.decode_tokens_per_s_upper_bound == pytest.approx(174.9, abs=0.2)
    assert result.fits and result.gpu_layers is None


def test_fp8_keeps_embeddings_in_16_bits() -> None:
    # vLLM's FP8 quantizes Linear layers only: (8.03e9 - 2 x 128256 x 4096) x 1 byte
    # + 2 x 128256 x 4096 x 2 bytes = 6.979e9 + 2.101e9 = 9.081e9 bytes = 8.457 GiB
    result = size_model(SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=FP8, context=16384))
    embeddings = 2 * 128256 * 4096
    assert result.weights_gib == pytest.approx(((8.03e9 - embeddings) * 1 + embeddings * 2) / GIB)
    assert any("lm_head in 16 bits" in line for line in result.estimate_basis)


def test_seed_vllm_deployment_fits_three_full_context_sequences_not_128() -> None:
    # budget 15.92 GiB x 0.85 = 13.532 GiB; weights 8.457 GiB; overhead = 0.35 + 0.40 + activations
    # 2048 x (3 x 14336 + 4 x 4096) x 2 B = 0.2266 GiB + sampler 128 x 128256 x 4 x 2 = 0.1223 GiB
    # = 1.0989 GiB; kv_budget = 13.532 - 8.457 - 1.099 = 3.976 GiB;
    # one 16384-token sequence at fp8 KV = 16384 x 65536 B = 1 GiB -> floor(3.976) = 3 sequences
    inp = SizingInput(
        model=LLAMA_8B,
        device=RTX_5070_TI,
        quant=FP8,
        kv_dtype=FP8,
        context=16384,
        memory_utilization=0.85,
        max_num_seqs=128,
    )
    result = size_model(inp)
    assert result.budget_gib == pytest.approx(13.532)
    assert result.overhead_gib == pytest.approx(0.35 + 0.40 + 2048 * 59392 * 2 / GIB + 128 * 128256 * 8 / GIB)
    assert result.kv_budget_gib == pytest.approx(3.976, abs=0.001)
    assert result.max_concurrent_sequences == 3
    # max_context: 3.976 GiB / 65536 B per token = 65144 tokens (one sequence)
    assert result.max_context == 65144
    assert result.fits


def test_gemma3_sliding_window_caps_local_layers() -> None:
    # per layer per token: 2 x 4 KV heads x 256 x 2 bytes = 4096 bytes; 34 layers -> 139264 B/token
    # at 32768 tokens: 5 global layers x 32768 + 29 local layers x 1024 (window) tokens
    # = (163840 + 29696) x 4096 bytes = 792723456 bytes = 0.7383 GiB (vs 4.25 GiB without the window)
    result = size_model(SizingInput(model=GEMMA3_4B, device=RTX_5070_TI, quant=FP16, context=32768))
    assert result.kv_bytes_per_token == 139264
    assert result.kv_gib_per_sequence == pytest.approx((5 * 32768 + 29 * 1024) * 4096 / GIB)
    assert any("sliding window" in line for line in result.estimate_basis)


def test_70b_on_gtx_1650_splits_layers_and_slows_down() -> None:
    # Llama 3.1 8B at Q4_K_M (4.57 GiB) on a 4 GB GTX 1650 under llama.cpp does not fit whole:
    # budget 3.82 x 0.9 = 3.44 GiB; it must put some layers on the CPU.
    inp = SizingInput(
        model=LLAMA_8B,
        device=GTX_1650,
        quant=Q4_K_M,
        engine="llama.cpp",
        context=4096,
        host=RYZEN_9900X,
        host_ram_gib=64,
    )
    result = size_model(inp)
    assert not result.fits
    assert result.gpu_layers is not None and 0 < result.gpu_layers < 32
    # the split is slower than the GPU alone could be and faster than the CPU alone
    gpu_only = 128e9 / (8.03e9 * 4.89 / 8)
    cpu_only = 89.6e9 / (8.03e9 * 4.89 / 8)
    assert cpu_only < result.decode_tokens_per_s_upper_bound < gpu_only
    # GTX 1650 has no tensor cores: prefill uses the CUDA-core fp16 rate
    assert any("no tensor cores" in line for line in result.estimate_basis)


def test_cpu_needs_host_ram() -> None:
    with pytest.raises(UsageError, match="host_ram_gib"):
        size_model(SizingInput(model=LLAMA_8B, device=RYZEN_9900X, quant=Q4_K_M, engine="llama.cpp"))
    result = size_model(
        SizingInput(
            model=LLAMA_8B,
            device=RYZEN_9900X,
            quant=Q4_K_M,
            engine="llama.cpp",
            host_ram_gib=64,
            context=8192,
        )
    )
    assert result.fits
    # no fp32 dense_tflops in this entry: prefill is unknown and said so
    assert result.prefill_tokens_per_s == 0.0
    assert any("prefill speed unknown" in w for w in result.warnings)


def test_prefill_uses_fp8_tensor_rate_on_blackwell() -> None:
    # FP8 W8A8 on CC 12.0: 351.5 TFLOPS x 0.5 efficiency / (2 x 8.03e9 + 2 x 32 x 32 x 128 x 2048 attention)
    result = size_model(SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=FP8, context=2048))
    flops_per_token = 2 * 8.03e9 + 2 * 32 * 32 * 128 * 2048
    assert result.prefill_tokens_per_s == pytest.approx(351.5e12 * 0.5 / flops_per_token)


def test_engine_estimate_itl_rises_with_batch() -> None:
    inp = SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=Q4_K_M, engine="llama.cpp", context=2048)
    estimate = estimate_engine(inp)
    batches = [batch for batch, _ in estimate.itl_at_batch]
    itls = [itl for _, itl in estimate.itl_at_batch]
    assert batches[0] == 1 and batches[-1] == estimate.max_num_seqs
    assert itls == sorted(itls)
    assert estimate.decode_tokens_per_s == pytest.approx(1 / itls[0])
    # kv capacity in tokens = kv_budget / 131072 bytes per token
    result = size_model(inp)
    assert estimate.kv_capacity_tokens == int(result.kv_budget_gib * GIB // 131072)


def test_mismatches_are_warned_not_hidden() -> None:
    fp8_native = FP8.model_copy(update={"native_min_compute_capability": "8.9"})
    # FP8 on a Turing GTX 1650 (CC 7.5) under llama.cpp: neither native nor an engine that loads it
    result = size_model(SizingInput(model=LLAMA_8B, device=GTX_1650, quant=fp8_native, engine="llama.cpp"))
    assert any("emulates or upcasts" in w for w in result.warnings)
    assert any("listed for vllm, not llama.cpp" in w for w in result.warnings)
    clean = size_model(SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=fp8_native, context=4096))
    assert clean.warnings == []


def test_no_context_given_and_nothing_fits_sizes_a_usable_split() -> None:
    # 8B at Q4_K_M on a 4 GB card with no context: the model's 131072 tokens would need 16 GiB of
    # KV for one sequence; the split is sized at 4096 tokens instead, and says so.
    result = size_model(SizingInput(model=LLAMA_8B, device=GTX_1650, quant=Q4_K_M, engine="llama.cpp"))
    assert result.context == 4096
    assert result.gpu_layers is not None and result.gpu_layers > 0
    assert any("sized at 4096 tokens" in w for w in result.warnings)


def test_long_context_that_does_not_fit_names_the_context_that_does() -> None:
    # weights fit (4.57 GiB of 14.3) but one 131072-token fp16 sequence needs 16 GiB of KV
    result = size_model(
        SizingInput(model=LLAMA_8B, device=RTX_5070_TI, quant=Q4_K_M, engine="llama.cpp", context=131072)
    )
    assert not result.fits
    assert any("a context of at most" in w for w in result.warnings)


def test_engine_estimate_guesses_prefill_when_the_catalog_lacks_a_rate() -> None:
    # The 9900X entry here has no dense_tflops: size_model says unknown (0), but a simulator needs a
    # positive seed, so estimate_engine guesses 12 cores x 3 GHz x 64 FLOPs/cycle (AVX-512) and says so.
    inp = SizingInput(
        model=LLAMA_8B, device=RYZEN_9900X, quant=Q4_K_M, engine="llama.cpp", host_ram_gib=64, context=2048
    )
    assert size_model(inp).prefill_tokens_per_s == 0.0
    estimate = estimate_engine(inp)
    flops_per_token = 2 * 8.03e9 + 2 * 32 * 32 * 128 * 2048
    assert estimate.prefill_tokens_per_s == pytest.approx(12 * 3e9 * 64 * 0.5 / flops_per_token)
    assert any("guessed" in line for line in estimate.basis)
