#!/usr/bin/env python3
"""Soak test: a fixed request rate through `wave serve`, with keys, limits, screening and audit
on, against simulated engines (wavefleet.sim, the engines of `wave sim`), for a fixed time.

Valid requests: half streaming, half not; max_tokens 8..48; prompts of 5..200 words with a
shared prefix on a third of them. With `--hostile F`, a fraction F of the requests are hostile
or careless instead, drawn evenly from HOSTILE: deep JSON, broken JSON, a non-UTF-8
x-request-id, a lone surrogate as the model, junk model names, no or a wrong key, an oversized
body, wrong methods and unknown paths, malformed HTTP (raw bytes), and streams the client closes
after the first event. Sent open-loop (on a fixed schedule, not waiting for answers), so a slow
gateway shows up as latency and errors, not as a lower rate.

It passes when every valid request succeeded, no answer was a 5xx, every hostile request got the
4xx (or the early close) it deserved, the audit trail holds one row per request to the API's
paths (malformed HTTP and unknown paths never reach it), and the gateway's resident memory at
the end is within --max-growth % (default 5) of what it was after the warm-up. Not a CI test:
run it by hand and report the figures.

    PYTHONPATH=src python scripts/soak.py --minutes 10 --rate 100 --hostile 0.3
    PYTHONPATH=src python scripts/soak.py --minutes 1 --rate 10 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from wavefleet.catalog import Catalog
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.keys import KeyLimits, KeyStore
from wavefleet.sim import SimFleet
from wavefleet.sim.profiles import resolve_profile

WORDS = (
    "the of and to in is that for it as with was on be by at this an are from or have not which but".split()
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_body(rng: random.Random, model: str) -> dict[str, Any]:
    words = [rng.choice(WORDS) for _ in range(rng.randint(5, 200))]
    if rng.random() < 1 / 3:
        words = ["You", "are", "a", "helpful", "assistant", "for", "the", "home", "lab."] * 8 + words
    return {
        "model": model,
        "messages": [{"role": "user", "content": " ".join(words)}],
        "max_tokens": rng.randint(8, 48),
        "stream": rng.random() < 0.5,
    }


async def one(
    session: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any], tally: dict[str, Any]
) -> None:
    started = time.perf_counter()
    try:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as reply:
            text = await reply.read()
        ok = reply.status == 200
        if ok and body["stream"]:
            ok = text.rstrip().endswith(b"data: [DONE]") and b'{"error"' not in text
        if not ok:
            tally["errors"].append(f"{reply.status}: {text[:200]!r}")
        if reply.status >= 500:
            tally["5xx"] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally["errors"].append(f"{type(exc).__name__}: {exc}")
    tally["latencies"].append(time.perf_counter() - started)
    tally["done"] += 1
    tally["audited"] += 1


# name -> (method, path, body, extra headers, expected status); "KEY" in a header is the valid key
HOSTILE: dict[str, tuple[str, str, bytes, dict[str, str], int]] = {
    "deep-json": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "M", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        {},
        400,
    ),
    "broken-json": ("POST", "/v1/chat/completions", b'{"model": "M", "messages": [', {}, 400),
    "surrogate-model": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "\\udc80", "messages": [{"role": "user", "content": "x"}]}',
        {},
        404,
    ),
    "junk-model": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "JUNK", "messages": [{"role": "user", "content": "x"}]}',
        {},
        404,
    ),
    "no-key": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "M", "messages": [{"role": "user", "content": "x"}]}',
        {"Authorization": ""},
        401,
    ),
    "wrong-key": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "M", "messages": [{"role": "user", "content": "x"}]}',
        {"Authorization": "Bearer wave-0000_nope"},
        401,
    ),
    "oversized": (
        "POST",
        "/v1/chat/completions",
        b'{"model": "M", "messages": [{"role": "user", "content": "' + b"a" * (17 << 20) + b'"}]}',
        {},
        413,
    ),
    "wrong-method": ("GET", "/v1/chat/completions", b"", {}, 405),
    "unknown-path": ("POST", "/v1/nope", b"{}", {}, 404),
}
RAW = {  # sent as bytes on a socket: aiohttp's client will not send these
    "bad-request-id": (b"x-request-id: \xff\xfe", 200),
    "nul-header": (b"x-bad: a\x00b", 400),
}
AUDITED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models")


async def hostile(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    model: str,
    kind: str,
    rng: random.Random,
    tally: dict[str, Any],
) -> None:
    """One hostile or careless request of `kind`; its answer must be the expected status."""
    tally["hostile"][kind] = tally["hostile"].get(kind, 0) + 1
    status: int | str
    try:
        if kind == "early-close":
            body = {**request_body(rng, model), "stream": True, "max_tokens": 48}
            async with session.post(
                base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            ) as reply:
                status = reply.status
                await reply.content.readuntil(b"\n\n")  # the first event, then hang up
                reply.close()
            expected: int = 200
            tally["audited"] += 1
        elif kind in RAW:
            header, expected = RAW[kind]
            status = await _raw(base, key, model, header)
            tally["audited"] += int(expected == 200)  # a malformed request never reaches the app
        else:
            method, path, payload, headers, expected = HOSTILE[kind]
            payload = payload.replace(b'"M"', json.dumps(model).encode()).replace(
                b"JUNK", f"junk-{rng.randrange(10**9)}".encode()
            )
            sent = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers}
            sent = {k: v for k, v in sent.items() if v}
            async with session.request(method, base + path, data=payload or None, headers=sent) as reply:
                status = reply.status
                text = await reply.read()
            if not text.startswith(b'{"error"'):
                tally["errors"].append(f"{kind}: not an OpenAI error body: {text[:120]!r}")
            tally["audited"] += int(path in AUDITED_PATHS)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        status = f"{type(exc).__name__}"
        expected = -1
    if isinstance(status, int) and status >= 500:
        tally["5xx"] += 1
    if status != expected:
        tally["errors"].append(f"{kind}: {status}, expected {expected}")
    tally["done"] += 1


async def _raw(base: str, key: str, model: str, header: bytes) -> int:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    ).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\n" + header + b"\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )  # fmt: skip
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    return int(status_line.split()[1])


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    catalog = Catalog.load()
    profiles = [
        resolve_profile(args.profile, catalog).model_copy(update={"name": f"e{i}"})
        for i in range(args.engines)
    ]
    work = Path(tempfile.mkdtemp(prefix="wave-soak-"))
    db = work / "wave.db"
    key = KeyStore(connect(db)).create(
        "soak", limits=KeyLimits(rpm=args.rate * 600, tpm=10**9, max_concurrent=512, max_tokens=4096)
    )
    async with SimFleet(profiles, speed=args.speed, seed=1) as fleet:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "wavefleet",
            "serve",
            "--port",
            str(port),
            "--policy",
            "least-loaded",
        ]
        for name, url in fleet.urls.items():
            command += [
                "--backend",
                f"{name}={url},kind={profiles[0].dialect.value},models={profiles[0].model}",
            ]
        command += [
            "--db",
            str(db),
            "--audit-db",
            str(db),
            "--screening",
            "flag",
            "--api-key-limits",
            "rpm=100000",
        ]
        if args.redis_url:
            command += ["--redis-url", args.redis_url]
        log = open(work / "gateway.log", "wb")  # noqa: SIM115, ASYNC230  (once, at start-up)
        gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())  # noqa: ASYNC220
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
                for _ in range(300):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/health") as reply:
                            if reply.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                rng = random.Random(7)
                tally: dict[str, Any] = {
                    "errors": [],
                    "latencies": [],
                    "done": 0,
                    "5xx": 0,
                    "audited": 0,
                    "hostile": {},
                }
                kinds = [*HOSTILE, *RAW, "early-close"]
                base = f"http://127.0.0.1:{port}"
                samples: list[tuple[float, int]] = []
                tasks: set[asyncio.Task[None]] = set()
                start = time.monotonic()
                end = start + args.minutes * 60
                interval = 1.0 / args.rate
                sent, next_sample = 0, start
                warm_rss: int | None = None
                while (now := time.monotonic()) < end:
                    due = start + sent * interval
                    if now < due:
                        await asyncio.sleep(due - now)
                    if rng.random() < args.hostile:
                        kind = kinds[sent % len(kinds)]
                        task = asyncio.ensure_future(
                            hostile(session, base, key.secret, profiles[0].model, kind, rng, tally)
                        )
                    else:
                        task = asyncio.ensure_future(
                            one(session, url, key.secret, request_body(rng, profiles[0].model), tally)
                        )
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                    if time.monotonic() >= next_sample:
                        rss = rss_kib(gateway.pid)
                        samples.append((time.monotonic() - start, rss))
                        if warm_rss is None and samples[-1][0] >= args.warmup:
                            warm_rss = rss
                        next_sample += 5.0
                        if len(samples) % 12 == 0:
                            print(
                                f"{samples[-1][0]:6.0f} s  sent {sent}  done {tally['done']}  errors {len(tally['errors'])}  rss {rss / 1024:.1f} MiB",
                                flush=True,
                            )
                await asyncio.gather(*tasks)
                final_rss = rss_kib(gateway.pid)
                async with session.get(f"{base}/health") as reply:
                    tally["health_end"] = reply.status
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
            log.close()
    audit_rows = connect(db).execute("SELECT count(*) FROM audit").fetchone()[0]
    health = tally.get("health_end")
    lat = sorted(tally["latencies"])
    warm = warm_rss or samples[0][1]
    return {
        "minutes": args.minutes,
        "rate_per_s": args.rate,
        "sent": sent,
        "answered": tally["done"],
        "errors": len(tally["errors"]),
        "first_errors": tally["errors"][:5],
        "latency_p50_ms": round(statistics.median(lat) * 1000, 1),
        "latency_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1),
        "rss_after_warmup_mib": round(warm / 1024, 1),
        "rss_end_mib": round(final_rss / 1024, 1),
        "rss_max_mib": round(max(r for _, r in samples) / 1024, 1),
        "rss_growth_pct": round((final_rss - warm) / warm * 100, 2),
        "audit_rows": audit_rows,
        "audited_requests": tally["audited"],
        "answers_5xx": tally["5xx"],
        "hostile": tally["hostile"],
        "health_end": health,
        "gateway_exit": gateway.returncode,
        "profile": args.profile,
        "engines": args.engines,
        "speed": args.speed,
        "work_dir": str(work),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before the memory baseline (default 60)"
    )
    parser.add_argument("--profile", default="rtx5070ti-vllm", help="sim profile of every engine")
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--speed", type=float, default=20.0, help="sim speed-up (default 20)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--hostile", type=float, default=0.0, help="fraction of hostile requests (0..1)")
    parser.add_argument("--max-growth", type=float, default=5.0, help="RSS growth allowed after warm-up, %%")
    parser.add_argument("--redis-url", help="keep limits in this Redis (redis://...)")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    passed = (
        result["errors"] == 0
        and result["answers_5xx"] == 0
        and result["audit_rows"] == result["audited_requests"]
        and result["health_end"] == 200
        and result["rss_growth_pct"] <= args.max_growth
        and result["gateway_exit"] == 0
    )
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
