"""`wave catalog`: browse the sourced catalog."""

from __future__ import annotations

import json

import click
from rich.console import Console

from wavefleet.catalog import KIND_FILES, Catalog
from wavefleet.catalog.view import entry_json, list_table, show_tables

__all__ = ["catalog"]

FORMAT = click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


@click.group()
def catalog() -> None:
    """Browse the sourced catalog: hardware, models, quantizations, services, memberships.

    Every entry names its sources; fields the sources disagree on are listed as uncertain.

    \b
    Examples:
      wave catalog list                        every kind, one compact table each
      wave catalog list --kind hardware        just the hardware
      wave catalog list --kind services --format json | jq '.services[].id'
      wave catalog show rtx-5070-ti            every field of one entry, and its sources
      wave catalog show nim --format json
    """


@catalog.command(name="list")
@click.option(
    "--kind",
    type=click.Choice(list(KIND_FILES)),
    default=None,
    help="Only this kind (default: all of them).",
)
@FORMAT
def list_entries(kind: str | None, output_format: str) -> None:
    """List catalog entries, one compact table per kind.

    \b
    Examples:
      wave catalog list --kind models
      wave catalog list --kind quantizations --format json
    """
    entries_by_kind = Catalog.load().by_kind()
    kinds = [kind] if kind else list(entries_by_kind)
    if output_format == "json":
        data = {
            name: [entry_json(entries_by_kind[name][key]) for key in sorted(entries_by_kind[name])]
            for name in kinds
        }
        click.echo(json.dumps(data, indent=2))
        return
    console = Console()
    for name in kinds:
        entries = [entries_by_kind[name][key] for key in sorted(entries_by_kind[name])]
        console.print(list_table(name, entries))


@catalog.command(name="show")
@click.argument("entry_id", metavar="ID")
@FORMAT
def show_entry(entry_id: str, output_format: str) -> None:
    """Show every field of one entry and the sources behind it.

    An id that names entries of several kinds (like `ngc`, a service and a membership) shows each.
    An unknown id exits with status 2 and the nearest known ids.

    \b
    Examples:
      wave catalog show llama-3.1-8b
      wave catalog show q4_k_m --format json
    """
    found = Catalog.load().find(entry_id)
    if output_format == "json":
        data = [{"kind": kind, "entry": entry_json(entry)} for kind, entry in found]
        click.echo(json.dumps(data[0] if len(data) == 1 else data, indent=2))
        return
    console = Console()
    for kind, entry in found:
        fields, source_lines = show_tables(kind, entry)
        console.print(fields)
        for line in source_lines:
            console.print(line, soft_wrap=True, highlight=False, markup=False)
