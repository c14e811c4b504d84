"""How the embedded engine is started: model, context, threads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_CTX", "EngineSettings", "physical_cores"]

# 4096 tokens: long enough for chat with a small model, and its KV cache stays small for a
# person's own 7-8B GGUF too (about 0.5 GB at f16 for Llama-3-8B's 8 KV heads).
DEFAULT_CTX = 4096


@dataclass(frozen=True, slots=True)
class EngineSettings:
    model_path: Path
    model_name: str  # the id /v1/models lists and requests name
    n_ctx: int = DEFAULT_CTX
    n_threads: int = 1
    n_batch: int = 512


def physical_cores() -> int:
    """Physical cores this process may use: llama.cpp decodes fastest at one thread per core.

    Reads Linux's CPU topology (core per package) for the CPUs in our affinity mask; elsewhere,
    or if that fails, falls back to the logical CPU count.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))
