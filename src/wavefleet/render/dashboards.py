"""Grafana dashboards (JSON model) for the gateway, the engines, the GPUs and the cost of a request.

Every expression reads a metric a rendered scrape target exports: vLLM's own (`vllm:*`, its
container is scraped), the fleet agents' (`wave_engine_*`, and the OpenAI API's `wave_*` counters
under job `wave-agent`, for the llama.cpp engines each agent starts) and the gateway's (job
`wave-gateway`, every request that enters the fleet).

Built as data: each panel has an id unique in its dashboard, a gridPos, the Prometheus datasource
(as the variable ${DS_PROMETHEUS}, picked when importing) and PromQL targets.
"""

from __future__ import annotations

import json
from typing import Any

from wavefleet.render.monitoring import GATEWAY_JOB
from wavefleet.render.services import AGENT_JOB
from wavefleet.render.spec import FleetSpec

__all__ = ["SCHEMA_VERSION", "dashboards"]

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# The gateway's own series: each agent's /metrics has the same names for the requests it serves,
# which the gateway already counted when they passed through it.
GATEWAY = f'{{job="{GATEWAY_JOB}"}}'
# Power drawn by everything that serves requests: discrete GPUs (DCGM, watts), Jetson boards
# (jtop, watts) and CPU packages (RAPL energy counters through node-exporter, joules -> watts).
FLEET_WATTS = (
    "(sum(DCGM_FI_DEV_POWER_USAGE) or vector(0))"
    ' + (sum(jetson_power_watts{rail="total"}) or vector(0))'
    " + (sum(rate(node_rapl_package_joules_total[5m])) or vector(0))"
)


def dashboards(fleet: FleetSpec) -> dict[str, str]:
    """File name -> dashboard JSON."""
    boards = {
        "wavefleet-gateway.json": _dashboard("wavefleet-gateway", "Wavefleet: gateway", _gateway_panels()),
        "wavefleet-engines.json": _dashboard(
            "wavefleet-engines", "Wavefleet: engines", _engine_panels() + _agent_panels()
        ),
        "wavefleet-gpus.json": _dashboard("wavefleet-gpus", "Wavefleet: GPUs and Jetson", _gpu_panels()),
        "wavefleet-cost.json": _dashboard("wavefleet-cost", "Wavefleet: energy cost", _cost_panels(fleet)),
    }
    return {name: json.dumps(board, indent=2) + "\n" for name, board in boards.items()}


def _dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "uid": uid,
        "title": title,
        "tags": ["wavefleet"],
        "timezone": "browser",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [_panel(index, spec) for index, spec in enumerate(panels, start=1)],
    }


def _panel(panel_id: int, spec: dict[str, Any]) -> dict[str, Any]:
    column = (panel_id - 1) % 2
    row = (panel_id - 1) // 2
    return {
        "id": panel_id,
        "type": spec.get("type", "timeseries"),
        "title": spec["title"],
        "description": spec.get("description", ""),
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * column, "y": 8 * row},
        "fieldConfig": {"defaults": {"unit": spec.get("unit", "short")}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(spec["targets"])
        ],
    }


def _gateway_panels() -> list[dict[str, Any]]:
    return [
        {
            "title": "Requests per second by backend",
            "unit": "reqps",
            "targets": [(f"sum by (backend) (rate(wave_requests_total{GATEWAY}[5m]))", "{{backend}}")],
        },
        {
            "title": "Errors per second by status",
            "unit": "reqps",
            "targets": [
                (
                    f'sum by (status) (rate(wave_requests_total{{job="{GATEWAY_JOB}",status!~"2.."}}[5m]))',
                    "{{status}}",
                )
            ],
        },
        {
            "title": "Time to first token, p50 and p95",
            "unit": "s",
            "targets": [
                (
                    f"histogram_quantile(0.5, sum by (le) (rate(wave_time_to_first_token_seconds_bucket{GATEWAY}[5m])))",
                    "p50",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le) (rate(wave_time_to_first_token_seconds_bucket{GATEWAY}[5m])))",
                    "p95",
                ),
            ],
        },
        {
            "title": "Completion tokens per second by backend",
            "unit": "short",
            "targets": [
                (f"sum by (backend) (rate(wave_completion_tokens_total{GATEWAY}[5m]))", "{{backend}}")
            ],
        },
        {
            "title": "Routing decisions by reason",
            "unit": "short",
            "targets": [(f"sum by (reason) (rate(wave_routing_decisions_total{GATEWAY}[5m]))", "{{reason}}")],
        },
    ]


def _engine_panels() -> list[dict[str, Any]]:
    return [
        {
            "title": "Generated tokens per second by engine",
            "unit": "short",
            "targets": [
                ("sum by (engine) (rate(vllm:generation_tokens_total[5m]))", "{{engine}} (vLLM)"),
                (
                    f'sum by (node, backend) (rate(wave_completion_tokens_total{{job="{AGENT_JOB}"}}[5m]))',
                    "{{node}} {{backend}} (agent)",
                ),
            ],
        },
        {
            "title": "Running and waiting requests",
            "unit": "short",
            "targets": [
                ("sum by (engine) (vllm:num_requests_running)", "{{engine}} running"),
                ("sum by (engine) (vllm:num_requests_waiting)", "{{engine}} waiting"),
                ("sum by (node, model) (wave_engine_inflight)", "{{node}} {{model}} in flight (agent)"),
            ],
        },
        {
            "title": "vLLM KV cache in use",
            "unit": "percentunit",
            "targets": [("max by (engine) (vllm:kv_cache_usage_perc)", "{{engine}}")],
        },
        {
            "title": "vLLM time to first token, p95",
            "unit": "s",
            "targets": [
                (
                    "histogram_quantile(0.95, sum by (engine, le) (rate(vllm:time_to_first_token_seconds_bucket[5m])))",
                    "{{engine}}",
                )
            ],
        },
    ]


def _agent_panels() -> list[dict[str, Any]]:
    """The fleet agents' engines (`wave agent`): states, loads, swaps, restarts, memory."""
    return [
        {
            "title": "Agent engines by state",
            "unit": "short",
            "targets": [("sum by (state) (wave_engine_state)", "{{state}}")],
        },
        {
            "title": "Loads per minute by outcome, evictions and restarts",
            "unit": "short",
            "targets": [
                ("sum by (outcome) (increase(wave_engine_loads_total[1m]))", "load {{outcome}}"),
                ("sum by (reason) (increase(wave_engine_evictions_total[1m]))", "eviction: {{reason}}"),
                ("sum by (model) (increase(wave_engine_restarts_total[1m]))", "restart {{model}}"),
            ],
        },
        {
            "title": "Cold start p95 by phase",
            "unit": "s",
            "targets": [
                (
                    "histogram_quantile(0.95, sum by (phase, le) (rate(wave_engine_cold_start_seconds_bucket[1h])))",
                    "{{phase}}",
                )
            ],
        },
        {
            "title": "Requests in flight and waiting for a load",
            "unit": "short",
            "targets": [
                ("sum by (model) (wave_engine_inflight)", "{{model}} in flight"),
                ("sum by (model) (wave_engine_waiting)", "{{model}} waiting"),
            ],
        },
        {
            "title": "Engine memory: estimate vs measured",
            "unit": "bytes",
            "targets": [("sum by (model, source) (wave_engine_memory_bytes)", "{{model}} {{source}}")],
        },
        {
            "title": "Sizing engine error (estimate vs logged buffers)",
            "unit": "percentunit",
            "targets": [("wave_engine_memory_estimate_error_ratio", "{{model}}")],
        },
        {
            "title": "Device memory: budget, reserved, free",
            "unit": "bytes",
            "targets": [("wave_device_memory_bytes", "{{device}} {{kind}}")],
        },
    ]


def _gpu_panels() -> list[dict[str, Any]]:
    return [
        {
            "title": "GPU memory used (used / (used + free))",
            "unit": "percentunit",
            "targets": [
                (
                    "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                    "{{node}} GPU {{gpu}}",
                ),
                ("jetson_ram_used_ratio", "{{node}} (shared RAM)"),
            ],
        },
        {
            "title": "GPU utilization",
            "unit": "percent",
            "targets": [
                ("DCGM_FI_DEV_GPU_UTIL", "{{node}} GPU {{gpu}}"),
                ("jetson_gpu_utilization_ratio * 100", "{{node}} (Jetson)"),
            ],
        },
        {
            "title": "Power draw",
            "unit": "watt",
            "targets": [
                ("DCGM_FI_DEV_POWER_USAGE", "{{node}} GPU {{gpu}}"),
                ('jetson_power_watts{rail="total"}', "{{node}} (Jetson board)"),
            ],
        },
        {
            "title": "Temperature",
            "unit": "celsius",
            "targets": [
                ("DCGM_FI_DEV_GPU_TEMP", "{{node}} GPU {{gpu}}"),
                ("jetson_temperature_celsius", "{{node}} {{sensor}}"),
            ],
        },
    ]


def _cost_panels(fleet: FleetSpec) -> list[dict[str, Any]]:
    price = fleet.power_price_per_kwh
    per_hour = f"({FLEET_WATTS}) / 1000 * {price:g}"
    note = (
        f"Estimate: measured power (GPUs by DCGM, Jetson by jtop, CPU packages by RAPL) x {price:g} "
        f"{fleet.currency}/kWh from the inventory. Idle draw is spread over the requests served; "
        "PSU losses, fans and RAM are not measured."
    )
    return [
        {
            "title": "Fleet power draw (W)",
            "unit": "watt",
            "description": note,
            "targets": [(FLEET_WATTS, "watts")],
        },
        {
            "title": f"Energy cost per hour ({fleet.currency})",
            "unit": "currencyUSD" if fleet.currency == "USD" else "short",
            "description": note,
            "targets": [(per_hour, "per hour")],
        },
        {
            "title": f"Energy cost per request ({fleet.currency}, estimate)",
            "unit": "short",
            "description": note + " Requests counted by the gateway.",
            "targets": [
                (f"({per_hour}) / 3600 / sum(rate(wave_requests_total{GATEWAY}[5m]))", "per request")
            ],
        },
        {
            "title": f"Energy cost per 1000 generated tokens ({fleet.currency}, estimate)",
            "unit": "short",
            "description": note + " Tokens counted by the gateway.",
            "targets": [
                (
                    f"({per_hour}) / 3600 * 1000 / sum(rate(wave_completion_tokens_total{GATEWAY}[5m]))",
                    "per 1000 tokens",
                )
            ],
        },
    ]
