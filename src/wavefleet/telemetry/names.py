"""Every metric the telemetry part exports, and the ones the fleet agent and gateway will export.

Names follow the ecosystem where a name exists, so dashboards and alerts written for those
exporters work unchanged:

- NVIDIA GPUs: DCGM's field names and units, as dcgm-exporter exports them
  (`DCGM_FI_DEV_POWER_USAGE` in W, `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` in mJ since the driver
  loaded, `DCGM_FI_DEV_FB_USED` in MiB, ...), labelled `gpu`, `UUID` and `modelName` like it.
- CPUs with RAPL: node_exporter's `node_rapl_<zone>_joules_total{index, path}`.
- Jetson: the names of the jetson-exporter `wave render` already ships (`jetson_power_watts{rail}`,
  `jetson_temperature_celsius{sensor}`, ...).

Everything else is `wave_`: the TDP-based CPU estimate (a separate name, so it is never taken for
a measurement), per-reason throttling flags, per-process GPU memory, the engine state the fleet
agent exports, and the per-request energy the gateway exports.
"""

from __future__ import annotations

from enum import StrEnum

from wavefleet.telemetry.samples import Metric, MetricKind

__all__ = [
    "CLOCK_EVENT_REASONS",
    "COLLECTOR_UP",
    "CPU_ESTIMATED_ENERGY",
    "CPU_ESTIMATED_POWER",
    "CPU_UTILIZATION",
    "DCGM_CLOCKS_EVENT_REASONS",
    "DCGM_ENERGY",
    "DCGM_FB_FREE",
    "DCGM_FB_RESERVED",
    "DCGM_FB_TOTAL",
    "DCGM_FB_USED",
    "DCGM_GPU_TEMP",
    "DCGM_GPU_UTIL",
    "DCGM_MEM_CLOCK",
    "DCGM_MEM_COPY_UTIL",
    "DCGM_POWER_LIMIT",
    "DCGM_POWER_USAGE",
    "DCGM_PSTATE",
    "DCGM_SM_CLOCK",
    "DEVICE_MEMORY",
    "DEVICE_METERED_ENERGY",
    "DEVICE_UNATTRIBUTED_ENERGY",
    "ENGINE_COLD_START",
    "ENGINE_EVICTIONS",
    "ENGINE_INFLIGHT",
    "ENGINE_LOADS",
    "ENGINE_MEMORY",
    "ENGINE_MEMORY_ERROR",
    "ENGINE_RESTARTS",
    "ENGINE_STATE",
    "ENGINE_WAITING",
    "GPU_CLOCK_EVENT_REASON",
    "GPU_ENERGY_POWER",
    "GPU_PROCESS_MEMORY",
    "JETSON_ENERGY",
    "JETSON_GPU_FREQUENCY",
    "JETSON_GPU_UTILIZATION",
    "JETSON_POWER",
    "JETSON_RAM_TOTAL",
    "JETSON_RAM_USED",
    "JETSON_RAM_USED_RATIO",
    "JETSON_TEMPERATURE",
    "RAPL_POWER",
    "REQUEST_COST",
    "REQUEST_ENERGY",
    "REQUEST_ENERGY_MEASURED",
    "REQUEST_ENERGY_TOKENS",
    "REQUEST_IDLE_ENERGY",
    "SCRAPE_SECONDS",
    "UNSUPPORTED",
    "EngineState",
    "rapl_metric",
]

# --- NVIDIA GPUs through NVML, under DCGM's field names and units ------------------------------

DCGM_POWER_USAGE = Metric("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", unit="W")
# DCGM's name for a counter has no _total; see MetricKind.UNTYPED_COUNTER.
DCGM_ENERGY = Metric(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "Total energy consumption since the driver was last loaded (in mJ).",
    kind=MetricKind.UNTYPED_COUNTER,
    unit="mJ",
)
DCGM_POWER_LIMIT = Metric(
    "DCGM_FI_DEV_ENFORCED_POWER_LIMIT", "Power limit the driver enforces (in W).", unit="W"
)
DCGM_GPU_UTIL = Metric("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", unit="%")
DCGM_MEM_COPY_UTIL = Metric("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", unit="%")
DCGM_FB_TOTAL = Metric("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", unit="MiB")
DCGM_FB_FREE = Metric("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", unit="MiB")
DCGM_FB_USED = Metric("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", unit="MiB")
DCGM_FB_RESERVED = Metric(
    "DCGM_FI_DEV_FB_RESERVED", "Framebuffer memory reserved by the driver (in MiB).", unit="MiB"
)
DCGM_GPU_TEMP = Metric("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", unit="°C")
DCGM_SM_CLOCK = Metric("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", unit="MHz")
DCGM_MEM_CLOCK = Metric("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", unit="MHz")
DCGM_PSTATE = Metric("DCGM_FI_DEV_PSTATE", "Performance state (P-state) 0-15, 0 is the highest.")
DCGM_CLOCKS_EVENT_REASONS = Metric(
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", "Current clock event (throttle) reasons, a bitmask of NVML's reasons."
)

# NVML's clock event (formerly throttle) reasons, by bit (nvml.h nvmlClocksEventReason*).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks_setting",
}
GPU_CLOCK_EVENT_REASON = Metric(
    "wave_gpu_clocks_event_reason_active",
    "1 while NVML reports this clock event (throttle) reason, else 0; one series per reason.",
)
GPU_ENERGY_POWER = Metric(
    "wave_gpu_energy_power_watts",
    "Average power between the last two reads, from the energy counter (present where power is not).",
    unit="W",
)
GPU_PROCESS_MEMORY = Metric(
    "wave_gpu_process_memory_bytes", "GPU memory a compute process uses (NVML).", unit="B"
)

# --- CPUs ---------------------------------------------------------------------------------------

# node_exporter names each RAPL zone's counter node_rapl_<zone name>_joules_total{index, path}.
RAPL_POWER = Metric(
    "wave_rapl_power_watts", "Average power of a RAPL zone between the last two reads.", unit="W"
)
CPU_UTILIZATION = Metric(
    "wave_cpu_utilization_ratio", "Share of CPU time not idle between the last two reads (/proc/stat)."
)
CPU_ESTIMATED_POWER = Metric(
    "wave_cpu_estimated_power_watts",
    "CPU power ESTIMATED from TDP and utilisation (no RAPL counter here): not a measurement.",
    unit="W",
)
CPU_ESTIMATED_ENERGY = Metric(
    "wave_cpu_estimated_energy_joules_total",
    "CPU energy ESTIMATED from TDP and utilisation, integrated between reads: not a measurement.",
    kind=MetricKind.COUNTER,
    unit="J",
)

# --- Jetson (tegrastats) ------------------------------------------------------------------------

JETSON_POWER = Metric(
    "jetson_power_watts", "Power from the INA3221 rails; rail=total is the board input.", unit="W"
)
JETSON_ENERGY = Metric(
    "wave_jetson_energy_joules_total",
    "Board input energy, integrated from tegrastats' instantaneous readings.",
    kind=MetricKind.COUNTER,
    unit="J",
)
JETSON_GPU_UTILIZATION = Metric("jetson_gpu_utilization_ratio", "GPU load, 0 to 1.")
JETSON_GPU_FREQUENCY = Metric("wave_jetson_gpu_frequency_hertz", "GPU (GR3D) clock.", unit="Hz")
JETSON_RAM_USED_RATIO = Metric("jetson_ram_used_ratio", "Shared CPU/GPU memory in use, 0 to 1.")
JETSON_RAM_USED = Metric("wave_jetson_ram_used_bytes", "Shared CPU/GPU memory in use.", unit="B")
JETSON_RAM_TOTAL = Metric("wave_jetson_ram_total_bytes", "Shared CPU/GPU memory in total.", unit="B")
JETSON_TEMPERATURE = Metric("jetson_temperature_celsius", "Thermal zone temperatures.", unit="°C")

# --- The collectors themselves ------------------------------------------------------------------

UNSUPPORTED = Metric(
    "wave_telemetry_unsupported",
    "1 for each field a device answers 'not supported' for: that metric is absent, not zero.",
)
COLLECTOR_UP = Metric("wave_telemetry_collector_up", "1 if the collector's last read succeeded.")
SCRAPE_SECONDS = Metric(
    "wave_telemetry_collect_seconds", "CPU time the collector's last read took.", unit="s"
)

# --- Exported by the fleet agent and the gateway (names fixed here so rules can use them) ------


class EngineState(StrEnum):
    """The states an engine the fleet agent runs goes through:
    stopped -> starting -> ready -> draining -> stopping -> stopped, and failed (after too many
    restarts in a row, or when it can never fit its device)."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPING = "stopping"
    FAILED = "failed"


ENGINE_STATE = Metric(
    "wave_engine_state",
    "1 for the state the engine is in, 0 for the others (labels: engine, model, state).",
)
ENGINE_LOADS = Metric(
    "wave_engine_loads_total",
    "Engine starts by how they ended: ready, failed, or no_memory (labels: model, outcome).",
    kind=MetricKind.COUNTER,
)
ENGINE_COLD_START = Metric(
    "wave_engine_cold_start_seconds",
    "Seconds of each phase of a load: memory (room made), process (spawn to first answer), load "
    "(to healthy), first_token (the max_tokens 1 probe), total (labels: model, phase).",
    kind=MetricKind.HISTOGRAM,
    unit="s",
)
ENGINE_EVICTIONS = Metric(
    "wave_engine_evictions_total",
    "Engines the agent stopped, by reason: memory (room for another model), idle (its ttl), "
    "keep_alive (a request's keep_alive), unload and drain (asked for) (labels: model, reason).",
    kind=MetricKind.COUNTER,
)
ENGINE_RESTARTS = Metric(
    "wave_engine_restarts_total",
    "Restarts of an engine after it crashed, failed to load or stopped answering (labels: model).",
    kind=MetricKind.COUNTER,
)
ENGINE_INFLIGHT = Metric("wave_engine_inflight", "Requests the engine is answering (labels: model).")
ENGINE_WAITING = Metric("wave_engine_waiting", "Requests waiting for the engine to be ready (labels: model).")
ENGINE_MEMORY = Metric(
    "wave_engine_memory_bytes",
    "An engine's memory on a device by source: estimate (the sizing engine), reserved (held for it), "
    "buffers (what it logged), process (NVML or resident memory) (labels: model, device, source).",
    unit="B",
)
ENGINE_MEMORY_ERROR = Metric(
    "wave_engine_memory_estimate_error_ratio",
    "(estimate - logged buffers) / logged buffers for the last load: the sizing engine's error (labels: model).",
)
DEVICE_MEMORY = Metric(
    "wave_device_memory_bytes",
    "A device's memory as the agent sees it: total, budget, reserved (for its engines), free (really) "
    "(labels: device, kind).",
    unit="B",
)
REQUEST_ENERGY = Metric(
    "wave_request_energy_joules_total",
    "Device energy attributed to requests above the device's idle draw (labels: model, backend, key).",
    kind=MetricKind.COUNTER,
    unit="J",
)
REQUEST_IDLE_ENERGY = Metric(
    "wave_request_idle_energy_joules_total",
    "The idle draw of the device while requests ran, in the requests' shares (labels: model, backend, key).",
    kind=MetricKind.COUNTER,
    unit="J",
)

REQUEST_COST = Metric(
    "wave_request_cost_total",
    "Requests' cost: energy and idle share at the tariff, plus hardware amortisation for the device time "
    "held (labels: model, backend, key, currency).",
    kind=MetricKind.COUNTER,
)
REQUEST_ENERGY_MEASURED = Metric(
    "wave_request_energy_measured_requests_total",
    "Requests whose energy was measured (labels: model, backend, key).",
    kind=MetricKind.COUNTER,
)
REQUEST_ENERGY_TOKENS = Metric(
    "wave_request_energy_measured_completion_tokens_total",
    "Completion tokens of the requests whose energy was measured (labels: model, backend, key).",
    kind=MetricKind.COUNTER,
)
DEVICE_METERED_ENERGY = Metric(
    "wave_device_metered_energy_joules_total",
    "Energy a device's counter counted over the windows the gateway has split among requests "
    "(label: device); requests' energy, idle shares and unattributed energy add up to it.",
    kind=MetricKind.COUNTER,
    unit="J",
)
DEVICE_UNATTRIBUTED_ENERGY = Metric(
    "wave_device_unattributed_energy_joules_total",
    "Energy a device drew while no request of the gateway ran on it (label: device).",
    kind=MetricKind.COUNTER,
    unit="J",
)


def rapl_metric(zone: str) -> Metric:
    """node_exporter's counter for a RAPL zone named `zone` (`package`, `dram`, `core`, ...)."""
    safe = "".join(c if c.isalnum() else "_" for c in zone.lower())
    return Metric(
        f"node_rapl_{safe}_joules_total",
        f"Current RAPL {zone} value in joules",
        kind=MetricKind.COUNTER,
        unit="J",
    )
