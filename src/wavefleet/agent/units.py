"""Durations and memory sizes as people write them in agent.yaml and in a request's `keep_alive`.

    parse_duration("5m")      # 300.0 seconds
    parse_duration("1h30m")   # 5400.0
    parse_duration(-1)        # -1.0: forever (Ollama's keep_alive convention)
    parse_size("4GiB")        # 4294967296 bytes
    format_bytes(123456789)   # '117.7 MiB'

Durations follow Ollama's `keep_alive`: a number is seconds, a string is Go-style ("250ms", "30s",
"5m", "1h30m"), any negative value means forever. Sizes need a unit (B, KiB, MiB, GiB, TiB, or
the decimal kB, MB, GB, TB): a bare number is not a size, so 0.5 can mean half a device instead.
"""

from __future__ import annotations

import math
import re

__all__ = ["FOREVER", "format_bytes", "format_seconds", "parse_duration", "parse_size"]

FOREVER = -1.0  # a negative duration: never expires

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]i?B|B)\s*$", re.I)
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_duration(value: object) -> float:
    """Seconds for a duration (a number of seconds, or "250ms", "30s", "5m", "1h30m"); any negative
    value is FOREVER. ValueError, saying what is accepted, for anything else."""
    if isinstance(value, bool):
        raise ValueError(
            f"{value!r} is not a duration: give seconds (30), a string like '5m', or -1 for forever"
        )
    if isinstance(value, int | float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(
                f"{value!r} is not a duration: give a finite number of seconds, or -1 for forever"
            )
        return FOREVER if value < 0 else float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text.startswith("-"):
            rest = text[1:]
            if rest and (re.fullmatch(r"\d+(\.\d*)?", rest) or _DURATION_PART.fullmatch(rest)):
                return FOREVER
        elif re.fullmatch(r"\d+(\.\d*)?", text):
            return float(text)
        elif text and _DURATION_PART.sub("", text) == "":
            return sum(float(n) * _SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    raise ValueError(
        f"{value!r} is not a duration: give seconds (30), a string like '250ms', '30s', '5m' or '1h30m', "
        "or -1 for forever"
    )


def parse_size(value: object) -> int:
    """Bytes for a size with a unit ("512MiB", "4 GiB", "2GB"); ValueError naming the units otherwise."""
    if isinstance(value, str):
        found = _SIZE.match(value)
        if found:
            return round(float(found.group(1)) * _UNITS[found.group(2).lower()])
    raise ValueError(
        f"{value!r} is not a memory size: give a number with a unit, e.g. '512MiB', '4GiB' or '8GB'"
    )


def format_bytes(size: float | None) -> str:
    """`size` in the largest binary unit that keeps it at 1 or more ('—' for None)."""
    if size is None:
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def format_seconds(seconds: float | None) -> str:
    """A duration for people: '0.42 s', '12 s', '5 min', 'forever' ('—' for None)."""
    if seconds is None:
        return "—"
    if seconds < 0:
        return "forever"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
