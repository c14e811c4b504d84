"""Backends: one contract (`Backend`), an adapter per API dialect, and an in-process fake."""

from __future__ import annotations

import aiohttp

from wavefleet.engines import Api
from wavefleet.gateway.backends.base import Backend, BackendReply, BackendRequest, Endpoint
from wavefleet.gateway.backends.fake import FakeBackend, FakeReply, echo
from wavefleet.gateway.backends.openai import OpenAIBackend
from wavefleet.gateway.backends.triton import TritonBackend
from wavefleet.gateway.config import BackendConfig

__all__ = [
    "Backend",
    "BackendReply",
    "BackendRequest",
    "Endpoint",
    "FakeBackend",
    "FakeReply",
    "OpenAIBackend",
    "TritonBackend",
    "build_backend",
    "echo",
]


def build_backend(config: BackendConfig, session: aiohttp.ClientSession) -> Backend:
    """The adapter for the API its kind speaks: Triton's generate extension, or OpenAI's `/v1`."""
    if config.kind.traits.api is Api.TRITON:
        return TritonBackend(config, session)
    return OpenAIBackend(config, session)
