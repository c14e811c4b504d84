"""Quantizing a GGUF with llama.cpp's own `llama-quantize`, from the build the engine comes from.

    tool = find_llama_quantize()                     # llama_cpp/bin/llama-quantize, else PATH
    result = quantize_model(QuantizeRequest(source=f16, target=out, type="Q4_K_M"), tool, progress)

The binary is the one the llama-cpp-python build installs beside `llama-server` in
`llama_cpp/bin/` (./dev builds llama.cpp's tools with the Python bindings: one llama.cpp
source, one build, so the quantizer writes what the engine reads). It writes to a temporary
file beside the target; only a run that exits 0 and leaves a readable GGUF of the asked type is
renamed over the target, so a failed or interrupted run leaves the target as it was (llama-quantize
itself leaves a partial file behind when it fails).

Progress comes from its log: one `[  12/ 272] tensor-name …` line per tensor.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from wavefleet.engines.llama_server import packaged_tool
from wavefleet.errors import MissingExtraError, ModelError, UnknownIdError, UsageError
from wavefleet.plan.gguf_file import GGUF_MAGIC, read_gguf

__all__ = [
    "BINARY_NAME",
    "INSTALL_FIX",
    "QuantizeProgress",
    "QuantizeRequest",
    "QuantizeResult",
    "QuantizeTool",
    "allowed_types",
    "find_llama_quantize",
    "packaged_binary_path",
    "quantize_model",
]

BINARY_NAME = "llama-quantize"
PACKAGE = "llama_cpp"
INSTALL_FIX = (
    "build llama.cpp's tools into the llama_cpp package (llama-cpp-python built with "
    "CMAKE_ARGS='-DLLAMA_BUILD_TOOLS=ON -DLLAMA_TOOLS_INSTALL=ON -DCMAKE_INSTALL_BINDIR=llama_cpp/bin "
    "-DCMAKE_INSTALL_LIBDIR=llama_cpp/lib', as ./dev does), or put llama.cpp's llama-quantize on PATH, "
    "or give --llama-quantize PATH"
)
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)\s*/\s*(\d+)\]")
_TYPE_LINE = re.compile(r"^\s+(?:\d+\s+or\s+)?([A-Z][A-Z0-9_]*)\s+:")
_VERSION_LINE = re.compile(r"^version:\s*(.+)$")
_SIZE_LINE = re.compile(r"(model|quant) size\s*=\s*([\d.]+) MiB")
_ALIASES = {"Q4_K": "Q4_K_M", "Q3_K": "Q3_K_M", "Q5_K": "Q5_K_M", "ALL_F32": "F32"}


class QuantizeProgress(Protocol):
    def update(self, done: int, total: int | None) -> None:
        """`done` of `total` tensors are written."""

    def say(self, text: str) -> None:
        """A sentence for the person."""


@dataclass(frozen=True, slots=True)
class QuantizeTool:
    path: Path


@dataclass(frozen=True, kw_only=True)
class QuantizeRequest:
    source: Path
    target: Path
    type: str  # a type llama-quantize lists: Q4_K_M, Q8_0, F16 …
    allow_requantize: bool = False
    imatrix: Path | None = None
    threads: int | None = None  # None: every core
    force: bool = False  # replace a target that exists


@dataclass(frozen=True, kw_only=True)
class QuantizeResult:
    path: Path
    type: str
    file_type: str  # general.file_type of the output, as read back
    source_bytes: int
    bytes: int
    tensors: int
    seconds: float
    tool_version: str  # the build llama-quantize names when it runs: "0.5.0-dev (build 1, commit 0c1e570)"
    model_mib: float | None  # llama-quantize's own size lines
    quant_mib: float | None


def packaged_binary_path() -> Path | None:
    """`llama_cpp/bin/llama-quantize` in the installed llama_cpp package, from the same build as
    llama-server."""
    return packaged_tool(BINARY_NAME)


def find_llama_quantize(explicit: Path | None = None) -> QuantizeTool:
    """`explicit` when given, else the packaged build, else `llama-quantize` on PATH.

    Raises MissingExtraError naming what to install when there is none."""
    if explicit is not None:
        if not explicit.is_file():
            raise UsageError(
                f"--llama-quantize {explicit}: no such file; give the path of a built llama-quantize"
            )
        if not os.access(explicit, os.X_OK):
            raise UsageError(f"--llama-quantize {explicit}: not executable; fix: chmod +x {explicit}")
        path = explicit
    else:
        found = packaged_binary_path()
        on_path = shutil.which(BINARY_NAME) if found is None else None
        if found is None and on_path is None:
            raise MissingExtraError(
                "llama-quantize is not installed: the llama_cpp package has no bin/llama-quantize and "
                f"none is on PATH; fix: {INSTALL_FIX}",
                extra="up",
            )
        path = found or Path(str(on_path))
    return QuantizeTool(path=path.resolve())


def _help_text(binary: Path) -> str:
    try:
        done = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ModelError(f"{binary} does not run ({exc.strerror}); fix: {INSTALL_FIX}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"{binary} --help did not return within 30 s") from exc
    return done.stdout + done.stderr


def allowed_types(tool: QuantizeTool) -> list[str]:
    """The type names this llama-quantize accepts, from its own --help."""
    text = _help_text(tool.path)
    listed = text.split("allowed quantization types", 1)[-1]
    names = [m[1] for line in listed.splitlines() if (m := _TYPE_LINE.match(line))]
    return list(dict.fromkeys(names))


def _normal(name: str) -> str:
    upper = name.upper().removeprefix("MOSTLY_")
    return _ALIASES.get(upper, upper)


def quantize_model(
    request: QuantizeRequest, tool: QuantizeTool, progress: QuantizeProgress
) -> QuantizeResult:
    """Run llama-quantize on `request.source` and put its output at `request.target` atomically."""
    source, target = request.source.expanduser().absolute(), request.target.expanduser().absolute()
    _check_source(source)
    if target == source:
        raise UsageError(f"{target} is the input itself; write the quantized file under another name")
    if target.exists() and not request.force:
        raise UsageError(f"{target} exists; pass --force to replace it once the new file is written whole")
    types = allowed_types(tool)
    wanted = request.type.upper()
    if types and wanted not in types:
        raise UnknownIdError("quantization type", request.type, types, listed_by=f"{tool.path} --help")
    if request.imatrix is not None and not request.imatrix.is_file():
        raise UsageError(f"--imatrix {request.imatrix}: no such file")
    target.parent.mkdir(parents=True, exist_ok=True)
    # a name no one holds, made by llama-quantize itself so the file gets the umask's mode
    partial = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    argv = [str(tool.path)]
    if request.allow_requantize:
        argv.append("--allow-requantize")
    if request.imatrix is not None:
        argv += ["--imatrix", str(request.imatrix)]
    argv += [str(source), str(partial), wanted, str(request.threads or os.cpu_count() or 1)]
    progress.say(f"{tool.path}: {source.name} -> {target.name} as {wanted}")
    start = time.monotonic()
    try:
        tensors, sizes, version = _run(argv, source, progress)
        summary = _read_back(partial, wanted)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _sync_directory(target.parent)
    return QuantizeResult(
        path=target,
        type=wanted,
        file_type=summary,
        source_bytes=source.stat().st_size,
        bytes=target.stat().st_size,
        tensors=tensors,
        seconds=time.monotonic() - start,
        tool_version=version,
        model_mib=sizes.get("model"),
        quant_mib=sizes.get("quant"),
    )


def _check_source(source: Path) -> None:
    if not source.is_file():
        raise UsageError(f"{source}: no such file; give the GGUF to quantize (F16, BF16 or F32 is best)")
    with source.open("rb") as handle:
        magic = handle.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise UsageError(
            f"{source} is not a GGUF file (it starts with {magic!r}); convert safetensors or PyTorch "
            "weights first with llama.cpp's convert_hf_to_gguf.py"
        )


def _run(argv: list[str], source: Path, progress: QuantizeProgress) -> tuple[int, dict[str, float], str]:
    """Run llama-quantize to its end, reporting tensors; its tensor count, size lines and build.
    ModelError with its last lines on failure."""
    tail: deque[str] = deque(maxlen=8)
    tensors, sizes, version = 0, {}, "unknown"
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                if not line.startswith("llama_model_loader:"):  # the metadata dump says nothing new
                    tail.append(line)
                if found_version := _VERSION_LINE.match(line):
                    version = found_version[1].strip()
                if found := _TENSOR_LINE.match(line):
                    tensors = int(found[2])
                    progress.update(int(found[1]), tensors)
                for kind, mib in _SIZE_LINE.findall(line):
                    sizes[kind] = float(mib)
            status = process.wait()
        except BaseException:  # interrupted: stop it; its partial file goes with the temporary name
            process.kill()
            raise
    if status != 0:
        text = "\n".join(tail)
        hint = ""
        if "requantizing from type" in text:
            hint = (
                f"\n{source.name} is already quantized: start from its F16/BF16 GGUF, or pass "
                "--allow-requantize to quantize it again (quality suffers)"
            )
        raise ModelError(f"llama-quantize failed (exit {status}):\n{text}{hint}")
    return tensors, sizes, version


def _read_back(partial: Path, wanted: str) -> str:
    try:
        summary = read_gguf(partial)
    except UsageError as exc:
        raise ModelError(f"llama-quantize exited 0 but its output does not read as GGUF: {exc}") from exc
    if wanted != "COPY" and _normal(summary.file_type) != _normal(wanted):
        raise ModelError(
            f"llama-quantize wrote a {summary.file_type} file, not the {wanted} asked for; the target is unchanged"
        )
    return summary.file_type


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # makes the rename durable where the platform allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
