"""`wave render` on the default inventory (the seed's fleet): the plan's placements by default; the
inventory's deployments as written on request, with what it refuses and the seed's port clash
caught as an error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from wavefleet.catalog import Catalog
from wavefleet.cli import cli
from wavefleet.errors import UsageError
from wavefleet.gateway.config import load_gateway_config
from wavefleet.plan.inventory import DEFAULT_GOAL_WORKLOADS, default_inventory_path, load_inventory
from wavefleet.render.from_inventory import EngineSource, PortMode, Translation, fleet_from_inventory
from wavefleet.render.output import MARKER
from wavefleet.render.render import render_to


def translate(
    catalog: Catalog, ports: PortMode, source: EngineSource = EngineSource.DEPLOYMENTS
) -> Translation:
    inventory = load_inventory(default_inventory_path(), catalog)
    return fleet_from_inventory(inventory, catalog, source=source, ports=ports)


def clashing_inventory(tmp_path: Path) -> Path:
    """The default inventory with vLLM's host port on node-exporter's (9100)."""
    data = yaml.safe_load(default_inventory_path().read_text())
    [vllm] = [d for d in data["deployments"] if d.get("port") == 8001 and d["service"] == "vllm"]
    vllm["port"] = 9100
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_seeds_shared_port_is_no_clash_once_the_agent_runs_llama_cpp(
    catalog: Catalog, tmp_path: Path
) -> None:
    """The seed puts vLLM and llama.cpp on host port 8001; llama.cpp is the agent's (a loopback
    port it picks), so only vLLM's container publishes 8001."""
    translation = translate(catalog, PortMode.INVENTORY)
    render_to(translation.fleet, tmp_path / "out")
    compose = yaml.safe_load((tmp_path / "out" / "schlimers-server" / "compose.yaml").read_text())
    published = [p for s in compose["services"].values() for p in s.get("ports", []) if p.startswith("8001:")]
    assert published == ["8001:8000"]  # vLLM's


def test_a_port_clash_in_the_inventory_is_an_error(catalog: Catalog, tmp_path: Path) -> None:
    inventory = load_inventory(clashing_inventory(tmp_path), catalog)
    translation = fleet_from_inventory(
        inventory, catalog, source=EngineSource.DEPLOYMENTS, ports=PortMode.INVENTORY
    )
    with pytest.raises(UsageError) as caught:
        render_to(translation.fleet, tmp_path / "out")
    message = str(caught.value)
    assert "port 9100" in message and "vllm-desktop" in message and "node-exporter" in message
    assert "--ports assign" in message
    assert not (tmp_path / "out").exists()


def test_engines_share_a_gpu_only_while_their_memory_fits(catalog: Catalog) -> None:
    decisions = {d.deployment: d for d in translate(catalog, PortMode.ASSIGN).decisions}
    assert decisions["vllm-desktop"].rendered
    # vLLM reserves 85% of the 5070 Ti: neither Triton's vLLM nor the 70B split fits beside it.
    for refused in ("triton-desktop", "llamacpp-70b-hybrid"):
        assert not decisions[refused].rendered
        assert "vllm-desktop" in decisions[refused].reason and "GiB" in decisions[refused].reason
    assert decisions["llamacpp-gtx1650"].rendered
    assert not decisions["jetson-trt"].rendered
    assert "hardware" in decisions["dcgm-jetson"].reason


def test_sizing_fills_what_the_inventory_leaves_out(catalog: Catalog) -> None:
    fleet = translate(catalog, PortMode.ASSIGN).fleet
    engines = {e.name: e for e in fleet.engines}
    vllm = engines["vllm-desktop"]
    assert vllm.quantization_flag == "fp8" and vllm.kv_cache_dtype == "fp8"  # BF16 checkpoint, FP8 online
    assert vllm.gpu_memory_utilization == 0.85 and vllm.max_model_len == 16384
    assert any("exceeds" in note for note in vllm.notes)  # 128 sequences of 16K tokens do not fit
    assert vllm.profile is not None and vllm.profile.basis.startswith("estimate")
    gtx = engines["llamacpp-gtx1650"]
    assert gtx.n_gpu_layers == 16 and gtx.gpu_index == 0 and gtx.node == "xps15-lxc-107"
    assert gtx.max_model_len == 4096 and gtx.ctx_size == gtx.parallel * 4096
    assert engines["llamacpp-desktop"].n_gpu_layers is None and engines["llamacpp-desktop"].gpu_index is None
    jetson = fleet.node("jetson")
    assert jetson.gpus[0].dcgm.value == "none"


def test_assigned_ports_do_not_clash_and_kept_ones_stay(catalog: Catalog) -> None:
    kept = {e.name: e.port for e in translate(catalog, PortMode.INVENTORY).fleet.engines}
    assert kept["vllm-desktop"] == 8001 and kept["llamacpp-xps15"] == 8002
    assert kept["llamacpp-gtx1650"] not in (8002, 9100, 9400)  # none given: a free one
    assigned = translate(catalog, PortMode.ASSIGN).fleet.engines
    per_node: dict[str, list[int]] = {}
    for engine in assigned:
        per_node.setdefault(engine.node, []).append(engine.port)
    for ports in per_node.values():
        assert len(ports) == len(set(ports))


def test_the_plan_places_one_engine_per_linux_device(catalog: Catalog) -> None:
    # A patient user (first token within 20 s) gets a model on every device, the laptops too.
    inventory = load_inventory(default_inventory_path(), catalog)
    patient = inventory.workload.model_copy(
        update={
            "goals": {
                "llm-serving": DEFAULT_GOAL_WORKLOADS["llm-serving"].model_copy(update={"max_ttft_s": 20})
            }
        }
    )
    inventory = inventory.model_copy(update={"workload": patient})
    translation = fleet_from_inventory(inventory, catalog, source=EngineSource.PLAN, ports=PortMode.INVENTORY)
    engines = {e.device: e for e in translation.fleet.engines}
    assert set(engines) == {
        "rtx-5070-ti",
        "ryzen-9-9900x",
        "core-i9-9980hk",
        "gtx-1650",
        "jetson-orin-nano-super",
    }
    assert engines["rtx-5070-ti"].kind.value == "vllm"
    assert engines["gtx-1650"].node == "xps15-lxc-107" and engines["gtx-1650"].gpu_index == 0
    assert engines["core-i9-9980hk"].threads == 6  # LXC 107's cores, not the host CPU's 8
    windows = next(d for d in translation.decisions if "core-ultra" in d.deployment)
    assert not windows.rendered and "Windows" in windows.reason


def test_cli_renders_the_plan_by_default(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = CliRunner().invoke(cli, ["render", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = load_gateway_config(out / "xps15-lxc-101" / "wave.yaml")
    # the default workload (first token within 6 s) places nothing on the two laptop CPUs
    assert sorted(a.name for a in config.agents) == ["jetson", "schlimers-server", "xps15-lxc-107"]
    assert not config.backends and config.policy.value == "least-loaded"  # agents carry no profile
    models = [
        m for a in config.agents for m in yaml.safe_load((out / a.name / "agent.yaml").read_text())["models"]
    ]
    assert len(models) == 4
    assert (out / "jetson" / "jetson-exporter" / "exporter.py").is_file()
    assert "dcgm-exporter" not in yaml.safe_load((out / "jetson" / "compose.yaml").read_text())["services"]


def test_cli_renders_the_deployments_with_assigned_ports(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = CliRunner().invoke(
        cli, ["render", "--source", "deployments", "--ports", "assign", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "triton-desktop" in result.output and "wrote" in result.output
    config = load_gateway_config(out / "xps15-lxc-101" / "wave.yaml")
    assert not config.backends and {a.name for a in config.agents} == {"schlimers-server", "xps15-lxc-107"}
    served = {
        m["name"]
        for a in config.agents
        for m in yaml.safe_load((out / a.name / "agent.yaml").read_text())["models"]
    }
    assert len(served) == 4
    compose = yaml.safe_load((out / "schlimers-server" / "compose.yaml").read_text())
    assert {"vllm-desktop", "wave-agent", "node-exporter", "dcgm-exporter"} <= set(compose["services"])
    assert "llamacpp-desktop" not in compose["services"]  # the agent starts it
    assert (out / "xps15" / "lxc-107-gpu.sh").is_file()
    assert (out / MARKER).is_file()


def test_cli_reports_the_clash_with_exit_code_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    inventory = clashing_inventory(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["render", "--inventory", str(inventory), "--source", "deployments", "--out", str(out)],
        standalone_mode=False,
    )
    assert isinstance(result.exception, UsageError) and result.exception.exit_code == 2
    assert "port 9100" in str(result.exception)
    assert not out.exists()


def test_cli_help_teaches() -> None:
    result = CliRunner().invoke(cli, ["render", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--source deployments" in result.output


def test_an_inventory_without_an_nginx_container_says_what_to_add(tmp_path: Path) -> None:
    text = default_inventory_path().read_text().replace("runs: [nginx]", "runs: [haproxy]")
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(text)
    result = CliRunner().invoke(
        cli, ["render", "--inventory", str(inventory), "--out", str(tmp_path / "out")], standalone_mode=False
    )
    assert isinstance(result.exception, UsageError)
    assert "no container in the inventory runs nginx" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_cli_agent_tls_renders_mutual_tls_on_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = CliRunner().invoke(cli, ["render", "--agent-tls", "/etc/wavefleet/tls", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = load_gateway_config(out / "xps15-lxc-101" / "wave.yaml")
    assert config.agents and all(a.url.scheme == "https" and a.tls is not None for a in config.agents)
    for ref in config.agents:
        agent = yaml.safe_load((out / ref.name / "agent.yaml").read_text())
        assert agent["tls"]["client_ca"] == str(ref.tls.ca) if ref.tls else False
