"""Checks the rendered tree must pass before anything is written.

They need nothing beyond Python: every YAML and JSON file parses, no two services on a node
share a port, every scrape target is a rendered service, every gateway backend is a rendered
engine and every gateway agent a rendered agent.yaml, `wave.yaml` loads as a GatewayConfig, and
a Jenkinsfile's brackets balance and its shell steps hold nothing Groovy would change. The real tools (nginx -t, promtool,
shellcheck, the Compose JSON schema) run in the tests, where they are installed.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import ValidationError

from wavefleet.gateway.config import GatewayConfig
from wavefleet.render.artifacts import RenderedTree
from wavefleet.render.ci import JENKINSFILE, jenkinsfile_problems

__all__ = ["check_tree", "compose_ports", "tree_problems"]


def tree_problems(tree: RenderedTree) -> list[str]:
    """Everything wrong with the tree, as sentences; empty when it is sound."""
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for path, artifact in sorted(tree.artifacts.items()):
        try:
            if path.endswith((".yaml", ".yml")):
                parsed[path] = yaml.safe_load(artifact.content)
            elif path.endswith(".json"):
                parsed[path] = json.loads(artifact.content)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            problems.append(f"{path} does not parse: {exc}")
    problems += _port_clashes(tree)
    problems += _compose_matches_ledger(tree, parsed)
    problems += _scrape_targets_rendered(tree, parsed)
    problems += _backends_rendered(tree, parsed)
    for path, artifact in sorted(tree.artifacts.items()):
        if path.endswith(f"/{JENKINSFILE}"):
            problems += [f"{path}: {problem}" for problem in jenkinsfile_problems(artifact.content)]
    return problems


def check_tree(tree: RenderedTree) -> None:
    """Raise ValueError listing the problems, if any."""
    problems = tree_problems(tree)
    if problems:
        raise ValueError("\n".join(problems))


def compose_ports(compose: dict[str, Any]) -> list[tuple[int, str]]:
    """(published port, service) for every port a compose file binds on its node."""
    ports: list[tuple[int, str]] = []
    for name, service in (compose.get("services") or {}).items():
        for mapping in service.get("ports", []):
            ports.append((int(str(mapping).split(":")[0]), name))
        if service.get("network_mode") == "host" and "io.wavefleet.host-port" in service.get("labels", {}):
            ports.append((int(service["labels"]["io.wavefleet.host-port"]), name))
    return ports


def _port_clashes(tree: RenderedTree) -> list[str]:
    problems = []
    for node, claims in sorted(tree.ports.items()):
        owners: dict[int, list[str]] = {}
        for port, owner in claims:
            owners.setdefault(port, []).append(owner)
        for port, names in sorted(owners.items()):
            if len(names) > 1:
                problems.append(
                    f"node {node}: port {port} is used by {' and '.join(names)}; "
                    "give each service on a node its own port in the inventory, or let render pick them (--ports assign)"
                )
    return problems


def _compose_matches_ledger(tree: RenderedTree, parsed: dict[str, Any]) -> list[str]:
    problems = []
    for path, compose in parsed.items():
        if not path.endswith("/compose.yaml"):
            continue
        node = path.split("/", 1)[0]
        ledger = sorted((p, o) for p, o in tree.ports.get(node, []))
        in_file = compose_ports(compose)
        missing = sorted(set(in_file) - set(ledger))
        if missing:
            problems.append(f"{path}: ports {missing} are not in the port ledger")
    return problems


def _service_ports(tree: RenderedTree) -> set[tuple[str, int]]:
    return {(node, port) for node, claims in tree.ports.items() for port, _ in claims}


def _scrape_targets_rendered(tree: RenderedTree, parsed: dict[str, Any]) -> list[str]:
    problems = []
    addresses = tree.addresses
    rendered = _service_ports(tree)
    for path, config in parsed.items():
        if not path.endswith("prometheus/prometheus.yml"):
            continue
        for job in config.get("scrape_configs", []):
            for static in job.get("static_configs", []):
                node = static.get("labels", {}).get("node")
                for target in static.get("targets", []):
                    host, _, port = target.rpartition(":")
                    if node is None or addresses.get(node) != host or (node, int(port)) not in rendered:
                        problems.append(
                            f"{path}: job {job['job_name']} scrapes {target}, which no rendered service serves"
                        )
    return problems


def _backends_rendered(tree: RenderedTree, parsed: dict[str, Any]) -> list[str]:
    problems = []
    addresses = tree.addresses
    rendered = _service_ports(tree)
    engines = _compose_engines(parsed)
    for path, data in parsed.items():
        if not path.endswith("/wave.yaml"):
            continue
        try:
            config = GatewayConfig.model_validate(data)
        except ValidationError as exc:
            problems.append(f"{path} is not a valid gateway config: {exc}")
            continue
        if not config.backends and not config.agents:
            problems.append(f"{path} lists no backends and no agents: the inventory places no engine")
        for agent in config.agents:
            node, port = agent.name, agent.url.port or 80
            if (
                addresses.get(node) != agent.url.host
                or (node, port) not in rendered
                or f"{node}/agent.yaml" not in parsed
            ):
                problems.append(f"{path}: agent {node} ({agent.url}) is not a rendered wave agent")
        for backend in config.backends:
            node = backend.host or ""
            port = backend.url.port or 80
            if (
                addresses.get(node) != backend.url.host
                or (node, port) not in rendered
                or (node, backend.name) not in engines
            ):
                problems.append(f"{path}: backend {backend.name} ({backend.url}) is not a rendered engine")
    return problems


def _compose_engines(parsed: dict[str, Any]) -> set[tuple[str, str]]:
    engines = set()
    for path, compose in parsed.items():
        if path.endswith("/compose.yaml"):
            node = path.split("/", 1)[0]
            for name, service in (compose.get("services") or {}).items():
                if "io.wavefleet.engine" in service.get("labels", {}):
                    engines.add((node, name))
    return engines
