"""Placements: which model, in which quantization, on which device, at what context and concurrency.

For every device in the fleet the planner sizes each (engine, model, quantization) candidate with
`size_model` and keeps the largest useful model that fits with headroom:

- engines: vLLM where the catalog says it fits the device (ok), llama.cpp everywhere it fits;
- quantizations: for vLLM the catalog's vLLM formats the device runs natively (its tensor cores
  support them); for llama.cpp Q4_K_M, the usual size/quality trade-off of GGUF;
- headroom, tried in order: 8 sequences of 8192 tokens, then 4 of 4096, then 1 of 4096;
- models: the inventory's `models` shortlist when it has one (licenses, taste), else every
  catalog model;
- useful: single-stream decode upper bound >= 30 tokens/s (a reading pace with margin, since real
  engines reach 50-85% of the bound) and prefill >= 50 tokens/s (a 1,000-token prompt answered
  within about 20 s on a CPU).

The first headroom level with any candidate wins; within it vLLM before llama.cpp (continuous
batching and paged KV on GPUs), then the most parameters, then more bits per weight (quality).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog, DeviceKind, ModelArch, Quantization
from wavefleet.plan.inventory import Container, FleetDevice
from wavefleet.plan.moscow import Fit, device_fit
from wavefleet.plan.sizing import SizingInput, SizingResult, size_model

__all__ = [
    "HEADROOM",
    "MIN_DECODE_TOKENS_PER_S",
    "MIN_PREFILL_TOKENS_PER_S",
    "Placement",
    "place_models",
    "sizing_input",
]

HEADROOM: tuple[tuple[int, int], ...] = ((8, 8192), (4, 4096), (1, 4096))
MIN_DECODE_TOKENS_PER_S = 30.0
MIN_PREFILL_TOKENS_PER_S = 50.0
ENGINES = ("vllm", "llama.cpp")
LLAMA_CPP_QUANTS = ("q4_k_m",)


class Placement(BaseModel):
    """One recommended model on one device, with the sizing estimates behind it."""

    model_config = ConfigDict(extra="forbid")

    device: str
    host: str
    container: str | None
    engine: str
    model: str
    quant: str
    kv_dtype: str | None
    context: int
    sequences: int = Field(description="headroom level asked for: this many sequences of `context`")
    max_concurrent_sequences: int
    weights_gib: float
    kv_gib_per_sequence: float
    overhead_gib: float
    budget_gib: float
    kv_budget_gib: float
    decode_tokens_per_s_upper_bound: float
    batched_decode_tokens_per_s: float
    prefill_tokens_per_s: float
    reasons: list[str]
    estimate_basis: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class _Candidate:
    engine: str
    model: ModelArch
    quant: Quantization
    kv_dtype: Quantization | None
    result: SizingResult


def sizing_input(
    device: FleetDevice,
    model: ModelArch,
    quant: Quantization,
    *,
    engine: str,
    catalog: Catalog,
    kv_dtype: Quantization | None = None,
    context: int | None = None,
    max_num_seqs: int | None = None,
    memory_utilization: float = 0.9,
    ram_gib: float | None = None,
) -> SizingInput:
    """The sizing question for `model` on a fleet device, with its host's RAM and CPU filled in."""
    host_cpu = None
    if device.hardware.kind is DeviceKind.GPU and device.host.cpu is not None:
        host_cpu = catalog.hardware.get(device.host.cpu.device)
    return SizingInput(
        model=model,
        device=device.hardware,
        quant=quant,
        kv_dtype=kv_dtype,
        context=context,
        memory_utilization=memory_utilization,
        max_num_seqs=max_num_seqs,
        engine=engine,
        host_ram_gib=ram_gib if ram_gib is not None else device.host.ram_gib,
        host=host_cpu,
    )


def place_models(
    catalog: Catalog, devices: list[FleetDevice], shortlist: list[str] | None = None
) -> list[Placement]:
    """The best useful placement per device (devices where nothing fits get none)."""
    models = [catalog.models[m] for m in shortlist] if shortlist else list(catalog.models.values())
    placements = []
    for device in devices:
        placement = _place(catalog, device, models)
        if placement is not None:
            placements.append(placement)
    return placements


def _place(catalog: Catalog, device: FleetDevice, models: list[ModelArch]) -> Placement | None:
    engines = _engines(catalog, device)
    if not engines:
        return None
    container = _container_for(device, engines)
    ram = container.memory_gib if container is not None and container.memory_gib else None
    for sequences, context in HEADROOM:
        for engine in engines:
            candidates = []
            for quant, kv_dtype in _quants(catalog, device, engine):
                for model in models:
                    candidate = _try(catalog, device, engine, model, quant, kv_dtype, sequences, context, ram)
                    if candidate is not None:
                        candidates.append(candidate)
            if candidates:
                best = max(candidates, key=lambda c: (c.model.params_b, c.quant.bits_per_weight, c.model.id))
                return _placement(device, container, best, sequences, context, len(candidates))
    return None


def _engines(catalog: Catalog, device: FleetDevice) -> list[str]:
    engines = []
    for engine in ENGINES:
        service = catalog.services.get(engine)
        if service is None:
            continue
        fit, _ = device_fit(service, device)
        if fit is Fit.OK or (engine == "llama.cpp" and fit is Fit.PARTIAL):
            engines.append(engine)
    return engines


def _quants(
    catalog: Catalog, device: FleetDevice, engine: str
) -> list[tuple[Quantization, Quantization | None]]:
    if engine == "llama.cpp":
        return [(catalog.quantizations[q], None) for q in LLAMA_CPP_QUANTS if q in catalog.quantizations]
    cc = device.hardware.compute_capability
    if cc is None:
        return []
    chosen = []
    for quant in catalog.quantizations.values():
        if engine not in quant.engines or quant.format == "gguf":
            continue
        native = quant.native_min_compute_capability
        if native is None or _cc(native) > _cc(cc):
            continue
        kv = quant if quant.kv_cache and quant.bits_per_weight <= 8 else None
        chosen.append((quant, kv))
    return chosen


def _try(
    catalog: Catalog,
    device: FleetDevice,
    engine: str,
    model: ModelArch,
    quant: Quantization,
    kv_dtype: Quantization | None,
    sequences: int,
    context: int,
    ram: float | None,
) -> _Candidate | None:
    if model.max_context < context:
        return None
    inp = sizing_input(
        device,
        model,
        quant,
        engine=engine,
        catalog=catalog,
        kv_dtype=kv_dtype,
        context=context,
        max_num_seqs=sequences if engine == "llama.cpp" else None,
        ram_gib=ram,
    )
    result = size_model(inp)
    if not result.fits or result.gpu_layers is not None or result.max_concurrent_sequences < sequences:
        return None
    if result.decode_tokens_per_s_upper_bound < MIN_DECODE_TOKENS_PER_S:
        return None
    if 0 < result.prefill_tokens_per_s < MIN_PREFILL_TOKENS_PER_S:
        return None
    return _Candidate(engine, model, quant, kv_dtype, result)


def _container_for(device: FleetDevice, engines: list[str]) -> Container | None:
    for container in device.host.containers:
        if device.ref.device in container.gpu_passthrough or any(e in container.runs for e in engines):
            return container
    return None


def _placement(
    device: FleetDevice,
    container: Container | None,
    best: _Candidate,
    sequences: int,
    context: int,
    considered: int,
) -> Placement:
    r = best.result
    where = f"{device.host.id}/{container.id}" if container else device.host.id
    reasons = [
        f"largest useful model that fits {sequences} x {context}-token sequences on {device.key} ({where}); "
        f"{considered} candidate(s) met that headroom",
        f"memory (estimate): weights {r.weights_gib:.2f} + overhead {r.overhead_gib:.2f} + KV "
        f"{sequences} x {r.kv_gib_per_sequence:.2f} GiB of a {r.budget_gib:.2f} GiB budget; "
        f"room for {r.max_concurrent_sequences} sequences of {context}",
        f"decode upper bound {r.decode_tokens_per_s_upper_bound:.0f} tokens/s per sequence >= "
        f"{MIN_DECODE_TOKENS_PER_S:g}; prefill {r.prefill_tokens_per_s:.0f} tokens/s >= {MIN_PREFILL_TOKENS_PER_S:g}; "
        f"batched estimate {r.batched_decode_tokens_per_s:.0f} tokens/s (estimates)",
    ]
    return Placement(
        device=device.key,
        host=device.host.id,
        container=container.id if container else None,
        engine=best.engine,
        model=best.model.id,
        quant=best.quant.id,
        kv_dtype=best.kv_dtype.id if best.kv_dtype else None,
        context=context,
        sequences=sequences,
        max_concurrent_sequences=r.max_concurrent_sequences,
        weights_gib=round(r.weights_gib, 3),
        kv_gib_per_sequence=round(r.kv_gib_per_sequence, 4),
        overhead_gib=round(r.overhead_gib, 3),
        budget_gib=round(r.budget_gib, 3),
        kv_budget_gib=round(r.kv_budget_gib, 3),
        decode_tokens_per_s_upper_bound=round(r.decode_tokens_per_s_upper_bound, 1),
        batched_decode_tokens_per_s=round(r.batched_decode_tokens_per_s, 1),
        prefill_tokens_per_s=round(r.prefill_tokens_per_s, 1),
        reasons=reasons,
        estimate_basis=list(r.estimate_basis),
        warnings=list(r.warnings),
    )


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)
