#!/usr/bin/env python3
"""How long the gateway takes to refuse an unknown, a revoked and a mistyped API key, and to accept
a valid one (medians of 30 rounds of 2,000 checks each). Not a test: a figure for docs/security.md.

    PYTHONPATH=src python scripts/key_check_timing.py
"""

import statistics
import tempfile
import time
from pathlib import Path

from wavefleet.errors import AuthenticationError
from wavefleet.gateway.security.authn import Authenticator
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.keys import KeyCache, KeyStore

d = Path(tempfile.mkdtemp()) / "w.db"
store = KeyStore(connect(d))
live = store.create("live")
rev = store.create("rev")
store.revoke(rev.record.key_id)
for i in range(200):
    store.create(f"k{i}")
cache = KeyCache(KeyStore(connect(d)))
cache.refresh()
auth = Authenticator(static_keys=["sk-local-0123456789abcdef"], cache=cache)
cases = {
    "unknown": "wave-00000000_" + "A" * 43,
    "revoked": rev.secret,
    "wrong (1 char)": live.secret[:-1] + ("A" if live.secret[-1] != "A" else "B"),
    "valid": live.secret,
}
res = {k: [] for k in cases}
for _ in range(30):
    for k, s in cases.items():
        t = time.perf_counter_ns()
        for _ in range(2000):
            try:
                auth.check_key(s)
            except AuthenticationError:
                pass
        res[k].append((time.perf_counter_ns() - t) / 2000)
for k, v in res.items():
    print(f"{k:16} median {statistics.median(v):.0f} ns  (p10 {sorted(v)[3]:.0f}, p90 {sorted(v)[26]:.0f})")
