"""Placements: which model, in which quantization, on which device, for what workload.

For every device in the fleet the planner sizes each (engine, model, quantization) candidate with
`size_model` at the workload a person puts on it, and keeps the largest model that meets the
workload's speed floor:

- workload: the primary serving goal's (the highest-weight goal an engine serves), from the
  inventory's `workload:` or one person's defaults: requests in flight, prompt and answer length,
  a speed floor per request and a longest acceptable wait for the first token; every request gets
  `max(typical_context, prompt + answer)` tokens of KV;
- engines: vLLM where the catalog says it fits the device (ok), llama.cpp everywhere it fits;
- quantizations: for vLLM the catalog's vLLM formats the device runs natively (its tensor cores
  support them); for llama.cpp Q4_K_M, the usual size/quality trade-off of GGUF;
- models: the inventory's `models` shortlist when it has one (licenses, taste), else every
  catalog model;
- meets the floor: the whole model and the workload's requests fit, each request decodes at least
  at the floor (the batched estimate at that many requests, divided among them), and the prompt
  is prefilled within the wait;
- one container never runs two servers of one model: a second device in the same container gets
  the largest other model that meets the floor.

The first engine with any candidate wins (vLLM before llama.cpp: continuous batching and paged KV
on GPUs); within it the most parameters, then more bits per weight (quality).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from wavefleet.catalog import Catalog, DeviceKind, ModelArch, Quantization
from wavefleet.plan.inventory import DEFAULT_GOAL_WORKLOADS, Container, FleetDevice, Inventory
from wavefleet.plan.moscow import Fit, device_fit
from wavefleet.plan.sizing import SizingInput, SizingResult, size_model

__all__ = [
    "NotPlaced",
    "Placement",
    "ServingLoad",
    "place_models",
    "serving_load",
    "sizing_input",
]

ENGINES = ("vllm", "llama.cpp")
LLAMA_CPP_QUANTS = ("q4_k_m",)


class ServingLoad(BaseModel):
    """The workload a device's server is sized for: one goal's, at the inventory's context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str
    concurrent_requests: int
    prompt_tokens: int
    output_tokens: int
    context: int = Field(description="KV tokens per request: max(typical context, prompt + answer)")
    min_tokens_per_s: float
    max_ttft_s: float


class Placement(BaseModel):
    """One recommended model on one device, with the sizing estimates behind it."""

    model_config = ConfigDict(extra="forbid")

    device: str
    host: str
    container: str | None
    platform: str
    engine: str
    model: str
    quant: str
    kv_dtype: str | None
    goal: str = Field(description="the serving goal whose workload it is sized for")
    context: int = Field(description="KV tokens per request (the workload's)")
    sequences: int = Field(description="requests in flight at once (the workload's)")
    prompt_tokens: int
    output_tokens: int
    max_concurrent_sequences: int = Field(description="requests of `context` tokens the memory holds")
    weights_gib: float
    kv_gib_per_sequence: float
    overhead_gib: float
    budget_gib: float
    kv_budget_gib: float
    decode_tokens_per_s_upper_bound: float = Field(description="one stream at `context` tokens")
    batched_decode_tokens_per_s: float = Field(description="all `sequences` together at `context` tokens")
    per_request_tokens_per_s: float = Field(description="batched estimate / sequences")
    min_tokens_per_s: float
    prefill_tokens_per_s: float
    ttft_s: float = Field(description="prompt_tokens / prefill, no queueing (estimate)")
    max_ttft_s: float
    longest_context: int = Field(description="the longest single request that fits")
    decode_bound_at_longest_tokens_per_s: float
    reasons: list[str]
    estimate_basis: list[str]
    warnings: list[str]


class NotPlaced(BaseModel):
    """A device the planner puts no model on, and why."""

    model_config = ConfigDict(extra="forbid")

    device: str
    host: str
    reason: str


@dataclass(frozen=True)
class _Candidate:
    engine: str
    model: ModelArch
    quant: Quantization
    kv_dtype: Quantization | None
    result: SizingResult
    per_request: float
    ttft_s: float


@dataclass(frozen=True)
class _Rejected:
    model: ModelArch
    quant: Quantization
    why: str


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


def serving_load(inventory: Inventory, catalog: Catalog) -> ServingLoad:
    """The primary serving goal's workload: the highest-weight goal an engine serves."""
    served = {g for e in ENGINES if e in catalog.services for g in catalog.services[e].serves_goals}
    goals = sorted(
        (
            g
            for g in inventory.goals
            if g.tag in served and g.weight > 0 and inventory.workload.for_goal(g.tag)
        ),
        key=lambda g: -g.weight,
    )
    tag = goals[0].tag if goals else "llm-serving"
    work = inventory.workload.for_goal(tag) or DEFAULT_GOAL_WORKLOADS["llm-serving"]
    return ServingLoad(
        goal=tag,
        concurrent_requests=work.concurrent_requests,
        prompt_tokens=work.prompt_tokens,
        output_tokens=work.output_tokens,
        context=max(inventory.workload.typical_context, work.prompt_tokens + work.output_tokens),
        min_tokens_per_s=work.min_tokens_per_s,
        max_ttft_s=work.max_ttft_s,
    )


def place_models(
    catalog: Catalog,
    devices: list[FleetDevice],
    load: ServingLoad,
    shortlist: list[str] | None = None,
) -> tuple[list[Placement], list[NotPlaced]]:
    """The largest model that meets the load's floor, per device; the devices that get none, and why."""
    models = [catalog.models[m] for m in shortlist] if shortlist else list(catalog.models.values())
    placements: list[Placement] = []
    unplaced: list[NotPlaced] = []
    # GPUs first: in a container with a GPU and the host's CPU, the faster device picks first.
    for device in sorted(devices, key=lambda d: d.hardware.kind is DeviceKind.CPU):
        engines = _engines(catalog, device)
        container = _container_for(device, engines)
        taken = {
            p.model
            for p in placements
            if container is not None and p.host == device.host.id and p.container == container.id
        }
        found = _place(catalog, device, engines, container, models, load, taken)
        if isinstance(found, Placement):
            placements.append(found)
        else:
            unplaced.append(NotPlaced(device=device.key, host=device.host.id, reason=found))
    order = {d.key: i for i, d in enumerate(devices)}
    placements.sort(key=lambda p: order[p.device])
    unplaced.sort(key=lambda n: order[n.device])
    return placements, unplaced


def _place(
    catalog: Catalog,
    device: FleetDevice,
    engines: list[str],
    container: Container | None,
    models: list[ModelArch],
    load: ServingLoad,
    taken: set[str],
) -> Placement | str:
    if not engines:
        return f"no serving engine the planner sizes ({', '.join(ENGINES)}) runs on {device.key}"
    ram = container.memory_gib if container is not None and container.memory_gib else None
    rejected: list[_Rejected] = []
    for engine in engines:
        candidates = []
        for quant, kv_dtype in _quants(catalog, device, engine):
            for model in models:
                if model.id in taken:
                    continue
                tried = _try(catalog, device, engine, model, quant, kv_dtype, load, ram)
                if isinstance(tried, _Candidate):
                    candidates.append(tried)
                elif tried is not None:
                    rejected.append(tried)
        if candidates:
            best = max(candidates, key=lambda c: (c.model.params_b, c.quant.bits_per_weight, c.model.id))
            larger = [r for r in rejected if r.model.params_b > best.model.params_b]
            return _placement(catalog, device, container, best, load, larger, taken, ram)
    where = f" (besides {', '.join(sorted(taken))} in the same container)" if taken else ""
    smallest = min(rejected, key=lambda r: r.model.params_b, default=None)
    why = f"; the smallest, {smallest.model.id} {smallest.quant.id}: {smallest.why}" if smallest else ""
    return f"no model meets the {load.goal} workload on {device.key}{where}{why}"


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
    load: ServingLoad,
    ram: float | None,
) -> _Candidate | _Rejected | None:
    """The candidate at the load, a rejection saying why (when the model could be run), or None."""
    if model.max_context < load.context:
        return None
    inp = sizing_input(
        device,
        model,
        quant,
        engine=engine,
        catalog=catalog,
        kv_dtype=kv_dtype,
        context=load.context,
        max_num_seqs=load.concurrent_requests,
        ram_gib=ram,
    )
    result = size_model(inp)
    n = load.concurrent_requests
    if not result.fits or result.gpu_layers is not None or result.max_concurrent_sequences < n:
        return _Rejected(model, quant, f"{n} requests of {load.context} tokens do not fit whole")
    per_request = result.batched_decode_tokens_per_s / n
    if per_request < load.min_tokens_per_s:
        return _Rejected(
            model,
            quant,
            f"{per_request:.1f} tokens/s per request at {n} requests < the {load.min_tokens_per_s:g} floor",
        )
    if result.prefill_tokens_per_s <= 0:
        return _Rejected(model, quant, "prefill speed unknown (the catalog has no compute rate)")
    ttft = load.prompt_tokens / result.prefill_tokens_per_s
    if ttft > load.max_ttft_s:
        return _Rejected(
            model, quant, f"a {load.prompt_tokens}-token prompt takes {ttft:.1f} s > {load.max_ttft_s:g} s"
        )
    return _Candidate(engine, model, quant, kv_dtype, result, per_request, ttft)


def _container_for(device: FleetDevice, engines: list[str]) -> Container | None:
    for container in device.host.containers:
        if device.ref.device in container.gpu_passthrough or any(e in container.runs for e in engines):
            return container
    return None


def _placement(
    catalog: Catalog,
    device: FleetDevice,
    container: Container | None,
    best: _Candidate,
    load: ServingLoad,
    larger: list[_Rejected],
    taken: set[str],
    ram: float | None,
) -> Placement:
    r = best.result
    where = f"{device.host.id}/{container.id}" if container else device.host.id
    room = size_model(
        sizing_input(
            device, best.model, best.quant, engine=best.engine, catalog=catalog, kv_dtype=best.kv_dtype,
            context=load.context, ram_gib=ram,
        )
    )  # fmt: skip
    longest = size_model(
        sizing_input(
            device, best.model, best.quant, engine=best.engine, catalog=catalog, kv_dtype=best.kv_dtype,
            max_num_seqs=1, ram_gib=ram,
        )
    )  # fmt: skip
    reasons = [
        f"sized for the {load.goal} workload: {load.concurrent_requests} request(s) at once, "
        f"{load.prompt_tokens}-token prompts and {load.output_tokens}-token answers, {load.context} tokens "
        f"of KV each; floor {load.min_tokens_per_s:g} tokens/s per request, first token within "
        f"{load.max_ttft_s:g} s",
        f"largest model that meets it on {device.key} ({where}): {best.per_request:.1f} tokens/s per "
        f"request (batched estimate {r.batched_decode_tokens_per_s:.0f} / {load.concurrent_requests}), "
        f"first token after {best.ttft_s:.1f} s (prefill {r.prefill_tokens_per_s:.0f} tokens/s)",
    ]
    if larger:
        biggest = max(larger, key=lambda x: x.model.params_b)
        reasons.append(f"larger candidates miss it: {biggest.model.id} {biggest.quant.id}: {biggest.why}")
    if taken:
        reasons.append(
            f"{', '.join(sorted(taken))} already serve(s) in {where}: one container runs one server per model"
        )
    reasons.append(
        f"memory (estimate): weights {r.weights_gib:.2f} + overhead {r.overhead_gib:.2f} + KV "
        f"{load.concurrent_requests} x {r.kv_gib_per_sequence:.2f} GiB of a {r.budget_gib:.2f} GiB budget; "
        f"room for {room.max_concurrent_sequences} requests of {load.context} tokens; the longest single "
        f"request that fits is {longest.max_context:,} tokens (decode bound there "
        f"{longest.decode_tokens_per_s_upper_bound:.0f} tokens/s)"
    )
    return Placement(
        device=device.key,
        host=device.host.id,
        container=container.id if container else None,
        platform=device.host.platform.value,
        engine=best.engine,
        model=best.model.id,
        quant=best.quant.id,
        kv_dtype=best.kv_dtype.id if best.kv_dtype else None,
        goal=load.goal,
        context=load.context,
        sequences=load.concurrent_requests,
        prompt_tokens=load.prompt_tokens,
        output_tokens=load.output_tokens,
        max_concurrent_sequences=room.max_concurrent_sequences,
        weights_gib=round(r.weights_gib, 3),
        kv_gib_per_sequence=round(r.kv_gib_per_sequence, 4),
        overhead_gib=round(r.overhead_gib, 3),
        budget_gib=round(r.budget_gib, 3),
        kv_budget_gib=round(r.kv_budget_gib, 3),
        decode_tokens_per_s_upper_bound=round(r.decode_tokens_per_s_upper_bound, 1),
        batched_decode_tokens_per_s=round(r.batched_decode_tokens_per_s, 1),
        per_request_tokens_per_s=round(best.per_request, 1),
        min_tokens_per_s=load.min_tokens_per_s,
        prefill_tokens_per_s=round(r.prefill_tokens_per_s, 1),
        ttft_s=round(best.ttft_s, 2),
        max_ttft_s=load.max_ttft_s,
        longest_context=longest.max_context,
        decode_bound_at_longest_tokens_per_s=round(longest.decode_tokens_per_s_upper_bound, 1),
        reasons=reasons,
        estimate_basis=list(r.estimate_basis),
        warnings=list(r.warnings),
    )


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)
