"""The inventory file: the person's hosts, devices, containers, links, memberships, goals and deployments.

Loading happens in two passes. `wavefleet.files.load_model` checks the shape (unknown fields, types,
ranges) and names file:line; `inventory_problems` then checks what the shape cannot: that every
host, container and device an entry names exists, and that device, model, quantization, service
and goal ids are catalog ids (an unknown one comes with the nearest known ids).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from wavefleet.catalog import GOALS, Catalog, DeviceKind, Hardware, Membership, Platform
from wavefleet.errors import ConfigError, ConfigProblem, nearest
from wavefleet.files import FrozenModel, load_model, read_yaml
from wavefleet.plan.sizing import TYPICAL_CONTEXT

__all__ = [
    "Claims",
    "Container",
    "Deployment",
    "DeviceRef",
    "FleetDevice",
    "DEFAULT_GOAL_WORKLOADS",
    "Goal",
    "GoalWorkload",
    "Host",
    "Inventory",
    "Link",
    "LinkKind",
    "SeedFact",
    "Workload",
    "default_inventory_path",
    "fleet_devices",
    "goal_vocabulary",
    "inventory_problems",
    "load_inventory",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
KeyPath = tuple[str | int, ...]


def _device_shorthand(value: Any) -> Any:
    """`rtx-5070-ti` is short for `{device: rtx-5070-ti}`."""
    return {"device": value} if isinstance(value, str) else value


def _span(value: Any) -> Any:
    """A claim is one number or a `[low, high]` range; one number is a range of width zero."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (value, value)
    return value


class DeviceRef(FrozenModel):
    """A catalog device in a host, with what differs in this unit (a laptop's lower TDP, slower RAM)."""

    device: str = Field(description="catalog hardware id")
    memory_gib: float | None = Field(default=None, gt=0, description="override: device memory")
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0, description="override: e.g. slower DIMMs")
    tdp_w: float | None = Field(default=None, gt=0, description="override: this unit's power limit")
    note: str = ""


Device = Annotated[DeviceRef, BeforeValidator(_device_shorthand)]
Span = Annotated[tuple[float, float], BeforeValidator(_span)]


class Container(FrozenModel):
    """An LXC, VM or Docker host inside a host (Proxmox LXC 107 is `lxc-107`)."""

    id: str = Field(pattern=ID_PATTERN)
    name: str
    kind: str = Field(default="lxc", pattern=r"^(lxc|vm|docker)$")
    runs: list[str] = Field(default_factory=list, description="what runs inside: nginx, vault, llama.cpp …")
    planned: bool = Field(default=False, description="proposed, not running yet")
    cores: int | None = Field(default=None, gt=0)
    memory_gib: float | None = Field(default=None, gt=0)
    gpu_passthrough: list[str] = Field(default_factory=list, description="device ids passed in")
    address: str = ""
    notes: str = ""


class Host(FrozenModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str
    hostname: str = ""
    address: str = ""
    os: str = ""
    role: str = Field(default="", description="ai-desktop, proxmox-host, edge, laptop …")
    platform: Platform = Platform.X86_64
    cpu: Device | None = Field(default=None, description="catalog id of the CPU (or of the SoC)")
    ram_gib: float = Field(gt=0, description="host RAM (on a SoC: the shared memory)")
    gpus: list[Device] = Field(default_factory=list)
    containers: list[Container] = Field(default_factory=list)
    amortisation_per_hour: float = Field(
        default=0.0,
        ge=0,
        description="what owning the host's hardware costs per hour (price / hours of use), in the "
        "inventory's currency; added to each request's cost for the device time it held",
    )
    notes: str = ""


class LinkKind(StrEnum):
    ETHERNET = "ethernet"
    USB = "usb"
    WIFI = "wifi"
    THUNDERBOLT = "thunderbolt"


class Link(FrozenModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="host id (`from:` in YAML; `from_` in Python)")
    to: str
    kind: LinkKind
    gbps: float = Field(gt=0)
    notes: str = ""


class Goal(FrozenModel):
    tag: str = Field(description="a goal tag services declare in `serves_goals`")
    weight: float = Field(ge=0, le=1)
    description: str = ""


class GoalWorkload(FrozenModel):
    """What one goal asks of the fleet at once: requests in flight, their length and the speed floor."""

    concurrent_requests: int = Field(gt=0, description="requests in flight at once for this goal")
    prompt_tokens: int = Field(gt=0, description="typical prompt, history and retrieved text included")
    output_tokens: int = Field(gt=0, description="typical answer")
    min_tokens_per_s: float = Field(gt=0, description="speed floor per request while answering")
    max_ttft_s: float = Field(gt=0, description="longest acceptable wait for the first token")


# One person: a chat and one other request (an editor, an agent) at once; a coding assistant sends
# longer prompts and needs faster answers than reading pace; RAG stuffs retrieved text into one
# long prompt at a time. Assumptions, stated in the report; set `workload:` to change them.
DEFAULT_GOAL_WORKLOADS: dict[str, GoalWorkload] = {
    "llm-serving": GoalWorkload(
        concurrent_requests=2, prompt_tokens=1000, output_tokens=400, min_tokens_per_s=10, max_ttft_s=6
    ),
    "coding-assistant": GoalWorkload(
        concurrent_requests=2, prompt_tokens=2000, output_tokens=200, min_tokens_per_s=15, max_ttft_s=6
    ),
    "rag": GoalWorkload(
        concurrent_requests=1, prompt_tokens=3000, output_tokens=300, min_tokens_per_s=10, max_ttft_s=10
    ),
}


class Workload(FrozenModel):
    """How the fleet is used: by whom, at what context, and per goal what at once (defaults: one person)."""

    users: int = Field(default=1, gt=0)
    typical_context: int = Field(
        default=TYPICAL_CONTEXT,
        gt=0,
        description="tokens per request a person really uses; speeds are quoted here",
    )
    goals: dict[str, GoalWorkload] = Field(
        default_factory=dict, description="per goal tag; goals not listed use DEFAULT_GOAL_WORKLOADS"
    )

    def for_goal(self, tag: str) -> GoalWorkload | None:
        """The goal's workload: the inventory's, else the default one, scaled to the users."""
        found = self.goals.get(tag) or DEFAULT_GOAL_WORKLOADS.get(tag)
        if found is None or self.users == 1:
            return found
        return found.model_copy(update={"concurrent_requests": found.concurrent_requests * self.users})


class Claims(FrozenModel):
    """What a source promised for a deployment; the planner checks each against the numbers."""

    source: str = Field(description="seed, vendor, user, measured …")
    ref: str = Field(default="", description="where in the source")
    aggregate_tokens_per_s: Span | None = None
    per_sequence_tokens_per_s: Span | None = None
    concurrent_users: int | None = Field(default=None, gt=0)
    p50_ttft_ms: float | None = Field(default=None, gt=0)
    p95_ttft_ms: float | None = Field(default=None, gt=0)
    prompt_tokens: int | None = Field(default=None, gt=0, description="prompt length the claim assumed")


class Deployment(FrozenModel):
    """A service someone intends to run: the planner checks that it fits and keeps its promises."""

    id: str = Field(pattern=ID_PATTERN)
    service: str = Field(description="catalog service id")
    host: str
    container: str | None = None
    device: str | None = Field(default=None, description="catalog id of the device it runs on")
    model: str | None = None
    quant: str | None = None
    kv_dtype: str | None = None
    max_model_len: int | None = Field(default=None, gt=0, description="context (llama.cpp: --ctx-size)")
    max_num_seqs: int | None = Field(default=None, gt=0)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    n_gpu_layers: int | None = Field(default=None, ge=0)
    threads: int | None = Field(default=None, gt=0)
    parallel: int | None = Field(default=None, gt=0, description="llama.cpp --parallel slots")
    port: int | None = Field(default=None, gt=0, lt=65536, description="host port it publishes")
    extra_ports: list[Annotated[int, Field(gt=0, lt=65536)]] = Field(default_factory=list)
    claims: Claims | None = None
    notes: str = ""


class SeedFact(FrozenModel):
    """A number a source states about a catalog device, checked against the catalog."""

    device: str
    field: str = Field(description="a numeric hardware field: tdp_w, memory_bandwidth_gbs, memory_gib …")
    value: float
    source: str = "seed"
    ref: str = ""


class Inventory(FrozenModel):
    name: str = ""
    power_price_per_kwh: float = Field(ge=0, description="electricity tariff, in `currency` per kWh")
    currency: str = Field(default="USD", description="currency of every price and cost (ISO 4217 code)")
    hosts: list[Host] = Field(min_length=1)
    links: list[Link] = Field(default_factory=list)
    memberships: list[Membership] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    models: list[str] = Field(
        default_factory=list, description="catalog model ids the planner may place; empty = any"
    )
    deployments: list[Deployment] = Field(default_factory=list)
    facts: list[SeedFact] = Field(default_factory=list)
    workload: Workload = Field(default_factory=Workload)

    @field_validator("memberships")
    @classmethod
    def _membership_none_is_implicit(cls, memberships: list[Membership]) -> list[Membership]:
        if Membership.NONE in memberships:
            raise ValueError("`none` is implicit (open services need no membership); remove it")
        return memberships

    def host(self, host_id: str) -> Host:
        for host in self.hosts:
            if host.id == host_id:
                return host
        raise KeyError(host_id)


@dataclass(frozen=True)
class FleetDevice:
    """One device in one host, with the inventory's overrides applied to its catalog entry."""

    key: str
    host: Host
    ref: DeviceRef
    hardware: Hardware
    role: str  # "cpu" or "gpu"

    @property
    def memory_gib(self) -> float:
        """Memory a model can use: device memory, or host RAM for a CPU."""
        return self.hardware.memory_gib if self.hardware.memory_gib is not None else self.host.ram_gib


def default_inventory_path() -> Path:
    """The example fleet shipped inside the package (a copy of examples/home-lab.yaml)."""
    return Path(str(resources.files("wavefleet.plan") / "default_inventory.yaml"))


def goal_vocabulary(catalog: Catalog) -> set[str]:
    """The catalog's goal tags (`wavefleet.catalog.GOALS`) and any a service in it declares."""
    return set(GOALS) | {goal for service in catalog.services.values() for goal in service.serves_goals}


def fleet_devices(inventory: Inventory, catalog: Catalog) -> list[FleetDevice]:
    """Every device of every host, keyed by catalog id (`id@host` when two hosts share one)."""
    found: list[tuple[Host, DeviceRef, str]] = []
    for host in inventory.hosts:
        if host.cpu is not None:
            found.append((host, host.cpu, "cpu"))
        found += [(host, gpu, "gpu") for gpu in host.gpus]
    counts: dict[str, int] = {}
    for _, ref, _ in found:
        counts[ref.device] = counts.get(ref.device, 0) + 1
    devices = []
    for host, ref, role in found:
        overrides = {
            name: getattr(ref, name)
            for name in ("memory_gib", "memory_bandwidth_gbs", "tdp_w")
            if getattr(ref, name) is not None
        }
        hardware = catalog.get_hardware(ref.device).model_copy(update=overrides)
        key = ref.device if counts[ref.device] == 1 else f"{ref.device}@{host.id}"
        devices.append(FleetDevice(key, host, ref, hardware, role))
    return devices


def load_inventory(path: Path, catalog: Catalog) -> Inventory:
    """Load and check an inventory file; every problem names file:line and a fix (exit 2)."""
    inventory = load_model(Inventory, path)
    _, lines = read_yaml(path)
    problems = inventory_problems(inventory, catalog, path, lines)
    if problems:
        raise ConfigError(problems)
    return inventory


def inventory_problems(
    inventory: Inventory, catalog: Catalog, path: Path | str, lines: dict[KeyPath, int]
) -> list[ConfigProblem]:
    """What the shape cannot check: references between entries, and ids the catalog must know."""
    check = _Checker(path, lines)
    host_ids = check.unique("hosts", [host.id for host in inventory.hosts], "host")
    hosts = {host.id: host for host in inventory.hosts}
    for h, host in enumerate(inventory.hosts):
        if host.cpu is not None:
            hardware = check.known(("hosts", h, "cpu"), host.cpu.device, catalog.hardware, "hardware")
            if hardware is not None and hardware.kind == DeviceKind.GPU:
                check.problem(
                    ("hosts", h, "cpu"),
                    f"{host.cpu.device} is a GPU, not a CPU",
                    "put it under `gpus:` and name the host's CPU here",
                )
        for g, gpu in enumerate(host.gpus):
            hardware = check.known(("hosts", h, "gpus", g), gpu.device, catalog.hardware, "hardware")
            if hardware is not None and hardware.kind == DeviceKind.CPU:
                check.problem(
                    ("hosts", h, "gpus", g), f"{gpu.device} is a CPU, not a GPU", "name it under `cpu:`"
                )
        check.unique(("hosts", h, "containers"), [c.id for c in host.containers], "container")
        on_host = _device_ids(host)
        for c, container in enumerate(host.containers):
            for p, device in enumerate(container.gpu_passthrough):
                if device not in on_host:
                    check.problem(
                        ("hosts", h, "containers", c, "gpu_passthrough", p),
                        f"{device!r} is not a device of host {host.id}",
                        f"use one of {', '.join(sorted(on_host)) or '(none)'}",
                    )
    for i, link in enumerate(inventory.links):
        for end, name in (("from", link.from_), ("to", link.to)):
            check.reference(("links", i, end), name, host_ids, "host")
    vocabulary = goal_vocabulary(catalog)
    for i, goal in enumerate(inventory.goals):
        if goal.tag not in vocabulary:
            check.unknown(("goals", i, "tag"), goal.tag, vocabulary, "goal tag")
    check.unique("goals", [goal.tag for goal in inventory.goals], "goal")
    for tag in inventory.workload.goals:
        if tag not in vocabulary:
            check.unknown(("workload", "goals", tag), tag, vocabulary, "goal tag")
    for i, model_id in enumerate(inventory.models):
        check.known(("models", i), model_id, catalog.models, "model")
    check.unique("deployments", [d.id for d in inventory.deployments], "deployment")
    for i, deployment in enumerate(inventory.deployments):
        _check_deployment(check, ("deployments", i), deployment, hosts, catalog)
    for i, fact in enumerate(inventory.facts):
        check.known(("facts", i, "device"), fact.device, catalog.hardware, "hardware")
        if fact.field not in _NUMERIC_HARDWARE_FIELDS:
            check.unknown(("facts", i, "field"), fact.field, _NUMERIC_HARDWARE_FIELDS, "hardware field")
    return check.problems


_NUMERIC_HARDWARE_FIELDS = {
    "memory_gib",
    "memory_bandwidth_gbs",
    "tdp_w",
    "cores",
    "threads",
    "cuda_cores",
}


def _device_ids(host: Host) -> set[str]:
    return {ref.device for ref in ([host.cpu] if host.cpu else []) + list(host.gpus)}


def _check_deployment(
    check: _Checker, at: KeyPath, deployment: Deployment, hosts: dict[str, Host], catalog: Catalog
) -> None:
    check.known(at + ("service",), deployment.service, catalog.services, "service")
    host = hosts.get(deployment.host)
    if host is None:
        check.reference(at + ("host",), deployment.host, set(hosts), "host")
    else:
        if deployment.container is not None:
            check.reference(
                at + ("container",), deployment.container, {c.id for c in host.containers}, "container"
            )
        if deployment.device is not None and deployment.device not in _device_ids(host):
            if deployment.device in catalog.hardware:
                check.problem(
                    at + ("device",),
                    f"{deployment.device} is not in host {host.id}",
                    f"use one of {', '.join(sorted(_device_ids(host)))}, or move the deployment",
                )
            else:
                check.unknown(at + ("device",), deployment.device, catalog.hardware, "hardware")
    if deployment.model is not None:
        check.known(at + ("model",), deployment.model, catalog.models, "model")
    for name in ("quant", "kv_dtype"):
        value = getattr(deployment, name)
        if value is None:
            continue
        quant = check.known(at + (name,), value, catalog.quantizations, "quantization")
        if name == "kv_dtype" and quant is not None and not quant.kv_cache:
            usable = sorted(q.id for q in catalog.quantizations.values() if q.kv_cache)
            check.problem(at + (name,), f"{value} is not a KV-cache dtype", f"use one of {', '.join(usable)}")


class _Checker:
    """Collects problems, each placed at the line of the key path it is about."""

    def __init__(self, path: Path | str, lines: dict[KeyPath, int]) -> None:
        self.path, self.lines = path, lines
        self.problems: list[ConfigProblem] = []

    def line(self, at: KeyPath) -> int | None:
        for end in range(len(at), -1, -1):
            if at[:end] in self.lines:
                return self.lines[at[:end]]
        return None

    def problem(self, at: KeyPath | str, message: str, fix: str) -> None:
        at = (at,) if isinstance(at, str) else at
        where = ".".join(str(part) for part in at)
        self.problems.append(ConfigProblem(self.path, self.line(at), where, message, fix))

    def unknown(self, at: KeyPath, given: str, known: Iterable[str], kind: str) -> None:
        suggestions = nearest(given, known)
        fix = f"did you mean {', '.join(suggestions)}?" if suggestions else ""
        fix += " (`wave catalog list` shows every id)" if kind != "host" else ""
        self.problem(at, f"unknown {kind} id {given!r}", fix.strip())

    def known(self, at: KeyPath, given: str, entries: dict[str, Any], kind: str) -> Any:
        if given in entries:
            return entries[given]
        self.unknown(at, given, entries, kind)
        return None

    def reference(self, at: KeyPath, given: str, known: set[str], kind: str) -> None:
        if given not in known:
            suggestions = nearest(given, known) or sorted(known)
            self.problem(at, f"no {kind} {given!r} in this inventory", f"use one of {', '.join(suggestions)}")

    def unique(self, at: KeyPath | str, ids: list[str], kind: str) -> set[str]:
        at = (at,) if isinstance(at, str) else at
        seen: set[str] = set()
        for index, entry_id in enumerate(ids):
            if entry_id in seen:
                self.problem(
                    at + (index,), f"duplicate {kind} id {entry_id!r}", f"give each {kind} its own id"
                )
            seen.add(entry_id)
        return seen
