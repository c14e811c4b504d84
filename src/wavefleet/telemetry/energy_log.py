"""Devices' cumulative energy over time, kept for attribution: the bridge from collectors to requests.

The fleet agent reads its collectors every so often and records what each device has counted:

    log = EnergyLog(keep_s=600)
    log.record(time.monotonic(), telemetry.energy())      # {"gpu0": 1234.5, "cpu": 88.1}

and whoever finishes a request (the gateway, told by the agent) asks for the samples that cover
it, with some margin before and after, and attributes them:

    samples = log.samples("gpu0", since=request.start - 1, until=request.end + 1)

Pure and standard-library only, like attribution. Readings that go backwards (a collector
restarted with a fresh total) start the device's history over, so a window never mixes two totals.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from wavefleet.telemetry.attribution import EnergySample

__all__ = ["EnergyLog"]


class EnergyLog:
    """Per device, (time, cumulative joules) for the last `keep_s` seconds."""

    def __init__(self, *, keep_s: float = 600.0) -> None:
        if keep_s <= 0:
            raise ValueError("keep_s must be positive")
        self.keep_s = keep_s
        self._times: dict[str, list[float]] = {}
        self._joules: dict[str, list[float]] = {}

    def devices(self) -> list[str]:
        return sorted(self._times)

    def record(self, t: float, energies: Mapping[str, float]) -> None:
        """What each device had counted at time `t` (the same clock as the requests' times)."""
        for device, joules in energies.items():
            times = self._times.setdefault(device, [])
            values = self._joules.setdefault(device, [])
            if times and t <= times[-1]:
                continue  # not later than the last reading: nothing new
            if values and joules < values[-1]:
                times.clear()
                values.clear()
            times.append(t)
            values.append(joules)
            cut = bisect.bisect_left(times, t - self.keep_s)
            if cut:
                del times[:cut]
                del values[:cut]

    def samples(self, device: str, *, since: float, until: float) -> list[EnergySample]:
        """The readings that cover [since, until]: those inside, and one on each side when kept."""
        times = self._times.get(device, [])
        values = self._joules.get(device, [])
        first = max(0, bisect.bisect_left(times, since) - 1)
        last = min(len(times), bisect.bisect_right(times, until) + 1)
        return [EnergySample(times[i], values[i]) for i in range(first, last)]
