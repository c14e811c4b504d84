"""Engines: which engine a backend is, and each engine's traits (`kinds.py`); the engines the
fleet runtime starts as processes, one module each (`llama_server.py`)."""

from wavefleet.engines.kinds import (
    ENGINES,
    Api,
    EngineKind,
    EngineTraits,
    EnvVar,
    FirstToken,
    Flag,
    KvCache,
    Launch,
    MetricsDialect,
    Reporting,
    Setting,
    Slots,
    Usage,
    WeightFormat,
    kind_of_service,
    sizing_engine,
    sizing_kind,
)

__all__ = [
    "Api",
    "ENGINES",
    "EngineKind",
    "EngineTraits",
    "EnvVar",
    "FirstToken",
    "Flag",
    "KvCache",
    "Launch",
    "MetricsDialect",
    "Reporting",
    "Setting",
    "Slots",
    "Usage",
    "WeightFormat",
    "kind_of_service",
    "sizing_engine",
    "sizing_kind",
]
