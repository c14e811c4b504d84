"""llama.cpp's own `llama-server`: where the built binary is, and the command line that serves a model.

    binary = find_llama_server()            # the one built into the llama_cpp package, else PATH
    args = LlamaServerArgs(model_path=gguf, alias="smollm2", port=8081, parallel=4, threads=2)
    argv = args.command(binary)             # ready for subprocess / asyncio.create_subprocess_exec

The binary comes from the llama.cpp source that the llama-cpp-python sdist vendors: the same
build that makes the Python bindings also builds the `llama-server` target and installs it as
`llama_cpp/bin/llama-server`, beside the shared libraries in `llama_cpp/lib` (`./dev` sets the
CMake arguments; docs/engines.md lists them). Nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wavefleet.errors import EngineError, UsageError

__all__ = [
    "AMX_SYMBOL",
    "BINARY_NAME",
    "BUILD_FIX",
    "LlamaServerArgs",
    "LlamaServerBinary",
    "built_with_amx",
    "cpu_has_amx",
    "find_llama_server",
    "packaged_binary_path",
    "physical_cores",
]

BINARY_NAME = "llama-server"
PACKAGE = "llama_cpp"
# Exported by ggml's CPU backend only when it is compiled with AMX-INT8 (which -march=native
# turns on by itself on Sapphire Rapids and later).
AMX_SYMBOL = b"ggml_backend_amx_buffer_type"
BUILD_FIX = (
    "`./dev test` or `./dev up` builds it together with the Python bindings "
    "(docs/engines.md has the pip command to run by hand)"
)


@dataclass(frozen=True, slots=True)
class LlamaServerBinary:
    """A llama-server executable, and whether its CPU backend has llama.cpp's AMX weight buffers.

    `amx_kernels` is None when the CPU backend library was not found beside the binary.
    """

    path: Path
    amx_kernels: bool | None


def packaged_tool(name: str) -> Path | None:
    """`llama_cpp/bin/NAME` (llama-server, llama-quantize, ...) inside the installed llama_cpp
    package, if it is there; ./dev builds llama.cpp's tools into it.

    Found through the package's import spec, without importing it: importing loads libllama.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        return None
    for location in spec.submodule_search_locations or []:
        candidate = Path(location) / "bin" / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def packaged_binary_path() -> Path | None:
    """`llama_cpp/bin/llama-server` inside the installed llama_cpp package, if it is there."""
    return packaged_tool(BINARY_NAME)


def find_llama_server(explicit: Path | None = None, *, search_path: bool = True) -> LlamaServerBinary:
    """The llama-server to run: `explicit` if given, else the packaged build, else `llama-server` on PATH.

    Raises EngineError naming the fix when there is none (or `explicit` is not an executable file).
    """
    if explicit is not None:
        if not explicit.is_file():
            raise EngineError(f"llama-server {explicit}: no such file; pass the path of a built llama-server")
        if not os.access(explicit, os.X_OK):
            raise EngineError(f"llama-server {explicit}: not executable; fix: chmod +x {explicit}")
        path = explicit.resolve()
    else:
        found = packaged_binary_path()
        on_path = shutil.which(BINARY_NAME) if search_path and found is None else None
        if found is None and on_path is None:
            raise EngineError(
                "llama-server is not built: the installed llama-cpp-python has no llama_cpp/bin/llama-server "
                f"and none is on PATH; fix: {BUILD_FIX}, or put a llama-server you built (a CUDA build "
                "for an NVIDIA GPU) on PATH"
            )
        path = (found or Path(str(on_path))).resolve()
    return LlamaServerBinary(path=path, amx_kernels=built_with_amx(path))


def _cpu_backend_files(binary: Path) -> list[Path]:
    """Where ggml's CPU backend can be: the binary itself (static builds), then its shared libraries."""
    libraries: list[Path] = []
    for directory in (binary.parent, binary.parent.parent / "lib"):
        libraries += sorted(directory.glob("libggml-cpu*.so*"))
    return libraries


def built_with_amx(binary: Path) -> bool | None:
    """Whether this llama-server's CPU backend has llama.cpp's AMX weight buffers.

    Looks for the AMX buffer type's exported symbol in the binary and in the `libggml-cpu*.so`
    files beside it (its own folder and `../lib`, where the packaged build's RPATH points). None when
    the binary has no such symbol and no CPU backend library was found beside it to check.
    """
    libraries = _cpu_backend_files(binary)
    for candidate in [binary, *libraries]:
        try:
            if AMX_SYMBOL in candidate.read_bytes():
                return True
        except OSError:
            continue
    return False if libraries else None


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has AMX-INT8 (from the `flags` lines of /proc/cpuinfo, or the text given)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return any(
        line.startswith("flags") and "amx_int8" in line.split(":", 1)[-1].split()
        for line in cpuinfo.splitlines()
    )


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


@dataclass(frozen=True, slots=True, kw_only=True)
class LlamaServerArgs:
    """How one llama-server serves one model.

    `context` is tokens per slot: llama-server splits `--ctx-size` evenly across its `--parallel`
    slots (the KV cache is not unified when the slot count is given), so the command asks for
    `context * parallel`. `gpu_layers` None leaves llama-server's own default (`auto`); "all" or a
    count offloads that many layers. `fit` off keeps llama-server from shrinking the context or
    the offload to fit device memory, so it loads what was asked for or fails.
    """

    model_path: Path
    alias: str
    port: int
    host: str = "127.0.0.1"
    context: int = 4096
    parallel: int = 4
    threads: int | None = None
    gpu_layers: int | Literal["all", "auto"] | None = None
    embedding: bool = False
    fit: bool = False
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problems = []
        if not self.alias.strip() or "," in self.alias:
            problems.append(f"alias {self.alias!r} must be a non-empty name without commas")
        if not 1 <= self.port <= 65535:
            problems.append(f"port {self.port} must be within 1-65535")
        if self.context < 1:
            problems.append(f"context {self.context} must be at least 1 token per slot")
        if self.parallel < 1:
            problems.append(f"parallel {self.parallel} must be at least 1 slot")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads {self.threads} must be at least 1")
        if isinstance(self.gpu_layers, int) and self.gpu_layers < 0:
            problems.append(f"gpu_layers {self.gpu_layers} must be 0 or more, 'all' or 'auto'")
        if isinstance(self.gpu_layers, str) and self.gpu_layers not in ("all", "auto"):
            problems.append(f"gpu_layers {self.gpu_layers!r} must be a layer count, 'all' or 'auto'")
        if problems:
            raise UsageError("llama-server settings: " + "; ".join(problems))

    @property
    def ctx_size(self) -> int:
        """The total context llama-server is asked for: `context` tokens for each slot."""
        return self.context * self.parallel

    def command(self, binary: LlamaServerBinary, *, cpu_amx: bool | None = None) -> list[str]:
        """The argv that starts llama-server for this model, with `/metrics` and `/slots` on.

        On a CPU with AMX (`cpu_amx`, read from /proc/cpuinfo when None) and a binary whose CPU
        backend has AMX weight buffers, or may have (not found to check), it adds `--no-repack`:
        those buffers crash the first matrix product there (llama.cpp issue #20824), and
        `--no-repack` turns off the extra buffer types they are.
        """
        argv = [
            str(binary.path),
            "--model", str(self.model_path),
            "--alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--ctx-size", str(self.ctx_size),
            "--parallel", str(self.parallel),
            "--fit", "on" if self.fit else "off",
            "--metrics",
            "--slots",
            "--no-webui",
        ]  # fmt: skip
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        if self.gpu_layers is not None:
            argv += ["--n-gpu-layers", str(self.gpu_layers)]
        if self.embedding:
            argv.append("--embedding")
        amx = cpu_has_amx() if cpu_amx is None else cpu_amx
        if amx and binary.amx_kernels is not False:
            argv.append("--no-repack")
        return [*argv, *self.extra]
