#!/usr/bin/env python3
"""What a gateway costs per request, measured side by side with proxies that do nothing.

A static upstream (nginx answering every chat completion with a fixed JSON body, or with a fixed
SSE stream of 64 content events, about 11 KB) is the fastest backend there is, so whatever sits in
front of it is the bottleneck. Each target is driven by wrk (one thread, a Lua script POSTing a
fixed request with a bearer key) at each concurrency, in interleaved rounds, and the medians of
the rounds are reported:

  direct     the static upstream itself: the client's and the upstream's own cost
  nginx      nginx as a plain reverse proxy, the floor for any proxy
  minproxy   scripts/minproxy.py, the thinnest Python pass-through (aiohttp + uvloop)
  NAME       each --gateway NAME=COMMAND: a gateway under test
  litellm    LiteLLM's proxy, with --with-litellm (installed once into a cached virtualenv)

The client and the upstream are pinned to CPU 0, every proxy and gateway to CPU 1 (where the
machine has two CPUs and taskset). The summary gives, per target and body, the requests/s
relative to minproxy at the highest concurrency and the median latency added to the direct
path at the lowest.

A gateway command runs in bash (compound commands work) with these variables set:
  PORT      the port to listen on (127.0.0.1)
  UPSTREAM  the upstream's base URL (OpenAI paths under /v1; it serves the model "bench")
  API_KEY   the bearer key every request carries: random and strong, new each run
  WORK      an empty folder of its own (databases, logs)
It is started afresh for each body, so anything it sets up (a key database) is made twice.

Needs nginx and wrk (Debian packages of those names; `./dev test` installs both).

    python scripts/gateway_overhead.py \\
        --gateway 'wave=wave serve --port $PORT --backend main=$UPSTREAM --api-key $API_KEY'
    python scripts/gateway_overhead.py --json out.json \\
        --gateway 'plain=wave serve --port $PORT --backend main=$UPSTREAM --api-key $API_KEY' \\
        --gateway 'secure=wave keys import --name bench --from-env API_KEY --db $WORK/wave.db &&
                   exec wave serve --port $PORT --backend main=$UPSTREAM --db $WORK/wave.db \\
                   --audit-db $WORK/audit.db --screening flag'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESERVED = ("direct", "nginx", "minproxy", "litellm")
MODEL = "bench"
ANSWER = "A fixed answer of eight tokens."
STREAM_CHUNKS = 64

WRK_SCRIPT = """-- POST the JSON file named by BODY with the bearer key in API_KEY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
local f = assert(io.open(os.getenv("BODY"), "r"))
wrk.body = f:read("*a")
f:close()
"""


# ---------------------------------------------------------------- the static upstream


def fixed_completion() -> str:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
        },
        separators=(",", ":"),
    )


def fixed_stream(chunks: int = STREAM_CHUNKS) -> str:
    """A role event, `chunks` content events, a finish event, a usage event and [DONE]."""

    def event(delta: dict[str, str], finish: str | None, **extra: Any) -> str:
        choices = (
            [] if extra.pop("no_choices", False) else [{"index": 0, "delta": delta, "finish_reason": finish}]
        )
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
        body.update(choices=choices, **extra)
        return "data: " + json.dumps(body, separators=(",", ":")) + "\n\n"

    usage = {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}
    events = [event({"role": "assistant", "content": ""}, None)]
    events += [event({"content": f"tok{i} "}, None) for i in range(chunks)]
    events += [event({}, "stop"), event({}, None, no_choices=True, usage=usage), "data: [DONE]\n\n"]
    return "".join(events)


def nginx_config(work: Path, name: str, servers: str) -> Path:
    path = work / f"{name}.conf"
    path.write_text(
        f"""worker_processes 1;
pid {work}/{name}.pid;
error_log {work}/{name}-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {work}/{name}-body;
  proxy_temp_path {work}/{name}-proxy;
  {servers}
}}
"""
    )
    return path


def upstream_servers(work: Path, json_port: int, stream_port: int) -> str:
    """Two static servers: chat completions answered with JSON on one port, with SSE on the other."""
    static = work / "static"
    static.mkdir(exist_ok=True)
    (static / "stream.sse").write_text(fixed_stream())
    models = json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1, "owned_by": "bench"}]}
    )
    common = f"""location = /v1/models {{ default_type application/json; return 200 '{models}'; }}
    location = /health {{ return 200 'ok'; }}"""
    # nginx serves static files to GET only: error_page turns the POST's 405 into the file, with 200.
    return f"""server {{
    listen 127.0.0.1:{json_port};
    location = /v1/chat/completions {{ default_type application/json; return 200 '{fixed_completion()}'; }}
    {common}
  }}
  server {{
    listen 127.0.0.1:{stream_port};
    location = /v1/chat/completions {{ error_page 405 =200 /stream.sse; return 405; }}
    location = /stream.sse {{ internal; root {static}; default_type text/event-stream; }}
    {common}
  }}"""


def reverse_proxy_server(port: int, upstream_port: int) -> str:
    return f"""upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }}
  }}"""


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int, argv: list[str]) -> list[str]:
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *argv]
    return argv


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, chars: int = 1500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass
class Started:
    """A process started for one body, with its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Nginx:
    """An nginx master started from a config; stopped through its pid file."""

    config: Path
    pid_file: Path
    ports: list[int]

    @classmethod
    def start(cls, work: Path, name: str, servers: str, cpu: int, ports: list[int]) -> Nginx:
        config = nginx_config(work, name, servers)
        subprocess.run(pinned(cpu, ["nginx", "-c", str(config)]), check=True)
        nginx = cls(config, work / f"{name}.pid", ports)
        for port in ports:
            wait_for_port(port, 20, name, log=work / f"{name}-error.log")
        return nginx

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(self.pid_file.read_text().strip()), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(listening(port) for port in self.ports) and time.monotonic() < deadline:
            time.sleep(0.05)


def wait_for_port(
    port: int, timeout: float, name: str, *, process: Started | None = None, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.process.poll() is not None:
            raise SystemExit(
                f"{name} exited with status {process.process.returncode} before listening on {port}:\n"
                f"{tail(process.log)}"
            )
        if listening(port):
            return
        time.sleep(0.05)
    raise SystemExit(
        f"{name} does not listen on port {port} after {timeout:.0f} s:\n{tail(log) if log else ''}"
    )


def helper_python(packages: list[str], probe: str, cache_name: str) -> str:
    """This Python if it imports `probe`, else one in a cached virtualenv with `packages`."""
    if subprocess.run([sys.executable, "-c", f"import {probe}"], capture_output=True).returncode == 0:
        return sys.executable
    venv = Path.home() / ".cache" / "wavefleet-gateway-overhead" / cache_name
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
    return str(python)


def shell(command: str) -> Callable[[int], list[str]]:
    return lambda _port: ["bash", "-c", command]


@dataclass
class Targets:
    """Everything measured in front of one upstream: started together, stopped together."""

    work: Path
    key: str
    ports: dict[str, int] = field(default_factory=dict)
    started: list[Started] = field(default_factory=list)
    nginx: Nginx | None = None

    def start(self, upstream_port: int, gateways: dict[str, str], with_litellm: bool) -> None:
        upstream = f"http://127.0.0.1:{upstream_port}"
        self.ports["direct"] = upstream_port
        proxy_port = free_port()
        self.nginx = Nginx.start(
            self.work, "proxy", reverse_proxy_server(proxy_port, upstream_port), 1, [proxy_port]
        )
        self.ports["nginx"] = proxy_port
        self.spawn("minproxy", lambda port: [sys.executable, str(HERE / "minproxy.py"), str(port), upstream])
        for name, command in gateways.items():
            self.spawn(name, shell(command), upstream=upstream)
        if with_litellm:
            self.spawn_litellm(upstream)
        for item in self.started:
            wait_for_port(self.ports[item.name], 180, item.name, process=item)

    def spawn(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        *,
        upstream: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        port = free_port()
        scratch = self.work / f"{name}-{port}"
        scratch.mkdir()
        environment = dict(
            env or os.environ, PORT=str(port), UPSTREAM=upstream, API_KEY=self.key, WORK=str(scratch)
        )
        log = scratch / "log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                pinned(1, argv(port)),
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: compound commands stop whole
            )
        self.started.append(Started(name, process, log))
        self.ports[name] = port

    def spawn_litellm(self, upstream: str) -> None:
        python = helper_python(["litellm[proxy]"], "litellm.proxy.proxy_server", "litellm")
        config = self.work / "litellm.yaml"
        config.write_text(
            f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
            f"      api_base: {upstream}/v1\n      api_key: sk-upstream\n"
            f"general_settings:\n  master_key: {self.key}\nlitellm_settings:\n  telemetry: false\n"
        )
        litellm = str(Path(python).parent / "litellm")
        argv = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port"]
        self.spawn("litellm", lambda port: [*argv, str(port)], env=dict(os.environ, LITELLM_LOG="ERROR"))

    def stop(self) -> None:
        for item in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(item.process.pid, signal.SIGTERM)
        for item in self.started:
            try:
                item.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(item.process.pid, signal.SIGKILL)
                item.process.wait()
        if self.nginx is not None:
            self.nginx.stop()


# ---------------------------------------------------------------- measuring


def parse_wrk(text: str) -> dict[str, float]:
    def seconds(value: str) -> float:
        match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
        if match is None:
            raise ValueError(f"unreadable wrk latency {value!r}")
        return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(2)]

    def find(pattern: str) -> str:
        match = re.search(pattern, text)
        if match is None:
            raise ValueError(f"wrk printed no {pattern!r}:\n{text[-800:]}")
        return match.group(1)

    failed = 0
    if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        failed += int(bad.group(1))
    if errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        failed += sum(int(n) for n in errors.groups())
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)")),
        "p50_ms": seconds(find(r"\s50%\s+(\S+)")) * 1e3,
        "p99_ms": seconds(find(r"\s99%\s+(\S+)")) * 1e3,
        "failed": failed,
    }


def run_wrk(
    port: int, concurrency: int, duration: int, body: Path, script: Path, key: str
) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script)]
    argv.append(f"http://127.0.0.1:{port}/v1/chat/completions")
    env = dict(os.environ, BODY=str(body), API_KEY=key)
    out = subprocess.run(pinned(0, argv), env=env, capture_output=True, text=True, timeout=duration + 60)
    if "Requests/sec" not in out.stdout:
        raise SystemExit(f"wrk against port {port} failed:\n{out.stdout[-800:]}\n{out.stderr[-800:]}")
    return parse_wrk(out.stdout)


def check_answer(name: str, port: int, body: Path, kind: str, key: str) -> None:
    """Every target must relay the upstream's answer before it is timed."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=body.read_bytes(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read().decode(errors="replace")
    except OSError as error:
        raise SystemExit(f"{name} did not answer a {kind} request: {error}") from error
    expected = f"tok{STREAM_CHUNKS - 1}" if kind == "stream" else ANSWER
    if expected not in text:
        raise SystemExit(f"{name} gave a wrong {kind} answer: {text[:300]}")


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        model = found.group(1).strip() if found else ""
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def summarise(cells: list[dict[str, Any]], levels: list[int]) -> dict[str, float | int]:
    def cell(name: str, kind: str, concurrency: int) -> dict[str, Any]:
        return next(
            c for c in cells if (c["target"], c["body"], c["concurrency"]) == (name, kind, concurrency)
        )

    low, high = min(levels), max(levels)
    summary: dict[str, float | int] = {}
    for name, kind in dict.fromkeys((c["target"], c["body"]) for c in cells):
        if name == "direct":
            continue
        summary[f"{name}.{kind}.rps_vs_minproxy"] = round(
            cell(name, kind, high)["rps"] / cell("minproxy", kind, high)["rps"], 3
        )
        summary[f"{name}.{kind}.added_p50_ms"] = round(
            cell(name, kind, low)["p50_ms"] - cell("direct", kind, low)["p50_ms"], 3
        )
        summary[f"{name}.{kind}.failed"] = sum(cell(name, kind, c)["failed"] for c in levels)
    return summary


def measure(args: argparse.Namespace, gateways: dict[str, str], work: Path) -> list[dict[str, Any]]:
    key = "sk-bench-" + secrets.token_urlsafe(32)
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    levels = args.concurrency
    kinds = args.bodies
    upstream_ports = {"json": free_port(), "stream": free_port()}
    upstream = Nginx.start(
        work,
        "upstream",
        upstream_servers(work, upstream_ports["json"], upstream_ports["stream"]),
        0,
        list(upstream_ports.values()),
    )
    runs: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    try:
        for kind in kinds:
            body = work / f"body-{kind}.json"
            request = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "Say something short."}],
                "max_tokens": 16,
            }
            body.write_text(json.dumps({**request, "stream": kind == "stream"}))
            targets = Targets(work / kind, key)
            targets.work.mkdir()
            try:
                targets.start(upstream_ports[kind], gateways, args.with_litellm)
                for name, port in targets.ports.items():
                    check_answer(name, port, body, kind, key)
                for round_number in range(args.rounds):
                    for concurrency in levels:
                        for name, port in targets.ports.items():
                            result = run_wrk(port, concurrency, args.duration, body, script, key)
                            runs.setdefault((name, kind, concurrency), []).append(result)
                    print(f"{kind}: round {round_number + 1} of {args.rounds} done", file=sys.stderr)
            finally:
                targets.stop()
    finally:
        upstream.stop()
    cells = []
    for (name, kind, concurrency), results in runs.items():
        row: dict[str, Any] = {"target": name, "body": kind, "concurrency": concurrency}
        row.update(
            {stat: statistics.median(r[stat] for r in results) for stat in ("rps", "p50_ms", "p99_ms")}
        )
        row["failed"] = int(sum(r["failed"] for r in results))
        row["rounds"] = [r["rps"] for r in results]
        cells.append(row)
    return cells


# ---------------------------------------------------------------- command line


def parse_gateways(values: list[str]) -> dict[str, str]:
    """NAME=COMMAND pairs in order; a value without a name (or whose prefix is not a name) is 'gateway'."""
    gateways: dict[str, str] = {}
    for value in values:
        match = re.match(r"([A-Za-z][\w.-]*)=(.*)", value, re.S)
        name, command = (
            (match.group(1), match.group(2)) if match and not match.group(1).isupper() else ("gateway", value)
        )
        if not command.strip():
            raise SystemExit(f"--gateway {value!r}: the command is empty")
        if name in RESERVED:
            raise SystemExit(f"--gateway {name}=…: {name!r} is a built-in target; pick another name")
        if name in gateways:
            raise SystemExit(f"--gateway {name}=… is given twice; give each gateway its own name")
        gateways[name] = command
    return gateways


def levels(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give connection counts like 1,32") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every connection count must be at least 1")
    return values


def bodies(text: str) -> list[str]:
    values = text.split(",")
    if not set(values) <= {"json", "stream"} or not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give json, stream or json,stream")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gateway",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a gateway under test (repeatable); a COMMAND alone is named gateway; see the variables above",
    )
    parser.add_argument("--with-litellm", action="store_true", help="also measure LiteLLM's proxy")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell (default 3)")
    parser.add_argument(
        "--concurrency", type=levels, default=[1, 32], help="client connections (default 1,32)"
    )
    parser.add_argument(
        "--bodies", type=bodies, default=["json", "stream"], help="json, stream or both (default)"
    )
    parser.add_argument("--json", type=Path, help="also write the cells and the summary here")
    args = parser.parse_args(argv)
    gateways = parse_gateways(args.gateway)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is missing: install the Debian package '{tool}' (./dev test installs it)"
            )
    if args.duration < 1 or args.rounds < 1:
        raise SystemExit("--duration and --rounds must be at least 1")

    before = machine()
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    work.chmod(0o755)  # nginx's workers run as another user and read the static stream from here
    try:
        cells = measure(args, gateways, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(cells, args.concurrency)

    print(f"{'target':12} {'body':6} {'conc':>4} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
    for c in cells:
        print(
            f"{c['target']:12} {c['body']:6} {c['concurrency']:>4} {c['rps']:>10.0f} {c['p50_ms']:>8.3f} {c['p99_ms']:>8.3f} {c['failed']:>7}"
        )
    print()
    for name, value in summary.items():
        print(f"{name} {value}")
    if args.json:
        record = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": round(time.time() - started, 1),
            "settings": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "bodies": args.bodies,
                "gateways": gateways,
                "with_litellm": args.with_litellm,
            },
            "machine": {**before, "load_average_after": list(os.getloadavg())},
            "cells": cells,
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
