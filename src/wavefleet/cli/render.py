"""`wave render`: deployable, validated artifacts per host from the inventory."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from wavefleet.catalog import Catalog
from wavefleet.cli.inventory_option import inventory_option
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.render.ci import JENKINSFILE
from wavefleet.render.from_inventory import CI_RUNNER, EngineSource, PortMode, fleet_from_inventory
from wavefleet.render.render import render_to

__all__ = ["render"]


@click.command()
@inventory_option("Inventory YAML. Default: the bundled home-lab example (examples/home-lab.yaml).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder to write; replaced whole if it holds an earlier render, refused if it holds anything else.",
)
@click.option(
    "--source",
    type=click.Choice([s.value for s in EngineSource]),
    default=EngineSource.PLAN.value,
    show_default=True,
    help="plan: the planner's placements (one recommended model per device). deployments: the "
    "inventory's own deployments as written, ports included.",
)
@click.option(
    "--ports",
    type=click.Choice([m.value for m in PortMode]),
    default=PortMode.INVENTORY.value,
    show_default=True,
    help="inventory: keep the engine ports the inventory gives (a clash is an error), pick free ones "
    "where none is given. assign: pick every engine port.",
)
@click.option("--server-name", default="ai.home.arpa", show_default=True, help="TLS name of the NGINX site.")
@click.option(
    "--agent-tls",
    "agent_tls",
    metavar="DIR",
    default=None,
    help="Mutual TLS between the gateway and the agents, with files in DIR on each host: ca.pem, "
    "<host>.pem and <host>.key for its agent, gateway.pem and gateway.key on the gateway's host. "
    "Default: plain HTTP with the shared secret.",
)
def render(
    inventory_path: Path | None, out: Path, source: str, ports: str, server_name: str, agent_tls: str | None
) -> None:
    """Render compose files, NGINX, Prometheus, Grafana, LXC, Vault, gateway config and CI job per host.

    \b
    By default the engines are the plan's placements (`wave plan`): one recommended model per
    device. --source deployments renders the inventory's deployments as written instead.

    \b
    The container whose `runs:` lists jenkins gets the model pipeline's Jenkinsfile (wave model
    fetch, quantize, check, then wave rollout); without one, no CI job is rendered.

    \b
    Each host (and each Proxmox LXC container) gets a folder with what its planned services need
    and a README.md saying what to copy where, in which order. Each host with placements gets the
    agent.yaml of its `wave agent`, which starts the llama.cpp placements itself and runs as a
    service of the host's compose file (vLLM and Triton stay containers of their own); the
    gateway's wave.yaml lists those agents under agents:. Everything is rendered into a temporary
    folder and checked (ports, scrape targets, gateway backends, YAML/JSON) before it replaces OUT.

    \b
    Examples:
      wave render --out deploy/                             # the plan's placements
      wave render --inventory my-fleet.yaml --out deploy/
      wave render --source deployments --out deploy/        # the inventory's deployments as written
      wave render --source deployments --ports assign --out deploy/   # ... with ports render picks
      wave render --agent-tls /etc/wavefleet/tls --out deploy/   # gateway <-> agents over mutual TLS
      wave serve --config deploy/<gateway-host>/wave.yaml
    """
    console = Console(highlight=False)
    catalog = Catalog.load()
    inventory = load_inventory(inventory_path or default_inventory_path(), catalog)
    translation = fleet_from_inventory(
        inventory,
        catalog,
        source=EngineSource(source),
        ports=PortMode(ports),
        server_name=server_name,
        agent_tls_dir=agent_tls,
    )
    table = Table(title=f"Engines (from the {source})", show_lines=False)
    table.add_column("engine")
    table.add_column("rendered")
    table.add_column("why")
    for decision in translation.decisions:
        table.add_row(decision.deployment, "yes" if decision.rendered else "no", decision.reason)
    console.print(table)
    for warning in translation.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    written = render_to(translation.fleet, out)
    nodes = sorted({p.relative_to(out.resolve()).parts[0] for p in written})
    console.print(f"wrote {len(written)} files for {len(nodes)} nodes under {out}: {', '.join(nodes)}")
    ci = translation.fleet.ci
    if ci is not None:
        console.print(
            f"CI job: {ci.node}/{JENKINSFILE} (Jenkins): wave model fetch, quantize, check, then wave rollout",
            markup=False,
        )
    else:
        console.print(
            f"CI job: none rendered: no container in the inventory runs {CI_RUNNER} "
            f"(add `{CI_RUNNER}` to the `runs:` of the container with the CI runner)",
            markup=False,
        )
    console.print(
        f"start with {out}/<node>/README.md; the gateway: wave serve --config {out}/{translation.fleet.gateway.nginx_node}/wave.yaml"
    )
