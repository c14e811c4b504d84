"""Turning catalog entries into rich tables and JSON for `wave catalog`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.table import Table

from wavefleet.catalog.models import CatalogEntry

__all__ = ["LIST_COLUMNS", "entry_json", "format_value", "list_table", "show_tables"]

# kind -> (header, dotted field path) for the compact `wave catalog list` table
LIST_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "hardware": [
        ("id", "id"),
        ("kind", "kind"),
        ("mem GiB", "memory_gib"),
        ("GB/s", "memory_bandwidth_gbs"),
        ("CC", "compute_capability"),
        ("W", "tdp_w"),
        ("uncertain", "uncertain"),
    ],
    "models": [
        ("id", "id"),
        ("params B", "params_b"),
        ("layers", "layers"),
        ("kv heads", "kv_heads"),
        ("head dim", "head_dim"),
        ("context", "max_context"),
        ("license", "license"),
    ],
    "quantizations": [
        ("id", "id"),
        ("bpw", "bits_per_weight"),
        ("format", "format"),
        ("native CC", "native_min_compute_capability"),
        ("KV", "kv_cache"),
        ("CPU", "runs_on_cpu"),
        ("engines", "engines"),
    ],
    "services": [
        ("id", "id"),
        ("category", "category"),
        ("GPU", "needs_gpu"),
        ("min CC", "min_compute_capability"),
        ("unlocked by", "access.unlocked_by"),
        ("days", "effort_days"),
        ("1 user", "single_user_fit"),
    ],
    "memberships": [
        ("id", "id"),
        ("name", "name"),
        ("unlocks", "unlocks"),
        ("steps", "next_steps"),
    ],
}


def entry_json(entry: CatalogEntry) -> dict[str, object]:
    """Every field of an entry as plain JSON-ready data."""
    return entry.model_dump(mode="json")


def format_value(value: object) -> str:
    """A field value as short text: lists joined, mappings as key=value, None as a dash."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Mapping):
        if {"target", "detail"} <= set(value):
            return f"{value['target']}: {value['detail']}"
        return ", ".join(
            f"{key}={format_value(item)}" for key, item in value.items() if item not in (None, "")
        )
    if isinstance(value, Sequence) and not isinstance(value, str):
        if any(isinstance(item, Mapping) for item in value):
            return "\n".join(f"- {format_value(item)}" for item in value)
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _lookup(data: Mapping[str, object], path: str) -> object:
    value: object = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def list_table(kind: str, entries: Sequence[CatalogEntry]) -> Table:
    """The compact table of one kind: one row per entry, a few columns that tell them apart."""
    columns = LIST_COLUMNS[kind]
    table = Table(title=f"{kind} ({len(entries)})", title_justify="left", show_lines=False)
    for header, _ in columns:
        table.add_column(header, overflow="fold", no_wrap=header == "id")
    for entry in entries:
        data = entry_json(entry)
        cells = []
        for header, path in columns:
            value = _lookup(data, path)
            if header in ("unlocks", "steps") and isinstance(value, list):
                cells.append(str(len(value)))
            else:
                cells.append(format_value(value))
        table.add_row(*cells)
    return table


def show_tables(kind: str, entry: CatalogEntry) -> tuple[Table, list[str]]:
    """Every field of one entry (uncertain ones flagged), then one line per source.

    Sources are plain lines, not a table, so a terminal never breaks a URL across lines.
    """
    data = entry_json(entry)
    uncertain = set(entry.uncertain)
    fields = Table(title=f"{kind}: {entry.id}", title_justify="left", show_header=False)
    fields.add_column("field", style="bold", no_wrap=True)
    fields.add_column("value", overflow="fold")
    for name, value in data.items():
        if name in ("sources", "uncertain"):
            continue
        flag = "  (uncertain)" if name in uncertain else ""
        fields.add_row(name, format_value(value) + flag)
    lines = ["sources:"]
    for source in entry.sources:
        backs = ", ".join(source.fields) or "whole entry"
        note = f" - {source.note}" if source.note else ""
        lines.append(f"  {source.ref}  [backs: {backs}]{note}")
    return fields, lines
