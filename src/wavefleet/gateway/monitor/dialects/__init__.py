"""One metrics dialect per engine family: how to check its health and read its load."""

from __future__ import annotations

from wavefleet.gateway.config import BackendKind
from wavefleet.gateway.monitor.dialects.base import Dialect, EngineLoad, HttpProbe, PollError
from wavefleet.gateway.monitor.dialects.llamacpp import LlamaCppDialect
from wavefleet.gateway.monitor.dialects.nim import NimDialect
from wavefleet.gateway.monitor.dialects.openai import OpenAIDialect
from wavefleet.gateway.monitor.dialects.sglang import SglangDialect
from wavefleet.gateway.monitor.dialects.tgi import TgiDialect
from wavefleet.gateway.monitor.dialects.triton import TritonDialect
from wavefleet.gateway.monitor.dialects.vllm import VllmDialect

__all__ = ["Dialect", "EngineLoad", "HttpProbe", "PollError", "dialect_for"]


def dialect_for(kind: BackendKind) -> Dialect:
    dialects: dict[BackendKind, Dialect] = {
        BackendKind.VLLM: VllmDialect(),
        BackendKind.LLAMACPP: LlamaCppDialect(),
        BackendKind.SGLANG: SglangDialect(),
        BackendKind.TGI: TgiDialect(),
        BackendKind.NIM: NimDialect(),
        BackendKind.TRITON: TritonDialect(),
        BackendKind.OPENAI: OpenAIDialect(),
    }
    return dialects[kind]
