"""One metrics dialect per engine family: how to check its health and read its load.

Each engine kind names its dialect in the engines table (`EngineKind.traits.metrics`); this
module holds the one implementation of each.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from wavefleet.engines import EngineKind, MetricsDialect
from wavefleet.gateway.monitor.dialects.base import Dialect, EngineLoad, HttpProbe, PollError
from wavefleet.gateway.monitor.dialects.llamacpp import LlamaCppDialect
from wavefleet.gateway.monitor.dialects.nim import NimDialect
from wavefleet.gateway.monitor.dialects.ollama import OllamaDialect
from wavefleet.gateway.monitor.dialects.openai import OpenAIDialect
from wavefleet.gateway.monitor.dialects.sglang import SglangDialect
from wavefleet.gateway.monitor.dialects.tgi import TgiDialect
from wavefleet.gateway.monitor.dialects.triton import TritonDialect
from wavefleet.gateway.monitor.dialects.vllm import VllmDialect

__all__ = ["DIALECTS", "Dialect", "EngineLoad", "HttpProbe", "PollError", "dialect_for"]

DIALECTS: Mapping[MetricsDialect, Dialect] = MappingProxyType(
    {
        MetricsDialect.VLLM: VllmDialect(),
        MetricsDialect.LLAMACPP: LlamaCppDialect(),
        MetricsDialect.SGLANG: SglangDialect(),
        MetricsDialect.TGI: TgiDialect(),
        MetricsDialect.NIM: NimDialect(),
        MetricsDialect.TRITON: TritonDialect(),
        MetricsDialect.OPENAI: OpenAIDialect(),
        MetricsDialect.OLLAMA: OllamaDialect(),
    }
)


def dialect_for(kind: EngineKind) -> Dialect:
    return DIALECTS[kind.traits.metrics]
