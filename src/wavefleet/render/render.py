"""Render a whole fleet into a tree of artifacts, per node, in memory."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import jinja2

from wavefleet.engines import EngineKind
from wavefleet.errors import UsageError
from wavefleet.render.agent_config import (
    AGENT_FILE,
    AGENT_SECRET_FILE,
    agent_settings,
    agent_yaml,
    check_agent_yaml,
)
from wavefleet.render.artifacts import Artifact, RenderedTree
from wavefleet.render.checks import tree_problems
from wavefleet.render.ci import JENKINSFILE, jenkinsfile
from wavefleet.render.dashboards import dashboards
from wavefleet.render.gateway_config import dump_gateway_config, gateway_config
from wavefleet.render.images import IMAGES
from wavefleet.render.monitoring import RULES_FILE, alert_rules, prometheus_config
from wavefleet.render.output import write_tree
from wavefleet.render.services import (
    AGENT_DIR,
    AGENT_PIP,
    NODE_EXPORTER_PORT,
    ServiceDef,
    agent_base_image,
    agent_engines,
    node_services,
)
from wavefleet.render.spec import EngineSpec, FleetSpec, NodeSpec, OsFamily
from wavefleet.render.templating import make_environment, render_template

__all__ = ["render_fleet", "render_to"]


def render_fleet(fleet: FleetSpec) -> RenderedTree:
    """Every artifact of every node. Raises UsageError on input that cannot be rendered right."""
    env = make_environment()
    tree = RenderedTree(addresses={node.name: node.address for node in fleet.nodes})
    services = {node.name: node_services(fleet, node) for node in fleet.nodes}
    for node in fleet.nodes:
        if node.os is OsFamily.WINDOWS:
            continue
        _render_node(env, tree, fleet, node, services[node.name])
    _render_gateway(env, tree, fleet)
    _render_agents(env, tree, fleet)
    _render_monitoring(tree, fleet, services)
    _render_vault(env, tree, fleet)
    _render_ci(env, tree, fleet)
    for node in fleet.nodes:
        if node.os is not OsFamily.WINDOWS:
            _render_readme(env, tree, fleet, node)
    _render_index(env, tree, fleet)
    return tree


def _render_agents(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec) -> None:
    """Each engine host's agent.yaml, checked by loading it as the agent does, and the image its
    compose service (`wave-agent`, whose port the compose file claims) is built from."""
    for node in fleet.nodes:
        settings = agent_settings(fleet, node)
        if settings is None:
            continue
        path = f"{node.name}/{AGENT_FILE}"
        text = agent_yaml(settings)
        check_agent_yaml(text, path)
        tree.add(Artifact(path, text, "the fleet agent's config, read by the compose service wave-agent"))
        dockerfile = render_template(
            env,
            "wave-agent.Dockerfile.j2",
            node=node,
            base_image=agent_base_image(node, agent_engines(fleet, node)),
            wavefleet=AGENT_PIP,
        )
        tree.add(
            Artifact(
                f"{node.name}/{AGENT_DIR}/Dockerfile",
                dockerfile,
                "the agent's image: this node's llama.cpp image plus Wavefleet",
            )
        )


def _render_index(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec) -> None:
    """The top-level README: nodes, engines, and the order to deploy them in."""
    proxmox_hosts = sorted(
        {n.parent for n in fleet.nodes if n.lxc is not None and n.lxc.gpu_passthrough and n.parent}
    )
    engine_nodes = sorted({e.node for e in fleet.engines})
    order = [f"`{fleet.vault.node}`: Vault policy and AppRole; store the NGC and HF keys."]
    order += [
        f"`{host}`: GPU passthrough into its LXC containers (run the lxc-*-gpu.sh scripts there)."
        for host in proxmox_hosts
    ]
    order.append(
        f"Engine nodes ({', '.join(f'`{n}`' for n in engine_nodes)}): toolkit, secrets (the agent's shared "
        "secret among them), `docker compose up -d --build` (each host's `wave agent` runs in compose)."
    )
    order.append(f"`{fleet.gateway.nginx_node}`: `wave serve --config wave.yaml`, then the NGINX site.")
    order.append(f"`{fleet.monitoring_node}`: Prometheus config and rules, Grafana dashboards.")
    order.append("Every other node: its README (node-exporter, exporters).")
    nodes = []
    for node in fleet.nodes:
        if node.os is OsFamily.WINDOWS:
            nodes.append((node.name, node.address, "nothing (Windows)"))
            continue
        files = [a.path.split("/", 1)[1] for a in tree.under(node.name) if not a.path.endswith("README.md")]
        shown = dict.fromkeys(f if f.count("/") <= 1 else "/".join(f.split("/")[:2]) + "/" for f in files)
        nodes.append((node.name, node.address, ", ".join(f"`{f}`" for f in shown)))
    content = render_template(env, "INDEX.md.j2", fleet=fleet, order=order, nodes=nodes)
    tree.add(Artifact("README.md", content, "the fleet's overview and deploy order"))


def _render_node(
    env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec, node: NodeSpec, services: list[ServiceDef]
) -> None:
    if node.docker:
        compose = render_template(env, "compose.yaml.j2", node=node, services=services)
        tree.add(
            Artifact(f"{node.name}/compose.yaml", compose, "the node's containers: docker compose up -d")
        )
        for service in services:
            for port in service.published_ports:
                tree.claim_port(node.name, port, service.name)
    else:
        script = render_template(
            env, "install-node-exporter.sh.j2", node=node, monitoring=fleet.node(fleet.monitoring_node)
        )
        tree.add(
            Artifact(
                f"{node.name}/install-node-exporter.sh", script, "node-exporter from apt", executable=True
            )
        )
        tree.claim_port(node.name, NODE_EXPORTER_PORT, "node-exporter (apt)")
    if node.docker and node.gpus:
        script = render_template(env, "install-container-toolkit.sh.j2", node=node)
        tree.add(
            Artifact(
                f"{node.name}/install-container-toolkit.sh",
                script,
                "NVIDIA Container Toolkit",
                executable=True,
            )
        )
    engines = fleet.engines_on(node.name)
    if any(e.kind in (EngineKind.VLLM, EngineKind.TRITON) for e in engines):
        script = render_template(env, "fetch-secrets.sh.j2", node=node, vault=fleet.vault)
        tree.add(
            Artifact(
                f"{node.name}/fetch-secrets.sh", script, "NGC login and HF token from Vault", executable=True
            )
        )
    for engine in engines:
        if engine.kind is EngineKind.TRITON:
            _render_triton(env, tree, engine)
    if node.is_jetson and node.docker:
        dockerfile = render_template(
            env,
            "jetson-exporter.Dockerfile.j2",
            base_image=IMAGES.jetson_exporter_base.ref,
            jetson_stats=IMAGES.jetson_stats,
        )
        tree.add(Artifact(f"{node.name}/jetson-exporter/Dockerfile", dockerfile, "Jetson exporter image"))
        exporter = render_template(env, "jetson-exporter.py.j2")
        tree.add(Artifact(f"{node.name}/jetson-exporter/exporter.py", exporter, "Jetson exporter (jtop)"))
    for child in fleet.children(node.name):
        if child.lxc is None or not child.lxc.gpu_passthrough:
            continue
        gpu_index = _passthrough_gpu(fleet, node, child)
        script = render_template(
            env, "lxc-gpu.sh.j2", node=node, child=child, lxc=child.lxc, gpu_index=gpu_index
        )
        tree.add(
            Artifact(
                f"{node.name}/lxc-{child.lxc.vmid}-gpu.sh",
                script,
                f"GPU passthrough into LXC {child.lxc.vmid} ({child.name}); run on this Proxmox host",
                executable=True,
            )
        )


def _passthrough_gpu(fleet: FleetSpec, host: NodeSpec, child: NodeSpec) -> int:
    if not host.gpus:
        raise UsageError(
            f"LXC {child.name} asks for GPU passthrough but its host {host.name} lists no GPU; "
            f"add the GPU to {host.name} in the inventory"
        )
    wanted = {g.device for g in child.gpus}
    for gpu in host.gpus:
        if not wanted or gpu.device in wanted:
            return gpu.index
    raise UsageError(f"LXC {child.name} uses {sorted(wanted)}, but host {host.name} has no such GPU")


def _render_triton(env: jinja2.Environment, tree: RenderedTree, engine: EngineSpec) -> None:
    base = f"{engine.node}/triton/model_repository/{engine.model}"
    tree.add(
        Artifact(
            f"{base}/config.pbtxt",
            render_template(env, "triton-config.pbtxt.j2", engine=engine),
            "Triton model config",
        )
    )
    engine_args: dict[str, object] = {
        "model": engine.weights,
        "served_model_name": engine.model,
        "max_model_len": engine.max_model_len,
        "max_num_seqs": engine.max_num_seqs,
        "disable_log_requests": True,
    }
    if engine.gpu_memory_utilization is not None:
        engine_args["gpu_memory_utilization"] = engine.gpu_memory_utilization
    if engine.kv_cache_dtype:
        engine_args["kv_cache_dtype"] = engine.kv_cache_dtype
    if engine.quantization_flag:
        engine_args["quantization"] = engine.quantization_flag
    tree.add(
        Artifact(
            f"{base}/1/model.json",
            json.dumps(engine_args, indent=2) + "\n",
            "vLLM engine arguments for Triton",
        )
    )


def _render_gateway(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec) -> None:
    gw = fleet.gateway
    node = fleet.node(gw.nginx_node)
    monitoring = fleet.node(fleet.monitoring_node)
    config = gateway_config(fleet)
    nginx = render_template(
        env,
        "nginx-wavefleet.conf.j2",
        gw=gw,
        node=node,
        monitoring=monitoring,
        metrics_allow=_allow_list(monitoring),
        gateway_upstream=f"127.0.0.1:{gw.wave_port}",
        authentik_upstream=_host_port(gw.authentik_outpost),
        max_body_mib=max(1, config.max_body_bytes // 2**20),
        read_timeout_s=int(config.timeouts.total_s),
    )
    tree.add(
        Artifact(f"{node.name}/nginx/wavefleet.conf", nginx, "NGINX site: /etc/nginx/conf.d/wavefleet.conf")
    )
    tree.add(
        Artifact(
            f"{node.name}/wave.yaml",
            dump_gateway_config(fleet, config),
            "gateway config: wave serve --config wave.yaml",
        )
    )
    for port, owner in (
        (80, "nginx"),
        (443, "nginx"),
        (gw.metrics_port, "nginx /metrics"),
        (gw.wave_port, "wave serve"),
    ):
        tree.claim_port(node.name, port, owner)


def _render_monitoring(tree: RenderedTree, fleet: FleetSpec, services: dict[str, list[ServiceDef]]) -> None:
    node = fleet.monitoring_node
    tree.add(
        Artifact(
            f"{node}/prometheus/prometheus.yml",
            prometheus_config(fleet, services),
            "Prometheus scrape config",
        )
    )
    tree.add(
        Artifact(f"{node}/prometheus/{RULES_FILE}", alert_rules(fleet, services), "Prometheus alert rules")
    )
    for name, content in dashboards(fleet).items():
        tree.add(Artifact(f"{node}/grafana/dashboards/{name}", content, "Grafana dashboard (import it)"))


def _render_vault(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec) -> None:
    vault = fleet.vault
    node = fleet.node(vault.node)
    tree.add(
        Artifact(
            f"{node.name}/vault/{vault.policy}.hcl",
            render_template(env, "vault-policy.hcl.j2", vault=vault),
            "Vault policy: read-only NGC and HF keys",
        )
    )
    tree.add(
        Artifact(
            f"{node.name}/vault/approle-setup.sh",
            render_template(env, "vault-approle-setup.sh.j2", vault=vault, node=node),
            "one-time Vault set-up: KV v2, policy, AppRole",
            executable=True,
        )
    )


def _render_ci(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec) -> None:
    """The model pipeline's Jenkinsfile on the CI runner's node; nothing without a CI runner."""
    if fleet.ci is None:
        return
    tree.add(
        Artifact(
            f"{fleet.ci.node}/{JENKINSFILE}",
            jenkinsfile(env, fleet),
            "the model pipeline's Jenkins job: fetch, quantize, check, roll out",
        )
    )


def _render_readme(env: jinja2.Environment, tree: RenderedTree, fleet: FleetSpec, node: NodeSpec) -> None:
    artifacts = tree.under(node.name)
    files = [(a.path.removeprefix(f"{node.name}/"), a.purpose) for a in artifacts]
    steps = _steps(fleet, node, {path for path, _ in files})
    caveats = _caveats(fleet, node)
    readme = render_template(
        env,
        "README.md.j2",
        fleet=fleet,
        node=node,
        files=files,
        steps=steps,
        engines=fleet.engines_on(node.name),
        caveats=caveats,
    )
    tree.add(Artifact(f"{node.name}/README.md", readme, "this file"))


def _steps(fleet: FleetSpec, node: NodeSpec, files: set[str]) -> list[str]:
    steps = [f"Copy this folder to `{node.name}` (`{node.address}`), e.g. to `/opt/wavefleet/`."]
    for path in sorted(f for f in files if f.startswith("lxc-")):
        steps.append(
            f"On this Proxmox host, as root: `./{path}` (reads the device majors here), then follow what it prints."
        )
    if "install-node-exporter.sh" in files:
        steps.append("As root: `./install-node-exporter.sh`.")
    if "install-container-toolkit.sh" in files:
        steps.append("As root, once the NVIDIA driver works: `./install-container-toolkit.sh`.")
    if "fetch-secrets.sh" in files:
        steps.append(
            "Put the AppRole `role_id` and `secret_id` (from the Vault node's `vault/approle-setup.sh`) in "
            "`/etc/wavefleet/vault/` (mode 600), then `./fetch-secrets.sh` (docker login nvcr.io, writes secrets.env)."
        )
    if any(f.endswith(".gguf") for f in files) or any(
        e.kind is EngineKind.LLAMACPP for e in fleet.engines_on(node.name)
    ):
        weights = ", ".join(
            sorted({e.weights for e in fleet.engines_on(node.name) if e.kind is EngineKind.LLAMACPP})
        )
        steps.append(f"Place the GGUF files ({weights}) in `/srv/wavefleet/models/`.")
    if AGENT_FILE in files:
        steps.append(
            f"Put the fleet's shared secret (the same on every agent host and the gateway's) on the first line of "
            f"`{AGENT_SECRET_FILE}` (mode 600, e.g. `openssl rand -hex 32` once for the fleet) before starting "
            "compose: Docker would make a missing file a folder."
        )
    if "compose.yaml" in files:
        build = any(f.endswith("/Dockerfile") for f in files)
        steps.append(
            f"`docker compose up -d{' --build' if build else ''}`, then `docker compose ps` until every service "
            "is healthy"
            + ("; `--build` builds the images rendered here (again after each render)." if build else ".")
        )
    if "nginx/wavefleet.conf" in files:
        steps.append(
            "Copy `nginx/wavefleet.conf` to `/etc/nginx/conf.d/`, put the TLS certificate and key where it says, "
            "`nginx -t && systemctl reload nginx`."
        )
    if "wave.yaml" in files:
        steps.append(
            "`pip install wavefleet`, then `wave serve --config wave.yaml` (bind stays on 127.0.0.1: NGINX is the way in)."
        )
    if "prometheus/prometheus.yml" in files:
        steps.append(
            "Merge `prometheus/prometheus.yml` into `/etc/prometheus/prometheus.yml`, copy `prometheus/rules/` beside it, "
            "`promtool check config /etc/prometheus/prometheus.yml`, reload Prometheus; import `grafana/dashboards/*.json` "
            "in Grafana, choosing the Prometheus data source."
        )
    if JENKINSFILE in files and fleet.ci is not None:
        steps.append(
            f"Install Wavefleet for Jenkins with llama.cpp's tools (`llama-quantize`) in `{fleet.ci.wave_bin.removesuffix('/bin')}` "
            "(the models manual: Setting up the CI runner), then create a Pipeline job `wavefleet-model` whose "
            f"script is `{JENKINSFILE}`; the job keeps GGUF files in `{fleet.ci.models_dir}`. Trigger it by hand "
            "or from a Gitea webhook on its `buildWithParameters` URL (the file's header says how)."
        )
    if "vault/approle-setup.sh" in files:
        steps.append(
            "With VAULT_ADDR and an admin VAULT_TOKEN: `vault/approle-setup.sh`; store the NGC and HF keys as it prints; "
            "hand `role_id`/`secret_id` to the Docker nodes and delete them here."
        )
    return steps


def _caveats(fleet: FleetSpec, node: NodeSpec) -> list[str]:
    caveats = []
    for gpu in node.gpus if node.docker else []:
        if gpu.dcgm.value == "basic":
            caveats.append(
                f"GPU {gpu.index} ({gpu.name}) is a GeForce card: DCGM gives its basic fields (power, memory, "
                "utilization, temperature, clocks); profiling (DCP) metrics are for datacenter GPUs."
            )
        if gpu.dcgm.value == "none":
            caveats.append(
                f"{gpu.name}: DCGM does not support it; the jtop-based jetson-exporter reports it instead."
            )
    if node.lxc is not None and node.lxc.gpu_passthrough:
        caveats.append(
            "This LXC container uses the host's kernel module: install the same driver version as the host, "
            "user space only (`--no-kernel-module`)."
        )
    if node.is_jetson:
        caveats.append(
            "JetPack ships the NVIDIA Container Toolkit; build the jetson-exporter with JETSON_STATS matching `jtop --version`."
        )
    return caveats


def _allow_list(monitoring: NodeSpec) -> list[str]:
    """Who may read the gateway's /metrics: the Prometheus node, or private networks without its IP."""
    try:
        return [str(ipaddress.ip_address(monitoring.address))]
    except ValueError:
        return ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]


def _host_port(url: str) -> str:
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    if ":" not in rest:
        rest += ":443" if url.startswith("https") else ":80"
    return rest


def render_to(fleet: FleetSpec, out: Path) -> list[Path]:
    """Render, check, and write the whole tree under `out`; on any problem nothing is written."""
    tree = render_fleet(fleet)
    problems = tree_problems(tree)
    if problems:
        raise UsageError("the rendered files would be wrong:\n  " + "\n  ".join(problems))
    return write_tree(tree, out)
