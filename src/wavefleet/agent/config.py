"""The fleet agent's configuration file (`agent.yaml`), read by `wave agent --config`.

    host: 127.0.0.1
    port: 9190
    secret: {env: WAVE_AGENT_SECRET}        # or {file: /etc/wavefleet/agent.secret}; never inline
    devices:
      cpu: {budget: 4GiB}                   # host RAM; a budget in bytes or a fraction (0.5)
      gpu0: {gpu: 0, budget: 0.9}           # NVML index 0, 90 % of its memory
    models:
      - {name: smollm2, gguf: "bundled:smollm2", context: 2048, slots: 4, device: cpu, ttl: 10m}
      - {name: llama-8b, gguf: /models/llama-3.1-8b-q4_k_m.gguf, context: 8192, slots: 4,
         device: gpu0, pinned: true}
    defaults: {load_timeout: 120s, max_restarts: 5, backoff: {base: 10s, max: 300s}}

This module is a leaf: `wave render` imports it to write and check each host's agent.yaml
without the agent's server parts. Durations and sizes are parsed by `agent.units`.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

from wavefleet.agent.secret import SecretSource
from wavefleet.agent.units import FOREVER, parse_duration, parse_size
from wavefleet.engines import Api, EngineKind
from wavefleet.errors import ConfigError, ConfigProblem, UnknownIdError
from wavefleet.files import FrozenModel, load_model
from wavefleet.gateway.config import ApiKeySource

__all__ = [
    "BUNDLED_PREFIX",
    "DEFAULT_PORT",
    "SECRET_ENV",
    "AgentConfig",
    "Backoff",
    "Defaults",
    "DeviceConfig",
    "MemoryBudget",
    "ModelConfig",
    "SecretSource",
    "TlsConfig",
    "load_agent_config",
    "resolve_gguf",
]

DEFAULT_PORT = 9190
SECRET_ENV = "WAVE_AGENT_SECRET"  # read when the file names no secret
BUNDLED_PREFIX = "bundled:"
_BUNDLED = ("smollm2",)
CPU_DEVICE = "cpu"


def _duration(value: object) -> float:
    return parse_duration(value)


def _positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: give a duration above zero, e.g. '30s' or '2m'")
    return seconds


def _size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value  # bytes (what a dumped config holds)
    return parse_size(value)


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_positive_duration)]
Size = Annotated[int, BeforeValidator(_size)]


class MemoryBudget(FrozenModel):
    """What the agent may use of a device: bytes, or a fraction of the device's total.

    In the file: a size with a unit (`4GiB`) or a fraction (`0.5`)."""

    bytes: int | None = Field(default=None, gt=0)
    fraction: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a budget is a size like '4GiB' or a fraction like 0.5")
        if isinstance(value, float | int):
            if 0 < value <= 1:
                return {"fraction": float(value)}
            raise ValueError(
                f"{value!r}: a bare number is a fraction of the device (0 < x <= 1); give bytes with a unit, "
                "e.g. '4GiB'"
            )
        if isinstance(value, str):
            return {"bytes": parse_size(value)}
        return value

    @model_validator(mode="after")
    def _one_of(self) -> MemoryBudget:
        if (self.bytes is None) == (self.fraction is None):
            raise ValueError("give a size ('4GiB') or a fraction (0.5)")
        return self

    def of(self, total: int) -> int:
        """The budget in bytes on a device of `total` bytes (never more than the device has)."""
        wanted = self.bytes if self.bytes is not None else int(total * (self.fraction or 0))
        return min(wanted, total)


class DeviceConfig(FrozenModel):
    """One memory pool the agent places engines in: host RAM (`cpu`), or an NVIDIA GPU by NVML index."""

    gpu: int | None = Field(default=None, ge=0, description="NVML index; absent: host RAM")
    budget: MemoryBudget | None = Field(
        default=None, description="bytes or a fraction of the total; default 0.9 of a GPU, 0.5 of host RAM"
    )
    total: Size | None = Field(
        default=None, description="the device's memory, when not read from NVML, /proc/meminfo and cgroups"
    )

    def budget_of(self, total: int) -> int:
        budget = self.budget or MemoryBudget(fraction=0.9 if self.gpu is not None else 0.5)
        return budget.of(total)


class Backoff(FrozenModel):
    """Waits between restarts of a crashed engine: min(base x 2^(n-1), max) before the n-th."""

    base: PositiveDuration = 10.0
    max: PositiveDuration = 300.0

    def delay(self, attempt: int) -> float:
        doublings = float(attempt - 1 if attempt > 1 else 0)
        return float(min(self.base * 2.0**doublings, self.max))


class Defaults(FrozenModel):
    ttl: Duration = Field(
        default=FOREVER, description="idle time before an unload; -1 never, 0 as soon as idle"
    )
    load_timeout: PositiveDuration = Field(
        default=120.0, description="longest a request waits for its model, and an engine may take to load"
    )
    max_restarts: int = Field(default=5, ge=0, description="restarts in a row before the model is failed")
    backoff: Backoff = Field(default_factory=Backoff)
    stable_after: PositiveDuration = Field(
        default=60.0, description="ready this long, an engine's restarts in a row count from zero again"
    )
    stop_timeout: PositiveDuration = Field(default=10.0, description="SIGTERM, then SIGKILL after this")
    drain_timeout: PositiveDuration = Field(default=30.0, description="drain waits this long for requests")
    health_interval: PositiveDuration = Field(default=5.0, description="health polls of a ready engine")
    memory_recovery: PositiveDuration = Field(
        default=5.0, description="after an eviction, how long to wait for the device's memory to come back"
    )


class ModelConfig(FrozenModel):
    """One model the agent serves: its own engine process, started when a request names it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", description="the served model name")
    kind: EngineKind = EngineKind.LLAMACPP
    gguf: str | None = Field(default=None, description="a GGUF file, or bundled:smollm2")
    model: str | None = Field(default=None, description="what other kinds' launch passes as the model")
    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="the engine's own command line; {port}, {host}, {model}, {context}, {slots} filled in",
    )
    url: HttpUrl | None = Field(default=None, description="an engine running on its own: never started")
    context: int = Field(default=4096, ge=16, description="tokens per slot")
    slots: int = Field(default=4, ge=1, le=1024, description="sequences at once (llama-server --parallel)")
    device: str = CPU_DEVICE
    n_gpu_layers: int | Literal["all", "auto"] | None = Field(
        default=None, description="layers on the GPU; default all on a GPU device, 0 on cpu"
    )
    threads: int | None = Field(default=None, ge=1)
    pinned: bool = Field(default=False, description="never unloaded: not when idle, not to make room")
    ttl: Duration | None = Field(
        default=None, description="idle time before an unload; default: defaults.ttl"
    )
    embedding: bool = False
    load_timeout: PositiveDuration | None = Field(default=None, description="default: defaults.load_timeout")
    memory: Size | None = Field(default=None, description="its memory, when not estimated from the GGUF")
    args: list[str] = Field(default_factory=list, description="more engine flags")
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("gguf")
    @classmethod
    def _gguf_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if value.startswith(BUNDLED_PREFIX):
            resolve_gguf(value)  # raises with the fix when the package is missing
            return value
        context = info.context or {}
        if not context.get("check_files", True):  # written elsewhere (`wave render`): the host has the file
            return value
        base = context.get("base_dir")
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if not path.is_file():
            raise ValueError(f"{path}: no such file; give the path of a GGUF model file, or bundled:smollm2")
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ValueError(f"{path}: not a GGUF file (no GGUF magic at its start)")
        return str(path.resolve())

    @model_validator(mode="after")
    def _one_way_to_run(self) -> ModelConfig:
        if self.kind.traits.api is not Api.OPENAI:
            raise ValueError(
                f"kind {self.kind.value} does not serve OpenAI's API, which the agent forwards: list the engine "
                "under the gateway's `backends:` (wave.yaml) instead"
            )
        if self.url is not None:
            if self.command is not None or self.gguf is not None or self.model is not None:
                raise ValueError(
                    "`url` is an engine running on its own: give no gguf, model or command with it"
                )
            return self
        if self.command is not None:
            if self.gguf is None and self.memory is None:
                raise ValueError("a `command` engine needs `memory` (or a `gguf` to estimate it from)")
            return self
        launch = self.kind.traits.launch
        if launch is None or launch.model is None:
            raise ValueError(
                f"kind {self.kind.value} cannot be started per model (its engine takes no model setting); "
                "give `url:` for one that runs on its own, or `command:`"
            )
        if self.kind is EngineKind.LLAMACPP:
            if self.gguf is None:
                raise ValueError("a llamacpp model needs `gguf:` (a file, or bundled:smollm2)")
        elif self.model is None or self.memory is None:
            raise ValueError(
                f"a {self.kind.value} model needs `model:` (what to load) and `memory:` (its size)"
            )
        return self

    def ttl_or(self, default: float) -> float:
        return self.ttl if self.ttl is not None else default


class TelemetryConfig(FrozenModel):
    """This host's device telemetry (NVML GPUs, RAPL CPUs, a Jetson's tegrastats), exported on the
    agent's /metrics under the names `wave telemetry --serve` uses, shown on its /ui, and used to
    meter the energy of the requests it serves."""

    fake: str | None = Field(
        default=None,
        description="replay a recorded GPU instead of NVML: a built-in recording's name or a `wave telemetry --record` file",
    )

    cpu: str | None = Field(
        default=None,
        description="where RAPL is not readable (VMs, some CPUs), estimate the CPU's power from this "
        "catalog CPU's TDP and its utilisation (`wave telemetry --cpu`); an estimate, named as one",
    )
    cpu_tdp: float | None = Field(
        default=None, gt=0, description="the same estimate from a TDP in watts (`wave telemetry --cpu-tdp`)"
    )

    @field_validator("fake")
    @classmethod
    def _known(cls, fake: str | None) -> str | None:
        from wavefleet.telemetry.fake_nvml import RECORDINGS

        if fake is not None and fake not in RECORDINGS and not Path(fake).is_file():
            raise ValueError(f"{fake!r} is neither a recording ({', '.join(RECORDINGS)}) nor a file")
        return fake

    @model_validator(mode="after")
    def _one_cpu(self) -> TelemetryConfig:
        if self.cpu is not None and self.cpu_tdp is not None:
            raise ValueError("give cpu (a catalog id) or cpu_tdp (watts), not both")
        self.tdp_w()  # an unknown or non-CPU id is refused here, with the file's line
        return self

    def tdp_w(self) -> float | None:
        """The TDP the CPU estimate uses where RAPL is missing; None: no estimate."""
        if self.cpu is None:
            return self.cpu_tdp
        from wavefleet.catalog import Catalog, DeviceKind

        try:
            hardware = Catalog.load().get_hardware(self.cpu)
        except UnknownIdError as exc:
            raise ValueError(str(exc)) from None
        if hardware.kind is not DeviceKind.CPU:
            raise ValueError(f"{self.cpu} is a {hardware.kind.value}, not a CPU: give the CPU's catalog id")
        return hardware.tdp_w


class TlsConfig(FrozenModel):
    """HTTPS for the agent's API; with `client_ca`, mutual TLS: only clients (gateways) holding a
    certificate signed by that CA may connect."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class AgentConfig(FrozenModel):
    name: str = Field(default_factory=socket.gethostname, description="this host, in the control API")
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    secret: SecretSource | None = Field(
        default=None,
        description=f"the shared secret; absent: ${SECRET_ENV} if set, else none (loopback only)",
    )
    api_keys: list[ApiKeySource] = Field(
        default_factory=list, description="more keys clients may use on the OpenAI API"
    )
    tls: TlsConfig | None = Field(default=None, description="HTTPS, and mutual TLS with `client_ca`")
    devices: dict[str, DeviceConfig] = Field(default_factory=lambda: {CPU_DEVICE: DeviceConfig()})
    models: list[ModelConfig] = Field(min_length=1)
    defaults: Defaults = Field(default_factory=Defaults)
    llama_server: Path | None = Field(
        default=None, description="the llama-server binary; default: the built one"
    )
    log_dir: Path | None = Field(default=None, description="also write each engine's output here")
    telemetry: TelemetryConfig | None = Field(
        default=None, description="export this host's device telemetry on /metrics (`telemetry: {}`)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"model names must be unique; repeated: {', '.join(repeated)}")
        indices = [d.gpu for d in self.devices.values() if d.gpu is not None]
        if len(indices) != len(set(indices)):
            raise ValueError("two devices name the same GPU index")
        ram = [name for name, d in self.devices.items() if d.gpu is None]
        if len(ram) > 1:
            raise ValueError(f"host RAM is one device; {', '.join(ram)} all name it (give `gpu:` to GPUs)")
        for model in self.models:
            if model.url is not None:
                continue
            device = self.devices.get(model.device)
            if device is None:
                raise ValueError(
                    f"model {model.name!r} names device {model.device!r}; devices: {', '.join(self.devices)}"
                )
            if device.gpu is None and model.n_gpu_layers not in (None, 0):
                raise ValueError(
                    f"model {model.name!r} is on {model.device} (host RAM) but asks for n_gpu_layers "
                    f"{model.n_gpu_layers}; put it on a GPU device or drop n_gpu_layers"
                )
        return self

    def model(self, name: str) -> ModelConfig | None:
        return next((m for m in self.models if m.name == name), None)

    def secret_value(self) -> str | None:
        """The shared secret (the file's source, else $WAVE_AGENT_SECRET), or None without one."""
        if self.secret is not None:
            return self.secret.resolve()
        return os.environ.get(SECRET_ENV, "").strip() or None

    def ram_device(self) -> str | None:
        """The name of the host-RAM device, if any."""
        return next((name for name, d in self.devices.items() if d.gpu is None), None)


def resolve_gguf(value: str) -> Path:
    """The file a model's `gguf` names: `bundled:NAME` for a model that ships with Wavefleet, else a path."""
    if not value.startswith(BUNDLED_PREFIX):
        return Path(value).expanduser()
    name = value.removeprefix(BUNDLED_PREFIX)
    if name not in _BUNDLED:
        raise ValueError(f"{value!r}: no such bundled model; bundled: {', '.join(_BUNDLED)}")
    from wavefleet.errors import EngineError
    from wavefleet.models.bundled import bundled_model_path

    try:
        return bundled_model_path()
    except EngineError as exc:
        raise ValueError(str(exc)) from exc


def load_agent_config(path: Path, *, check_files: bool = True) -> AgentConfig:
    """Load and validate an agent.yaml; errors name the file and line. Relative GGUF paths are read
    from the file's folder; `check_files=False` checks everything but that the files exist (a
    config rendered for another host)."""
    context = {"base_dir": path.resolve().parent, "check_files": check_files}
    config = load_model(AgentConfig, path, context=context)
    if not config.models:
        raise ConfigError([ConfigProblem(path, None, "models", "no models", "list at least one model")])
    return config
