"""`wave render`'s artifacts, checked with the real tools: nginx -t, promtool, shellcheck, the
Compose Specification schema, Grafana's dashboard structure, and the gateway's own loader."""

from __future__ import annotations

import json
import py_compile
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
from wavefleet.gateway.config import load_gateway_config
from wavefleet.render.checks import compose_ports
from wavefleet.render.render import render_to
from wavefleet.render.spec import FleetSpec


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; run ./dev test, which installs the tools these tests use")
    return path


@pytest.fixture(scope="module")
def fleet_spec() -> FleetSpec:
    return example_fleet()


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory, fleet_spec: FleetSpec) -> Path:
    target = tmp_path_factory.mktemp("render") / "out"
    render_to(fleet_spec, target)
    return target


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose_files(out: Path) -> list[Path]:
    return sorted(out.glob("*/compose.yaml"))


# --- Compose -----------------------------------------------------------------------------------


def test_the_bundled_schema_rejects_a_misspelt_gpu_reservation() -> None:
    schema = json.loads((resources.files("wavefleet.render") / "schemas" / "compose-spec.json").read_text())
    bad = {
        "services": {
            "x": {
                "image": "a",
                "deploy": {"resources": {"reservations": {"devices": [{"driver": "nvidia", "cuont": 1}]}}},
            }
        }
    }
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_vllm_service_carries_the_sized_flags(out: Path, fleet_spec: FleetSpec) -> None:
    engine = next(e for e in fleet_spec.engines if e.name == "vllm-desktop")
    service = load_yaml(out / "schlimers-server" / "compose.yaml")["services"]["vllm-desktop"]
    args = service["command"]
    flag = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
    assert flag["--max-model-len"] == str(engine.max_model_len)
    assert flag["--max-num-seqs"] == str(engine.max_num_seqs)
    assert flag["--gpu-memory-utilization"] == "0.8"
    assert flag["--kv-cache-dtype"] == "fp8"
    assert flag["--quantization"] == "fp8"
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", service["image"])
    assert service["ipc"] == "host"
    assert "/health" in " ".join(service["healthcheck"]["test"])
    assert service["env_file"][0]["path"] == "./secrets.env"
    assert not any("TOKEN" in str(v) or "KEY" in str(v) for v in service.get("environment", {}).values())
    assert any(v.endswith(":/root/.cache/huggingface") for v in service["volumes"])


def test_vllm_gets_no_quantization_flag_when_the_checkpoint_needs_none(out: Path) -> None:
    service = load_yaml(out / "schlimers-server" / "compose.yaml")["services"]["triton-desktop"]
    model_json = json.loads(
        (out / "schlimers-server/triton/model_repository/qwen2.5-0.5b/1/model.json").read_text()
    )
    assert "quantization" not in model_json
    assert service["shm_size"] == "1g"


def test_the_agent_service_runs_llama_server_from_the_llama_cpp_image_of_its_hardware(out: Path) -> None:
    """llama.cpp placements are the agent's (agent.yaml), not containers; the agent's image is the
    llama.cpp image of the node's hardware plus Wavefleet, and reserves the GPUs it starts models on."""
    from wavefleet import __version__

    for node, base, gpus in (
        (
            "schlimers-server",
            "ghcr.io/ggml-org/llama.cpp:server-b10644",
            None,
        ),  # its llama.cpp runs on the CPU
        ("xps15-lxc-107", "ghcr.io/ggml-org/llama.cpp:server-cuda-b10644", ["0"]),
        ("jetson", "dustynv/llama_cpp:r36.4.0", ["0"]),
    ):
        services = load_yaml(out / node / "compose.yaml")["services"]
        assert not [n for n in services if n.startswith("llamacpp-")]
        agent = services["wave-agent"]
        assert agent["build"] == {
            "context": "./wave-agent",
            "args": {"BASE_IMAGE": base, "WAVEFLEET": f"wavefleet=={__version__}"},
        }
        assert agent["command"] == ["agent", "--config", "/etc/wavefleet/agent.yaml"]
        assert agent["network_mode"] == "host" and agent["pid"] == "host"
        assert "/srv/wavefleet/models:/srv/wavefleet/models:ro" in agent["volumes"]  # agent.yaml's GGUF paths
        assert "/etc/wavefleet/agent.secret:/etc/wavefleet/agent.secret:ro" in agent["volumes"]
        reserved = agent.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        assert (reserved[0]["device_ids"] if reserved else None) == gpus
        assert "/metrics" in " ".join(agent["healthcheck"]["test"])
        dockerfile = (out / node / "wave-agent" / "Dockerfile").read_text()
        assert f"ARG BASE_IMAGE={base}\nFROM ${{BASE_IMAGE}}" in dockerfile
        assert 'ENTRYPOINT ["wave"]' in dockerfile
    # vLLM keeps its container: the agent fronts it on loopback (host network)
    assert "vllm-desktop" in load_yaml(out / "schlimers-server" / "compose.yaml")["services"]


def test_the_agent_image_installs_python_and_wavefleet_in_a_shell_that_parses(
    out: Path, tmp_path: Path
) -> None:
    dockerfile = (out / "jetson" / "wave-agent" / "Dockerfile").read_text()
    run = dockerfile.split("RUN ", 1)[1].split("\n# ", 1)[0].replace("\\\n", "\n")
    script = tmp_path / "run.sh"
    script.write_text(run)
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", "--exclude=SC2154", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )  # SC2154: WAVEFLEET is the Dockerfile's ARG, an environment variable when RUN runs
    assert result.returncode == 0, result.stdout


def test_exporters_follow_what_each_gpu_supports(out: Path) -> None:
    desktop = load_yaml(out / "schlimers-server" / "compose.yaml")["services"]
    jetson = load_yaml(out / "jetson" / "compose.yaml")["services"]
    assert "dcgm-exporter" in desktop
    assert "dcgm-exporter" not in jetson
    assert "jetson-exporter" in jetson
    for path in compose_files(out):
        assert "node-exporter" in load_yaml(path)["services"]
    for node in ("xps15", "xps15-lxc-101", "xps15-lxc-103", "xps15-lxc-105"):
        assert (out / node / "install-node-exporter.sh").is_file()
    py_compile.compile(str(out / "jetson" / "jetson-exporter" / "exporter.py"), doraise=True)


def test_triton_model_repository_skeleton(out: Path) -> None:
    config = (out / "schlimers-server/triton/model_repository/qwen2.5-0.5b/config.pbtxt").read_text()
    assert 'backend: "vllm"' in config
    assert "KIND_MODEL" in config
    model_json = json.loads(
        (out / "schlimers-server/triton/model_repository/qwen2.5-0.5b/1/model.json").read_text()
    )
    assert model_json["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert model_json["gpu_memory_utilization"] == 0.1


# --- NGINX -------------------------------------------------------------------------------------


def test_nginx_site_structure(out: Path) -> None:
    site = (out / "xps15-lxc-101" / "nginx" / "wavefleet.conf").read_text()
    top_level = _top_level_directives(site)
    assert top_level[0] == "limit_req_zone"
    assert set(top_level) == {"limit_req_zone", "upstream", "server"}
    assert "ssl_protocols TLSv1.3;" in site
    assert "auth_request     /outpost.goauthentik.io/auth/nginx;" in site
    assert "proxy_pass http://wavefleet_gateway;" in site
    for directive in (
        "proxy_buffering off;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "X-Accel-Buffering",
    ):
        assert directive in site
    assert (
        re.search(r"proxy_read_timeout (\d+)s;", site)
        and int(re.search(r"proxy_read_timeout (\d+)s;", site)[1]) >= 300
    )
    # NGINX reaches the engines only through the gateway.
    for port in ("8000", "8081", "8082", "8083", "8100"):
        assert f":{port}" not in site


def _top_level_directives(conf: str) -> list[str]:
    depth, names = 0, []
    for raw in conf.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0:
            names.append(line.split()[0])
        depth += line.count("{") - line.count("}")
    return names


# --- Prometheus and Grafana --------------------------------------------------------------------


def test_alert_expressions_mean_what_they_say(out: Path) -> None:
    rules = load_yaml(out / "xps15-lxc-105/prometheus/rules/wavefleet.rules.yml")["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    memory = [r for name, r in by_name.items() if name.startswith("GpuMemoryAlmostFull")]
    assert memory
    for rule in memory:
        assert re.search(
            r"DCGM_FI_DEV_FB_USED\{[^}]*\} / \(DCGM_FI_DEV_FB_USED\{[^}]*\} \+ DCGM_FI_DEV_FB_FREE\{[^}]*\}\)",
            rule["expr"],
        )
        threshold = float(rule["expr"].rsplit(">", 1)[1])
        assert f"{threshold:.0%}" in rule["annotations"]["summary"]
    # vLLM preallocates 80% + 10% (Triton) of the desktop GPU: 90% used is normal there.
    desktop = by_name["GpuMemoryAlmostFull_schlimers_server_gpu0"]
    assert float(desktop["expr"].rsplit(">", 1)[1]) > 0.9
    text = json.dumps(rules)
    assert "vllm_request_success_total" not in text  # the seed's wrong name
    assert "vllm:generation_tokens_total" in text
    slow = by_name["VllmSlowerThanEstimate_vllm_desktop"]
    assert "tokens/s" in slow["annotations"]["summary"] and "generation_tokens" in slow["expr"]


# --- Scripts -----------------------------------------------------------------------------------


def test_toolkit_scripts_use_the_current_repository(out: Path) -> None:
    desktop = (out / "schlimers-server" / "install-container-toolkit.sh").read_text()
    assert "https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list" in desktop
    assert "signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg" in desktop
    assert "$(ARCH)" not in desktop
    assert "nvidia-ctk runtime configure --runtime=docker" in desktop
    assert "no-cgroups" not in desktop
    lxc = (out / "xps15-lxc-107" / "install-container-toolkit.sh").read_text()
    assert "nvidia-container-cli.no-cgroups=true" in lxc
    jetson = (out / "jetson" / "install-container-toolkit.sh").read_text()
    assert "libnvidia-container/stable" not in jetson and "JetPack" in jetson


def test_vault_policy_and_scripts(out: Path) -> None:
    policy = (out / "xps15-lxc-103" / "vault" / "wavefleet-ngc-read.hcl").read_text()
    paths = re.findall(r'path "([^"]+)" \{\s*capabilities = \["read"\]\s*\}', policy)
    assert paths == ["secret/data/wavefleet/ngc", "secret/data/wavefleet/huggingface"]
    setup = (out / "xps15-lxc-103" / "vault" / "approle-setup.sh").read_text()
    for needle in ('token_policies="wavefleet-ngc-read"', "secret_id_ttl=", "token_ttl=", "kv-v2"):
        assert needle in setup
    fetch = (out / "schlimers-server" / "fetch-secrets.sh").read_text()
    assert "/v1/auth/approle/login" in fetch and "--password-stdin" in fetch and "revoke-self" in fetch


def test_lxc_script_reads_majors_on_the_host_and_keeps_the_rest(out: Path, tmp_path: Path) -> None:
    """Runs the rendered script against device nodes with made-up majors and a Proxmox-style config."""
    script = out / "xps15" / "lxc-107-gpu.sh"
    text = script.read_text()
    assert "507" not in text and "stat -c '%t'" in text
    dev, conf_dir, bin_dir = tmp_path / "dev", tmp_path / "lxc", tmp_path / "bin"
    for folder in (dev, conf_dir, bin_dir):
        folder.mkdir()
    majors = {
        "nvidia0": 195,
        "nvidiactl": 195,
        "nvidia-modeset": 195,
        "nvidia-uvm": 509,
        "nvidia-uvm-tools": 509,
    }
    for name, major in majors.items():
        subprocess.run(["mknod", str(dev / name), "c", str(major), "0"], check=True)
    # Stand-ins for the driver's tools: nvidia-smi answers, module loading succeeds.
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 570.86.16\n")
    for tool in ("nvidia-modprobe", "modprobe"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    conf = conf_dir / "107.conf"
    conf.write_text(
        "arch: amd64\ncores: 6\nlxc.cgroup2.devices.allow: c 226:* rwm\nlxc.cgroup2.devices.allow: c 195:* rwm\n"
        "[before-upgrade]\narch: amd64\n"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "DEV_DIR": str(dev), "LXC_CONF_DIR": str(conf_dir)}
    for _ in range(2):  # running it twice changes nothing the second time
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
    lines = conf.read_text().splitlines()
    main, snapshot = lines[: lines.index("[before-upgrade]")], lines[lines.index("[before-upgrade]") :]
    assert main.count("lxc.cgroup2.devices.allow: c 195:* rwm") == 1
    assert main.count("lxc.cgroup2.devices.allow: c 509:* rwm") == 1
    assert "lxc.cgroup2.devices.allow: c 226:* rwm" in main  # not ours: kept
    for name in majors:
        assert main.count(f"lxc.mount.entry: /dev/{name} dev/{name} none bind,optional,create=file") == 1
    assert snapshot == ["[before-upgrade]", "arch: amd64"]
    assert "--no-kernel-module" in result.stdout and "570.86.16" in result.stdout


# --- Gateway config and cross-file consistency -------------------------------------------------


def test_gateway_config_loads_and_reaches_every_engine(out: Path, fleet_spec: FleetSpec) -> None:
    """Engines the agents serve are reached through their node's agent; Triton (KServe v2, which
    the agent does not forward) is a backend of its own."""
    config = load_gateway_config(out / "xps15-lxc-101" / "wave.yaml")
    assert config.host == "127.0.0.1"
    assert [b.name for b in config.backends] == ["triton-desktop"]
    (triton,) = config.backends
    assert triton.triton_model == "qwen2.5-0.5b" and triton.gpu is True
    assert sorted(a.name for a in config.agents) == sorted({e.node for e in fleet_spec.engines})
    for path in compose_files(out):
        for name, service in load_yaml(path)["services"].items():
            if "io.wavefleet.engine" in service["labels"] and name != "triton-desktop":
                engine = next(e for e in fleet_spec.engines if e.name == name)
                published = [p for p, _ in compose_ports({"services": {name: service}})]
                models = load_yaml(path.parent / "agent.yaml")["models"]
                assert any(
                    m.get("url") in [f"http://127.0.0.1:{port}" for port in published]
                    or m.get("gguf", "").endswith(engine.weights)
                    for m in models
                ), (name, models)


def test_every_node_gets_a_readme_in_order(out: Path) -> None:
    for node_dir in (p for p in out.iterdir() if p.is_dir()):
        readme = (node_dir / "README.md").read_text()
        for listed in re.findall(r"^- `([^`]+)`:", readme, flags=re.M):
            assert (
                node_dir / listed
            ).exists() or listed == "README.md", f"{node_dir.name} README lists {listed}"
    steps = (out / "xps15" / "README.md").read_text().split("## Steps", 1)[1]
    assert steps.index("lxc-107-gpu.sh") < steps.index("install-node-exporter.sh")
    desktop = (out / "schlimers-server" / "README.md").read_text().split("## Steps", 1)[1]
    assert (
        desktop.index("install-container-toolkit.sh")
        < desktop.index("fetch-secrets.sh")
        < desktop.index("docker compose up")
    )
