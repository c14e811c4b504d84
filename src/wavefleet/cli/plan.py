"""`wave plan`: inventory + catalog -> MoSCoW priorities, placements, findings, roadmap, memberships."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wavefleet.cli.inventory_option import inventory_option

__all__ = ["plan"]


@click.command(
    "plan",
    epilog="""\b
Examples:
  wave plan                                  the example home lab, as tables
  wave plan --inventory my-fleet.yaml        your own fleet
  wave plan --format json | jq '.services[] | select(.moscow=="must") | .id'
  wave plan --format html --out plan.html    a self-contained report to open in a browser
  wave plan --format markdown --out PLAN.md
  wave plan --write-inventory planned.yaml   the plan's placements as an inventory, for wave sim
  wave plan -i my-fleet.yaml --claims report-claims.yaml   check a report's claims (examples/seed-claims.yaml)
  wave plan -i my-fleet.yaml --actual drawn.json -f html -o plan.html   estimate vs measured energy

\b
The inventory (YAML) lists hosts, devices (catalog ids), containers, links, memberships, goals,
and the deployments you intend, with what their source promised; see examples/home-lab.yaml.
Errors in it name file:line and a fix (exit 2). Scoring and the JSON keys: docs/plan.md.""",
)
@inventory_option(
    "Inventory YAML. Default: the example home lab shipped with Wavefleet (examples/home-lab.yaml)."
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "markdown", "json", "html"]),
    default="table",
    show_default=True,
    help="table: terminal tables; json: one object for scripts; markdown; html: self-contained page.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (whole or not at all) instead of standard output.",
)
@click.option(
    "--catalog-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    envvar="WAVE_CATALOG_DIR",
    show_envvar=True,
    help="Catalog data directory. Default: the catalog shipped with Wavefleet.",
)
@click.option(
    "--claims",
    "claims_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Claims file (YAML) of a report to check: each claim's quote, line and check. Default: the seed "
    "report's claims with the example inventory, none with your own.",
)
@click.option(
    "--write-inventory",
    "planned_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the fleet with the plan's placements as its deployments, for "
    "`wave sim --inventory` and the roadmap's `wave bench` commands.",
)
@click.option(
    "--actual",
    "actual_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Prometheus' answer to a range query of the hosts' energy counters (JSON from "
    "/api/v1/query_range, series labelled `node`): each host's TDP estimate beside what it drew, "
    "over the same period. docs/plan.md#planned-vs-measured-energy says how to get it.",
)
def plan(
    inventory_path: Path | None,
    fmt: str,
    out: Path | None,
    catalog_dir: Path | None,
    claims_path: Path | None,
    planned_path: Path | None,
    actual_path: Path | None,
) -> None:
    """Plan your fleet: MoSCoW priorities with reasons, placements, findings, roadmap.

    Every catalog service gets Must/Should/Could/Won't from your goals, what fits your devices,
    what your memberships unlock, its dependencies and its effort (Must effort stays within
    DSDM's 60%). Every deployment in the inventory is checked: does the service support the device,
    does the config fit in memory, is a claimed speed above what bandwidth allows, do ports clash.
    """
    from wavefleet.catalog import Catalog
    from wavefleet.files import write_atomic
    from wavefleet.plan.inventory import default_inventory_path, load_inventory
    from wavefleet.plan.planner import build_plan
    from wavefleet.plan.report import Format, render

    catalog = Catalog.load(catalog_dir)
    inventory = load_inventory(inventory_path or default_inventory_path(), catalog)
    from wavefleet.plan.claims import default_claims_path, load_claims

    if claims_path is None and inventory_path is None:
        claims_path = default_claims_path()
    claims = load_claims(claims_path) if claims_path is not None else None
    result = build_plan(inventory, catalog, claims)
    if actual_path is not None:
        from wavefleet.plan.actual import compare, load_actual

        measured = load_actual(actual_path, hosts=[h.id for h in inventory.hosts])
        actual = compare(
            actual_path,
            measured,
            tdp_w={p.host: p.devices_tdp_w for p in result.power},
            price_per_kwh=inventory.power_price_per_kwh,
            currency=inventory.currency,
        )
        result = result.model_copy(update={"actual": actual})
    if planned_path is not None:
        from wavefleet.plan.planned import planned_inventory_yaml

        write_atomic(planned_path, planned_inventory_yaml(inventory, result))
        click.echo(f"wrote {planned_path} (simulate it: wave sim --inventory {planned_path})", err=True)
    fmt_enum = Format(fmt)
    if out is not None:
        write_atomic(out, render(result, fmt_enum))
        click.echo(f"wrote {out}", err=True)
        return
    if fmt_enum is Format.TABLE:
        from rich.console import Console

        console = Console()
        width = max(console.width, 100) if console.is_terminal else 160
        text = render(result, fmt_enum, width=width, color=console.is_terminal)
        sys.stdout.write(text)
        return
    sys.stdout.write(render(result, fmt_enum))
