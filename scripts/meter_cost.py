#!/usr/bin/env python3
"""What the gateway's energy meter costs per metered request, without the gateway around it.

    PYTHONPATH=src python scripts/meter_cost.py [--requests 10000] [--retry-every 0] [--digest]

Drives `EnergyMeter` as the forwarder and its 200 ms task do, on a fake clock: requests arrive
at `--rate` a second, `--concurrency` at once, each begun, finished (usage; for a stream, three
token times) and closed, with a sample and the settling it allows every 0.2 s, on the RTX 4080
SUPER recording (FakeNvml) drawing 150-210 W. Prints the process CPU µs per request, JSON and
stream, and the young-object collections per 1,000 requests (objects a request keeps alive until
its window closes feed them). With `--digest`, instead prints a digest of every request's settled
figures: two checkouts that print the same digest settle every request to the same bits.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import heapq
import time
from typing import Any

from prometheus_client import CollectorRegistry

from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.energy import Charge, EnergyMeter
from wavefleet.telemetry.exporter import Telemetry
from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml
from wavefleet.telemetry.nvml import open_nvml


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(args: argparse.Namespace, *, stream: bool, keep: list[Charge] | None = None) -> float:
    """CPU µs per request of one run."""
    clock = Clock(100.0)
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"], clock=clock)
    gpus, why = open_nvml(nvml)
    if gpus is None:
        raise SystemExit(why)
    backend = BackendConfig.model_validate({"name": "main", "url": "http://127.0.0.1:8000", "gpu": True})
    meter = EnergyMeter(
        telemetry=Telemetry([gpus]), backends=[backend], clock=clock, registry=CollectorRegistry()
    )
    nvml.set_draw(0, 20)
    meter.step()
    for _ in range(5):  # quiet: the idle draw is learnt
        clock.t += 0.2
        meter.step()
    duration = args.concurrency / args.rate
    events: list[tuple[float, int, int]] = []
    for i in range(args.requests):
        start = clock.t + 0.001 + i / args.rate
        events += [(start, 0, i), (start + duration, 1, i)]
        if args.retry_every and i % args.retry_every == 0:
            events.append((start + duration * 0.3, 2, i))
    heapq.heapify(events)
    tick = clock.t + 0.2
    running: dict[int, tuple[Charge, float]] = {}
    cpu = time.process_time()
    while events:
        t, kind, i = heapq.heappop(events)
        while tick <= t:
            clock.t = tick
            nvml.set_draw(0, 150 + (int(tick * 5) % 7) * 10)
            meter.step()
            tick += 0.2
        clock.t = t
        if kind == 0:
            charge = meter.charge(key="k")
            charge.begin("main", "m", t)
            running[i] = (charge, t)
            if keep is not None:
                keep.append(charge)
        elif kind == 2:
            running[i][0].begin("main", "m", t)  # a retry: the first attempt ends here
        else:
            charge, start = running.pop(i)
            first = start + duration * 0.5
            if stream:
                times = [first, first + duration * 0.1, t] if charge.wants_token_times else []
                charge.finish(t, first_token=first, usage=(12, 64), token_times=times)
            else:
                charge.finish(t, first_token=first, usage=(12, 8))
            charge.close(t)
    for _ in range(3):
        clock.t = tick
        meter.step()
        tick += 0.2
    spent = time.process_time() - cpu
    if meter.pending():
        raise SystemExit(f"{meter.pending()} requests never settled")
    return float(spent / args.requests * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=1400.0, help="requests a second (default 1400)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--retry-every", type=int, default=0, help="retry every Nth request once (0: none)")
    parser.add_argument("--digest", action="store_true", help="print a digest of the settled figures")
    args = parser.parse_args()
    for stream in (False, True):
        body = "stream" if stream else "json"
        if args.digest:
            kept: list[Charge] = []
            run(args, stream=stream, keep=kept)
            digest = hashlib.sha256(repr([c.result for c in kept]).encode()).hexdigest()[:16]
            print(f"{body:6} {digest}")
            continue
        young = [0]

        def count(phase: str, info: dict[str, Any], young: list[int] = young) -> None:
            if phase == "stop" and info["generation"] == 0:
                young[0] += 1

        gc.callbacks.append(count)
        try:
            us = run(args, stream=stream)
        finally:
            gc.callbacks.remove(count)
        print(
            f"{body:6} {us:6.1f} CPU µs/request  {young[0] * 1000 / args.requests:5.1f} gen0 collections/1000"
        )


if __name__ == "__main__":
    main()
