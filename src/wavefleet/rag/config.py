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

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from wavefleet.rag.model import BUNDLED_MODEL_NAME
from wavefleet.rag.retrieve import RetrievalSettings

__all__ = ["RagConfig"]


class RagConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="the generation model, alias or group")
    embed_model: str = Field(default=BUNDLED_MODEL_NAME, description="the collections' embedding model")
    collections: list[str] = Field(default_factory=list, description="served collections; empty = all")
    data_dir: Path | None = Field(default=None, description="where collections live")
    embeddings_url: HttpUrl | None = Field(default=None, description="default: this gateway's /v1")
    generation_url: HttpUrl | None = Field(default=None, description="default: this gateway's /v1")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    max_tokens: int | None = Field(default=None, ge=1, description="cap on the answer's tokens")
