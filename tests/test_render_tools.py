"""Every rendered artifact through the real tool that reads it, for three fleets: the example fleet
(every engine kind), the default inventory (examples/home-lab.yaml) as the plan places it, and its
deployments as written (the seed's, with engine ports assigned). The CI job's Jenkinsfile has no
tool here (no Jenkins): its shell steps go through shellcheck.

The tools are nginx, promtool, shellcheck and openssl; ./dev test installs them. A missing tool
fails the test (it does not skip): an unchecked artifact must not pass as checked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from render_example import example_fleet  # tests/ is on pytest's pythonpath
from wavefleet.catalog import Catalog
from wavefleet.engines import Api, EngineKind
from wavefleet.gateway.config import load_gateway_config
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.render.checks import compose_ports
from wavefleet.render.ci import JENKINSFILE, shell_steps
from wavefleet.render.from_inventory import EngineSource, PortMode, fleet_from_inventory
from wavefleet.render.render import render_to
from wavefleet.render.spec import FleetSpec
from wavefleet.telemetry import names


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run ./dev test, which installs the tools these tests use")
    return path


def home_lab_fleet(source: EngineSource) -> FleetSpec:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    return fleet_from_inventory(inventory, catalog, source=source, ports=PortMode.ASSIGN).fleet


@pytest.fixture(scope="module", params=["example", "home-lab-plan", "home-lab-deployments"])
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FleetSpec, Path]:
    if request.param == "example":
        fleet = example_fleet()
    else:
        fleet = home_lab_fleet(
            EngineSource.PLAN if request.param == "home-lab-plan" else EngineSource.DEPLOYMENTS
        )
    out = tmp_path_factory.mktemp(f"render-{request.param}") / "out"
    render_to(fleet, out)
    return fleet, out


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_files(out: Path) -> list[Path]:
    return sorted(out.glob("*/compose.yaml"))


def test_compose_files_match_the_compose_specification_schema(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    schema = json.loads((resources.files("wavefleet.render") / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    files = compose_files(out)
    assert {p.parent.name for p in files} == {
        n.name for n in fleet.nodes if n.docker and n.os.value != "windows"
    }
    for path in files:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load_yaml(path))]
        assert errors == [], f"{path}: {errors}"


def test_compose_uses_current_gpu_syntax_without_obsolete_keys(rendered: tuple[FleetSpec, Path]) -> None:
    _, out = rendered
    for path in compose_files(out):
        text = path.read_text()
        compose = load_yaml(path)
        assert "version" not in compose
        assert "runtime:" not in text
        for service in compose["services"].values():
            devices = (
                service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
            )
            for device in devices:
                assert device["driver"] == "nvidia"
                assert device["capabilities"] == ["gpu"]
                assert ("count" in device) != ("device_ids" in device)
            image = service["image"]
            assert not image.endswith(":latest") and ":" in image, f"{path}: unpinned image {image}"


def test_nginx_site_passes_nginx_t(rendered: tuple[FleetSpec, Path], tmp_path: Path) -> None:
    fleet, out = rendered
    nginx = require_tool("nginx")
    openssl = require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    site = (out / fleet.gateway.nginx_node / "nginx" / "wavefleet.conf").read_text()
    site = site.replace(fleet.gateway.tls_certificate, str(cert)).replace(
        fleet.gateway.tls_certificate_key, str(key)
    )
    # nginx resolves upstream names when it loads; this machine knows none of the fleet's names.
    site = re.sub(r"(\n\s*server )(?!\d+\.\d+\.\d+\.\d+)[A-Za-z][\w.-]*:", r"\g<1>127.0.0.1:", site)
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "wavefleet.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/conf.d/*.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_prometheus_config_and_rules_pass_promtool(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    promtool = require_tool("promtool")
    prom_dir = out / fleet.monitoring_node / "prometheus"
    config = subprocess.run(
        [promtool, "check", "config", str(prom_dir / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout + config.stderr  # the rules file was found and read
    rules = subprocess.run(
        [promtool, "check", "rules", str(prom_dir / "rules" / "wavefleet.rules.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_every_scrape_target_is_a_rendered_service(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    config = load_yaml(out / fleet.monitoring_node / "prometheus" / "prometheus.yml")
    addresses = {n.name: n.address for n in fleet.nodes}
    published: set[tuple[str, int]] = set()
    by_service: dict[tuple[str, str], set[tuple[str, int]]] = {}
    for path in compose_files(out):
        for port, service in compose_ports(load_yaml(path)):
            endpoint = (addresses[path.parent.name], port)
            published.add(endpoint)
            by_service.setdefault((path.parent.name, service), set()).add(endpoint)
    for node in fleet.nodes:
        if (out / node.name / "install-node-exporter.sh").exists():
            published.add((node.address, 9100))
    for path in sorted(out.glob("*/agent.yaml")):  # each host's fleet agent
        agent = load_yaml(path)
        published.add((agent["host"], agent["port"]))
    nginx = fleet.node(fleet.gateway.nginx_node)
    published.add((nginx.address, fleet.gateway.metrics_port))
    scraped = set()
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                assert (
                    host,
                    int(port),
                ) in published, f"{job['job_name']} scrapes {target}, which nothing serves"
                scraped.add((host, int(port)))
    # ... and every engine and exporter is scraped (Triton on its metrics port, not HTTP or gRPC).
    for (node, service), endpoints in by_service.items():
        assert endpoints & scraped, f"{service} on {node} is not scraped"


def test_grafana_dashboards_are_well_formed(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    boards = sorted((out / fleet.monitoring_node / "grafana" / "dashboards").glob("*.json"))
    assert [b.name for b in boards] == [
        "wavefleet-cost.json",
        "wavefleet-engines.json",
        "wavefleet-gateway.json",
        "wavefleet-gpus.json",
    ]
    for path in boards:
        board = json.loads(path.read_text())
        assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
        assert board["uid"] and board["title"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        cells = set()
        for panel in board["panels"]:
            assert panel["datasource"]["type"] == "prometheus"
            grid = panel["gridPos"]
            assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24
            assert (grid["x"], grid["y"]) not in cells, f"{path.name}: panels overlap"
            cells.add((grid["x"], grid["y"]))
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    cost = json.loads((out / fleet.monitoring_node / "grafana/dashboards/wavefleet-cost.json").read_text())
    exprs = " ".join(t["expr"] for p in cost["panels"] for t in p["targets"])
    assert "DCGM_FI_DEV_POWER_USAGE" in exprs and "jetson_power_watts" in exprs
    assert f"* {fleet.power_price_per_kwh:g}" in exprs  # the inventory's price per kWh


def test_the_engines_dashboard_shows_every_agent_metric(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    board = json.loads(
        (out / fleet.monitoring_node / "grafana/dashboards/wavefleet-engines.json").read_text()
    )
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    agent_metrics = (
        names.ENGINE_STATE, names.ENGINE_LOADS, names.ENGINE_COLD_START, names.ENGINE_EVICTIONS,
        names.ENGINE_RESTARTS, names.ENGINE_INFLIGHT, names.ENGINE_WAITING, names.ENGINE_MEMORY,
        names.ENGINE_MEMORY_ERROR, names.DEVICE_MEMORY,
    )  # fmt: skip
    missing = [m.name for m in agent_metrics if m.name.removesuffix("_total") not in exprs]
    assert missing == [], f"no panel shows {missing}"
    assert "wave_engine_cold_start_seconds_bucket" in exprs


def test_shell_scripts_pass_shellcheck(rendered: tuple[FleetSpec, Path]) -> None:
    _, out = rendered
    shellcheck = require_tool("shellcheck")
    scripts = sorted(out.rglob("*.sh"))
    assert len(scripts) >= 6
    result = subprocess.run(
        [shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
    for script in scripts:
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_the_ci_jobs_shell_steps_pass_shellcheck(rendered: tuple[FleetSpec, Path], tmp_path: Path) -> None:
    # Jenkins runs each `sh` step with /bin/sh -xe: each is checked as a POSIX sh script
    fleet, out = rendered
    assert fleet.ci is not None
    shellcheck = require_tool("shellcheck")
    steps = shell_steps((out / fleet.ci.node / JENKINSFILE).read_text())
    assert len(steps) == 4
    scripts = []
    for index, step in enumerate(steps, 1):
        script = tmp_path / f"step-{index}.sh"
        script.write_text("#!/bin/sh\n" + step)
        scripts.append(str(script))
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", *scripts], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_gateway_config_loads_and_matches_the_rendered_engines(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    config = load_gateway_config(out / fleet.gateway.nginx_node / "wave.yaml")
    engines: dict[str, tuple[str, list[int]]] = {}
    for path in compose_files(out):
        for name, service in load_yaml(path)["services"].items():
            if "io.wavefleet.engine" in service["labels"]:
                ports = [p for p, _ in compose_ports({"services": {name: service}})]
                engines[name] = (fleet.node(path.parent.name).address, ports)
    agents = {a.name for a in config.agents}
    # the engines the node's agent serves (agent.yaml, checked in test_render_agents.py); those it
    # starts itself (llama.cpp) are no containers, those it fronts by URL (vLLM) are
    fronted = {e.name for e in fleet.engines if e.node in agents and e.kind.traits.api is Api.OPENAI}
    started = {e.name for e in fleet.engines if e.name in fronted and e.kind is EngineKind.LLAMACPP}
    assert {b.name for b in config.backends} | (fronted - started) == set(engines)
    assert not {b.name for b in config.backends} & fronted
    for backend in config.backends:
        address, ports = engines[backend.name]
        assert backend.url.host == address and backend.url.port in ports
        assert backend.profile is None or backend.profile.basis


def test_no_two_services_on_a_node_share_a_port(rendered: tuple[FleetSpec, Path]) -> None:
    _, out = rendered
    for path in compose_files(out):
        ports = [port for port, _ in compose_ports(load_yaml(path))]
        assert len(ports) == len(set(ports)), f"{path}: {sorted(ports)}"


def test_gpu_alerts_name_only_nodes_that_export_dcgm(rendered: tuple[FleetSpec, Path]) -> None:
    fleet, out = rendered
    rules = load_yaml(out / fleet.monitoring_node / "prometheus/rules/wavefleet.rules.yml")["groups"][0][
        "rules"
    ]
    exporting = {
        path.parent.name for path in compose_files(out) if "dcgm-exporter" in load_yaml(path)["services"]
    }
    named = {m for r in rules if "DCGM_FI" in r["expr"] for m in re.findall(r'node="([^"]+)"', r["expr"])}
    assert named and named <= exporting
