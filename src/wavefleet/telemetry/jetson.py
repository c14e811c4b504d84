"""Jetson boards through `tegrastats`: power rails, GPU load and clock, shared memory, temperatures.

On a Jetson, NVML answers "not supported" to nearly everything (see fake_nvml's Orin recording);
tegrastats reads the INA3221 rails itself. One line per interval, for example (Orin Nano, JetPack 6):

    RAM 2272/7620MB (lfb 4x4MB) ... GR3D_FREQ 0% cpu@54.937C gpu@55.468C tj@56.656C
    VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 527mW/527mW VDD_SOC 1339mW/1339mW

`parse_tegrastats` takes the releases' variants: rails with or without "mW" (current/average),
`GR3D_FREQ 0%`, `0%@76`, `0%@[305]` or one frequency per GPC `97%@[1020,0]`, a date in front, a
logger's `<epoch>::` prefix, engines shown as `off`, and -256C for a sensor that is not fitted
(left out). The board's input power is `VDD_IN` (Orin Nano/NX, Xavier), `POM_5V_IN` (Nano), else,
on boards without an input rail (AGX Orin), the sum of the rails, labelled as such.

`TegrastatsCollector` keeps the latest line and integrates the input power into energy between
lines; `start()` runs `tegrastats --interval <ms>` and feeds it from a reader thread.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wavefleet.telemetry import names
from wavefleet.telemetry.samples import Sample

__all__ = [
    "TEGRASTATS",
    "TegraSample",
    "TegrastatsCollector",
    "TegrastatsFormatError",
    "parse_tegrastats",
]

TEGRASTATS = "tegrastats"
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_UNITS = {"k": 1 / 1024, "M": 1.0, "G": 1024.0}
_TIMESTAMP = re.compile(r"\b(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\b")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)([kMG])B")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?(?![\w.])")
_TEMPERATURE = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_NOT_RAILS = {"RAM", "SWAP", "IRAM"}
ABSENT_SENSOR = -256.0  # what tegrastats prints for a thermal zone that is not there


class TegrastatsFormatError(ValueError):
    """A line that is not tegrastats output."""


@dataclass(frozen=True, kw_only=True)
class TegraSample:
    """One tegrastats line. Powers in mW (current, average since tegrastats started)."""

    timestamp: str | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    gpu_load_pct: float | None = None
    gpu_freq_mhz: float | None = None
    rails: dict[str, tuple[float, float]] = field(default_factory=dict)
    temperatures: dict[str, float] = field(default_factory=dict)

    @property
    def input_rail(self) -> str | None:
        """The rail that measures the whole board, or None when there is none (sum the rails)."""
        return next((rail for rail in INPUT_RAILS if rail in self.rails), None)

    @property
    def input_mw(self) -> float | None:
        if not self.rails:
            return None
        rail = self.input_rail
        return self.rails[rail][0] if rail else sum(current for current, _ in self.rails.values())


def parse_tegrastats(line: str) -> TegraSample:
    """One line of tegrastats output; see the module doc for the variants it takes."""
    stamp = _TIMESTAMP.search(line)
    ram = _RAM.search(line)
    gr3d = _GR3D.search(line)
    rails = {
        name: (float(current), float(average))
        for name, current, average in _RAIL.findall(line)
        if name not in _NOT_RAILS
    }
    if ram is None:
        raise TegrastatsFormatError(f"not a tegrastats line (no RAM field): {line[:80]!r}")
    temperatures = {
        name: float(value) for name, value in _TEMPERATURE.findall(line) if float(value) != ABSENT_SENSOR
    }
    freq = None
    if gr3d is not None and gr3d.group(2):
        freq = max(float(f) for f in gr3d.group(2).split(",") if f)
    return TegraSample(
        timestamp=stamp.group(1) if stamp else None,
        ram_used_mb=int(ram.group(1)) * _UNITS[ram.group(3)],
        ram_total_mb=int(ram.group(2)) * _UNITS[ram.group(3)],
        gpu_load_pct=float(gr3d.group(1)) if gr3d else None,
        gpu_freq_mhz=freq,
        rails=rails,
        temperatures=temperatures,
    )


class TegrastatsCollector:
    """The latest tegrastats line as samples, and the board's energy integrated over the lines."""

    name = "tegrastats"

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.latest: TegraSample | None = None
        self.joules = 0.0
        self.bad_lines = 0
        self._last_power: tuple[float, float] | None = None  # (time, W)
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def feed(self, line: str, at: float | None = None) -> None:
        """Take one line of output (read at `at`, default now)."""
        try:
            sample = parse_tegrastats(line)
        except TegrastatsFormatError:
            self.bad_lines += 1
            return
        now = self.clock() if at is None else at
        with self._lock:
            self.latest = sample
            milliwatts = sample.input_mw
            if milliwatts is None:
                return
            watts = milliwatts / 1000
            if self._last_power is not None and now > self._last_power[0]:
                then, before = self._last_power
                self.joules += (before + watts) / 2 * (now - then)  # trapezoid between readings
            self._last_power = (now, watts)

    def start(self, command: Sequence[str] = (TEGRASTATS, "--interval", "500")) -> None:
        """Run tegrastats and feed its lines from a reader thread until `close()`."""
        process = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self._process = process

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.feed(line)

        self._reader = threading.Thread(target=read, name="tegrastats-reader", daemon=True)
        self._reader.start()

    @property
    def running(self) -> bool:
        """Whether the tegrastats process `start()` ran is still alive."""
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def energy(self) -> dict[str, float]:
        with self._lock:
            return {"board": self.joules} if self._last_power is not None else {}

    def collect(self) -> list[Sample]:
        with self._lock:
            sample, joules, powered = self.latest, self.joules, self._last_power is not None
        if sample is None:
            return []
        out = []
        for rail, (current, _) in sample.rails.items():
            out.append(Sample(names.JETSON_POWER, current / 1000, {"rail": rail}))
        if sample.input_mw is not None:
            # the input rail's reading, or the sum of the rails where the board has none
            out.append(Sample(names.JETSON_POWER, sample.input_mw / 1000, {"rail": "total"}))
        if powered:
            out.append(Sample(names.JETSON_ENERGY, joules))
        if not sample.rails:
            # some images print the INA3221 rails to root only: absent, and said so
            out.append(Sample(names.UNSUPPORTED, 1, {"field": "power_rails"}))
        if sample.gpu_load_pct is not None:
            out.append(Sample(names.JETSON_GPU_UTILIZATION, sample.gpu_load_pct / 100))
        if sample.gpu_freq_mhz is not None:
            out.append(Sample(names.JETSON_GPU_FREQUENCY, sample.gpu_freq_mhz * 1e6))
        if sample.ram_used_mb is not None and sample.ram_total_mb:
            out.append(Sample(names.JETSON_RAM_USED, sample.ram_used_mb * 2**20))
            out.append(Sample(names.JETSON_RAM_TOTAL, sample.ram_total_mb * 2**20))
            out.append(Sample(names.JETSON_RAM_USED_RATIO, sample.ram_used_mb / sample.ram_total_mb))
        for sensor, celsius in sample.temperatures.items():
            out.append(Sample(names.JETSON_TEMPERATURE, celsius, {"sensor": sensor}))
        return out
