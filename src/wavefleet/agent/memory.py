"""How much memory an engine takes: estimated before it starts, read from it once it runs.

    estimate = estimate_llama_server(summary, context=2048, slots=4, gpu_layers=None)
    estimate.device, estimate.host       # bytes on the model's device, and in host RAM besides
    buffers = EngineBuffers()
    for line in engine_output:
        buffers.feed(line)                   # llama-server's "<buffer> model|KV|compute|output buffer size = N MiB"
    buffers.device_bytes(), buffers.host_bytes()

The estimate is the sizing engine's (`plan.sizing`) for llama-server: the GGUF's tensor bytes, KV
for `context` tokens in each of `slots` slots, the compute buffer of one micro-batch, one logit row
per slot, plus the process's own runtime (libraries and threads on a CPU, the CUDA context on a
GPU). With every layer on a GPU, llama.cpp keeps the input token embedding in host RAM (a row
lookup needs no GPU) and runs a small host-side compute buffer, so those count in `host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wavefleet.catalog.models import ModelArch
from wavefleet.plan.gguf_file import GgufSummary, model_arch
from wavefleet.plan.sizing import (
    GIB,
    LLAMA_CPP_CUDA_CONTEXT_GIB,
    LLAMA_CPP_UBATCH,
    kv_bytes_for_tokens,
    llama_cpp_compute_bytes,
    llama_cpp_output_bytes,
)

__all__ = [
    "CPU_RUNTIME_BYTES",
    "EngineBuffers",
    "MemoryEstimate",
    "estimate_llama_server",
    "fixed_estimate",
]

MIB = 2**20
# What a llama-server process holds beyond its buffers on a CPU: the binary and its libraries,
# thread stacks, the HTTP server. Measured here as RSS minus the logged buffers: 14-29 MiB for
# the bundled model at 256-8192 tokens per slot and 1-4 slots (docs/measurements).
CPU_RUNTIME_BYTES = 24 * MIB
_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB")
_GPU_BUFFER = re.compile(r"^(CUDA|ROCm|Vulkan|SYCL|Metal)\d*$")


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryEstimate:
    """Bytes an engine takes on its own device and, besides, in host RAM (0 for a CPU engine)."""

    device: int
    host: int = 0
    parts: dict[str, int] = field(default_factory=dict)  # weights, kv, compute, output, runtime
    basis: str = ""

    @property
    def total(self) -> int:
        return self.device + self.host


def fixed_estimate(size: int, basis: str) -> MemoryEstimate:
    """An estimate given in agent.yaml (`memory:`) rather than computed."""
    return MemoryEstimate(device=size, parts={"configured": size}, basis=basis)


def estimate_llama_server(
    summary: GgufSummary,
    *,
    context: int,
    slots: int,
    gpu_layers: int | str | None = None,
    on_gpu: bool = False,
) -> MemoryEstimate:
    """The sizing engine's estimate for one llama-server serving `summary`'s file (see the module doc).

    `gpu_layers` on a GPU: None, "all" or "auto" put every layer there; a count splits the layers'
    weights and KV between the GPU and host RAM in proportion."""
    model: ModelArch = model_arch(summary)
    weights = summary.tensor_bytes
    kv = round(kv_bytes_for_tokens(model, _kv_per_layer_token(model), context) * slots)
    compute = round(llama_cpp_compute_bytes(model, context=context, output_rows=slots))
    outputs = round(llama_cpp_output_bytes(model, slots))
    if not on_gpu:
        parts = {
            "weights": weights,
            "kv": kv,
            "compute": compute,
            "output": outputs,
            "runtime": CPU_RUNTIME_BYTES,
        }
        return MemoryEstimate(
            device=sum(parts.values()),
            parts=parts,
            basis=f"sizing engine: {summary.name}, {context} tokens x {slots} slots, in host RAM",
        )
    layers = model.layers
    share = 1.0 if not isinstance(gpu_layers, int) else min(gpu_layers, layers) / layers
    embedding = summary.embedding_bytes
    # tied files reuse token_embd as the output layer, which llama.cpp also places on the GPU
    output_layer = embedding if summary.tied_embeddings else 0
    repeating = weights - embedding
    on_device = round(repeating * share) + (output_layer if share == 1.0 else 0)
    cuda = round(LLAMA_CPP_CUDA_CONTEXT_GIB * GIB)
    host_compute = min(LLAMA_CPP_UBATCH, context * slots) * model.hidden_size * 4
    parts = {
        "weights": on_device,
        "kv": round(kv * share),
        "compute": compute,
        "output": outputs,
        "runtime": cuda,
    }
    host = embedding + (repeating - round(repeating * share)) + (kv - round(kv * share)) + host_compute
    return MemoryEstimate(
        device=sum(parts.values()),
        host=host + CPU_RUNTIME_BYTES,
        parts=parts,
        basis=(
            f"sizing engine: {summary.name}, {context} tokens x {slots} slots, "
            f"{'every layer' if share == 1.0 else f'{gpu_layers} of {layers} layers'} on the GPU; "
            "the input embedding in host RAM"
        ),
    )


def _kv_per_layer_token(model: ModelArch) -> float:
    return 2 * model.kv_heads * model.head_dim * 2.0  # K and V in f16, llama-server's default


class EngineBuffers:
    """The buffer sizes llama-server logs at load (with `-lv 4`), split into GPU and host memory.

    Each (buffer type, kind) is kept once, the last value logged: a re-reserved compute buffer
    replaces the first."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[str, str], int] = {}

    def feed(self, line: str) -> None:
        for name, kind, mib in _BUFFER.findall(line):
            self._sizes[(name, kind)] = round(float(mib) * MIB)

    @property
    def seen(self) -> bool:
        return bool(self._sizes)

    def device_bytes(self) -> int:
        """Bytes in GPU buffers (CUDA0, ...)."""
        return sum(v for (name, _), v in self._sizes.items() if _GPU_BUFFER.match(name))

    def host_bytes(self) -> int:
        """Bytes in host buffers (CPU, CPU_Mapped, CUDA_Host, ...)."""
        return sum(v for (name, _), v in self._sizes.items() if not _GPU_BUFFER.match(name))

    def by_kind(self) -> dict[str, int]:
        """Bytes per kind (model, KV, compute, output) over every buffer type."""
        out: dict[str, int] = {}
        for (_, kind), value in self._sizes.items():
            out[kind] = out.get(kind, 0) + value
        return out
