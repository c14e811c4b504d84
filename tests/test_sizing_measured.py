"""The arithmetic against real measurements, and mixture-of-experts reads.

docs/data/gpu-h200 holds llama.cpp (CUDA build) runs of Llama-3.1-8B-shaped GGUFs on an NVIDIA
H200 (llama-bench, llama-batched-bench). A bound must never be beaten by a real run, and the
estimates must stay upper estimates of what llama.cpp reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wavefleet.catalog.models import DeviceKind, Hardware, ModelArch, Quantization
from wavefleet.plan.sizing import SizingInput, estimate_engine, size_model

from .test_sizing_arithmetic import LLAMA_8B, Q4_K_M, RTX_5070_TI, SRC

# NVIDIA H200 datasheet: 141 GB HBM3e at 4.8 TB/s, CC 9.0; dense 989.5 TFLOPS 16-bit, 1979 FP8/INT8.
H200 = Hardware(
    id="h200",
    name="NVIDIA H200",
    vendor="nvidia",
    kind=DeviceKind.GPU,
    architecture="Hopper GH100",
    memory_gib=131.0,
    memory_bandwidth_gbs=4800,
    compute_capability="9.0",
    tensor_precisions=["fp16", "bf16", "fp8", "int8"],
    dense_tflops={"fp16": 989.5, "bf16": 989.5, "fp8": 1979, "int8": 1979},
    tdp_w=700,
    sources=SRC,
)
DATA = Path(__file__).resolve().parent.parent / "docs" / "data" / "gpu-h200"


def gguf_quant(model_type: str) -> Quantization:
    kind = model_type.removeprefix("llama 8B ")
    return Quantization(
        id="measured", name=kind, bits_per_weight=16, format="gguf", engines=["llama.cpp"], sources=SRC
    )


def bench_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in ("llama-bench.json", "llama-bench-depth.json"):
        rows += [row for row in json.loads((DATA / name).read_text()) if row["n_gen"]]
    return rows


@pytest.mark.parametrize("row", bench_rows(), ids=lambda r: f"{r['model_type']}-depth{r['n_depth']}")
def test_single_stream_runs_on_h200_stay_under_the_bound(row: dict[str, object]) -> None:
    depth = int(str(row["n_depth"]))
    inp = SizingInput(
        model=LLAMA_8B,
        device=H200,
        quant=gguf_quant(str(row["model_type"])),
        engine="llama.cpp",
        context=depth + 1,
        weights_bytes=int(str(row["model_size"])),  # the file's real tensor bytes
    )
    measured = float(str(row["avg_ts"]))
    bound = size_model(inp).decode_tokens_per_s_upper_bound
    estimate = estimate_engine(inp).decode_tokens_per_s
    assert measured <= bound
    # the estimate (80% of peak bandwidth + 1.5 ms per step) lands within 1.5x of the real run
    assert measured / 1.5 <= estimate <= measured * 1.5


def test_batched_runs_on_h200_stay_under_the_estimate() -> None:
    # llama-batched-bench: 512-token prompts, 128 generated tokens, pl sequences at once.
    runs = [
        json.loads(line) for line in (DATA / "batched-q4km.jsonl").read_text().splitlines() if line.strip()
    ]
    assert len(runs) == 8
    for run in runs:
        sequences = int(run["pl"])
        inp = SizingInput(
            model=LLAMA_8B,
            device=H200,
            quant=Q4_K_M,
            engine="llama.cpp",
            context=640,
            max_num_seqs=sequences,
            weights_bytes=4912898048,
        )
        result = size_model(inp)
        assert result.max_concurrent_sequences == sequences
        assert float(run["speed_tg"]) <= result.batched_decode_tokens_per_s


QWEN3_30B_A3B = ModelArch(
    id="qwen3-30b-a3b",
    name="Qwen3 30B A3B",
    family="qwen3-moe",
    params_b=30.5,
    active_params_b=3.3,
    experts=128,
    experts_per_token=8,
    layers=48,
    hidden_size=2048,
    attention_heads=32,
    kv_heads=4,
    head_dim=128,
    intermediate_size=6144,
    vocab_size=151936,
    max_context=40960,
    sources=SRC,
)


def test_mixture_of_experts_reads_only_routed_experts() -> None:
    # Q4_K_M weights: 30.5e9 x 4.89 / 8 = 18.64e9 bytes, all resident (17.36 GiB > 14.3 GiB budget
    # of a 5070 Ti, so use an H200 here). Read per token: drop the untied input embedding
    # (151936 x 2048 x 4.89/8 = 0.190e9), then experts X = (30.5 - 3.3) / (1 - 8/128) = 29.01e9 of
    # the 30.5e9 parameters (95.1%) are read at 8/128 = 1/16, the rest whole:
    # 18.45e9 x (0.0488 + 0.9512 / 16) = 2.00e9 bytes, plus KV at 1 token (98304 B).
    weights = 30.5e9 * 4.89 / 8
    dense_read = weights - 151936 * 2048 * 4.89 / 8
    experts = (30.5 - 3.3) / (1 - 8 / 128) / 30.5
    read = dense_read * ((1 - experts) + experts / 16) + 2 * 48 * 4 * 128 * 2
    result = size_model(
        SizingInput(model=QWEN3_30B_A3B, device=H200, quant=Q4_K_M, engine="llama.cpp", context=1)
    )
    assert result.weights_gib * 2**30 == pytest.approx(weights)
    assert result.decode_tokens_per_s_upper_bound == pytest.approx(4800e9 / read)
    assert any("mixture of experts" in line for line in result.estimate_basis)
    # the same weights as a dense model would read 9x more per token
    dense = QWEN3_30B_A3B.model_copy(
        update={"active_params_b": None, "experts": None, "experts_per_token": None}
    )
    dense_result = size_model(
        SizingInput(model=dense, device=H200, quant=Q4_K_M, engine="llama.cpp", context=1)
    )
    assert dense_result.decode_tokens_per_s_upper_bound * 8 < result.decode_tokens_per_s_upper_bound
    # and it does not fit a 16 GB card whole, however few parameters a token uses
    assert not size_model(
        SizingInput(model=QWEN3_30B_A3B, device=RTX_5070_TI, quant=Q4_K_M, engine="llama.cpp")
    ).fits


def test_batch_of_experts_reads_more_of_them() -> None:
    # a batch of 64 tokens touches 1 - (15/16)^64 = 98.4% of the experts: step time grows with batch
    inp = SizingInput(
        model=QWEN3_30B_A3B, device=H200, quant=Q4_K_M, engine="llama.cpp", context=512, max_num_seqs=64
    )
    curve = dict(estimate_engine(inp).itl_at_batch)
    assert curve[64] > curve[8] > curve[1]
