"""Built-in simulator profiles for the person's devices, each built from the sizing engine's
estimate (`wavefleet.plan.sizing.estimate_engine`) and saying what it rests on.

    wave sim --profile rtx5070ti-vllm          # RTX 5070 Ti, vLLM, Llama 3.1 8B FP8
    wave sim --profile my-measured.yaml        # or a profile file (e.g. from scripts/calibrate_sim.py)

A profile is an estimate: the sizing engine's roofline numbers with its stated efficiencies, not a
measurement. Calibrated profiles (src/wavefleet/sim/calibrated/*.yaml) are fits to a real engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from wavefleet.catalog.loader import Catalog
from wavefleet.engines import EngineKind, kind_of_service
from wavefleet.errors import UnknownIdError, UsageError
from wavefleet.plan.sizing import EngineEstimate, SizingInput, estimate_engine
from wavefleet.sim.profile import SimProfile, load_profile

__all__ = [
    "BUILTIN_SPECS",
    "ProfileSpec",
    "builtin_profile_names",
    "calibrated_profile_paths",
    "profile_from_estimate",
    "profile_from_spec",
    "resolve_profile",
    "simulated_kind",
]

# vLLM's default --max-num-batched-tokens with chunked prefill (V1 engine), the chunk the simulator
# prefills per step; llama.cpp's default --batch-size (logical batch) is also 2048.
PREFILL_CHUNK_TOKENS = 2048
# Sequence length the ITL-over-batch curve is estimated at for shared-KV engines: a typical chat
# request, so the curve spans the batch sizes such requests reach (an assumption).
CURVE_CONTEXT = 2048
# Fewer KV tokens than this and the deployment is reported as not fitting rather than simulated.
MIN_KV_TOKENS = 512


def simulated_kind(service: str) -> EngineKind | None:
    """The kind the simulator imitates for a deployment of this catalog service, if it imitates one."""
    kind = kind_of_service(service)
    return kind if kind is not None and kind.traits.simulated else None


@dataclass(frozen=True)
class ProfileSpec:
    """A deployment to simulate: what the sizing engine is asked about, and how the engine runs it."""

    name: str
    device: str
    model: str
    quant: str
    engine: str  # catalog id of the engine the sizing engine models: vllm, llama.cpp, tensorrt-llm …
    context: int  # vLLM --max-model-len; llama.cpp --ctx-size (all slots together)
    max_num_seqs: int  # vLLM --max-num-seqs; llama.cpp --parallel
    kv_dtype: str | None = None
    memory_utilization: float = 0.9
    host: str | None = None  # the CPU beside a GPU, for a CPU/GPU layer split
    host_ram_gib: float | None = None
    note: str = ""
    kind: EngineKind | None = None  # the engine imitated on the wire; None: the one `engine` is served as

    @property
    def dialect(self) -> EngineKind:
        kind = self.kind or simulated_kind(self.engine)
        if kind is None:
            raise ValueError(f"the simulator imitates no engine for {self.engine!r}; name its kind")
        return kind


BUILTIN_SPECS: tuple[ProfileSpec, ...] = (
    ProfileSpec(
        "rtx5070ti-vllm", "rtx-5070-ti", "llama-3.1-8b", "fp8", "vllm", 16384, 128,
        kv_dtype="fp8", memory_utilization=0.85, host="ryzen-9-9900x",
        note="the seed's vLLM flags: --quantization fp8 --kv-cache-dtype fp8 --max-model-len 16384 "
        "--max-num-seqs 128 --gpu-memory-utilization 0.85",
    ),
    ProfileSpec(
        "ryzen9900x-llamacpp", "ryzen-9-9900x", "llama-3.2-3b", "q4_k_m", "llama.cpp", 8192, 8,
        host_ram_gib=64, note="the seed's llama-server flags: --ctx-size 8192 --parallel 8 --threads 10",
    ),
    ProfileSpec(
        "i9-9980hk-llamacpp", "core-i9-9980hk", "llama-3.2-1b", "q4_k_m", "llama.cpp", 4096, 4,
        host_ram_gib=32, note="the seed's LXC llama-server: --ctx-size 4096 --threads 6; --parallel 4 assumed",
    ),
    ProfileSpec(
        "gtx1650-llamacpp", "gtx-1650", "llama-3.2-1b", "q4_k_m", "llama.cpp", 4096, 2,
        host="core-i9-9980hk", host_ram_gib=32,
        note="GPU offload on the XPS 15's GTX 1650 (4 GB); the sizing engine decides how many layers fit",
    ),
    ProfileSpec(
        "jetson-orin-nano-llamacpp", "jetson-orin-nano-super", "llama-3.2-3b", "q4_k_m", "llama.cpp", 4096, 2,
        note="llama.cpp (jetson-containers) on the 8 GB shared memory; --parallel 2 assumed",
    ),
    ProfileSpec(
        "jetson-orin-nano-trtllm", "jetson-orin-nano-super", "llama-3.2-3b", "awq-int4", "tensorrt-llm", 4096, 4,
        note="TensorRT-LLM behind Triton's generate extension; AWQ INT4 as Orin has no FP8 tensor cores",
    ),
)  # fmt: skip


def builtin_profile_names() -> list[str]:
    return [spec.name for spec in BUILTIN_SPECS] + sorted(calibrated_profile_paths())


def calibrated_profile_paths() -> dict[str, Path]:
    """Profiles fitted to real engines, shipped as YAML beside this module."""
    folder = resources.files("wavefleet.sim") / "calibrated"
    if not folder.is_dir():
        return {}
    return {
        Path(str(entry)).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")
    }


def resolve_profile(ref: str, catalog: Catalog) -> SimProfile:
    """A built-in profile by name, a calibrated one by name, or a profile YAML file by path."""
    for spec in BUILTIN_SPECS:
        if spec.name == ref:
            try:
                return profile_from_spec(spec, catalog)
            except ValueError as exc:
                raise UsageError(f"profile {ref}: {exc}") from exc
    calibrated = calibrated_profile_paths()
    if ref in calibrated:
        return load_profile(calibrated[ref])
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_profile(path)
    raise UnknownIdError("simulator profile", ref, builtin_profile_names(), "wave sim --list-profiles")


def profile_from_spec(spec: ProfileSpec, catalog: Catalog, *, name: str | None = None) -> SimProfile:
    """Ask the sizing engine about `spec` and turn its estimate into a simulator profile."""
    device = catalog.get_hardware(spec.device)
    inp = SizingInput(
        model=catalog.get_model(spec.model),
        device=device,
        quant=catalog.get_quantization(spec.quant),
        kv_dtype=catalog.get_quantization(spec.kv_dtype) if spec.kv_dtype else None,
        # llama.cpp splits --ctx-size across its slots; the sizing engine sizes one sequence
        context=spec.context // spec.max_num_seqs if spec.dialect is EngineKind.LLAMACPP else spec.context,
        memory_utilization=spec.memory_utilization,
        max_num_seqs=spec.max_num_seqs,
        engine=spec.engine,
        host=catalog.get_hardware(spec.host) if spec.host else None,
        host_ram_gib=spec.host_ram_gib,
    )
    estimate = estimate_engine(inp)
    curve_estimate = None
    if spec.dialect is not EngineKind.LLAMACPP and spec.context > CURVE_CONTEXT:
        curve_estimate = estimate_engine(inp.model_copy(update={"context": CURVE_CONTEXT}))
    return profile_from_estimate(
        estimate,
        curve_estimate=curve_estimate,
        name=name or spec.name,
        dialect=spec.dialect,
        model=spec.model,
        device=spec.device,
        gpu=device.kind.value != "cpu",
        context=spec.context,
        max_num_seqs=spec.max_num_seqs,
        basis_head=[
            f"sizing estimate: {spec.model} {spec.quant} on {spec.device} under {spec.engine}",
            *([spec.note] if spec.note else []),
        ],
    )


def profile_from_estimate(
    estimate: EngineEstimate,
    *,
    curve_estimate: EngineEstimate | None = None,
    name: str,
    dialect: EngineKind,
    model: str,
    device: str | None,
    gpu: bool,
    context: int,
    max_num_seqs: int,
    basis_head: list[str] | None = None,
) -> SimProfile:
    """Map an EngineEstimate onto the simulator's knobs, engine by engine.

    vLLM/SGLang/TRT-LLM: KV capacity from the estimate shared by all sequences, admission by
    free KV with preemption (vLLM's recompute), `max_num_seqs` as configured, `context` per request.
    llama.cpp: `--parallel` slots share `--ctx-size`; each slot gets ctx/parallel tokens (no
    --kv-unified), and a request is admitted only into a free slot (reserve mode).
    """
    basis = list(basis_head or [])
    if dialect is not EngineKind.LLAMACPP and estimate.kv_capacity_tokens < MIN_KV_TOKENS:
        raise ValueError(
            f"it does not fit: the memory left after weights and overhead holds "
            f"{estimate.kv_capacity_tokens} KV tokens (under {MIN_KV_TOKENS})"
        )
    if dialect is EngineKind.LLAMACPP:
        # llama.cpp allocates --ctx-size up front (or fails to start), so that is its KV cache
        kv_capacity = context
        max_model_len = max(16, kv_capacity // max_num_seqs)
        admission = "reserve"
        basis.append(
            f"llama.cpp: {max_num_seqs} slots of {max_model_len} tokens each (ctx-size / parallel), "
            "requests wait for a free slot"
        )
    else:
        kv_capacity = estimate.kv_capacity_tokens
        max_model_len = min(context, kv_capacity)
        admission = "preempt"
        basis.append(
            f"KV cache of {kv_capacity} tokens shared by up to {max_num_seqs} sequences; preempt on overflow"
        )
    curve = sorted({b: t for b, t in (curve_estimate or estimate).itl_at_batch}.items())
    if curve_estimate is not None:
        basis.append(
            f"ITL curve from a second estimate with every sequence at {CURVE_CONTEXT} tokens: at the full "
            f"context only {len(estimate.itl_at_batch)} batch sizes fit, too few to shape the curve"
        )
    basis.append(f"prefill chunk {PREFILL_CHUNK_TOKENS} tokens per step (chunked prefill)")
    basis.extend(estimate.basis)
    return SimProfile(
        name=name,
        dialect=dialect,
        model=model,
        device=device,
        gpu=gpu,
        prefill_tokens_per_s=estimate.prefill_tokens_per_s,
        itl_at_batch=curve,
        max_num_seqs=max_num_seqs,
        kv_capacity_tokens=max(kv_capacity, 16),
        max_model_len=max(16, max_model_len),
        prefill_chunk_tokens=PREFILL_CHUNK_TOKENS,
        kv_admission=admission,
        basis=basis,
    )
