"""Prometheus scrape configuration and alert rules for everything the render starts.

Built as data and dumped as YAML: PromQL's `{{ $labels.x }}` templating and Jinja's would
otherwise collide. Every scrape target comes from a rendered service; every alert's expression
is written to mean exactly what its summary says.
"""

from __future__ import annotations

from typing import Any

import yaml

from wavefleet.engines import EngineKind
from wavefleet.render.agent_config import served_names
from wavefleet.render.services import AGENT_JOB, NODE_EXPORTER_PORT, ServiceDef, agent_starts
from wavefleet.render.spec import FleetSpec

__all__ = [
    "AGENT_JOB",
    "GATEWAY_JOB",
    "RULES_FILE",
    "ScrapeEntry",
    "alert_rules",
    "prometheus_config",
    "scrape_entries",
]

RULES_FILE = "rules/wavefleet.rules.yml"
GATEWAY_JOB = "wave-gateway"
ScrapeEntry = tuple[str, str, str, dict[str, str]]  # (job, target host:port, metrics path, labels)

# vLLM preallocates --gpu-memory-utilization of the whole GPU at start, so "90% used" is its
# normal state there. On such GPUs the alert fires only when something beyond the engine's
# reservation takes memory (another process, a leak): the share it reserved plus this margin.
VLLM_MEMORY_MARGIN = 0.04
DEFAULT_MEMORY_SHARE = 0.90


def scrape_entries(fleet: FleetSpec, services: dict[str, list[ServiceDef]]) -> list[ScrapeEntry]:
    """Every target Prometheus scrapes: the rendered services (each host's fleet agent among
    them), and the gateway's listener."""
    entries: list[ScrapeEntry] = []
    for node in fleet.nodes:
        node_services = services.get(node.name, [])
        for service in node_services:
            if service.scrape is None:
                continue
            labels = {"node": node.name, "service": service.name}
            if service.engine is not None:
                labels |= {
                    "engine": service.engine.name,
                    "model": service.engine.model,
                    "device": service.engine.device,
                }
            entries.append(
                (service.scrape.job, f"{node.address}:{service.scrape.port}", service.scrape.path, labels)
            )
        if not node.docker and node.os.value != "windows":
            # No Docker here (a Proxmox host, a plain LXC): node-exporter comes from apt.
            labels = {"node": node.name, "service": "node-exporter"}
            entries.append(("node", f"{node.address}:{NODE_EXPORTER_PORT}", "/metrics", labels))
    nginx = fleet.node(fleet.gateway.nginx_node)
    entries.append(
        (
            GATEWAY_JOB,
            f"{nginx.address}:{fleet.gateway.metrics_port}",
            "/metrics",
            {"node": nginx.name, "service": "wave-gateway"},
        )
    )
    return entries


def prometheus_config(fleet: FleetSpec, services: dict[str, list[ServiceDef]]) -> str:
    jobs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for job, target, path, labels in scrape_entries(fleet, services):
        jobs.setdefault((job, path), []).append({"targets": [target], "labels": labels})
    config = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": static}
            for (job, path), static in sorted(jobs.items())
        ],
    }
    header = (
        f"# Rendered by `wave render` for fleet {fleet.name}: scrape config for Prometheus on "
        f"{fleet.monitoring_node}.\n# Merge scrape_configs into /etc/prometheus/prometheus.yml, "
        f"copy {RULES_FILE} beside it.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, width=1000)


def alert_rules(fleet: FleetSpec, services: dict[str, list[ServiceDef]]) -> str:
    rules: list[dict[str, Any]] = [
        _target_down(),
        _rule(
            "GatewayServerErrors",
            f'sum(rate(wave_requests_total{{job="{GATEWAY_JOB}",status=~"5.."}}[10m]))'
            f' / sum(rate(wave_requests_total{{job="{GATEWAY_JOB}"}}[10m])) > 0.05',
            "10m",
            "More than 5% of the requests the Wavefleet gateway answered in the last 10 minutes were 5xx errors",
            "Engines are down, full (503) or timing out (504): see the engines dashboard.",
        ),
    ]
    for node in fleet.nodes:
        # DCGM metrics exist only where dcgm-exporter runs: Docker nodes (a Proxmox host passes
        # its GPU into an LXC container, whose exporter reports it under the container's name).
        if not node.docker:
            continue
        for gpu in node.gpus:
            if gpu.dcgm.value == "none":
                continue
            rules.append(_gpu_memory(fleet, node.name, gpu.index))
    rules.append(
        _rule(
            "GpuTooHot",
            "DCGM_FI_DEV_GPU_TEMP > 85",
            "10m",
            "GPU {{ $labels.gpu }} on {{ $labels.node }} has been above 85 °C for 10 minutes",
            "Check airflow and fan curves; sustained heat throttles clocks and lowers tokens/s.",
        )
    )
    if any(node.is_jetson for node in fleet.nodes):
        rules.append(
            _rule(
                "JetsonTooHot",
                "jetson_temperature_celsius > 90",
                "10m",
                "Jetson sensor {{ $labels.sensor }} on {{ $labels.node }} has been above 90 °C for 10 minutes",
                "Check the fan and the power mode (nvpmodel); the SoC throttles near its limit.",
            )
        )
    kinds = {e.kind for e in fleet.engines}
    if EngineKind.VLLM in kinds:
        rules += _vllm_rules(fleet)
    rules += _slots_rules(fleet)
    rules += _telemetry_rules(fleet)
    document = {"groups": [{"name": "wavefleet", "rules": rules}]}
    header = (
        f"# Rendered by `wave render` for fleet {fleet.name}. Check with: promtool check rules <this file>\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=1000, allow_unicode=True)


# Clock event reasons that mean the GPU is being held back by heat or its power supply. The
# driver's power cap (sw_power_cap) is how a fully loaded GPU normally runs, so it is left out.
THROTTLE_REASONS = ("hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown")
# Energy per generated token this many times its 7-day level, with at least this many tokens in
# the last 30 minutes (so a quiet model's few requests do not page anyone).
ENERGY_PER_TOKEN_FACTOR = 2
ENERGY_PER_TOKEN_MIN_TOKENS = 1000


def _telemetry_rules(fleet: FleetSpec) -> list[dict[str, Any]]:
    """Rules on the metrics of wavefleet.telemetry (the fleet agent's collectors, `wave telemetry
    --serve`) and on the per-request energy the gateway exports; names in telemetry/names.py."""
    rules = []
    if any(node.gpus for node in fleet.nodes):
        reasons = "|".join(THROTTLE_REASONS)
        rules.append(
            _rule(
                "GpuThrottled",
                f'avg_over_time(wave_gpu_clocks_event_reason_active{{reason=~"{reasons}"}}[10m]) > 0.5',
                "0m",
                "GPU {{ $labels.gpu }} on {{ $labels.instance }} was slowed by {{ $labels.reason }}"
                " more than half of the last 10 minutes",
                "Heat (thermal slowdown) or the power supply (power brake) is lowering its clocks, and"
                " tokens/s with them; a power cap under full load is normal and not alerted. Check"
                " airflow, fans and the PSU; `nvidia-smi -q -d PERFORMANCE` names the reason.",
            )
        )
    if fleet.engines:
        rules.append(
            _rule(
                "EngineFailed",
                'wave_engine_state{state="failed"} == 1',
                "1m",
                "Engine {{ $labels.engine }} ({{ $labels.model }}) on {{ $labels.instance }} has been"
                " in state failed for 1 minute",
                "The fleet agent could not start or keep the engine running. Its log and the engine's"
                " output say why; requests for the model go to other engines or are answered 503.",
            )
        )
    energy, tokens = "wave_request_energy_joules_total", "wave_completion_tokens_total"

    def per_token(window: str) -> str:
        return (
            f"sum by (model, backend) (rate({energy}[{window}]))"
            f" / sum by (model, backend) (rate({tokens}[{window}]))"
        )

    rules.append(
        _rule(
            "EnergyPerTokenHigh",
            f"({per_token('30m')}) > {ENERGY_PER_TOKEN_FACTOR} * ({per_token('7d')})"
            f" and sum by (model, backend) (increase({tokens}[30m])) > {ENERGY_PER_TOKEN_MIN_TOKENS}",
            "15m",
            "Energy per generated token of {{ $labels.model }} on {{ $labels.backend }} has been over"
            f" {ENERGY_PER_TOKEN_FACTOR}x its 7-day level for 15 minutes",
            "Now {{ $value | humanize }} J per token. A throttled or hot GPU, a model moved to a slower"
            " device, a larger quantization or long prompts with short answers raise it; the cost"
            " dashboard shows when it started.",
        )
    )
    return rules


def _slots_rules(fleet: FleetSpec) -> list[dict[str, Any]]:
    """Per llama.cpp placement its agent starts: requests beyond its slots wait in llama-server's
    queue. The agent's wave_engine_inflight counts what it has sent to the engine, so more than
    `slots` in flight for 5 minutes means every slot stayed busy with requests waiting."""
    rules = []
    for node in fleet.nodes:
        for engine, served in served_names(fleet, node):
            if not agent_starts(engine):
                continue
            selector = f'{{job="{AGENT_JOB}",node="{node.name}",model="{served}"}}'
            rules.append(
                _rule(
                    f"LlamaCppSlotsFull_{engine.name.replace('-', '_')}",
                    f"min_over_time(wave_engine_inflight{selector}[5m]) > {engine.parallel}",
                    "0m",
                    f"llama.cpp engine {engine.name} ({served} on {node.name}) has had more than its"
                    f" {engine.parallel} slots' requests in flight for 5 minutes",
                    "Every slot stayed busy and requests waited for one: add slots (more KV memory)"
                    " or route elsewhere.",
                )
            )
    return rules


def _rule(name: str, expr: str, for_: str, summary: str, description: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ != "0m":
        rule["for"] = for_
    rule["labels"] = {"severity": "warning"}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


def _target_down() -> dict[str, Any]:
    return _rule(
        "ScrapeTargetDown",
        "up == 0",
        "2m",
        "Prometheus has not reached {{ $labels.job }} ({{ $labels.service }}) on {{ $labels.node }} for 2 minutes",
        "The service is stopped, unhealthy or unreachable: docker compose ps on that node.",
    )


def _gpu_memory(fleet: FleetSpec, node: str, gpu: int) -> dict[str, Any]:
    reserved = [
        e.gpu_memory_utilization
        for e in fleet.engines_on(node)
        if e.gpu_index == gpu and e.kind in (EngineKind.VLLM, EngineKind.TRITON) and e.gpu_memory_utilization
    ]
    share = min(0.98, sum(reserved) + VLLM_MEMORY_MARGIN) if reserved else DEFAULT_MEMORY_SHARE
    selector = f'{{node="{node}",gpu="{gpu}"}}'
    used, free = f"DCGM_FI_DEV_FB_USED{selector}", f"DCGM_FI_DEV_FB_FREE{selector}"
    why = (
        f"vLLM reserves {sum(reserved):.0%} of this GPU at start, so the threshold is that plus {VLLM_MEMORY_MARGIN:.0%}."
        if reserved
        else "No engine here preallocates memory."
    )
    return _rule(
        f"GpuMemoryAlmostFull_{node.replace('-', '_')}_gpu{gpu}",
        f"{used} / ({used} + {free}) > {share:.2f}",
        "5m",
        f"GPU {gpu} on {node} has had more than {share:.0%} of its memory in use (used / (used + free)) for 5 minutes",
        f"{why} Find the process with nvidia-smi; an engine may fail to allocate KV cache or crash with OOM.",
    )


def _vllm_rules(fleet: FleetSpec) -> list[dict[str, Any]]:
    rules = [
        _rule(
            "VllmKvCacheFull",
            "vllm:kv_cache_usage_perc > 0.95",
            "5m",
            "vLLM engine {{ $labels.engine }} has had its KV cache more than 95% full for 5 minutes",
            "New requests wait or running ones are preempted: lower max_num_seqs or max_model_len, or add an engine.",
        ),
        _rule(
            "VllmRequestsQueued",
            "min_over_time(vllm:num_requests_waiting[5m]) > 0",
            "0m",
            "vLLM engine {{ $labels.engine }} has had requests waiting, without a break, for 5 minutes",
            "The engine is saturated; the gateway should be sending work elsewhere.",
        ),
        _rule(
            "VllmGenerationStalled",
            "sum by (engine) (rate(vllm:generation_tokens_total[5m])) == 0"
            " and sum by (engine) (vllm:num_requests_running) > 0",
            "5m",
            "vLLM engine {{ $labels.engine }} has running requests but generated no tokens for 5 minutes",
            "The engine is hung: check its logs and restart the container.",
        ),
        _rule(
            "VllmRequestsAborted",
            'sum by (engine) (rate(vllm:request_success_total{finished_reason="abort"}[10m]))'
            " / sum by (engine) (rate(vllm:request_success_total[10m])) > 0.1",
            "10m",
            "More than 10% of the requests vLLM engine {{ $labels.engine }} finished in the last 10 minutes were aborted",
            "Clients are disconnecting (timeouts?) or the engine is dropping requests.",
        ),
    ]
    for engine in fleet.engines:
        if engine.kind is not EngineKind.VLLM or engine.profile is None:
            continue
        floor = engine.profile.decode_tokens_per_s / 2
        selector = f'{{engine="{engine.name}"}}'
        rules.append(
            _rule(
                f"VllmSlowerThanEstimate_{engine.name.replace('-', '_')}",
                f"sum(rate(vllm:generation_tokens_total{selector}[10m])) < {floor:.1f}"
                f" and min_over_time(sum(vllm:num_requests_running{selector})[10m:1m]) >= 1",
                "0m",
                f"vLLM engine {engine.name} generated fewer than {floor:.1f} tokens/s over 10 minutes while always busy",
                f"The sizing estimate for one stream is {engine.profile.decode_tokens_per_s:.1f} tokens/s"
                f" (an estimate: {engine.profile.basis or 'sizing engine'}); a busy engine should not fall below half of it.",
            )
        )
    return rules
