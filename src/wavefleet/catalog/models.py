"""The catalog's file formats: hardware, models, quantizations and services, each fact sourced.

Every entry carries `sources` (at least one). A source is a short reference a person can follow:
a URL or `repo path`, optionally with which fields it backs. Values the catalog could not settle
are marked `uncertain` with a note rather than silently picked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator

from wavefleet.files import FrozenModel

__all__ = [
    "GOALS",
    "Access",
    "CatalogEntry",
    "DeviceKind",
    "Hardware",
    "Membership",
    "MembershipInfo",
    "ModelArch",
    "Platform",
    "Quantization",
    "Service",
    "Source",
    "Unlock",
]


# The fixed vocabulary of `Service.serves_goals` (docs/catalog.md explains each tag).
GOALS: tuple[str, ...] = (
    "llm-serving",
    "coding-assistant",
    "rag",
    "observability",
    "security",
    "gpu-runtime",
    "optimization",
    "fine-tuning",
    "vision",
    "speech",
    "data-science",
    "simulation",
    "telecom",
    "edge",
    "orchestration",
    "profiling",
)


class Source(FrozenModel):
    """Where a fact comes from. `fields` names the fields it backs; empty means the whole entry."""

    ref: str = Field(min_length=3, description="URL, or `owner/repo path`, or a document and section")
    fields: list[str] = Field(default_factory=list)
    note: str = ""


class CatalogEntry(FrozenModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="lowercase kebab-case product name")
    name: str
    sources: list[Source] = Field(min_length=1)
    uncertain: list[str] = Field(default_factory=list, description="fields whose value is not settled")
    notes: str = ""


class DeviceKind(StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    SOC = "soc"  # CPU and GPU sharing one memory (Jetson)


class Hardware(CatalogEntry):
    vendor: str
    kind: DeviceKind
    architecture: str
    memory_gib: float | None = Field(
        default=None, gt=0, description="device memory; None for CPUs (host RAM)"
    )
    memory_type: str = ""
    memory_bandwidth_gbs: float = Field(gt=0, description="theoretical peak, GB/s (10^9 bytes)")
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    tensor_precisions: list[str] = Field(default_factory=list, description="precisions the matrix units run")
    dense_tflops: dict[str, float] = Field(
        default_factory=dict, description="dense peak per precision (fp32, fp16, bf16, fp8, int8, fp4)"
    )
    isa: list[str] = Field(default_factory=list, description="CPU vector extensions: avx2, avx512, neon …")
    cores: int | None = None
    threads: int | None = None
    cuda_cores: int | None = None
    tdp_w: float = Field(gt=0)
    unified_memory: bool = False
    platform: str = Field(default="x86_64", description="x86_64, jetson, arm64")


class ModelArch(CatalogEntry):
    family: str
    params_b: float = Field(gt=0, description="total parameters, billions")
    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    max_context: int = Field(gt=0)
    tied_embeddings: bool = False
    sliding_window: int | None = Field(default=None, description="local attention window, if any")
    global_layers: int | None = Field(
        default=None, description="layers with full attention when others slide"
    )
    license: str = ""
    hf_repo: str = ""
    active_params_b: float | None = Field(
        default=None, gt=0, description="parameters used per token (mixture of experts); None = dense"
    )
    experts: int | None = Field(default=None, gt=0, description="routed experts per MoE layer")
    experts_per_token: int | None = Field(default=None, gt=0, description="experts each token uses")


class Quantization(CatalogEntry):
    bits_per_weight: float = Field(gt=0, le=32, description="real average bits per weight, scales included")
    format: str = Field(description="float, gguf, awq, gptq, fp8, fp4 …")
    engines: list[str] = Field(description="service ids that load it")
    native_min_compute_capability: str | None = Field(
        default=None, description="lowest CC whose tensor cores run it natively; below, it is emulated/upcast"
    )
    runs_on_cpu: bool = False
    kv_cache: bool = Field(default=False, description="usable as a KV-cache dtype")


class Platform(StrEnum):
    X86_64 = "x86_64"
    ARM64 = "arm64"
    JETSON = "jetson"
    WSL = "wsl"
    WINDOWS = "windows"
    KUBERNETES = "kubernetes"


class Membership(StrEnum):
    """Programs the person can belong to; `none` means free and open to anyone."""

    NONE = "none"
    DEVELOPER_PROGRAM = "developer-program"
    NGC = "ngc"
    SIXG_PROGRAM = "6g-developer-program"
    AI_AERIAL = "ai-aerial"
    NVAIE = "nvidia-ai-enterprise"


class Access(FrozenModel):
    """How a person gets the service, and what its terms allow."""

    license: str
    unlocked_by: list[Membership] = Field(description="any one of these gives access; [none] = open")
    production_requires: Membership | None = Field(
        default=None, description="what production use needs beyond `unlocked_by`"
    )
    notes: str = ""


class Service(CatalogEntry):
    vendor: str
    category: str = Field(description="inference, serving, runtime, monitoring, optimization, data, …")
    purpose: str
    serves_goals: list[str] = Field(description="goal tags it helps with (llm-serving, observability, rag …)")
    needs_gpu: bool
    min_compute_capability: str | None = None
    min_gpu_memory_gib: float | None = None
    supported_devices: dict[str, Literal["ok", "partial", "no"]] = Field(
        default_factory=dict, description="explicit fit per hardware id: ok, partial or no, with source"
    )
    platforms: list[Platform]
    access: Access
    depends_on: list[str] = Field(default_factory=list)
    effort_days: float = Field(gt=0, description="days for one person to stand it up on this kind of fleet")
    single_user_fit: bool = Field(default=True, description="False when built for clusters or teams")
    distribution: str = ""

    @field_validator("supported_devices", mode="before")
    @classmethod
    def _no_yaml_booleans(cls, value: object) -> object:
        # YAML 1.1 reads a bare `no` as false; say so rather than "not a valid string".
        if isinstance(value, dict) and any(isinstance(fit, bool) for fit in value.values()):
            raise ValueError('write the fit in quotes ("no"): YAML reads a bare no as false')
        return value


class Unlock(FrozenModel):
    """One thing a program gives: a service id from the catalog, or a named benefit."""

    target: str = Field(min_length=2, description="service id, or a short benefit name")
    detail: str


class MembershipInfo(CatalogEntry):
    """What a program gives this person, what it does not, and the concrete steps to use it."""

    program: Membership
    unlocks: list[Unlock] = Field(default_factory=list)
    does_not_cover: list[str] = Field(default_factory=list)
    next_steps: list[str] = Field(default_factory=list, description="concrete steps on this fleet")
    cost: str = Field(default="", description="price as the vendor states it, if any")
