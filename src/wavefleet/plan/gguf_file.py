"""Reading a real .gguf file's architecture and tensor sizes, for sizing from the file itself.

The metadata keys follow llama.cpp's GGUF spec (`<arch>.block_count`, `<arch>.attention.head_count_kv`
…); the weight bytes are the sum of the file's tensor sizes, so they include the tensors GGUF keeps
at higher precision (token embedding, output, norms) instead of assuming one bits-per-weight.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from wavefleet.catalog.models import ModelArch, Quantization, Source
from wavefleet.errors import UsageError

__all__ = ["GGUF_MAGIC", "GgufSummary", "file_quantization", "model_arch", "read_gguf"]

GGUF_MAGIC = b"GGUF"

# Architectures whose sliding-window layers follow a fixed pattern in llama.cpp (src/llama-model.cpp):
# Gemma 2 alternates local and global layers; Gemma 3 has one global layer in every six.
GLOBAL_LAYER_EVERY: dict[str, int] = {"gemma2": 2, "gemma3": 6}


class GgufSummary(BaseModel):
    """What sizing needs from a GGUF file: architecture numbers and the real tensor bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    name: str
    architecture: str
    file_type: str
    block_count: int
    embedding_length: int
    feed_forward_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    context_length: int
    vocab_size: int
    sliding_window: int | None
    tied_embeddings: bool
    parameters: int
    tensor_bytes: int
    tensor_types: dict[str, int]  # tensor count per GGML type
    higher_precision_tensors: list[str]  # quantized tensors kept at a wider type than most
    chat_template: str | None = None  # tokenizer.chat_template: the Jinja template chat requests use
    tokenizer_model: str | None = None  # tokenizer.ggml.model: gpt2, llama, bert …
    token_count: int = 0  # entries of tokenizer.ggml.tokens
    bos_token: str | None = None  # the text of tokenizer.ggml.bos_token_id
    eos_token: str | None = None  # the text of tokenizer.ggml.eos_token_id


def read_gguf(path: Path) -> GgufSummary:
    """Read `path` with the `gguf` package's GGUFReader; bad files raise UsageError with a fix."""
    from gguf import GGUFReader  # heavy import (numpy memmap), only when a file is read

    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the path to a .gguf model file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror})") from exc
    if magic != GGUF_MAGIC:
        raise UsageError(
            f"{path}: not a GGUF file (it starts with {magic!r}, not b'GGUF'); a web page saved in its "
            "place starts with b'<!DO' or b'<htm': download the file itself (on Hugging Face, its "
            "/resolve/ URL); safetensors or PyTorch weights need llama.cpp's convert_hf_to_gguf.py"
        )
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError) as exc:
        raise UsageError(
            f"{path}: a GGUF file that ends early or is damaged ({exc}); check that the download "
            "is complete (its size and sha256)"
        ) from exc
    fields: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
            continue
        fields[key] = field.contents()
    architecture = _text(fields, "general.architecture", path)

    def number(key: str, default: int | None = None) -> int:
        value = fields.get(f"{architecture}.{key}", default)
        if value is None:
            raise UsageError(
                f"{path}: GGUF metadata lacks {architecture}.{key}; the file may be truncated or too old"
            )
        # Some architectures store per-layer lists (e.g. head counts); sizing uses the largest.
        return int(max(value)) if isinstance(value, list) else int(value)

    head_count = number("attention.head_count")
    embedding_length = number("embedding_length")
    head_dim = embedding_length // head_count
    vocab = fields.get(f"{architecture}.vocab_size")
    if vocab is None:
        vocab = (
            len(reader.fields["tokenizer.ggml.tokens"].data)
            if "tokenizer.ggml.tokens" in reader.fields
            else 0
        )
    tensors = reader.tensors
    names = {tensor.name for tensor in tensors}
    type_counts = Counter(tensor.tensor_type.name for tensor in tensors)
    quantized = Counter(
        tensor.tensor_type.name for tensor in tensors if tensor.tensor_type.name not in ("F32", "F16", "BF16")
    )
    dominant = quantized.most_common(1)[0][0] if quantized else ""
    dominant_bits = _bits(tensors, dominant)
    wider = [
        tensor.name
        for tensor in tensors
        if tensor.tensor_type.name != dominant
        and len(tensor.shape) > 1
        and _bits(tensors, tensor.tensor_type.name) > dominant_bits
    ]
    tokenizer = _tokenizer(reader, fields)
    sliding = fields.get(f"{architecture}.attention.sliding_window")
    file_type_id = fields.get("general.file_type")
    return GgufSummary(
        path=str(path),
        name=str(fields.get("general.name") or path.stem),
        architecture=architecture,
        file_type=_file_type_name(file_type_id),
        block_count=number("block_count"),
        embedding_length=embedding_length,
        feed_forward_length=number("feed_forward_length"),
        head_count=head_count,
        head_count_kv=number("attention.head_count_kv", head_count),
        key_length=number("attention.key_length", head_dim),
        value_length=number("attention.value_length", head_dim),
        context_length=number("context_length"),
        vocab_size=int(vocab),
        sliding_window=int(sliding) if sliding is not None else None,
        tied_embeddings="output.weight" not in names,
        parameters=sum(int(tensor.n_elements) for tensor in tensors),
        tensor_bytes=sum(int(tensor.n_bytes) for tensor in tensors),
        tensor_types=dict(sorted(type_counts.items())),
        higher_precision_tensors=sorted(wider),
        chat_template=fields.get("tokenizer.chat_template")
        if isinstance(fields.get("tokenizer.chat_template"), str)
        else None,
        **tokenizer,
    )


def _tokenizer(reader: Any, fields: dict[str, Any]) -> dict[str, Any]:
    """The tokenizer's kind, size and special tokens, reading single entries of its token list
    (decoding the whole list takes seconds on a 150,000-token vocabulary)."""
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    count = len(tokens.data) if tokens is not None and tokens.types else 0

    def token(key: str) -> str | None:
        field = reader.fields.get(key)
        if field is None or tokens is None or not field.types:
            return None
        index = int(field.contents())
        return str(tokens.contents(index)) if 0 <= index < count else None

    model = fields.get("tokenizer.ggml.model")
    return {
        "tokenizer_model": model if isinstance(model, str) and model else None,
        "token_count": count,
        "bos_token": token("tokenizer.ggml.bos_token_id"),
        "eos_token": token("tokenizer.ggml.eos_token_id"),
    }


def model_arch(summary: GgufSummary) -> ModelArch:
    """A catalog-shaped model built from the file; its source is the file itself."""
    sliding = summary.sliding_window
    every = GLOBAL_LAYER_EVERY.get(summary.architecture)
    notes = []
    if sliding is not None and every is None:
        notes.append(f"sliding window {sliding} ignored: layer pattern of {summary.architecture} unknown")
        sliding = None
    return ModelArch(
        id=_slug(Path(summary.path).stem),
        name=summary.name,
        family=summary.architecture,
        params_b=summary.parameters / 1e9,
        layers=summary.block_count,
        hidden_size=summary.embedding_length,
        attention_heads=summary.head_count,
        kv_heads=summary.head_count_kv,
        # K and V may differ in width (MLA-style models); the mean keeps 2 x heads x dim exact.
        head_dim=max(1, (summary.key_length + summary.value_length) // 2),
        intermediate_size=summary.feed_forward_length,
        vocab_size=max(summary.vocab_size, 1),
        max_context=summary.context_length,
        tied_embeddings=summary.tied_embeddings,
        sliding_window=sliding,
        global_layers=summary.block_count // every if sliding is not None and every else None,
        sources=[Source(ref=summary.path, note="GGUF metadata read with gguf.GGUFReader")],
        notes="; ".join(notes),
    )


def file_quantization(summary: GgufSummary) -> Quantization:
    """The file's quantization, with its real average bits per weight (all tensors included)."""
    return Quantization(
        id=_slug(summary.file_type),
        name=f"GGUF {summary.file_type}",
        bits_per_weight=summary.tensor_bytes * 8 / summary.parameters,
        format="gguf",
        engines=["llama.cpp"],
        runs_on_cpu=True,
        sources=[Source(ref=summary.path, note="tensor bytes x 8 / parameters")],
    )


def _text(fields: dict[str, Any], key: str, path: Path) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{path}: GGUF metadata lacks {key}; the file may be truncated or too old")
    return value


def _file_type_name(file_type_id: Any) -> str:
    from gguf import LlamaFileType

    try:
        return str(LlamaFileType(int(file_type_id)).name).removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        return "unknown"


def _bits(tensors: Any, type_name: str) -> float:
    for tensor in tensors:
        if tensor.tensor_type.name == type_name and int(tensor.n_elements):
            return int(tensor.n_bytes) * 8 / int(tensor.n_elements)
    return 0.0


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "gguf"
