"""What `wave render` renders from: the fleet reduced to the facts each artifact needs.

The planner's inventory (and, later, its plan) is turned into a `FleetSpec` by
`wavefleet.render.from_inventory`; every renderer reads only this model. Tests build a
`FleetSpec` directly, so the renderers do not depend on the planner's file format.

A *node* is a place that gets its own output folder: a physical host or a Proxmox LXC container.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from wavefleet.engines import EngineKind
from wavefleet.files import FrozenModel
from wavefleet.gateway.config import BackendProfile

__all__ = [
    "CiSpec",
    "DcgmSupport",
    "EngineSpec",
    "FleetSpec",
    "GatewaySpec",
    "GpuSpec",
    "LxcSpec",
    "NodeSpec",
    "OsFamily",
    "VaultSpec",
]


class OsFamily(StrEnum):
    UBUNTU = "ubuntu"
    DEBIAN = "debian"
    PROXMOX = "proxmox"  # Debian underneath; the host of LXC containers
    JETPACK = "jetpack"  # Ubuntu-based L4T; ships the NVIDIA Container Toolkit
    WINDOWS = "windows"  # no Linux artifacts are rendered for it


class DcgmSupport(StrEnum):
    """How far DCGM (and so dcgm-exporter) covers a GPU."""

    FULL = "full"  # datacenter GPUs: all fields, profiling (DCP) metrics
    BASIC = "basic"  # GeForce/Quadro Maxwell+: basic fields (power, memory, utilization, clocks)
    NONE = "none"  # Jetson (integrated GPU): not supported; use jtop/tegrastats


class GpuSpec(FrozenModel):
    index: int = Field(ge=0, description="CUDA device index on its node")
    device: str = Field(description="catalog hardware id")
    name: str
    memory_gib: float | None = None
    dcgm: DcgmSupport
    power_w: float | None = Field(default=None, description="board power for cost estimates")


class LxcSpec(FrozenModel):
    vmid: int = Field(ge=100, description="Proxmox container id: its config is /etc/pve/lxc/<vmid>.conf")
    gpu_passthrough: bool = False


class NodeSpec(FrozenModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    address: str = Field(description="IP or DNS name other nodes reach it by")
    os: OsFamily
    os_version: str = ""
    arch: str = Field(default="x86_64", description="x86_64 or arm64")
    parent: str | None = Field(default=None, description="the Proxmox host of an LXC container")
    lxc: LxcSpec | None = None
    docker: bool = Field(default=True, description="runs Docker Compose (engines, exporters)")
    gpus: list[GpuSpec] = Field(default_factory=list)
    cpu: str | None = Field(default=None, description="catalog hardware id of its CPU")

    @property
    def is_jetson(self) -> bool:
        return self.os is OsFamily.JETPACK

    @model_validator(mode="after")
    def _lxc_has_parent(self) -> NodeSpec:
        if (self.lxc is None) != (self.parent is None):
            raise ValueError(f"node {self.name}: an LXC container needs both `lxc` and `parent`")
        return self


class EngineSpec(FrozenModel):
    """One engine the plan places: everything its compose service and gateway backend need."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    kind: EngineKind = Field(description="an engine kind `wave render` renders (Triton: its vLLM backend)")
    node: str
    gpu_index: int | None = Field(default=None, description="None: runs on the CPU")
    device: str = Field(description="catalog hardware id it runs on (GPU or CPU)")
    model: str = Field(description="catalog model id; also the name clients ask for")
    weights: str = Field(description="HF repo id (vLLM, Triton) or GGUF file name under /models (llama.cpp)")
    quant: str = Field(description="catalog quantization id")
    quantization_flag: str | None = Field(
        default=None, description="vLLM --quantization, only when the checkpoint needs it"
    )
    kv_cache_dtype: str | None = None
    max_model_len: int = Field(gt=0)
    max_num_seqs: int = Field(default=1, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    n_gpu_layers: int | None = Field(default=None, ge=0)
    threads: int | None = Field(default=None, ge=1)
    parallel: int = Field(default=1, ge=1, description="llama.cpp slots")
    host_ram_gib: float | None = Field(
        default=None, gt=0, description="RAM the engine may use: its LXC's allocation, else its host's"
    )
    port: int = Field(ge=1, le=65535, description="host port the engine is published on")
    profile: BackendProfile | None = None
    notes: list[str] = Field(default_factory=list, description="sizing basis and warnings, for README")

    @field_validator("kind")
    @classmethod
    def _rendered_kind(cls, kind: EngineKind) -> EngineKind:
        if not kind.traits.rendered:
            rendered = ", ".join(k.value for k in EngineKind if k.traits.rendered)
            raise ValueError(f"`wave render` renders no {kind.value} engine; it renders {rendered}")
        return kind

    @property
    def ctx_size(self) -> int:
        """llama.cpp's --ctx-size is shared by all slots: slots x per-slot context."""
        return self.parallel * self.max_model_len


class GatewaySpec(FrozenModel):
    nginx_node: str = Field(description="node (LXC 1) whose NGINX fronts the platform")
    server_name: str
    wave_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int = Field(default=9180, ge=1, le=65535, description="NGINX listener for /metrics")
    authentik_outpost: str = Field(
        description="base URL of Authentik's embedded outpost, e.g. http://10.0.0.3:9000"
    )
    rate_per_minute: int = Field(default=120, ge=1)
    burst: int = Field(default=20, ge=0)
    tls_certificate: str = "/etc/nginx/tls/wavefleet.crt"
    tls_certificate_key: str = "/etc/nginx/tls/wavefleet.key"
    agent_tls_dir: str | None = Field(
        default=None,
        description="mutual TLS between the gateway and the agents, files on each host: ca.pem, "
        "<node>.pem/.key per agent, gateway.pem/.key; None: plain HTTP with the shared secret",
    )


class VaultSpec(FrozenModel):
    node: str
    addr: str = Field(description="VAULT_ADDR, e.g. https://10.0.0.3:8200")
    kv_mount: str = "secret"
    ngc_path: str = "wavefleet/ngc"
    hf_path: str = "wavefleet/huggingface"
    role: str = "wavefleet-deploy"
    policy: str = "wavefleet-ngc-read"


class CiSpec(FrozenModel):
    """The CI runner the model pipeline's job is rendered for (Jenkins: a declarative Jenkinsfile)."""

    node: str = Field(description="node (an LXC) that runs the CI runner")
    kind: Literal["jenkins"] = "jenkins"
    models_dir: str = Field(
        default="/srv/wavefleet/models", description="where the job keeps fetched and quantized GGUF files"
    )
    wave_bin: str = Field(
        default="/opt/wavefleet/venv/bin", description="folder of the `wave` command on the CI runner"
    )


class FleetSpec(FrozenModel):
    name: str = "home-lab"
    nodes: list[NodeSpec]
    engines: list[EngineSpec]
    gateway: GatewaySpec
    monitoring_node: str
    vault: VaultSpec
    ci: CiSpec | None = Field(default=None, description="None: no CI runner in the inventory, no CI job")
    power_price_per_kwh: float = Field(gt=0)
    currency: str = "USD"

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def engines_on(self, node: str) -> list[EngineSpec]:
        return [e for e in self.engines if e.node == node]

    def children(self, host: str) -> list[NodeSpec]:
        return [n for n in self.nodes if n.parent == host]

    @model_validator(mode="after")
    def _references_resolve(self) -> FleetSpec:
        names = [n.name for n in self.nodes]
        problems = [f"node {n!r} is listed twice" for n in sorted(set(names)) if names.count(n) > 1]
        known = set(names)
        wanted = {
            "gateway.nginx_node": self.gateway.nginx_node,
            "monitoring_node": self.monitoring_node,
            "vault.node": self.vault.node,
        }
        if self.ci is not None:
            wanted["ci.node"] = self.ci.node
        problems += [
            f"{field} names unknown node {value!r}" for field, value in wanted.items() if value not in known
        ]
        problems += [
            f"node {n.name}: parent {n.parent!r} is unknown"
            for n in self.nodes
            if n.parent and n.parent not in known
        ]
        engine_names = [e.name for e in self.engines]
        problems += [
            f"engine {e!r} is listed twice" for e in sorted(set(engine_names)) if engine_names.count(e) > 1
        ]
        for engine in self.engines:
            if engine.node not in known:
                problems.append(f"engine {engine.name}: node {engine.node!r} is unknown")
                continue
            node = self.node(engine.node)
            if engine.gpu_index is not None and engine.gpu_index not in {g.index for g in node.gpus}:
                problems.append(f"engine {engine.name}: node {node.name} has no GPU {engine.gpu_index}")
            if not node.docker:
                problems.append(f"engine {engine.name}: node {node.name} does not run Docker")
        if problems:
            raise ValueError("; ".join(problems))
        return self
