"""`wave render` writes each engine host's agent.yaml from the plan's placements: every placement
serving OpenAI's API appears in its host's agent.yaml with its context and slots, on its device,
and the file loads with the agent's own config loader. The rendered wave.yaml federates exactly
those agents, so every placed model is reachable through the gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from render_example import example_fleet
from wavefleet.agent.config import load_agent_config
from wavefleet.catalog import Catalog
from wavefleet.engines import Api, EngineKind
from wavefleet.errors import ConfigError, UsageError
from wavefleet.gateway.config import load_gateway_config
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.render.from_inventory import EngineSource, PortMode, fleet_from_inventory
from wavefleet.render.render import render_to
from wavefleet.render.spec import FleetSpec


def home_lab_fleet(source: EngineSource) -> FleetSpec:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    return fleet_from_inventory(inventory, catalog, source=source, ports=PortMode.ASSIGN).fleet


@pytest.mark.parametrize("which", ["example", "home-lab-plan", "home-lab-deployments"])
def test_every_placement_is_in_its_hosts_agent_yaml_with_its_context_and_slots(
    which: str, tmp_path: Path
) -> None:
    if which == "example":
        fleet = example_fleet()
    else:
        fleet = home_lab_fleet(EngineSource.PLAN if which == "home-lab-plan" else EngineSource.DEPLOYMENTS)
    render_to(fleet, tmp_path)
    served = [e for e in fleet.engines if e.kind.traits.api is Api.OPENAI]  # the agent forwards OpenAI's API
    hosts = {e.node for e in served}
    assert hosts and sorted(p.parent.name for p in tmp_path.glob("*/agent.yaml")) == sorted(hosts)
    for host in hosts:
        path = tmp_path / host / "agent.yaml"
        config = load_agent_config(path, check_files=False)  # the agent's own loader
        assert config.name == host and config.secret is not None
        assert config.host == fleet.node(host).address  # beyond loopback: the secret guards it
        placed = [e for e in served if e.node == host]
        assert len(config.models) == len(placed)
        seen: set[str] = set()
        for engine, model in zip(placed, config.models, strict=True):
            assert model.name == (engine.model if engine.model not in seen else engine.name)
            seen.add(engine.model)
            assert model.context == engine.max_model_len
            expected_device = "cpu" if engine.gpu_index is None else f"gpu{engine.gpu_index}"
            if engine.kind is EngineKind.LLAMACPP:
                assert model.slots == engine.parallel
                assert model.gguf == f"/srv/wavefleet/models/{engine.weights}"
                assert model.device == expected_device
                assert config.devices[model.device].gpu == engine.gpu_index
            else:  # compose runs it; the agent fronts it at its published port
                assert model.slots == engine.max_num_seqs
                assert str(model.url) == f"http://127.0.0.1:{engine.port}/"


def test_the_check_fails_for_a_file_the_agent_would_refuse(tmp_path: Path) -> None:
    fleet = example_fleet()
    render_to(fleet, tmp_path)
    host = next(e.node for e in fleet.engines if e.kind is EngineKind.LLAMACPP)
    path = tmp_path / host / "agent.yaml"
    with pytest.raises(ConfigError, match="no such file"):  # on this machine the GGUF files are absent
        load_agent_config(path)
    path.write_text(path.read_text().replace("context:", "contxt:", 1))
    with pytest.raises(ConfigError, match="remove 'contxt'"):
        load_agent_config(path, check_files=False)


def test_a_placement_the_agent_would_refuse_stops_the_render_naming_the_file(tmp_path: Path) -> None:
    fleet = example_fleet()
    first = next(i for i, e in enumerate(fleet.engines) if e.kind is EngineKind.LLAMACPP)
    engines = list(fleet.engines)
    engines[first] = engines[first].model_copy(update={"max_model_len": 8})  # under the agent's 16 tokens
    with pytest.raises(UsageError, match=rf"{engines[first].node}/agent.yaml: the agent would refuse it"):
        render_to(example_fleet(engines=engines), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written


def test_prometheus_scrapes_every_agent(tmp_path: Path) -> None:
    import yaml

    fleet = home_lab_fleet(EngineSource.DEPLOYMENTS)
    render_to(fleet, tmp_path)
    prometheus = yaml.safe_load(
        (tmp_path / fleet.monitoring_node / "prometheus" / "prometheus.yml").read_text()
    )
    (job,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == "wave-agent"]
    scraped = {(s["labels"]["node"], s["targets"][0]) for s in job["static_configs"]}
    assert scraped == {(n, f"{fleet.node(n).address}:9190") for n in {e.node for e in fleet.engines}}


@pytest.mark.parametrize(
    ("which", "tls"),
    [("example", None), ("home-lab-plan", None), ("home-lab-deployments", "/etc/wavefleet/tls")],
)
def test_the_rendered_gateway_federates_exactly_the_rendered_agents(
    which: str, tls: str | None, tmp_path: Path
) -> None:
    fleet = (
        example_fleet()
        if which == "example"
        else home_lab_fleet(EngineSource.PLAN if which == "home-lab-plan" else EngineSource.DEPLOYMENTS)
    )
    fleet = fleet.model_copy(update={"gateway": fleet.gateway.model_copy(update={"agent_tls_dir": tls})})
    render_to(fleet, tmp_path)
    gateway = load_gateway_config(tmp_path / fleet.gateway.nginx_node / "wave.yaml")  # the gateway's loader
    written = sorted(p.parent.name for p in tmp_path.glob("*/agent.yaml"))
    assert sorted(a.name for a in gateway.agents) == written
    reachable = {m for b in gateway.backends for m in b.models}
    for ref in gateway.agents:
        agent = load_agent_config(tmp_path / ref.name / "agent.yaml", check_files=False)
        assert (
            (ref.url.host, ref.url.port) == (agent.host, agent.port) == (fleet.node(ref.name).address, 9190)
        )
        assert ref.secret is not None and agent.secret is not None and ref.secret.file == agent.secret.file
        if tls is None:
            assert ref.url.scheme == "http" and ref.tls is None and agent.tls is None
        else:  # mutual TLS: the agent asks for the gateway's certificate, signed by the same CA
            assert ref.url.scheme == "https" and ref.tls is not None and agent.tls is not None
            assert ref.tls.ca == agent.tls.client_ca == Path(tls) / "ca.pem"
            assert (
                ref.tls.cert == Path(tls) / "gateway.pem" and agent.tls.cert == Path(tls) / f"{ref.name}.pem"
            )
        reachable |= {m.name for m in agent.models}
    for engine in fleet.engines:  # every placement is served, by its host's agent or as a backend
        on_agent = engine.kind.traits.api is Api.OPENAI
        assert (engine.node in written) or not on_agent
        assert engine.model in reachable or engine.name in reachable
    assert not (
        {b.name for b in gateway.backends}
        & {e.name for e in fleet.engines if e.kind.traits.api is Api.OPENAI}
    )


@pytest.mark.parametrize("which", ["example", "home-lab-plan"])
def test_a_host_runs_each_placement_once_and_monitors_what_runs(which: str, tmp_path: Path) -> None:
    """What the agent starts itself (llama.cpp from its GGUF) is no compose container as well:
    compose carries the agent instead, beside the engines it cannot start (vLLM it fronts by URL,
    Triton the gateway reaches directly). Prometheus scrapes the agent, not vanished containers,
    and no alert or panel reads a metric only those containers exported."""
    import json
    import re

    import yaml

    fleet = example_fleet() if which == "example" else home_lab_fleet(EngineSource.PLAN)
    render_to(fleet, tmp_path)
    agent_hosts = sorted(p.parent.name for p in tmp_path.glob("*/agent.yaml"))
    assert agent_hosts
    for host in agent_hosts:
        agent = load_agent_config(tmp_path / host / "agent.yaml", check_files=False)
        started = {m.name for m in agent.models if m.url is None}  # the agent's own engine processes
        compose = yaml.safe_load((tmp_path / host / "compose.yaml").read_text())["services"]
        containers = {
            name: s["labels"] for name, s in compose.items() if "io.wavefleet.engine" in s["labels"]
        }
        doubled = sorted(
            name
            for name, labels in containers.items()
            if {labels["io.wavefleet.model"], labels["io.wavefleet.engine"]} & started
        )
        assert doubled == [], f"{host}: {doubled} run in compose and by the agent"
        expected = sorted(e.name for e in fleet.engines_on(host) if e.kind is not EngineKind.LLAMACPP)
        assert sorted(containers) == expected  # vLLM and Triton stay containers
        (service,) = [s for s in compose.values() if s["labels"].get("io.wavefleet.agent") == host]
        assert service["network_mode"] == "host"  # binds the node's address; reaches vLLM on loopback
        assert any(v.endswith(":/etc/wavefleet/agent.yaml:ro") for v in service["volumes"])
    prometheus = yaml.safe_load(
        (tmp_path / fleet.monitoring_node / "prometheus" / "prometheus.yml").read_text()
    )
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    assert "llamacpp" not in jobs
    agent_targets = sorted(s["labels"]["node"] for s in jobs["wave-agent"]["static_configs"])
    assert agent_targets == agent_hosts
    monitoring = tmp_path / fleet.monitoring_node
    texts = [(monitoring / "prometheus" / "rules" / "wavefleet.rules.yml").read_text()]
    texts += [p.read_text() for p in sorted((monitoring / "grafana" / "dashboards").glob("*.json"))]
    exprs = "\n".join(texts)
    assert "llamacpp:" not in exprs  # llama-server's own metrics are not scraped: the agent's are
    rules = yaml.safe_load(texts[0])["groups"][0]["rules"]
    slots_full = [r for r in rules if r["alert"].startswith("LlamaCppSlotsFull")]
    llamacpp = [e for e in fleet.engines if e.kind is EngineKind.LLAMACPP]
    assert len(slots_full) == len(llamacpp) and all("wave_engine_inflight" in r["expr"] for r in slots_full)
    panels = [p for board in texts[1:] for p in json.loads(board)["panels"]]
    counted = re.compile(r"(?:wave_requests_total|wave_completion_tokens_total)(\{[^}]*\})?")
    for target in (t for p in panels for t in p["targets"]):  # the agents' counters repeat the gateway's
        assert all("job=" in labels for labels in counted.findall(target["expr"])), target["expr"]
