"""From the planner's inventory (+ catalog + sizing engine) to the `FleetSpec` the renderers read.

What runs where comes from one of two sources (`EngineSource`):

- `plan` (default): the planner's placements (`build_plan`), one recommended model per device, as
  engines; services the plan rates Won't are left out.
- `deployments`: the inventory's own deployments, as written (the seed's, in the default
  inventory), including their ports.

Either way each candidate engine goes through the same rules, reported one `EngineDecision` each:

- Engines Wavefleet renders are vLLM, llama.cpp and Triton (vLLM backend). Exporters and the
  Container Toolkit come from each node's hardware, not from deployments: dcgm-exporter only where
  DCGM supports the GPU, the jtop exporter on Jetson, node-exporter everywhere.
- Each engine is sized by the sizing engine; flags the inventory leaves out are the sizing
  engine's (context, slots, GPU layers), and its speeds seed the gateway profile (estimates).
- Engines share a GPU only while their memory fits: vLLM and Triton reserve
  gpu_memory_utilization of the whole GPU; llama.cpp its offloaded share. An engine that does not
  fit in what the earlier ones left is not rendered, and the decision says why.
- Ports: `PortMode.INVENTORY` keeps the ports the inventory gives (a clash is an error) and picks
  free ones where none is given; `PortMode.ASSIGN` picks every engine port.
- The CI job: the first container whose `runs:` lists `jenkins` gets the model pipeline's
  Jenkinsfile (`FleetSpec.ci`); an inventory without one gets no CI job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from wavefleet.catalog import Catalog, DeviceKind, Hardware, ModelArch, Quantization
from wavefleet.engines import EngineKind, WeightFormat, sizing_engine
from wavefleet.errors import UsageError
from wavefleet.gateway.config import BackendProfile
from wavefleet.plan.inventory import Container, Deployment, Host, Inventory, fleet_devices
from wavefleet.plan.moscow import Tier
from wavefleet.plan.planner import build_plan
from wavefleet.plan.sizing import SizingInput, SizingResult, estimate_engine, size_model
from wavefleet.render.services import DCGM_PORT, JETSON_EXPORTER_PORT, NODE_EXPORTER_PORT
from wavefleet.render.spec import (
    CiSpec,
    DcgmSupport,
    EngineSpec,
    FleetSpec,
    GatewaySpec,
    GpuSpec,
    LxcSpec,
    NodeSpec,
    OsFamily,
    VaultSpec,
)

__all__ = ["EngineDecision", "EngineSource", "PortMode", "Translation", "fleet_from_inventory"]

FROM_HARDWARE = {"dcgm-exporter", "node-exporter", "jetson-stats", "container-toolkit"}
RESERVED_PORTS = {NODE_EXPORTER_PORT, DCGM_PORT, JETSON_EXPORTER_PORT, 80, 443}
DEFAULT_VLLM_MEMORY_SHARE = 0.9  # vLLM's default --gpu-memory-utilization
LLAMACPP_SLOT_CONTEXT = 4096  # llama.cpp's long-standing default context
# What a container's `runs:` names for the CI runner the model pipeline's job is rendered for.
CI_RUNNER = "jenkins"


class EngineSource(StrEnum):
    """Where `wave render` takes its candidate engines from (`--source`)."""

    PLAN = "plan"
    DEPLOYMENTS = "deployments"


class PortMode(StrEnum):
    INVENTORY = "inventory"
    ASSIGN = "assign"


@dataclass(frozen=True)
class EngineDecision:
    """Whether one candidate engine is rendered, and why."""

    deployment: str
    rendered: bool
    reason: str


@dataclass
class Translation:
    fleet: FleetSpec
    decisions: list[EngineDecision]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Gpu:
    node: str
    index: int
    hardware: Hardware
    claimed_gib: float = 0.0
    holders: list[str] = field(default_factory=list)


def fleet_from_inventory(
    inventory: Inventory,
    catalog: Catalog,
    *,
    source: EngineSource = EngineSource.PLAN,
    ports: PortMode = PortMode.INVENTORY,
    server_name: str = "ai.home.arpa",
    agent_tls_dir: str | None = None,
) -> Translation:
    """The fleet to render, with a decision for every deployment. Raises UsageError when the
    inventory lacks something every render needs (the NGINX, Vault or Prometheus container)."""
    warnings: list[str] = []
    nodes, origin = _nodes(inventory, catalog, warnings)
    hardware = {(d.host.id, d.ref.device): d.hardware for d in fleet_devices(inventory, catalog)}
    gpus = {
        (node.name, gpu.index): _Gpu(node.name, gpu.index, hardware[(origin[node.name].id, gpu.device)])
        for node in nodes
        for gpu in node.gpus
    }
    decisions: list[EngineDecision] = []
    engines: list[EngineSpec] = []
    candidates = (
        inventory.deployments if source is EngineSource.DEPLOYMENTS else _plan_deployments(inventory, catalog)
    )
    for deployment in candidates:
        decision, engine = _place(deployment, inventory, catalog, nodes, gpus, hardware)
        decisions.append(decision)
        if engine is not None:
            engines.append(engine)
    explicit = {_node_name(d.id) for d in candidates if d.port is not None and ports is PortMode.INVENTORY}
    engines = _with_ports(engines, explicit, nodes)
    used_nodes = {e.node for e in engines}
    nodes = [
        n.model_copy(update={"docker": True}) if n.name in used_nodes and not n.docker else n for n in nodes
    ]
    nginx, vault, monitoring, authentik = (
        _node_running(nodes, origin, inventory, role)
        for role in ("nginx", "vault", "prometheus", "authentik")
    )
    ci = _node_running_if_any(nodes, inventory, CI_RUNNER)
    _warn_shared_addresses(nodes, warnings)
    warnings += [
        f"{n.name} runs Windows: nothing is rendered for it (its NPU and iGPU are reached through OpenVINO)"
        for n in nodes
        if n.os is OsFamily.WINDOWS
    ]
    fleet = FleetSpec(
        name=inventory.name or "fleet",
        nodes=nodes,
        engines=engines,
        gateway=GatewaySpec(
            nginx_node=nginx.name,
            server_name=server_name,
            authentik_outpost=f"http://{authentik.address}:9000",
            agent_tls_dir=agent_tls_dir,
        ),
        monitoring_node=monitoring.name,
        vault=VaultSpec(node=vault.name, addr=f"https://{vault.address}:8200"),
        ci=CiSpec(node=ci.name) if ci is not None else None,
        power_price_per_kwh=inventory.power_price_per_kwh or 0.0001,
        currency=inventory.currency,
    )
    return Translation(fleet, decisions, warnings)


def _plan_deployments(inventory: Inventory, catalog: Catalog) -> list[Deployment]:
    """The plan's placements as deployments (no ports: render picks them), Won't services left out."""
    plan = build_plan(inventory, catalog)
    wont = {service.id for service in plan.services if service.moscow is Tier.WONT}
    deployments = []
    for placement in plan.placements:
        if placement.engine in wont:
            continue
        engine_tag = placement.engine.replace(".", "")
        vllm_like = placement.engine != "llama.cpp"
        deployments.append(
            Deployment(
                id=f"{engine_tag}-{placement.device.split('@')[0]}",
                service=placement.engine,
                host=placement.host,
                container=placement.container,
                device=placement.device.split("@")[0],
                model=placement.model,
                quant=placement.quant,
                kv_dtype=placement.kv_dtype,
                max_model_len=placement.context,
                max_num_seqs=_paged_max_num_seqs(placement.max_concurrent_sequences, placement.context)
                if vllm_like
                else None,
                parallel=None if vllm_like else placement.sequences,
                notes="; ".join(placement.reasons),
            )
        )
    return deployments


# vLLM pages its KV cache as sequences grow, so it can run more sequences than fit at full
# context; sizing max-num-seqs for the worst case (every sequence at max-model-len) would idle
# most of the cache. Size it for a typical chat request instead, as an estimate.
TYPICAL_REQUEST_TOKENS = 2048


def _paged_max_num_seqs(sequences_at_full_context: int, context: int) -> int:
    typical = sequences_at_full_context * context // TYPICAL_REQUEST_TOKENS
    return max(1, min(256, max(sequences_at_full_context, typical)))


# --- nodes -------------------------------------------------------------------------------------


def _nodes(
    inventory: Inventory, catalog: Catalog, warnings: list[str]
) -> tuple[list[NodeSpec], dict[str, Host]]:
    nodes: list[NodeSpec] = []
    origin: dict[str, Host] = {}
    for host in inventory.hosts:
        os_family = _os_family(host, warnings)
        gpus = [_gpu(i, ref.device, catalog) for i, ref in enumerate(host.gpus)]
        name = _node_name(host.id)
        nodes.append(
            NodeSpec(
                name=name,
                address=host.address or host.hostname or host.id,
                os=os_family,
                os_version=host.os,
                arch="arm64" if host.platform.value in ("jetson", "arm64") else "x86_64",
                docker=os_family not in (OsFamily.PROXMOX, OsFamily.WINDOWS),
                gpus=gpus,
                cpu=host.cpu.device if host.cpu else None,
            )
        )
        origin[name] = host
        for container in host.containers:
            child = _container_node(host, name, container, catalog, warnings)
            nodes.append(child)
            origin[child.name] = host
    return nodes, origin


def _node_name(raw: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-") or "node"


def _os_family(host: Host, warnings: list[str]) -> OsFamily:
    text = host.os.lower()
    if host.platform.value == "jetson" or "jetpack" in text:
        return OsFamily.JETPACK
    if host.platform.value == "windows" or "windows" in text:
        return OsFamily.WINDOWS
    for needle, family in (
        ("proxmox", OsFamily.PROXMOX),
        ("ubuntu", OsFamily.UBUNTU),
        ("debian", OsFamily.DEBIAN),
    ):
        if needle in text:
            return family
    warnings.append(f"host {host.id}: os {host.os!r} not recognised; rendering for Ubuntu")
    return OsFamily.UBUNTU


def _gpu(index: int, device: str, catalog: Catalog) -> GpuSpec:
    hardware = catalog.get_hardware(device)
    return GpuSpec(
        index=index,
        device=device,
        name=hardware.name,
        memory_gib=hardware.memory_gib,
        dcgm=_dcgm_support(hardware, catalog),
        power_w=hardware.tdp_w,
    )


def _dcgm_support(hardware: Hardware, catalog: Catalog) -> DcgmSupport:
    """The catalog's word on dcgm-exporter for this device, else what its kind implies."""
    service = catalog.services.get("dcgm-exporter")
    fit = service.supported_devices.get(hardware.id) if service else None
    if fit == "no" or hardware.kind is DeviceKind.SOC or hardware.platform == "jetson":
        return DcgmSupport.NONE
    if fit == "partial" or "geforce" in hardware.name.lower():
        return DcgmSupport.BASIC
    return DcgmSupport.FULL


def _container_node(
    host: Host, host_node: str, container: Container, catalog: Catalog, warnings: list[str]
) -> NodeSpec:
    name = f"{host_node}-{_node_name(container.id)}"
    address = container.address or container.id
    if not container.address:
        warnings.append(
            f"{host.id}/{container.id} has no address; using {address!r} as its host name (set `address:`)"
        )
    vmid = re.search(r"\d+", container.id)
    lxc = None
    if container.kind == "lxc":
        if vmid is None or int(vmid[0]) < 100:
            raise UsageError(
                f"container {host.id}/{container.id}: no Proxmox VMID (>= 100) in its id; name it like lxc-107"
            )
        lxc = LxcSpec(vmid=int(vmid[0]), gpu_passthrough=bool(container.gpu_passthrough))
    gpus = [_gpu(i, device, catalog) for i, device in enumerate(container.gpu_passthrough)]
    return NodeSpec(
        name=name,
        address=address,
        os=OsFamily.DEBIAN,
        parent=host_node if lxc else None,
        lxc=lxc,
        docker=False,  # turned on when an engine is placed in it
        gpus=gpus,
    )


def _node_running_if_any(nodes: list[NodeSpec], inventory: Inventory, role: str) -> NodeSpec | None:
    """The node of the first container whose `runs:` lists `role`, if one does."""
    for host in inventory.hosts:
        for container in host.containers:
            if role in container.runs:
                wanted = f"{_node_name(host.id)}-{_node_name(container.id)}"
                return next(n for n in nodes if n.name == wanted)
    return None


def _node_running(
    nodes: list[NodeSpec], origin: dict[str, Host], inventory: Inventory, role: str
) -> NodeSpec:
    found = _node_running_if_any(nodes, inventory, role)
    if found is not None:
        return found
    raise UsageError(
        f"no container in the inventory runs {role}; add `{role}` to the `runs:` of the container that "
        "hosts it (NGINX fronts the gateway, Vault holds the NGC key, Prometheus scrapes the fleet)"
    )


def _warn_shared_addresses(nodes: list[NodeSpec], warnings: list[str]) -> None:
    seen: dict[str, str] = {}
    for node in nodes:
        if node.address in seen:
            warnings.append(
                f"{node.name} and {seen[node.address]} share the address {node.address}; an LXC container has "
                "its own IP, so scrape targets and backend URLs for one of them point at the other"
            )
        else:
            seen[node.address] = node.name


# --- engines -----------------------------------------------------------------------------------


class _NotRendered(Exception):
    """A candidate engine `wave render` leaves out; the message says why (never leaves this module)."""


@dataclass(frozen=True)
class _Target:
    """Where a candidate engine would run: its node, and the device it runs on there."""

    host: Host
    node: NodeSpec
    device_id: str
    device: Hardware
    gpu_index: int | None  # None on a CPU
    cpu: Hardware | None  # the host's CPU, for a layer split's speed and a CPU engine's threads


@dataclass(frozen=True)
class _Flags:
    """The engine flags the deployment gives, with Wavefleet's defaults where it gives none."""

    kv: Quantization | None
    share: float  # vLLM/Triton --gpu-memory-utilization
    context: int | None  # None: the sizing engine picks it
    slots: int | None  # llama.cpp --parallel


@dataclass(frozen=True)
class _Candidate:
    """A deployment as an engine `wave render` could render, before it is sized."""

    deployment: Deployment
    kind: EngineKind
    target: _Target
    model: ModelArch
    quant: Quantization
    flags: _Flags


def _place(
    deployment: Deployment,
    inventory: Inventory,
    catalog: Catalog,
    nodes: list[NodeSpec],
    gpus: dict[tuple[str, int], _Gpu],
    hardware: dict[tuple[str, str], Hardware],
) -> tuple[EngineDecision, EngineSpec | None]:
    """Render `deployment` as an engine when it is one, runs where it says, and fits beside the
    engines placed before it on its GPU; claim its share of that GPU."""
    try:
        candidate = _candidate(deployment, inventory, catalog, nodes, hardware)
        sizing_input = _sizing_input(candidate)
        sizing = _sized(candidate, sizing_input)
        n_gpu_layers = _n_gpu_layers(candidate, sizing)
        flags = candidate.flags
        claim = _gpu_claim(
            candidate.kind, candidate.target.device, flags.share, sizing, n_gpu_layers, flags.slots or 1
        )
        gpu = _gpu_with_room(candidate.target, gpus, claim)
    except _NotRendered as skip:
        return EngineDecision(deployment.id, False, str(skip)), None
    engine = _engine_spec(candidate, sizing_input, sizing, n_gpu_layers)
    if gpu is not None:
        gpu.claimed_gib += claim
        gpu.holders.append(engine.name)
    target = candidate.target
    return EngineDecision(
        deployment.id, True, f"{candidate.kind.value} on {target.node.name} ({target.device_id})"
    ), engine


def _candidate(
    deployment: Deployment,
    inventory: Inventory,
    catalog: Catalog,
    nodes: list[NodeSpec],
    hardware: dict[tuple[str, str], Hardware],
) -> _Candidate:
    """The engine, place, weights and flags a deployment asks for; _NotRendered when one cannot be."""
    kind = _rendered_kind(deployment.service)
    if kind is None:
        if deployment.service in FROM_HARDWARE:
            raise _NotRendered(
                f"{deployment.service} is rendered from each node's hardware, not from deployments"
            )
        rendered = ", ".join(k.traits.title for k in EngineKind if k.traits.rendered)
        raise _NotRendered(f"{deployment.service} is not an engine `wave render` renders ({rendered})")
    if deployment.model is None:
        raise _NotRendered("no model given")
    target = _target(deployment, kind, inventory.host(deployment.host), nodes, hardware)
    model = catalog.get_model(deployment.model)
    quant = _quantization(deployment, kind, catalog)
    return _Candidate(deployment, kind, target, model, quant, _flags(deployment, kind, catalog))


def _rendered_kind(service: str) -> EngineKind | None:
    """The kind `wave render` renders for a deployment of this catalog service: only an engine's
    own service (a TensorRT-LLM deployment is no Triton of the vLLM backend render deploys)."""
    return next((k for k in EngineKind if k.traits.rendered and k.traits.catalog_id == service), None)


def _default_port(kind: EngineKind) -> int:
    port = kind.traits.port
    if port is None:  # never for a rendered kind; EngineSpec refuses others
        raise UsageError(f"{kind.value} has no default port to render")
    return port


def _target(
    deployment: Deployment,
    kind: EngineKind,
    host: Host,
    nodes: list[NodeSpec],
    hardware: dict[tuple[str, str], Hardware],
) -> _Target:
    node_name = _node_name(host.id) + (f"-{_node_name(deployment.container)}" if deployment.container else "")
    node = next(n for n in nodes if n.name == node_name)
    if node.os is OsFamily.WINDOWS:
        raise _NotRendered(
            f"{node.name} runs Windows; Wavefleet renders Linux containers (run llama.cpp there by hand)"
        )
    device_id = deployment.device or (
        host.gpus[0].device if host.gpus else host.cpu.device if host.cpu else None
    )
    if device_id is None:
        raise _NotRendered(f"host {host.id} lists no device to run on")
    device = hardware[(host.id, device_id)]
    on_gpu = device.kind is not DeviceKind.CPU
    gpu_index = next((g.index for g in node.gpus if g.device == device_id), None) if on_gpu else None
    if on_gpu and gpu_index is None:
        raise _NotRendered(f"{device_id} is not passed into {node.name}")
    if kind.traits.needs_gpu and not on_gpu:
        raise _NotRendered(f"{deployment.service} needs a GPU; {device_id} is a CPU")
    cpu = hardware.get((host.id, host.cpu.device)) if host.cpu else None
    return _Target(host, node, device_id, device, gpu_index, cpu)


def _quantization(deployment: Deployment, kind: EngineKind, catalog: Catalog) -> Quantization:
    """The weights' format, when the engine can load it from a checkpoint the catalog names."""
    gguf = kind.traits.weights is WeightFormat.GGUF
    quant = catalog.get_quantization(deployment.quant or ("q4_k_m" if gguf else "bf16"))
    if gguf and quant.format != "gguf":
        raise _NotRendered(f"{kind.traits.title} loads GGUF files; {quant.id} is {quant.format}")
    if not gguf and quant.format in ("gguf", "awq", "gptq", "fp4"):
        raise _NotRendered(
            f"{quant.id} needs a pre-quantized checkpoint the catalog does not name; use fp8 or bf16"
        )
    return quant


def _flags(deployment: Deployment, kind: EngineKind, catalog: Catalog) -> _Flags:
    llamacpp = kind is EngineKind.LLAMACPP
    context = deployment.max_model_len
    if context is None and llamacpp:
        context = LLAMACPP_SLOT_CONTEXT  # per slot; the model's maximum times the slots rarely fits
    return _Flags(
        kv=catalog.get_quantization(deployment.kv_dtype) if deployment.kv_dtype else None,
        share=deployment.gpu_memory_utilization or DEFAULT_VLLM_MEMORY_SHARE,
        context=context,
        slots=deployment.parallel or (kind.traits.slots.count if llamacpp else None),
    )


def _sizing_input(candidate: _Candidate) -> SizingInput:
    deployment, target, flags = candidate.deployment, candidate.target, candidate.flags
    llamacpp = candidate.kind is EngineKind.LLAMACPP
    return SizingInput(
        model=candidate.model,
        device=target.device,
        quant=candidate.quant,
        kv_dtype=flags.kv,
        context=flags.context,
        memory_utilization=flags.share if not llamacpp else 0.95,
        max_num_seqs=deployment.max_num_seqs if not llamacpp else flags.slots,
        engine=sizing_engine(deployment.service),
        host_ram_gib=_ram_of(target.host, deployment.container),
        host=target.cpu if target.gpu_index is not None else None,
    )


def _sized(candidate: _Candidate, sizing_input: SizingInput) -> SizingResult:
    """The sizing estimate; _NotRendered when the model fits neither whole nor as a layer split."""
    sizing = size_model(sizing_input)
    if not sizing.fits and sizing.gpu_layers is None:
        raise _NotRendered(
            f"{candidate.model.id} ({candidate.quant.id}) does not fit {candidate.target.device_id} by the "
            f"sizing estimate: {'; '.join(sizing.warnings)}"
        )
    return sizing


def _n_gpu_layers(candidate: _Candidate, sizing: SizingResult) -> int | None:
    """llama.cpp's -ngl on a GPU: the deployment's, else what the sizing estimate fits."""
    if candidate.kind is not EngineKind.LLAMACPP or candidate.target.gpu_index is None:
        return None
    if candidate.deployment.n_gpu_layers is not None:
        return candidate.deployment.n_gpu_layers
    return sizing.gpu_layers or candidate.model.layers


def _gpu_with_room(target: _Target, gpus: dict[tuple[str, int], _Gpu], claim: float) -> _Gpu | None:
    """The GPU the engine runs on (None on a CPU); _NotRendered when the engines placed on it
    before leave less than `claim` GiB."""
    if target.gpu_index is None:
        return None
    gpu = gpus[(target.node.name, target.gpu_index)]
    capacity = target.device.memory_gib or 0.0
    if gpu.claimed_gib + claim > capacity + 1e-6:
        held = f" and {', '.join(gpu.holders)} already hold {gpu.claimed_gib:.1f} GiB" if gpu.holders else ""
        raise _NotRendered(
            f"needs about {claim:.1f} GiB of {target.device_id} (estimate), which has {capacity:.1f} GiB{held}"
        )
    return gpu


def _engine_spec(
    candidate: _Candidate, sizing_input: SizingInput, sizing: SizingResult, n_gpu_layers: int | None
) -> EngineSpec:
    deployment, kind, target, flags = candidate.deployment, candidate.kind, candidate.target, candidate.flags
    model, quant = candidate.model, candidate.quant
    llamacpp = kind is EngineKind.LLAMACPP
    notes = [f"estimate basis: {b}" for b in sizing.estimate_basis[:3]] + [
        f"warning: {w}" for w in sizing.warnings
    ]
    context = flags.context or sizing.context
    max_num_seqs = deployment.max_num_seqs or max(1, min(sizing.max_concurrent_sequences, 256))
    if not llamacpp and max_num_seqs > sizing.max_concurrent_sequences:
        notes.append(
            f"max_num_seqs {max_num_seqs} exceeds the {sizing.max_concurrent_sequences} sequences of {context} tokens "
            "the KV cache holds (estimate): vLLM will queue or preempt the rest at full context"
        )
    running = max_num_seqs if not llamacpp else (flags.slots or 1)
    estimate = estimate_engine(sizing_input)
    on_gpu = target.gpu_index is not None
    return EngineSpec(
        name=_node_name(deployment.id),
        kind=kind,
        node=target.node.name,
        gpu_index=target.gpu_index,
        device=target.device_id,
        model=model.id,
        weights=model.hf_repo if not llamacpp else f"{model.id}-{quant.id.upper()}.gguf",
        quant=quant.id,
        quantization_flag="fp8" if quant.format == "fp8" and not llamacpp else None,
        kv_cache_dtype=_kv_flag(kind, flags.kv.id if flags.kv else None, notes),
        max_model_len=context,
        max_num_seqs=running,
        gpu_memory_utilization=flags.share if not llamacpp else None,
        n_gpu_layers=n_gpu_layers,
        threads=deployment.threads
        or (None if on_gpu else _cores_of(target.host, deployment.container, target.cpu)),
        parallel=flags.slots or 1,
        host_ram_gib=sizing_input.host_ram_gib,
        port=deployment.port or _default_port(kind),
        profile=_profile(
            estimate.prefill_tokens_per_s,
            estimate.decode_tokens_per_s,
            estimate.itl_at_batch,
            running,
            estimate.basis,
        ),
        notes=notes,
    )


def _cores_of(host: Host, container_id: str | None, cpu: Hardware | None) -> int | None:
    """Threads for a CPU engine: its LXC's cores when set, else the CPU's physical cores."""
    container = next((c for c in host.containers if c.id == container_id), None)
    if container and container.cores:
        return container.cores
    return cpu.cores if cpu else None


def _ram_of(host: Host, container_id: str | None) -> float:
    """RAM the engine may use: its LXC's allocation when it has one, else the host's."""
    container = next((c for c in host.containers if c.id == container_id), None)
    return container.memory_gib if container and container.memory_gib else host.ram_gib


def _gpu_claim(
    kind: EngineKind,
    device: Hardware,
    share: float,
    sizing: SizingResult,
    n_gpu_layers: int | None,
    slots: int,
) -> float:
    """GiB of the GPU the engine takes: vLLM/Triton reserve a share; llama.cpp its offloaded layers."""
    memory = device.memory_gib or 0.0
    if kind is not EngineKind.LLAMACPP:
        return share * memory
    weights, overhead = sizing.weights_gib, sizing.overhead_gib
    kv = sizing.kv_gib_per_sequence * slots
    total_layers = sizing.total_layers or 1
    fraction = min(1.0, (n_gpu_layers if n_gpu_layers is not None else total_layers) / total_layers)
    return fraction * (weights + kv) + overhead


def _kv_flag(kind: EngineKind, kv: str | None, notes: list[str]) -> str | None:
    if kv is None or kv in ("fp16", "bf16", "fp32"):
        return None
    if kind is EngineKind.LLAMACPP:
        if kv in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1"):
            return kv
        notes.append(f"llama.cpp has no {kv} KV cache; using its default f16")
        return None
    if kv == "fp8":
        return "fp8"
    notes.append(f"vLLM has no {kv} KV cache; using auto")
    return None


def _profile(
    prefill: float, decode: float, curve: list[tuple[int, float]], max_num_seqs: int, basis: list[str]
) -> BackendProfile:
    slowdown = 0.0
    if len(curve) > 1 and curve[0][1] > 0:
        batch, itl = curve[-1]
        if batch > 1:
            slowdown = max(0.0, (itl / curve[0][1] - 1) / (batch - 1))
    return BackendProfile(
        prefill_tokens_per_s=max(prefill, 1e-3),
        decode_tokens_per_s=max(decode, 1e-3),
        max_num_seqs=max_num_seqs,
        batch_slowdown=round(slowdown, 5),
        basis="estimate by the sizing engine: " + "; ".join(basis[:4]),
    )


# --- ports -------------------------------------------------------------------------------------


def _with_ports(engines: list[EngineSpec], explicit: set[str], nodes: list[NodeSpec]) -> list[EngineSpec]:
    """Keep the ports of engines named in `explicit`; give the rest the first free one from the
    engine's default. Clashes among explicit ports stay, for the render's check to report."""
    taken: dict[str, set[int]] = {n.name: set(RESERVED_PORTS) for n in nodes}
    for engine in engines:
        if engine.name in explicit:
            taken[engine.node].update(_ports_of(engine, engine.port))
    result = []
    for engine in engines:
        if engine.name in explicit:
            result.append(engine)
            continue
        port = _default_port(engine.kind)
        while any(p in taken[engine.node] for p in _ports_of(engine, port)):
            port += 1
        taken[engine.node].update(_ports_of(engine, port))
        result.append(engine.model_copy(update={"port": port}))
    return result


def _ports_of(engine: EngineSpec, port: int) -> list[int]:
    return [port, port + 1, port + 2] if engine.kind is EngineKind.TRITON else [port]
