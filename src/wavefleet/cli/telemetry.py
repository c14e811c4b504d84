"""`wave telemetry`: this host's power, energy and device readings, once or served to Prometheus.

wave telemetry                          # read twice, --interval apart, print a table
wave telemetry --serve --host 0.0.0.0 --port 9184     # answer /metrics until Ctrl-C
wave telemetry --cpu ryzen-9-9900x      # no RAPL here: estimate the CPU from its TDP
wave telemetry --fake gtx-1650-max-q    # replay a recorded GPU instead of this host's NVML
wave telemetry --record gpu.json        # write what this host's NVML answers, for --fake
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from wavefleet.errors import UsageError
from wavefleet.files import atomic_writer
from wavefleet.telemetry import names
from wavefleet.telemetry.discovery import Discovered, discover
from wavefleet.telemetry.exporter import serve
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import NvmlApi
from wavefleet.telemetry.nvml_recording import NvmlRecording, record
from wavefleet.telemetry.samples import Sample
from wavefleet.terminal import fit, folding_table

__all__ = ["telemetry"]

DEFAULT_PORT = 9184
# labels that name the device a sample is about; the rest say which part of it
_DEVICE_LABELS = ("gpu", "zone", "rail", "sensor", "collector")
_QUIET_LABELS = {"UUID", "modelName", "path", "index", "basis", "tdp_w", "idle_share"}


@click.command()
@click.option("--serve", "serving", is_flag=True, help="Answer Prometheus on /metrics until interrupted.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (--serve).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.05, 60),
    help="Seconds between the two reads of a table (power from energy counters needs two).",
)
@click.option(
    "--cpu", "cpu_id", help="Catalog id of this host's CPU: its TDP drives the estimate without RAPL."
)
@click.option(
    "--cpu-tdp", type=click.FloatRange(min=0, min_open=True), help="The CPU's TDP in W (instead of --cpu)."
)
@click.option(
    "--cpu-idle-share",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of TDP the estimate assumes at idle.",
)
@click.option(
    "--fake",
    metavar="NAME|FILE",
    help=f"Replay a recorded GPU instead of NVML: {', '.join(RECORDINGS)}, or a file from --record.",
)
@click.option(
    "--record",
    "record_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write NVML's answers here.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample instead of a table.")
def telemetry(
    serving: bool,
    host: str,
    port: int,
    interval: float,
    cpu_id: str | None,
    cpu_tdp: float | None,
    cpu_idle_share: float,
    fake: str | None,
    record_to: Path | None,
    as_json: bool,
) -> None:
    """This host's GPUs (NVML), CPU (RAPL, or a TDP estimate) and Jetson board (tegrastats).

    Metrics carry the ecosystem's names (DCGM's fields, node_exporter's RAPL counters), so
    dashboards written for those exporters read them; see docs/telemetry.md.
    """
    console = Console(highlight=False)
    nvml = _nvml(fake)
    if record_to is not None:
        _record(nvml, record_to, console)
        return
    found = discover(nvml=nvml, cpu_tdp_w=_tdp(cpu_id, cpu_tdp), cpu_idle_share=cpu_idle_share)
    try:
        if not as_json:
            for note in found.notes:
                console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
        if serving:
            _serve(found, host, port, console)
        else:
            _show(found, interval, console, as_json)
    finally:
        found.telemetry.close()


def _nvml(fake: str | None) -> NvmlApi | None:
    if fake is None:
        return None
    if fake in RECORDINGS:
        return FakeNvml(RECORDINGS[fake])
    path = Path(fake)
    if not path.is_file():
        raise UsageError(f"--fake {fake!r}: neither a recording ({', '.join(RECORDINGS)}) nor a file")
    try:
        return FakeNvml(NvmlRecording.model_validate_json(path.read_text()))
    except ValueError as exc:
        raise UsageError(f"--fake {fake}: not a recording written by --record ({exc})") from exc


def _tdp(cpu_id: str | None, cpu_tdp: float | None) -> float | None:
    if cpu_id is None:
        return cpu_tdp
    if cpu_tdp is not None:
        raise UsageError("give --cpu or --cpu-tdp, not both")
    from wavefleet.catalog import Catalog, DeviceKind

    hardware = Catalog.load().get_hardware(cpu_id)
    if hardware.kind is not DeviceKind.CPU:
        raise UsageError(f"{cpu_id} is a {hardware.kind.value}, not a CPU: give the CPU's catalog id")
    return hardware.tdp_w


def _record(nvml: NvmlApi | None, path: Path, console: Console) -> None:
    import pynvml

    recording = record(pynvml if nvml is None else nvml, source=f"wave telemetry --record on {_hostname()}")
    with atomic_writer(path) as out:
        out.write(recording.model_dump_json(indent=2) + "\n")
    if recording.init is not None:
        console.print(f"NVML did not start (error {recording.init.error}); written anyway to {path}")
    else:
        console.print(f"{len(recording.devices)} GPU(s) recorded to {path}; replay with --fake {path}")


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _serve(found: Discovered, host: str, port: int, console: Console) -> None:
    served = serve(found.telemetry, host=host, port=port)
    console.print(f"serving http://{served.host}:{served.port}/metrics (Ctrl-C stops)")
    stopped = threading.Event()
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()


def _show(found: Discovered, interval: float, console: Console, as_json: bool) -> None:
    found.telemetry.read_each()  # the first read sets counters' starting points
    time.sleep(interval)  # a fixed wait on purpose: power is energy over this interval
    readings = found.telemetry.read_each()
    if as_json:
        for reading in readings:
            for sample in reading.samples:
                record_line = {
                    "collector": reading.collector,
                    "metric": sample.metric.name,
                    "labels": dict(sample.labels),
                    "value": sample.value,
                    "unit": sample.metric.unit,
                }
                sys.stdout.write(json.dumps(record_line) + "\n")
        return
    for reading in readings:
        table = folding_table("device", "reading", "value", title=f"{reading.collector}")
        for row in _rows(reading.samples):
            table.add_row(*row)
        console.print(fit(table, console))
        cost = f"{reading.cpu_s * 1e6:.0f} µs CPU"
        state = f"failed: {reading.error}" if reading.error else "ok"
        console.print(f"[dim]{reading.collector}: {escape(state)}, read in {cost}[/]")


def _rows(samples: list[Sample]) -> list[tuple[str, str, str]]:
    """A row per sample, the per-reason throttle flags folded into one row per device."""
    rows = []
    reasons: dict[str, list[str]] = {}
    for sample in samples:
        if sample.metric == names.GPU_CLOCK_EVENT_REASON:
            active = reasons.setdefault(sample.labels.get("gpu", ""), [])
            if sample.value:
                active.append(sample.labels["reason"])
            continue
        rows.append(_row(sample))
    for gpu, active in reasons.items():
        rows.append((f"gpu={gpu}", "clock event reasons", ", ".join(active) or "none"))
    return rows


def _row(sample: Sample) -> tuple[str, str, str]:
    labels = dict(sample.labels)
    device = next((f"{k}={labels.pop(k)}" for k in _DEVICE_LABELS if k in labels), "")
    if sample.metric == names.UNSUPPORTED:
        return device, labels.get("field", "?"), "not supported (absent)"
    extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _QUIET_LABELS)
    reading = sample.metric.name + (f"{{{extra}}}" if extra else "")
    value = f"{sample.value:.6g}" + (f" {sample.metric.unit}" if sample.metric.unit else "")
    return device, reading, value
