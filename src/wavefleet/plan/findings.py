"""Findings: what is wrong or doubtful in the deployments and facts an inventory states.

Every finding carries the numbers it rests on. Severities: `error` = will not work as written, or a
claim the physics rules out; `warning` = works, but not as stated or promised; `info` = worth
knowing. Speed bounds are estimates from the sizing engine (bandwidth / bytes read per token;
prefill FLOPs / peak compute), so a claim above a bound is flagged as impossible, and one above
the estimate (below the bound) as unlikely.
"""

from __future__ import annotations

import math
from collections import defaultdict
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from wavefleet.catalog import Catalog, DeviceKind, Hardware, Quantization, Service
from wavefleet.engines import KvCache, sizing_engine, sizing_kind
from wavefleet.plan.inventory import Container, Deployment, FleetDevice, Inventory
from wavefleet.plan.moscow import Fit, device_fit
from wavefleet.plan.placement import sizing_input
from wavefleet.plan.sizing import GIB, SizingResult, size_model

__all__ = [
    "FACT_TOLERANCE",
    "MIN_SLOT_CONTEXT",
    "DeploymentSizing",
    "Finding",
    "FindingCode",
    "Severity",
    "check_inventory",
    "size_deployment",
]

FACT_TOLERANCE = 0.02  # within 2% of the catalog agrees (rounding); 285 W vs 300 W does not
MIN_SLOT_CONTEXT = 2048  # tokens per llama.cpp slot below which chat with history gets cut off
# llama-server's --ctx-size when none is given (common.h n_ctx; assumption: newer builds may load
# the model's full context instead).
LLAMA_CPP_DEFAULT_CTX = 4096
CLAIM_OUTPUT_TOKENS = 256  # answer length assumed when a claim gives only its prompt length
Numbers = dict[str, float | int | str]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class FindingCode(StrEnum):
    """Which check a finding comes from (docs/plan.md lists when each fires). Codes are stable, so
    scripts match on them; the message's wording may change."""

    UNSUPPORTED_DEVICE = "unsupported-device"
    PARTIAL_SUPPORT = "partial-support"
    CONTEXT_TOO_LONG = "context-too-long"
    DOES_NOT_FIT = "does-not-fit"
    KV_CAPACITY = "kv-capacity"
    CLAIM_ABOVE_BOUND = "claim-above-bound"
    CLAIM_ABOVE_ESTIMATE = "claim-above-estimate"
    CLAIM_CONCURRENCY = "claim-concurrency"
    CLAIM_BELOW_TTFT_BOUND = "claim-below-ttft-bound"
    CLAIM_CONSERVATIVE = "claim-conservative"
    TTFT_UNCHECKED = "ttft-unchecked"
    PORT_CLASH = "port-clash"
    GPU_OVERSUBSCRIBED = "gpu-oversubscribed"
    SLOT_CONTEXT = "slot-context"
    FULL_OFFLOAD = "full-offload"
    LAYER_SPLIT = "layer-split"
    SPLIT_DOES_NOT_FIT = "split-does-not-fit"
    QUANT_ENGINE = "quant-engine"
    QUANT_NOT_NATIVE = "quant-not-native"
    QUANT_NOT_ON_CPU = "quant-not-on-cpu"
    THREADS = "threads"
    CONTAINER_MEMORY = "container-memory"
    CONTAINER_MEMORY_UNKNOWN = "container-memory-unknown"
    SEED_FACT_CONTRADICTED = "seed-fact-contradicted"
    SEED_FACTS_AGREE = "seed-facts-agree"


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity
    code: FindingCode
    subject: str
    message: str
    numbers: Numbers


class DeploymentSizing(BaseModel):
    """A deployment's sizing, kept for the memory chart."""

    model_config = ConfigDict(extra="forbid")

    deployment: str
    device: str
    engine: str
    result: SizingResult
    reserved_gib: float
    split_bound_tokens_per_s: float | None


def check_inventory(
    inventory: Inventory, catalog: Catalog, devices: list[FleetDevice]
) -> tuple[list[Finding], list[DeploymentSizing]]:
    """Findings for every deployment, for what deployments share, and for stated facts."""
    findings: list[Finding] = []
    sizings: list[DeploymentSizing] = []
    for deployment in inventory.deployments:
        device = _device_of(deployment, devices)
        found, sizing = _check_deployment(inventory, catalog, deployment, device)
        findings += found
        if sizing is not None:
            sizings.append(sizing)
    findings += _port_clashes(inventory)
    findings += _shared_gpus(inventory, devices, sizings)
    findings += _container_memory(inventory)
    findings += _facts(inventory, catalog)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: (order[f.severity], f.subject, f.code))
    return findings, sizings


def _device_of(deployment: Deployment, devices: list[FleetDevice]) -> FleetDevice | None:
    for device in devices:
        if device.host.id == deployment.host and device.ref.device == deployment.device:
            return device
    return None


def size_deployment(
    catalog: Catalog, deployment: Deployment, device: FleetDevice, ram_gib: float | None = None
) -> tuple[SizingResult, str] | None:
    """Size a deployment as written: llama.cpp's --ctx-size is shared by its --parallel slots."""
    if deployment.model is None or deployment.quant is None:
        return None
    engine = sizing_engine(deployment.service)
    model = catalog.models[deployment.model]
    quant = catalog.quantizations[deployment.quant]
    kv = catalog.quantizations[deployment.kv_dtype] if deployment.kv_dtype else None
    context = deployment.max_model_len
    seqs = deployment.max_num_seqs
    if engine == "llama.cpp":
        seqs = deployment.parallel or deployment.max_num_seqs
        context = context or LLAMA_CPP_DEFAULT_CTX
        if seqs:
            context = max(1, context // seqs)
    inp = sizing_input(
        device,
        model,
        quant,
        engine=engine,
        catalog=catalog,
        kv_dtype=kv,
        context=context,
        max_num_seqs=seqs,
        memory_utilization=deployment.gpu_memory_utilization or 0.9,
        ram_gib=ram_gib,
    )
    return size_model(inp), engine


def _check_deployment(
    inventory: Inventory, catalog: Catalog, d: Deployment, device: FleetDevice | None
) -> tuple[list[Finding], DeploymentSizing | None]:
    out: list[Finding] = []
    service = catalog.services[d.service]
    if device is None:
        return out, None
    hw = device.hardware
    fit, why = device_fit(service, device)
    if fit is Fit.NO:
        out.append(
            _f(
                Severity.ERROR,
                FindingCode.UNSUPPORTED_DEVICE,
                d.id,
                f"{service.name} does not run on {hw.name}: {why}",
                service=service.id,
                device=hw.id,
            )
        )
    elif fit is Fit.PARTIAL:
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.PARTIAL_SUPPORT,
                d.id,
                f"{service.name} on {hw.name} works with caveats: {why}",
                service=service.id,
                device=hw.id,
            )
        )
    if d.model is None or d.quant is None:
        return out, None
    model = catalog.models[d.model]
    quant = catalog.quantizations[d.quant]
    out += _quant_findings(d, service, quant, hw)
    if d.max_model_len is not None and d.max_model_len > model.max_context:
        out.append(
            _f(
                Severity.ERROR,
                FindingCode.CONTEXT_TOO_LONG,
                d.id,
                f"max_model_len {d.max_model_len} > {model.id}'s maximum context {model.max_context}",
                max_model_len=d.max_model_len,
                model_max_context=model.max_context,
            )
        )
    container = _container(inventory, d)
    ram = container.memory_gib if container is not None and container.memory_gib else None
    sized = size_deployment(catalog, d, device, ram)
    if sized is None:
        return out, None
    result, engine = sized
    split = _split_bound(catalog, d, device, result, out)
    bound = split if split is not None else result.decode_tokens_per_s_upper_bound
    if split is None:
        out += _fit_findings(d, hw, result, engine)
    out += _slot_findings(d, engine, device, container)
    out += _claim_findings(inventory, catalog, d, device, result, bound, ram)
    reserved = _reserved_gib(d, engine, device, result, split is not None)
    return out, DeploymentSizing(
        deployment=d.id,
        device=device.key,
        engine=engine,
        result=result,
        reserved_gib=round(reserved, 3),
        split_bound_tokens_per_s=round(split, 2) if split is not None else None,
    )


def _quant_findings(d: Deployment, service: Service, quant: Quantization, hw: Hardware) -> list[Finding]:
    out = []
    engine = sizing_engine(service.id)
    if service.id not in quant.engines and engine not in quant.engines:
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.QUANT_ENGINE,
                d.id,
                f"{quant.name} is not a format the catalog lists for {service.name} "
                f"(it loads in {', '.join(quant.engines)})",
                quant=quant.id,
            )
        )
    if hw.kind is DeviceKind.CPU and not quant.runs_on_cpu:
        out.append(
            _f(
                Severity.ERROR,
                FindingCode.QUANT_NOT_ON_CPU,
                d.id,
                f"{quant.name} does not run on a CPU; {hw.id} is one",
                quant=quant.id,
            )
        )
    native = quant.native_min_compute_capability
    if native and hw.compute_capability and _cc(hw.compute_capability) < _cc(native):
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.QUANT_NOT_NATIVE,
                d.id,
                f"{quant.name} runs natively from CC {native}; {hw.name} is CC {hw.compute_capability}, "
                "so it is emulated or upcast (memory savings, no compute speed-up)",
                native_min_cc=native,
                device_cc=hw.compute_capability,
            )
        )
    return out


def _fit_findings(d: Deployment, hw: Hardware, r: SizingResult, engine: str) -> list[Finding]:
    out = []
    numbers: Numbers = {
        "weights_gib": round(r.weights_gib, 2),
        "overhead_gib": round(r.overhead_gib, 2),
        "kv_gib_per_sequence": round(r.kv_gib_per_sequence, 3),
        "budget_gib": round(r.budget_gib, 2),
    }
    if not r.fits:
        out.append(
            Finding(
                severity=Severity.ERROR,
                code=FindingCode.DOES_NOT_FIT,
                subject=d.id,
                message=(
                    f"weights {r.weights_gib:.2f} GiB + overhead {r.overhead_gib:.2f} GiB + KV of one "
                    f"{r.context}-token sequence {r.kv_gib_per_sequence:.2f} GiB > the {r.budget_gib:.2f} GiB "
                    f"budget on {hw.id} (estimate)"
                ),
                numbers=numbers,
            )
        )
        return out
    capacity_tokens = int(r.kv_budget_gib * GIB // max(r.kv_bytes_per_token, 1))
    seqs = d.max_num_seqs if _paged(engine) else None
    if seqs and d.max_model_len and seqs * d.max_model_len > capacity_tokens:
        fitting = capacity_tokens // d.max_model_len
        out.append(
            Finding(
                severity=Severity.WARNING,
                code=FindingCode.KV_CAPACITY,
                subject=d.id,
                message=(
                    f"max_num_seqs {seqs} x max_model_len {d.max_model_len} = {seqs * d.max_model_len:,} tokens, "
                    f"but the {r.kv_budget_gib:.2f} GiB KV budget holds {capacity_tokens:,} tokens "
                    f"({r.kv_bytes_per_token:,} bytes each): only {fitting} sequences of {d.max_model_len} "
                    "fit at once; the rest wait or are preempted (estimate)"
                ),
                numbers={
                    **numbers,
                    "kv_budget_gib": round(r.kv_budget_gib, 2),
                    "kv_capacity_tokens": capacity_tokens,
                    "sequences_at_max_model_len": fitting,
                    "max_num_seqs": seqs,
                },
            )
        )
    return out


def _split_bound(
    catalog: Catalog, d: Deployment, device: FleetDevice, r: SizingResult, out: list[Finding]
) -> float | None:
    """Decode bound of a llama.cpp layer split as written (-ngl), and findings about the split."""
    if d.n_gpu_layers is None or device.hardware.kind is DeviceKind.CPU:
        return None
    layers = r.total_layers
    if d.n_gpu_layers >= layers:
        out.append(
            _f(
                Severity.INFO,
                FindingCode.FULL_OFFLOAD,
                d.id,
                f"n_gpu_layers {d.n_gpu_layers} >= the model's {layers} layers: every transformer layer is "
                "on the GPU, so this is full offload, not a partial one",
                n_gpu_layers=d.n_gpu_layers,
                layers=layers,
            )
        )
        return None
    if d.n_gpu_layers == 0:
        return None
    possible = r.gpu_layers if r.gpu_layers is not None else layers
    if d.n_gpu_layers > possible:
        out.append(
            _f(
                Severity.ERROR,
                FindingCode.SPLIT_DOES_NOT_FIT,
                d.id,
                f"n_gpu_layers {d.n_gpu_layers}, but about {possible} of {layers} layers fit in "
                f"{device.hardware.id}'s {r.budget_gib:.2f} GiB budget with one sequence (estimate)",
                n_gpu_layers=d.n_gpu_layers,
                layers_that_fit=possible,
                weights_gib=round(r.weights_gib, 2),
            )
        )
    cpu = catalog.hardware.get(device.host.cpu.device) if device.host.cpu else None
    if cpu is None:
        return None
    layer_bytes = r.weights_gib * GIB / layers
    gpu_part = d.n_gpu_layers * layer_bytes
    cpu_part = (layers - d.n_gpu_layers) * layer_bytes
    seconds = gpu_part / (device.hardware.memory_bandwidth_gbs * 1e9) + cpu_part / (
        cpu.memory_bandwidth_gbs * 1e9
    )
    bound = 1 / seconds
    out.append(
        _f(
            Severity.INFO,
            FindingCode.LAYER_SPLIT,
            d.id,
            f"{d.n_gpu_layers} of {layers} layers on {device.hardware.id}: {gpu_part / 1e9:.1f} GB at "
            f"{device.hardware.memory_bandwidth_gbs:g} GB/s + {cpu_part / 1e9:.1f} GB from host RAM at "
            f"{cpu.memory_bandwidth_gbs:g} GB/s ({cpu.id}) per token = at most {bound:.1f} tokens/s "
            "(estimate: layers of equal size, KV ignored)",
            decode_bound_tokens_per_s=round(bound, 2),
            gpu_gb=round(gpu_part / 1e9, 2),
            cpu_gb=round(cpu_part / 1e9, 2),
        )
    )
    return bound


def _slot_findings(
    d: Deployment, engine: str, device: FleetDevice, container: Container | None
) -> list[Finding]:
    out = []
    if engine == "llama.cpp" and d.max_model_len and d.parallel and d.parallel > 1:
        per_slot = d.max_model_len // d.parallel
        if per_slot < MIN_SLOT_CONTEXT:
            out.append(
                _f(
                    Severity.WARNING,
                    FindingCode.SLOT_CONTEXT,
                    d.id,
                    f"llama-server splits --ctx-size {d.max_model_len} across --parallel {d.parallel} slots: "
                    f"{per_slot} tokens each, short for chat with history; raise --ctx-size to "
                    f"{d.parallel * MIN_SLOT_CONTEXT} or use fewer slots",
                    ctx_size=d.max_model_len,
                    parallel=d.parallel,
                    tokens_per_slot=per_slot,
                )
            )
    cores = (container.cores if container else None) or device.hardware.cores
    if d.threads and cores and d.threads > cores:
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.THREADS,
                d.id,
                f"threads {d.threads} > the {cores} cores it has; oversubscribed threads slow llama.cpp down",
                threads=d.threads,
                cores=cores,
            )
        )
    return out


def _claim_findings(
    inventory: Inventory,
    catalog: Catalog,
    d: Deployment,
    device: FleetDevice,
    r: SizingResult,
    bound: float,
    ram: float | None,
) -> list[Finding]:
    claims = d.claims
    if claims is None:
        return []
    out = []
    source = f"{claims.source} claims" + (f" ({claims.ref})" if claims.ref else "")
    concurrency = claims.concurrent_users or d.max_num_seqs or d.parallel or 1
    if claims.per_sequence_tokens_per_s is not None:
        low, high = claims.per_sequence_tokens_per_s
        at_context = ""
        if d.max_model_len is None and d.n_gpu_layers is None:
            # No context in the config: check at the claim's prompt, else at the typical context.
            tokens = (
                claims.prompt_tokens + CLAIM_OUTPUT_TOKENS
                if claims.prompt_tokens
                else inventory.workload.typical_context
            )
            short = size_deployment(catalog, d.model_copy(update={"max_model_len": tokens}), device, ram)
            if short is not None:
                bound = short[0].decode_tokens_per_s_upper_bound
                why = (
                    "the claim's prompt"
                    if claims.prompt_tokens
                    else "the inventory's typical context; the claim states none"
                )
                at_context = f" at {tokens:,} tokens ({why})"
        if high > bound:
            out.append(
                _f(
                    Severity.ERROR,
                    FindingCode.CLAIM_ABOVE_BOUND,
                    d.id,
                    f"{source} {_span(low, high)} tokens/s per sequence; the bandwidth bound{at_context} is {bound:.1f} "
                    f"tokens/s ({device.hardware.memory_bandwidth_gbs:g} GB/s over the bytes read per token)",
                    claimed_high=high,
                    bound_tokens_per_s=round(bound, 1),
                )
            )
        elif high < 0.25 * bound:
            out.append(
                _f(
                    Severity.INFO,
                    FindingCode.CLAIM_CONSERVATIVE,
                    d.id,
                    f"{source} {_span(low, high)} tokens/s per sequence, under a quarter of the "
                    f"{bound:.0f} tokens/s bound: the device can likely do more",
                    claimed_high=high,
                    bound_tokens_per_s=round(bound, 1),
                )
            )
    if claims.aggregate_tokens_per_s is not None:
        low, high = claims.aggregate_tokens_per_s
        load = _at_load(catalog, d, device, concurrency, ram) if d.n_gpu_layers is None else None
        at = load if load is not None else r
        # A layer split keeps its KV in host RAM, so every slot runs; else what the KV budget holds.
        split = d.n_gpu_layers is not None and load is None
        running = concurrency if split else max(1, min(concurrency, at.max_concurrent_sequences or 1))
        per_sequence = bound if load is None else load.decode_tokens_per_s_upper_bound
        hard = running * per_sequence
        batched = load.batched_decode_tokens_per_s if load is not None else None
        if high > hard:
            out.append(
                _f(
                    Severity.ERROR,
                    FindingCode.CLAIM_ABOVE_BOUND,
                    d.id,
                    f"{source} {_span(low, high)} tokens/s in aggregate; at most {running} sequence(s) of "
                    f"{at.context} tokens run at once and each is bounded by {per_sequence:.1f} tokens/s, so "
                    f"{hard:.0f} tokens/s is the ceiling",
                    claimed_high=high,
                    bound_tokens_per_s=round(hard, 1),
                    sequences=running,
                )
            )
        elif batched is not None and high > batched:
            out.append(
                _f(
                    Severity.WARNING,
                    FindingCode.CLAIM_ABOVE_ESTIMATE,
                    d.id,
                    f"{source} {_span(low, high)} tokens/s in aggregate; our estimate at {running} sequences "
                    f"is {batched:.0f} tokens/s (bandwidth efficiency and compute ceiling applied)",
                    claimed_high=high,
                    estimate_tokens_per_s=round(batched, 1),
                    sequences=running,
                )
            )
    if claims.concurrent_users is not None and r.max_concurrent_sequences < claims.concurrent_users:
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.CLAIM_CONCURRENCY,
                d.id,
                f"{source} {claims.concurrent_users} concurrent users; the KV budget holds "
                f"{r.max_concurrent_sequences} sequences of {r.context} tokens at once (estimate)",
                claimed=claims.concurrent_users,
                sequences_that_fit=r.max_concurrent_sequences,
                context=r.context,
            )
        )
    out += _ttft_findings(d, source, r)
    return out


def _ttft_findings(d: Deployment, source: str, r: SizingResult) -> list[Finding]:
    claims = d.claims
    assert claims is not None
    stated = [(name, getattr(claims, name)) for name in ("p50_ttft_ms", "p95_ttft_ms")]
    stated = [(name, value) for name, value in stated if value is not None]
    if not stated:
        return []
    if not claims.prompt_tokens or r.prefill_tokens_per_s <= 0:
        return [
            _f(
                Severity.INFO,
                FindingCode.TTFT_UNCHECKED,
                d.id,
                "a TTFT claim without a prompt length (claims.prompt_tokens) or a prefill estimate cannot be checked",
            )
        ]
    floor_ms = claims.prompt_tokens / r.prefill_tokens_per_s * 1000
    out = []
    for name, value in stated:
        if value < floor_ms:
            out.append(
                _f(
                    Severity.ERROR,
                    FindingCode.CLAIM_BELOW_TTFT_BOUND,
                    d.id,
                    f"{source} {name.split('_')[0].upper()} TTFT {value:g} ms; prefilling {claims.prompt_tokens} "
                    f"tokens alone takes about {floor_ms:.0f} ms at the estimated {r.prefill_tokens_per_s:.0f} "
                    "tokens/s, with no queueing",
                    claimed_ms=value,
                    prefill_floor_ms=round(floor_ms, 1),
                    prompt_tokens=claims.prompt_tokens,
                )
            )
    return out


def _at_load(
    catalog: Catalog, d: Deployment, device: FleetDevice, concurrency: int, ram: float | None
) -> SizingResult | None:
    """Sizing at the claim's load: its concurrency, and (vLLM-like engines, which give KV to the
    tokens in use) sequences as long as the claim's prompt plus a short answer, else max_model_len.
    llama.cpp's slots keep --ctx-size / --parallel whatever the prompt."""
    if sizing_engine(d.service) == "llama.cpp":
        at = d.model_copy(update={"parallel": concurrency})
    else:
        prompt = d.claims.prompt_tokens if d.claims else None
        context = prompt + CLAIM_OUTPUT_TOKENS if prompt else d.max_model_len
        at = d.model_copy(update={"max_num_seqs": concurrency, "max_model_len": context})
    sized = size_deployment(catalog, at, device, ram)
    return sized[0] if sized else None


def _paged(engine: str) -> bool:
    """vLLM-like: the sizing engine's `engine` reserves its GPU share up front for a paged KV cache."""
    kind = sizing_kind(engine)
    return kind is not None and kind.traits.kv_cache is KvCache.PAGED


def _reserved_gib(d: Deployment, engine: str, device: FleetDevice, r: SizingResult, split: bool) -> float:
    """GPU memory this deployment takes: vLLM-like engines claim their share up front."""
    if device.hardware.kind is DeviceKind.CPU:
        return 0.0
    if _paged(engine):
        return (d.gpu_memory_utilization or 0.9) * device.memory_gib
    if split and d.n_gpu_layers is not None:
        return d.n_gpu_layers / r.total_layers * r.weights_gib + r.overhead_gib
    used = min(r.max_concurrent_sequences, max(d.parallel or 1, 1)) * r.kv_gib_per_sequence
    return r.weights_gib + r.overhead_gib + used


def _port_clashes(inventory: Inventory) -> list[Finding]:
    by_port: dict[tuple[str, int], list[str]] = defaultdict(list)
    for d in inventory.deployments:
        for port in ([d.port] if d.port else []) + list(d.extra_ports):
            by_port[(d.host, port)].append(d.id)
    out = []
    for (host, port), users in sorted(by_port.items()):
        if len(users) > 1:
            out.append(
                _f(
                    Severity.ERROR,
                    FindingCode.PORT_CLASH,
                    f"{host}:{port}",
                    f"{', '.join(users)} all publish host port {port} on {host}; only one can bind it",
                    port=port,
                    host=host,
                    deployments=", ".join(users),
                )
            )
    return out


def _shared_gpus(
    inventory: Inventory, devices: list[FleetDevice], sizings: list[DeploymentSizing]
) -> list[Finding]:
    out = []
    by_device: dict[str, list[DeploymentSizing]] = defaultdict(list)
    for sizing in sizings:
        if sizing.reserved_gib > 0:
            by_device[sizing.device].append(sizing)
    capacity = {device.key: device.memory_gib for device in devices}
    for key, users in sorted(by_device.items()):
        total = sum(u.reserved_gib for u in users)
        if len(users) > 1 and total > capacity[key]:
            parts = ", ".join(f"{u.deployment} {u.reserved_gib:.1f}" for u in users)
            out.append(
                _f(
                    Severity.ERROR,
                    FindingCode.GPU_OVERSUBSCRIBED,
                    key,
                    f"{len(users)} deployments want {total:.1f} GiB of {key}'s {capacity[key]:.2f} GiB "
                    f"({parts} GiB); vLLM-like engines claim their --gpu-memory-utilization share at start, "
                    "so the second one fails to load",
                    requested_gib=round(total, 2),
                    capacity_gib=capacity[key],
                    deployments=", ".join(u.deployment for u in users),
                )
            )
    return out


def _container_memory(inventory: Inventory) -> list[Finding]:
    out = []
    for host in inventory.hosts:
        sized = [c for c in host.containers if c.memory_gib]
        total = sum(c.memory_gib or 0 for c in sized)
        if total > host.ram_gib:
            out.append(
                _f(
                    Severity.WARNING,
                    FindingCode.CONTAINER_MEMORY,
                    host.id,
                    f"containers on {host.id} are given {total:g} GiB of its {host.ram_gib:g} GiB RAM",
                    containers_gib=total,
                    ram_gib=host.ram_gib,
                )
            )
        elif sized and len(sized) < len(host.containers):
            missing = [c.id for c in host.containers if not c.memory_gib]
            out.append(
                _f(
                    Severity.INFO,
                    FindingCode.CONTAINER_MEMORY_UNKNOWN,
                    host.id,
                    f"{', '.join(c.id for c in sized)} take {total:g} of {host.ram_gib:g} GiB; "
                    f"{', '.join(missing)} state no memory, so the host's headroom is unchecked",
                    containers_gib=total,
                    ram_gib=host.ram_gib,
                )
            )
    return out


def _facts(inventory: Inventory, catalog: Catalog) -> list[Finding]:
    out = []
    agreeing = []
    for fact in inventory.facts:
        hardware = catalog.hardware[fact.device]
        known = getattr(hardware, fact.field)
        if known is None:
            continue
        if math.isclose(fact.value, known, rel_tol=FACT_TOLERANCE):
            agreeing.append(f"{fact.device}.{fact.field}")
            continue
        sources = "; ".join(s.ref for s in hardware.sources if not s.fields or fact.field in s.fields)
        out.append(
            _f(
                Severity.WARNING,
                FindingCode.SEED_FACT_CONTRADICTED,
                fact.device,
                f"{fact.source} says {fact.field} {fact.value:g}"
                + (f" ({fact.ref})" if fact.ref else "")
                + f"; the catalog says {known:g} ({sources or 'catalog'})",
                stated=fact.value,
                catalog=known,
                field=fact.field,
            )
        )
    if agreeing:
        out.append(
            _f(
                Severity.INFO,
                FindingCode.SEED_FACTS_AGREE,
                "facts",
                f"{len(agreeing)} stated facts agree with the catalog within {FACT_TOLERANCE:.0%}: {', '.join(agreeing)}",
                agreeing=len(agreeing),
            )
        )
    return out


def _container(inventory: Inventory, d: Deployment) -> Container | None:
    if d.container is None:
        return None
    host = inventory.host(d.host)
    return next((c for c in host.containers if c.id == d.container), None)


def _span(low: float, high: float) -> str:
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def _cc(value: str) -> tuple[int, int]:
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)


def _f(
    severity: Severity, code: FindingCode, subject: str, message: str, **numbers: float | int | str
) -> Finding:
    return Finding(severity=severity, code=code, subject=subject, message=message, numbers=dict(numbers))
