"""A hardware energy counter turned into a total that only grows.

Hardware counters start over. RAPL's `energy_uj` wraps at `max_energy_range_uj` (about 262 kJ on
many Intel parts: some 40 minutes at 100 W); NVML's total energy restarts from zero when the
driver reloads. `EnergyTotal` keeps the joules counted across both: a smaller reading than the
last is a wrap when the counter's range is known, else a restart from zero.
"""

from __future__ import annotations

__all__ = ["EnergyTotal"]


class EnergyTotal:
    """Joules counted since the first reading, across wraps and restarts of the raw counter.

    `scale` turns raw units into joules (1e-6 for µJ, 1e-3 for mJ); `wraps_at` is the raw value
    at which the counter starts over at zero (None: it does not wrap, so a drop is a restart).
    """

    def __init__(self, *, scale: float, wraps_at: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("scale must be positive")
        self.scale = scale
        self.wraps_at = wraps_at
        self.joules = 0.0
        self.wraps = 0
        self.restarts = 0
        self._last: float | None = None

    def update(self, raw: float) -> float:
        """Account for a new raw reading; returns the total in joules."""
        if raw < 0:
            raise ValueError(f"an energy counter read {raw}, below zero")
        last, self._last = self._last, raw
        if last is None:
            return self.joules
        if raw >= last:
            delta = raw - last
        elif self.wraps_at is not None and last <= self.wraps_at:
            delta = self.wraps_at - last + raw
            self.wraps += 1
        else:
            # Counted from zero since the restart; what ran between the last read and the
            # restart is lost (and said so by `restarts`).
            delta = raw
            self.restarts += 1
        self.joules += delta * self.scale
        return self.joules
