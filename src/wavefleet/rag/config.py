"""The gateway's `rag:` section: which collections it answers from, and with which model.

    rag:
      model: llama-3.1-8b              # generation: a model, alias or group the gateway routes
      embed_model: all-minilm-l6-v2    # what the collections were embedded with (the default)
      collections: [notes]             # served as rag/notes; empty = every collection found
      data_dir: /srv/wavefleet/rag     # default: WAVE_RAG_DIR or $XDG_DATA_HOME/wavefleet/rag
      retrieval: {mode: hybrid, fusion: rrf, rrf_k: 60, top_k: 5}

Queries are embedded and answers generated through this same gateway (its own address), with
the caller's key, unless `embeddings_url` / `generation_url` name another OpenAI endpoint.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from wavefleet.rag.fusion import Mode

__all__ = ["DEFAULT_EMBED_MODEL", "Fusion", "RagConfig", "RetrievalSettings"]

# The embedding model bundled with the rag extra (rag/model.py builds its GGUF); a leaf constant,
# so the gateway's config schema names it without importing the model code.
DEFAULT_EMBED_MODEL = "all-minilm-l6-v2"


class Fusion(StrEnum):
    RRF = "rrf"
    CONVEX = "convex"


class RetrievalSettings(BaseModel):
    """How to retrieve; the defaults are the ones measured best (docs/measurements)."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode = Mode.HYBRID
    fusion: Fusion = Fusion.CONVEX  # beat RRF on the bundled set (docs/measurements)
    rrf_k: float = Field(default=60.0, ge=0, description="RRF's k: larger flattens the rank weights")
    alpha: float = Field(default=0.5, ge=0, le=1, description="convex fusion's weight of the dense score")
    top_k: int = Field(default=5, ge=1, le=200, description="chunks returned")
    candidates: int = Field(default=50, ge=1, le=1000, description="chunks each method contributes")


class RagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="the generation model, alias or group")
    embed_model: str = Field(default=DEFAULT_EMBED_MODEL, description="the collections' embedding model")
    collections: list[str] = Field(default_factory=list, description="served collections; empty = all")
    data_dir: Path | None = Field(default=None, description="where collections live")
    embeddings_url: HttpUrl | None = Field(default=None, description="default: this gateway's /v1")
    generation_url: HttpUrl | None = Field(default=None, description="default: this gateway's /v1")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    max_tokens: int | None = Field(default=None, ge=1, description="cap on the answer's tokens")
