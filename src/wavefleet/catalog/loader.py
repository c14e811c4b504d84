"""Loading the catalog from its YAML files into one typed, immutable object."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from wavefleet.catalog.models import (
    CatalogEntry,
    Hardware,
    MembershipInfo,
    ModelArch,
    Quantization,
    Service,
)
from wavefleet.errors import ConfigError, ConfigProblem, UnknownIdError
from wavefleet.files import read_yaml, validation_problems

__all__ = ["KIND_FILES", "Catalog", "default_data_dir"]

Entry = TypeVar("Entry", bound=CatalogEntry)

FILES: dict[str, type[CatalogEntry]] = {
    "hardware.yaml": Hardware,
    "models.yaml": ModelArch,
    "quantizations.yaml": Quantization,
    "services.yaml": Service,
    "memberships.yaml": MembershipInfo,
}

# kind name (as `wave catalog list --kind` spells it) -> file
KIND_FILES: dict[str, str] = {
    "hardware": "hardware.yaml",
    "models": "models.yaml",
    "quantizations": "quantizations.yaml",
    "services": "services.yaml",
    "memberships": "memberships.yaml",
}


def default_data_dir() -> Path:
    return Path(str(resources.files("wavefleet.catalog") / "data"))


class _EntryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entries: list[dict[str, object]]


@dataclass(frozen=True)
class Catalog:
    """Every catalog entry by kind and id. Build with `Catalog.load()` and pass it where needed."""

    hardware: dict[str, Hardware] = field(default_factory=dict)
    models: dict[str, ModelArch] = field(default_factory=dict)
    quantizations: dict[str, Quantization] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    memberships: dict[str, MembershipInfo] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path | None = None) -> Catalog:
        data_dir = data_dir or default_data_dir()
        loaded: dict[str, dict[str, CatalogEntry]] = {}
        problems: list[ConfigProblem] = []
        for filename, entry_type in FILES.items():
            path = data_dir / filename
            entries, file_problems = _load_entries(path, entry_type)
            loaded[filename] = entries
            problems += file_problems
        if problems:
            raise ConfigError(problems)
        return cls(
            hardware=_typed(loaded["hardware.yaml"], Hardware),
            models=_typed(loaded["models.yaml"], ModelArch),
            quantizations=_typed(loaded["quantizations.yaml"], Quantization),
            services=_typed(loaded["services.yaml"], Service),
            memberships=_typed(loaded["memberships.yaml"], MembershipInfo),
        )

    def get_hardware(self, hardware_id: str) -> Hardware:
        return _get(self.hardware, hardware_id, "hardware")

    def get_model(self, model_id: str) -> ModelArch:
        return _get(self.models, model_id, "model")

    def get_quantization(self, quant_id: str) -> Quantization:
        return _get(self.quantizations, quant_id, "quantization")

    def get_service(self, service_id: str) -> Service:
        return _get(self.services, service_id, "service")

    def get_membership(self, membership_id: str) -> MembershipInfo:
        return _get(self.memberships, membership_id, "membership")

    def by_kind(self) -> dict[str, dict[str, CatalogEntry]]:
        """Every kind's entries, keyed as `wave catalog list --kind` names the kinds."""
        return {
            "hardware": dict(self.hardware),
            "models": dict(self.models),
            "quantizations": dict(self.quantizations),
            "services": dict(self.services),
            "memberships": dict(self.memberships),
        }

    def find(self, entry_id: str) -> list[tuple[str, CatalogEntry]]:
        """Every (kind, entry) with this id; raises UnknownIdError with the nearest ids if none."""
        found = [(kind, entries[entry_id]) for kind, entries in self.by_kind().items() if entry_id in entries]
        if not found:
            known = [key for entries in self.by_kind().values() for key in entries]
            raise UnknownIdError("catalog", entry_id, known)
        return found

    def all_ids(self) -> dict[str, list[str]]:
        return {kind: sorted(entries) for kind, entries in self.by_kind().items()}


def _get(entries: dict[str, Entry], entry_id: str, kind: str) -> Entry:
    try:
        return entries[entry_id]
    except KeyError:
        raise UnknownIdError(kind, entry_id, entries) from None


def _typed(entries: dict[str, CatalogEntry], entry_type: type[Entry]) -> dict[str, Entry]:
    return {key: value for key, value in entries.items() if isinstance(value, entry_type)}


def _load_entries(
    path: Path, entry_type: type[CatalogEntry]
) -> tuple[dict[str, CatalogEntry], list[ConfigProblem]]:
    data, lines = read_yaml(path)
    problems: list[ConfigProblem] = []
    try:
        document = _EntryFile.model_validate(data)
    except ValidationError as exc:
        return {}, validation_problems(exc, path, lines)
    adapter: TypeAdapter[CatalogEntry] = TypeAdapter(entry_type)
    entries: dict[str, CatalogEntry] = {}
    for index, raw in enumerate(document.entries):
        try:
            entry = adapter.validate_python(raw)
        except ValidationError as exc:
            shifted = {key[2:]: line for key, line in lines.items() if key[:2] == ("entries", index)}
            for problem in validation_problems(exc, path, shifted):
                problems.append(
                    ConfigProblem(
                        problem.file,
                        problem.line,
                        f"entries[{index}].{problem.where}",
                        problem.message,
                        problem.fix,
                    )
                )
            continue
        if entry.id in entries:
            line = lines.get(("entries", index))
            problems.append(ConfigProblem(path, line, entry.id, "duplicate id", "give each entry its own id"))
        entries[entry.id] = entry
    return entries, problems
