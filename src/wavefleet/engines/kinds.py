"""Which engine a backend is, and what Wavefleet knows about each: one `EngineKind`, one table.

    from wavefleet.engines import EngineKind
    EngineKind("llamacpp").traits.health_path        # "/health"
    EngineKind.TRITON.traits.api                     # Api.TRITON: the generate extension, not /v1
    kind_of_service("llama.cpp")                     # EngineKind.LLAMACPP (a catalog service id)

Every other package reads this table: the catalog's service ids, the gateway config's `kind:`, the
renderer's compose services, the monitor's metrics dialects and the simulator's imitations all
name engines by `EngineKind`. Adding an engine is one row in `ENGINES` plus its API adapter (when
it does not speak OpenAI's `/v1`) and its metrics dialect in `gateway/monitor/dialects/`.

This module imports nothing else of Wavefleet's, so anything may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "ENGINES",
    "Api",
    "EngineKind",
    "EngineTraits",
    "EnvVar",
    "FirstToken",
    "Flag",
    "KvCache",
    "Launch",
    "MetricsDialect",
    "Reporting",
    "Setting",
    "Slots",
    "Usage",
    "WeightFormat",
    "kind_of_service",
    "sizing_engine",
    "sizing_kind",
]


class EngineKind(StrEnum):
    """The engine behind a backend. The values are what `kind:` takes in `wave.yaml`."""

    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    SGLANG = "sglang"
    TGI = "tgi"
    NIM = "nim"
    TRITON = "triton"  # Triton's generate / generate_stream extension
    OPENAI = "openai"  # any other OpenAI-compatible server: no load metrics, gateway counters only
    OLLAMA = "ollama"

    @property
    def traits(self) -> EngineTraits:
        return ENGINES[self]


class Api(StrEnum):
    """Which API adapter the gateway talks to the engine through."""

    OPENAI = "openai"  # OpenAI's /v1: requests and replies pass through
    TRITON = "triton"  # KServe v2 generate extension: translated to and from OpenAI's shapes


class MetricsDialect(StrEnum):
    """Which of the monitor's dialects reads the engine's health and load."""

    VLLM = "vllm"
    LLAMACPP = "llamacpp"
    SGLANG = "sglang"
    TGI = "tgi"
    NIM = "nim"
    TRITON = "triton"
    OPENAI = "openai"  # health only (GET /v1/models); load is the gateway's in-flight count
    OLLAMA = "ollama"


class KvCache(StrEnum):
    """How the engine holds its KV cache, which decides how its memory is sized."""

    PAGED = "paged"  # reserves a share of GPU memory at start, shared by all sequences in pages
    SLOTS = "slots"  # allocates its context up front, split evenly across its slots


class WeightFormat(StrEnum):
    CHECKPOINT = "checkpoint"  # a Hugging Face checkpoint (safetensors), quantized on load or pre-quantized
    GGUF = "gguf"  # one GGUF file


class FirstToken(StrEnum):
    """Where the first generated token shows in the engine's streamed reply."""

    FIRST_DELTA = "first-delta"  # the first SSE chunk whose delta carries content
    FIRST_EVENT = "first-event"  # the first generate_stream event's text_output (Triton)


class Usage(StrEnum):
    """How the engine reports token counts of a streamed reply."""

    FINAL_CHUNK = "final-chunk"  # with stream_options.include_usage: a last chunk, empty choices, usage
    NONE = "none"  # no token counts at all


@dataclass(frozen=True, kw_only=True, slots=True)
class Reporting:
    first_token: FirstToken
    usage: Usage
    timings: bool = False  # llama-server's `timings` (prompt_ms, predicted_ms, …) on the last chunk and body


@dataclass(frozen=True, kw_only=True, slots=True)
class Slots:
    """Sequences the engine runs at once when its own setting is left at the default."""

    count: int
    source: str  # where the number comes from, or why it is assumed


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line flag that takes the value next to it: `--port 8000`."""

    name: str


@dataclass(frozen=True, slots=True)
class EnvVar:
    """An environment variable; `template` formats the value (`0.0.0.0:{}` for a listen address)."""

    name: str
    template: str = "{}"


Setting = Flag | EnvVar


@dataclass(frozen=True, kw_only=True, slots=True)
class Launch:
    """How the engine is started: a program (or image) and where each setting goes.

    `None` for a setting means the engine takes it from somewhere else (Triton's model
    repository; Ollama loads a model when a request names it).
    """

    command: tuple[str, ...]  # the program and its fixed arguments
    image: str  # container image, untagged (`wave render` pins the tags it uses)
    port: Setting
    model: Setting | None = None
    context: Setting | None = None
    slots: Setting | None = None

    def arguments(
        self, *, model: str | None, port: int, context: int | None = None, slots: int | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment for these values; a value whose setting is None is
        not passed (the engine's default, or the model repository, decides it)."""
        argv = list(self.command)
        env: dict[str, str] = {}
        for setting, value in (
            (self.model, model),
            (self.port, port),
            (self.context, context),
            (self.slots, slots),
        ):
            if setting is None or value is None:
                continue
            if isinstance(setting, Flag):
                argv += [setting.name, str(value)]
            else:
                env[setting.name] = setting.template.format(value)
        return argv, env


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineTraits:
    """One row of the table: everything Wavefleet's packages need to know about one engine."""

    kind: EngineKind
    title: str
    catalog_id: str | None  # its entry in the catalog's services; None: it has none
    sized_as: str | None  # catalog id of the engine the sizing engine models it as
    # Other catalog services reached through this kind, each with the engine it is sized as.
    serves: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    api: Api
    metrics: MetricsDialect
    port: int | None  # the port it listens on when not told
    health_path: str
    metrics_path: str | None  # None: no metrics the monitor reads
    metrics_port: int | None = None  # None: the API's port
    slots: Slots
    needs_gpu: bool  # also the gpu-only policy's guess when a backend does not say
    kv_cache: KvCache | None  # None: unknown
    weights: WeightFormat | None  # None: the engine fetches its own
    reporting: Reporting
    launch: Launch | None  # None: Wavefleet never starts it
    rendered: bool = False  # `wave render` writes a compose service for it
    simulated: bool = False  # `wave sim` imitates it on the wire

    def services(self) -> dict[str, str]:
        """Every catalog service a backend of this kind is, with the engine each is sized as."""
        own = {self.catalog_id: self.sized_as} if self.catalog_id and self.sized_as else {}
        return {**own, **self.serves}


_OPENAI_STREAM = Reporting(first_token=FirstToken.FIRST_DELTA, usage=Usage.FINAL_CHUNK)

ENGINES: Mapping[EngineKind, EngineTraits] = MappingProxyType(
    {
        EngineKind.VLLM: EngineTraits(
            kind=EngineKind.VLLM,
            title="vLLM",
            catalog_id="vllm",
            sized_as="vllm",
            api=Api.OPENAI,
            metrics=MetricsDialect.VLLM,
            port=8000,
            health_path="/health",
            metrics_path="/metrics",
            slots=Slots(
                count=256,
                source="--max-num-seqs default on GPUs under 70 GiB (EngineArgs.get_batch_defaults, "
                "vllm/engine/arg_utils.py)",
            ),
            needs_gpu=True,
            kv_cache=KvCache.PAGED,
            weights=WeightFormat.CHECKPOINT,
            reporting=_OPENAI_STREAM,
            launch=Launch(
                command=("vllm", "serve"),
                image="vllm/vllm-openai",
                model=Flag("--model"),
                port=Flag("--port"),
                context=Flag("--max-model-len"),
                slots=Flag("--max-num-seqs"),
            ),
            rendered=True,
            simulated=True,
        ),
        EngineKind.LLAMACPP: EngineTraits(
            kind=EngineKind.LLAMACPP,
            title="llama.cpp",
            catalog_id="llama.cpp",
            sized_as="llama.cpp",
            api=Api.OPENAI,
            metrics=MetricsDialect.LLAMACPP,
            port=8080,
            health_path="/health",
            metrics_path="/metrics",
            slots=Slots(
                count=4,
                source="llama-server's --parallel auto gives 4 slots (ggml-org/llama.cpp#16736, #17997)",
            ),
            needs_gpu=False,
            kv_cache=KvCache.SLOTS,
            weights=WeightFormat.GGUF,
            reporting=Reporting(first_token=FirstToken.FIRST_DELTA, usage=Usage.FINAL_CHUNK, timings=True),
            launch=Launch(
                command=("llama-server",),
                image="ghcr.io/ggml-org/llama.cpp",
                model=Flag("--model"),
                port=Flag("--port"),
                context=Flag("--ctx-size"),  # all slots together: slots x per-slot context
                slots=Flag("--parallel"),
            ),
            rendered=True,
            simulated=True,
        ),
        EngineKind.SGLANG: EngineTraits(
            kind=EngineKind.SGLANG,
            title="SGLang",
            catalog_id="sglang",
            sized_as="sglang",
            api=Api.OPENAI,
            metrics=MetricsDialect.SGLANG,
            port=30000,
            health_path="/health",
            metrics_path="/metrics",
            slots=Slots(
                count=256, source="taken as vLLM's default (assumption: SGLang sizes it from memory)"
            ),
            needs_gpu=True,
            kv_cache=KvCache.PAGED,
            weights=WeightFormat.CHECKPOINT,
            reporting=_OPENAI_STREAM,
            launch=Launch(
                command=("python3", "-m", "sglang.launch_server"),
                image="lmsysorg/sglang",
                model=Flag("--model-path"),
                port=Flag("--port"),
                context=Flag("--context-length"),
                slots=Flag("--max-running-requests"),
            ),
            simulated=True,
        ),
        EngineKind.TGI: EngineTraits(
            kind=EngineKind.TGI,
            title="Hugging Face TGI",
            catalog_id="tgi",
            sized_as="vllm",
            api=Api.OPENAI,
            metrics=MetricsDialect.TGI,
            port=80,  # the image's PORT; text-generation-launcher alone defaults to 3000
            health_path="/health",
            metrics_path="/metrics",
            slots=Slots(count=128, source="text-generation-launcher --max-concurrent-requests default"),
            needs_gpu=True,
            kv_cache=KvCache.PAGED,
            weights=WeightFormat.CHECKPOINT,
            reporting=_OPENAI_STREAM,
            launch=Launch(
                command=("text-generation-launcher",),
                image="ghcr.io/huggingface/text-generation-inference",
                model=Flag("--model-id"),
                port=Flag("--port"),
                context=Flag("--max-total-tokens"),
                slots=Flag("--max-concurrent-requests"),
            ),
        ),
        EngineKind.NIM: EngineTraits(
            kind=EngineKind.NIM,
            title="NVIDIA NIM for LLMs",
            catalog_id="nim",
            sized_as="vllm",
            api=Api.OPENAI,
            metrics=MetricsDialect.NIM,
            port=8000,
            health_path="/v1/health/ready",
            metrics_path="/v1/metrics",
            slots=Slots(count=256, source="NIM runs vLLM inside: vLLM's --max-num-seqs default"),
            needs_gpu=True,
            kv_cache=KvCache.PAGED,
            weights=None,
            reporting=_OPENAI_STREAM,
            launch=None,  # one image per model, started as NGC documents it
        ),
        EngineKind.TRITON: EngineTraits(
            kind=EngineKind.TRITON,
            title="Triton",
            catalog_id="triton",
            sized_as="vllm",  # its vLLM backend, the one `wave render` deploys
            serves=MappingProxyType({"tensorrt-llm": "tensorrt-llm"}),  # its tensorrtllm backend
            api=Api.TRITON,
            metrics=MetricsDialect.TRITON,
            port=8000,  # HTTP; gRPC on 8001
            health_path="/v2/health/ready",
            metrics_path="/metrics",
            metrics_port=8002,
            slots=Slots(
                count=256,
                source="its vLLM backend takes vLLM's --max-num-seqs default; TensorRT-LLM's taken as "
                "the same (assumption)",
            ),
            needs_gpu=True,
            kv_cache=KvCache.PAGED,
            weights=WeightFormat.CHECKPOINT,
            reporting=Reporting(first_token=FirstToken.FIRST_EVENT, usage=Usage.NONE),
            launch=Launch(
                command=("tritonserver", "--model-repository=/models"),
                image="nvcr.io/nvidia/tritonserver",
                port=Flag("--http-port"),
            ),
            rendered=True,
            simulated=True,
        ),
        EngineKind.OPENAI: EngineTraits(
            kind=EngineKind.OPENAI,
            title="any OpenAI-compatible server",
            catalog_id=None,
            sized_as=None,
            serves=MappingProxyType({"dynamo": "vllm"}),  # Dynamo's OpenAI frontend over vLLM workers
            api=Api.OPENAI,
            metrics=MetricsDialect.OPENAI,
            port=None,
            health_path="/v1/models",
            metrics_path=None,
            slots=Slots(count=4, source="an unknown server is assumed small"),
            needs_gpu=False,
            kv_cache=None,
            weights=None,
            reporting=_OPENAI_STREAM,
            launch=None,
        ),
        EngineKind.OLLAMA: EngineTraits(
            kind=EngineKind.OLLAMA,
            title="Ollama",
            catalog_id="ollama",
            sized_as="llama.cpp",  # its runner is llama.cpp's engine
            api=Api.OPENAI,  # under /v1
            metrics=MetricsDialect.OLLAMA,
            port=11434,
            health_path="/api/version",
            metrics_path=None,  # no Prometheus metrics; /api/ps lists the models loaded in memory
            slots=Slots(count=1, source="OLLAMA_NUM_PARALLEL default (Ollama FAQ)"),
            needs_gpu=False,  # uses a GPU when it finds one, else the CPU
            kv_cache=KvCache.SLOTS,
            weights=WeightFormat.GGUF,
            reporting=_OPENAI_STREAM,
            launch=Launch(
                command=("ollama", "serve"),
                image="ollama/ollama",
                port=EnvVar("OLLAMA_HOST", "0.0.0.0:{}"),
                context=EnvVar("OLLAMA_CONTEXT_LENGTH"),
                slots=EnvVar("OLLAMA_NUM_PARALLEL"),
            ),  # no model setting: `ollama pull` fetches it, a request naming it loads it
        ),
    }
)


def kind_of_service(service: str) -> EngineKind | None:
    """The kind a deployment of this catalog service is served as; None for a non-engine."""
    for traits in ENGINES.values():
        if service in traits.services():
            return traits.kind
    return None


def sizing_engine(service: str) -> str:
    """The catalog id the sizing engine models this service as (itself when no kind says)."""
    kind = kind_of_service(service)
    return kind.traits.services()[service] if kind is not None else service


def sizing_kind(engine: str) -> EngineKind | None:
    """The kind whose traits (default slots, KV cache) describe the sizing engine's `engine`:
    the one serving that catalog service sized as itself (vLLM, llama.cpp, SGLang, TensorRT-LLM)."""
    kind = kind_of_service(engine)
    return kind if kind is not None and kind.traits.services()[engine] == engine else None
