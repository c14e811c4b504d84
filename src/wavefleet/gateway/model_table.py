"""Which backends serve which model names: served names, aliases and groups, resolved per request.

A backend serves the models its config declares; without a declaration, what the monitor last
read from its `/v1/models`, else what the gateway read there at start-up. A backend that lists
nothing at all is a wildcard: it takes any model name no other backend serves (so a single
engine that does not list models, or a static test upstream, works without configuration).
A fleet agent is never a wildcard: one not reached yet, or whose models all failed, serves nothing.
The model lists are compared at most every `REFRESH_S` seconds and the table rebuilt only when
one changed, so resolving a name costs a dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

from wavefleet.errors import ModelNotFoundError
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import BackendMonitor
from wavefleet.gateway.routing.base import Candidate
from wavefleet.wire import model_card

__all__ = ["REFRESH_S", "ModelTable"]

REFRESH_S = 0.5  # how stale a backend's model list may be for routing (the monitor polls every ~1 s)


class ModelTable:
    def __init__(
        self, config: GatewayConfig, monitor: BackendMonitor, *, listed_only: Iterable[str] = ()
    ) -> None:
        self._config = config
        self._listed_only = set(listed_only)  # backends that serve what they list and nothing else
        self._monitor = monitor
        self._names = [b.name for b in config.backends]
        self._declared = {b.name: tuple(b.models) for b in config.backends}
        self.discovered: dict[str, tuple[str, ...]] = {}  # read at start-up, for monitors that do not
        self._signature: tuple[tuple[str, ...], ...] | None = None
        self._checked_at = float("-inf")
        self._served: dict[str, list[str]] = {}  # model -> backends, in config order
        self._wildcards: list[str] = []
        self._resolved: dict[str, tuple[Candidate, ...]] = {}

    def set_discovered(self, discovered: Mapping[str, Sequence[str]]) -> None:
        self.discovered = {name: tuple(models) for name, models in discovered.items()}
        self._checked_at = float("-inf")

    def models_of(self, backend: str) -> tuple[str, ...]:
        return (
            self._declared[backend]
            or self._monitor.snapshot(backend).models
            or self.discovered.get(backend, ())
        )

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if now - self._checked_at < REFRESH_S and not force:
            return
        self._checked_at = now
        signature = tuple(self.models_of(name) for name in self._names)
        if signature == self._signature:
            return
        served: dict[str, list[str]] = {}
        for name, models in zip(self._names, signature, strict=True):
            for model in models:
                served.setdefault(model, []).append(name)
        self._served = served
        self._wildcards = [
            name
            for name, models in zip(self._names, signature, strict=True)
            if not models and name not in self._listed_only
        ]
        self._resolved = {}
        self._signature = signature

    def resolve(self, name: str) -> tuple[Candidate, ...]:
        """The candidates for a requested name (model, alias or group), in preference order."""
        self._refresh()
        cached = self._resolved.get(name)
        if cached is not None:
            return cached
        candidates = self._candidates(name)
        if not candidates:
            known = self.known_names()
            listing = ", ".join(known) if known else "none (no backend lists any model)"
            raise ModelNotFoundError(
                f"model {name!r} is not served here; known models: {listing}", param="model"
            )
        if len(self._resolved) < 4096:  # wildcard names come from clients: bound the cache
            self._resolved[name] = candidates
        return candidates

    def served_name(self, name: str) -> str | None:
        """The served model a model name or alias stands for; None for a group."""
        if name in self._config.groups:
            return None
        return self._config.aliases.get(name, name)

    def _candidates(self, name: str) -> tuple[Candidate, ...]:
        members = self._config.groups.get(name)
        if members is not None:
            out: list[Candidate] = []
            for preference, member in enumerate(members):
                served = self._config.aliases.get(member, member)
                out.extend(Candidate(b, served, preference) for b in self._served.get(served, ()))
            return tuple(out)
        served = self._config.aliases.get(name, name)
        backends = self._served.get(served)
        if backends:
            return tuple(Candidate(b, served) for b in backends)
        return tuple(Candidate(b, served) for b in self._wildcards)

    def is_listed(self, model: str) -> bool:
        """True when a backend lists `model` (a served name, after aliases and groups)."""
        self._refresh()
        return model in self._served

    def known_names(self) -> list[str]:
        """Every name a client may use: served models, aliases, groups."""
        self._refresh(force=True)
        return sorted(set(self._served) | set(self._config.aliases) | set(self._config.groups))

    def listing(self) -> list[dict[str, object]]:
        """`/v1/models` entries for what healthy backends serve, with aliases and groups."""
        self._refresh(force=True)
        # healthy, not `available()`: asking the breaker may grant a half-open probe
        up = {name for name in self._names if self._monitor.snapshot(name).healthy}
        entries: list[dict[str, object]] = []
        for model in sorted(self._served):
            backends = [b for b in self._served[model] if b in up]
            if backends:
                entries.append(_entry(model, {"kind": "model", "backends": backends}))
        for alias, target in sorted(self._config.aliases.items()):
            backends = [b for b in self._served.get(target, ()) if b in up]
            if backends:
                entries.append(_entry(alias, {"kind": "alias", "target": target, "backends": backends}))
        for group, members in sorted(self._config.groups.items()):
            serving = [
                m
                for m in members
                if any(b in up for b in self._served.get(self._config.aliases.get(m, m), ()))
            ]
            if serving:
                entries.append(_entry(group, {"kind": "group", "members": serving}))
        return entries


def _entry(model_id: str, wave: dict[str, object]) -> dict[str, object]:
    return model_card(model_id, owned_by="wavefleet", wave=wave)
