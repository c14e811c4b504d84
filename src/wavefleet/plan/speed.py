"""Speed estimates from first principles: decode is bound by memory bandwidth, prefill by compute.

Every function returns plain numbers; `sizing.py` turns them into results with their basis lines.
The efficiency constants are assumptions, stated here once and repeated in each result's basis.
"""

from __future__ import annotations

from dataclasses import dataclass

from wavefleet.catalog.models import DeviceKind, Hardware, Quantization

__all__ = [
    "BANDWIDTH_EFFICIENCY",
    "PREFILL_COMPUTE_EFFICIENCY",
    "STEP_OVERHEAD_S",
    "ComputeRate",
    "assumed_rate",
    "compute_rate",
    "decode_step_seconds",
]

# Share of theoretical peak bandwidth a decode step reaches. GPU decode kernels in vLLM and
# llama.cpp reach roughly 70-85% of peak on large matrices; CPUs reach less of their DRAM peak
# in practice. Assumptions to calibrate with `wave bench`, not measurements.
BANDWIDTH_EFFICIENCY: dict[DeviceKind, float] = {
    DeviceKind.GPU: 0.80,
    DeviceKind.SOC: 0.70,
    DeviceKind.CPU: 0.60,
}
# Fixed time per decode step beyond moving bytes (kernel launches, sampling, scheduling). Fit to
# llama.cpp's CUDA decode of Llama-3.1-8B shapes on an H200 (docs/data/gpu-h200/llama-bench.json):
# after weights at 80% of peak bandwidth, 0.9 ms (F16), 1.9 ms (Q8_0) and 2.5 ms (Q4_K_M) per token
# remain; 1.5 ms sits between them. CPUs: not modelled (their bandwidth term dominates).
STEP_OVERHEAD_S: dict[DeviceKind, float] = {
    DeviceKind.GPU: 1.5e-3,
    DeviceKind.SOC: 1.5e-3,
    DeviceKind.CPU: 0.0,
}
# Share of dense peak tensor throughput a prefill reaches (model FLOPs utilization); 0.5 is a
# middle value for large GEMMs; an assumption.
PREFILL_COMPUTE_EFFICIENCY = 0.5


@dataclass(frozen=True)
class ComputeRate:
    """Dense peak FLOP/s of the precision the engine really computes in, and why that one."""

    flops_per_s: float  # 0.0 when unknown
    precision: str
    reason: str


def compute_rate(device: Hardware, quant: Quantization, engine: str) -> ComputeRate:
    """The dense peak rate for the math this quantization runs on this device."""
    tflops = device.dense_tflops
    if device.kind is DeviceKind.CPU:
        if "fp32" in tflops:
            return ComputeRate(
                tflops["fp32"] * 1e12, "fp32", "CPU vector units, fp32 dense peak from the catalog"
            )
        return ComputeRate(
            0.0, "unknown", "the catalog has no fp32 dense_tflops for this CPU: compute rate unknown"
        )
    has_tensor_cores = bool(device.tensor_precisions)
    if not has_tensor_cores:
        for precision in ("fp16", "fp32"):
            if precision in tflops:
                return ComputeRate(
                    tflops[precision] * 1e12, precision, f"no tensor cores: {precision} CUDA-core rate"
                )
        return ComputeRate(0.0, "unknown", "no tensor cores and no dense_tflops in the catalog: unknown")
    capability = _capability(device.compute_capability)
    wants: list[tuple[str, str]] = []
    if quant.format == "fp8" and "fp8" in device.tensor_precisions and capability >= (8, 9):
        wants.append(("fp8", "FP8 weights and activations (W8A8) on tensor cores, CC >= 8.9"))
    elif quant.format == "fp8":
        wants.append(("fp16", "FP8 weights upcast to 16-bit (W8A16): this GPU has no FP8 tensor cores"))
    if quant.format == "fp4" and "fp4" in device.tensor_precisions:
        wants.append(("fp4", "FP4 tensor cores"))
    if quant.format == "gguf" and engine == "llama.cpp" and "int8" in tflops:
        wants.append(("int8", "llama.cpp's quantized matmul (MMQ) runs int8 tensor-core math"))
    wants += [("bf16", "16-bit tensor cores"), ("fp16", "16-bit tensor cores"), ("fp32", "fp32 CUDA cores")]
    for precision, reason in wants:
        if precision in tflops:
            return ComputeRate(tflops[precision] * 1e12, precision, reason)
    return ComputeRate(
        0.0, "unknown", "the catalog has no dense_tflops for this device: compute rate unknown"
    )


# For a seed that must be positive when the catalog has no rate: cores x clock x FLOPs per cycle,
# with an assumed 3 GHz all-core clock and two FMA units (fp32 lanes x 2 FLOPs x 2 units:
# AVX-512 64, AVX2 32, otherwise 16 FLOPs per cycle per core).
ASSUMED_CLOCK_GHZ = 3.0


def assumed_rate(device: Hardware) -> ComputeRate:
    """A stated guess for devices whose dense rate the catalog lacks (never used by size_model)."""
    isa = {name.lower() for name in device.isa}
    per_cycle = 64 if any(name.startswith("avx512") for name in isa) else 32 if "avx2" in isa else 16
    units = device.cores or (device.cuda_cores // 64 if device.cuda_cores else 4)
    flops = units * ASSUMED_CLOCK_GHZ * 1e9 * per_cycle
    return ComputeRate(
        flops,
        "fp32 (assumed)",
        f"guessed: {units} cores x {ASSUMED_CLOCK_GHZ:g} GHz x {per_cycle} FLOPs/cycle; add dense_tflops to the catalog",
    )


def decode_step_seconds(
    bytes_read: float,
    flops: float,
    bandwidth_bytes_per_s: float,
    rate: ComputeRate,
    bandwidth_efficiency: float,
    overhead_s: float = 0.0,
) -> float:
    """Time of one decode step: the slower of reading memory and doing the math, plus fixed overhead."""
    memory_s = bytes_read / (bandwidth_bytes_per_s * bandwidth_efficiency)
    if rate.flops_per_s <= 0:
        return memory_s + overhead_s
    compute_s = flops / (rate.flops_per_s * PREFILL_COMPUTE_EFFICIENCY)
    return max(memory_s, compute_s) + overhead_s


def _capability(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 0)
    major, minor = text.split(".")
    return (int(major), int(minor))
