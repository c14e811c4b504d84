#!/usr/bin/env python3
"""How long the gateway takes to refuse an unknown, a revoked and a mistyped API key, and to accept
a valid one (medians of 30 rounds of 2,000 checks each). Not a test: the figures of
docs/measurements/2026-11-27-key-check-timing.md.

    PYTHONPATH=src python scripts/key_check_timing.py
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from wavefleet.errors import AuthenticationError
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.keys import KeyCache, KeyStore


def main() -> None:
    path = Path(tempfile.mkdtemp()) / "wave.db"
    store = KeyStore(connect(path))
    live = store.create("live")
    revoked = store.create("revoked")
    store.revoke(revoked.record.key_id)
    for i in range(200):
        store.create(f"k{i}")
    cache = KeyCache(KeyStore(connect(path)))
    cache.refresh()
    authenticator = Authenticator(static_keys=["sk-local-0123456789abcdef"], cache=cache)
    typo = live.secret[:-1] + ("A" if live.secret[-1] != "A" else "B")
    cases = {
        "unknown": "wave-00000000_" + "A" * 43,
        "revoked": revoked.secret,
        "wrong (1 char)": typo,
        "valid": live.secret,
    }
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(30):
        for name, secret in cases.items():
            started = time.perf_counter_ns()
            for _ in range(2000):
                with contextlib.suppress(AuthenticationError):
                    authenticator.check_key(secret)
            results[name].append((time.perf_counter_ns() - started) / 2000)
    for name, runs in results.items():
        runs.sort()
        print(f"{name:16} median {statistics.median(runs):.0f} ns  (p10 {runs[3]:.0f}, p90 {runs[26]:.0f})")


if __name__ == "__main__":
    main()
