"""`wave bench` end to end against a small real OpenAI-style server on loopback (aiohttp).

The fake server streams chat completions the way engines do: a role chunk, content chunks a
few milliseconds apart, a finish chunk, the usage trailer and [DONE], with chunked transfer
encoding. The model name picks variations: "crlf" frames events with CRLF and sends ": ping"
comments, "nousage" omits the usage trailer, "broken" answers HTTP 500, "plain" ignores
stream=true and answers one JSON object. A prompt containing "hold" gets no answer, not even a
header, until the client goes away (a gateway holds its header until the engine's first event);
one containing "slow" is answered after a second.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from helpers import free_port, run_wave, wave_env
from wavefleet.bench.runner import LoadSpec, Target, run_load
from wavefleet.bench.workload import MultiTurnWorkload, SyntheticWorkload


class FakeEngine:
    """An OpenAI-compatible streaming server in a thread; remembers every request body."""

    def __init__(self, chunks: int = 4, gap_s: float = 0.002, port: int = 0) -> None:
        self.chunks, self.gap_s = chunks, gap_s
        self.bodies: list[dict[str, Any]] = []
        self.open_handlers = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.port = port

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # cancelled handlers are how a held request learns its client went away
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ready.set()
        self.loop.run_forever()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.open_handlers += 1
        try:
            return await self._answer(request)
        finally:
            self.open_handlers -= 1

    def settle(self) -> None:
        """Wait until no request is being handled (the held ones end when their client goes)."""
        deadline = time.monotonic() + 10
        while self.open_handlers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.open_handlers == 0

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        model = body["model"]
        if any("hold" in m["content"] for m in body["messages"]):
            await asyncio.Event().wait()  # until cancelled: the client went away
        if any("slow" in m["content"] for m in body["messages"]):
            await asyncio.sleep(1.0)
        if model == "broken":
            return web.json_response({"error": {"message": "engine exploded"}}, status=500)
        words = sum(len(m["content"].split()) for m in body["messages"])
        n = min(self.chunks, body.get("max_tokens") or self.chunks)
        if model == "plain":
            text = " ".join(f"w{i}" for i in range(n))
            return web.json_response(
                {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": words, "completion_tokens": n},
                }
            )
        sep = "\r\n\r\n" if model == "crlf" else "\n\n"
        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await reply.prepare(request)

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            await reply.write(f"data: {data}{sep}".encode())

        await asyncio.sleep(self.gap_s)
        await send({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}], "usage": None})
        for i in range(n - 1):
            await asyncio.sleep(self.gap_s)
            if model == "crlf":
                await reply.write(f": ping{sep}".encode())
            await send({"choices": [{"index": 0, "delta": {"content": f"w{i} "}}]})
        await send({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if model != "nousage" and body.get("stream_options", {}).get("include_usage"):
            await send({"choices": [], "usage": {"prompt_tokens": words, "completion_tokens": n}})
        await send("[DONE]")
        return reply

    def __enter__(self) -> FakeEngine:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as server:
        yield server


def wave(*args: str) -> subprocess.CompletedProcess[str]:
    return run_wave("bench", "--no-progress", *args, env=wave_env(COLUMNS="160"))


def test_criteria_pass_fail_and_malformed_exit_codes(engine: FakeEngine) -> None:
    common = ["--url", engine.url, "--concurrency", "2", "--num-requests", "6", "--input-len", "5"]
    passed = wave(*common, "--criteria", "error_rate<0.01,completed>=6,p95_ttft_ms<60000")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "fake-model" not in passed.stderr

    failed = wave(*common, "--criteria", "p95_ttft_ms<0.0001,error_rate<0.01")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAIL" in failed.stdout and "p95_ttft_ms<0.0001" in failed.stdout
    assert "1 of 2 criteria failed" in failed.stderr

    malformed = wave(*common, "--criteria", "p95_ttft_ms<50,throughput_fast>1")
    assert malformed.returncode == 2
    assert "throughput_fast>1" in malformed.stderr and "output_tps" in malformed.stderr
    no_slo = wave(*common, "--criteria", "goodput_rps>1")
    assert no_slo.returncode == 2 and "--goodput" in no_slo.stderr


def test_output_files_hold_every_level_and_request(engine: FakeEngine, tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = wave(
        "--url", engine.url, "--model", "crlf", "--concurrency", "1,3", "--rate", "50",
        "--num-requests", "9", "--input-len", "7", "--output-len", "4", "--goodput", "ttft:10000 tpot:10000",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((out / "bench.json").read_text())
    assert set(report) == {"config", "environment", "levels", "criteria"}
    assert [level["label"] for level in report["levels"]] == ["concurrency=1", "concurrency=3", "rate=50/s"]
    first = report["levels"][0]["summary"]
    assert first["completed"] == 9 and first["failed"] == 0
    assert first["total_output_tokens"] == 9 * 4  # from usage
    assert first["token_counts"] == "usage"
    assert first["good_fraction"] == 1.0
    assert first["stats"]["itl"]["count"] == 9 * 4  # role + 3 content + finish chunks = 5, so 4 gaps
    rows = list(csv.DictReader(io.StringIO((out / "requests.csv").read_text())))
    assert len(rows) == 27
    assert {row["chunks"] for row in rows} == {"5"}
    assert all(float(row["ttft_ms"]) > 0 and row["error"] == "" for row in rows)
    png = (out / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    html = (out / "bench.html").read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html and "rate=50/s" in html


def test_failures_and_missing_usage_are_reported(engine: FakeEngine, tmp_path: Path) -> None:
    broken = wave(
        "--url", engine.url, "--model", "broken", "--num-requests", "3", "--out", str(tmp_path / "b")
    )
    assert broken.returncode == 1
    assert "no request succeeded" in broken.stderr and "engine exploded" in broken.stderr
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["levels"][0]["summary"]["failed"] == 3

    out = tmp_path / "n"
    nousage = wave(
        "--url",
        engine.url,
        "--model",
        "nousage",
        "--num-requests",
        "2",
        "--output-len",
        "4",
        "--out",
        str(out),
    )
    assert nousage.returncode == 0
    assert "output tokens counted as SSE chunks with text" in nousage.stdout
    summary = json.loads((out / "bench.json").read_text())["levels"][0]["summary"]
    # 5 choices chunks per answer, of which the role chunk ("") and the finish chunk carry no text
    assert summary["token_counts"] == "chunks" and summary["total_output_tokens"] == 2 * 3


def test_library_open_loop_with_cap_reports_dispatch_lag(engine: FakeEngine) -> None:
    # 20 requests due within ~0.1 s but only one in flight at a time: later ones must wait,
    # and that wait shows as dispatch lag and inside TTFT.
    target = Target(engine.url, "fake-model")
    load = LoadSpec(rate=200, max_concurrency=1, num_requests=20, seed=1)
    result = run_load(target, SyntheticWorkload(input_len=3, output_len=3), load)
    assert len(result.records) == 20 and all(r.ok for r in result.records)
    assert result.connections_opened == 1
    last = max(result.records, key=lambda r: r.scheduled)
    assert last.dispatch_lag > 0
    assert last.ttft is not None and last.ttft >= last.dispatch_lag


def test_plain_json_answers_and_ignore_eos_fields(engine: FakeEngine) -> None:
    target = Target(engine.url, "plain", ignore_eos=True, extra_body={"temperature": 0})
    result = run_load(
        target, SyntheticWorkload(input_len=4, output_len=3), LoadSpec(concurrency=1, num_requests=2)
    )
    assert all(r.ok and len(r.chunk_times) == 1 and r.output_tokens == 3 for r in result.records)
    body = engine.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 3 and body["ignore_eos"] is True and body["min_tokens"] == 3
    assert body["temperature"] == 0


def test_multi_turn_sends_turns_in_order_with_answers_appended(engine: FakeEngine) -> None:
    start = len(engine.bodies)
    workload = MultiTurnWorkload(conversations=3, prefix_len=20, turns=3, turn_len=4, output_len=3)
    result = run_load(Target(engine.url, "fake-model"), workload, LoadSpec(concurrency=2, num_requests=9))
    assert len(result.records) == 9 and all(r.ok for r in result.records)
    bodies = engine.bodies[start:]
    prefixes = {b["messages"][0]["content"] for b in bodies}
    assert len(prefixes) == 1 and len(next(iter(prefixes)).split()) == 20  # one shared prefix
    by_length: dict[int, int] = {}
    for b in bodies:
        by_length[len(b["messages"])] = by_length.get(len(b["messages"]), 0) + 1
    assert by_length == {2: 3, 4: 3, 6: 3}  # system+user, then +assistant+user per turn
    later = [b for b in bodies if len(b["messages"]) == 4]
    assert all(b["messages"][2] == {"role": "assistant", "content": "w0 w1 "} for b in later)


def prompts(path: Path, *texts: str) -> Path:
    path.write_text("".join(json.dumps({"prompt": text}) + "\n" for text in texts))
    return path


def test_a_timeout_is_one_failed_request_never_a_resend(engine: FakeEngine, tmp_path: Path) -> None:
    # The quick first answer leaves a pooled connection, so the held requests go out on a reused
    # one (closed loop) or race it (open loop); either way each is sent once and times out.
    before = len(engine.bodies)
    out = tmp_path / "t"
    result = wave(
        "--url", engine.url, "--model", "fake-model", "--prompts", str(prompts(tmp_path / "p.jsonl", "quick", "hold", "hold")),
        "--concurrency", "1", "--rate", "20", "--num-requests", "3", "--timeout", "0.4", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    engine.settle()
    assert len(engine.bodies) - before == 6  # 2 levels x 3 scheduled requests, each received once
    rows = list(csv.DictReader(io.StringIO((out / "requests.csv").read_text())))
    assert [row["failure"] for row in rows] == ["", "timeout", "timeout"] * 2
    assert all("within 0.4 s" in row["error"] for row in rows if row["failure"])
    for level in json.loads((out / "bench.json").read_text())["levels"]:
        assert level["summary"]["failed"] == 2 and level["summary"]["failure_reasons"] == {"timeout": 2}
    assert "2 timeout" in result.stdout


def test_goodput_and_throughput_over_the_arrival_window_and_the_full_run(
    engine: FakeEngine, tmp_path: Path
) -> None:
    from wavefleet.bench.arrivals import arrival_offsets

    out = tmp_path / "g"
    # 8 arrivals at 40/s (about 0.2 s) and one answer that takes a second: the drain is long.
    result = wave(
        "--url", engine.url, "--model", "fake-model", "--prompts", str(prompts(tmp_path / "p.jsonl", *["a"] * 7, "slow")),
        "--rate", "40", "--num-requests", "8", "--goodput", "ttft:60000", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "bench.json").read_text())["levels"][0]["summary"]
    offsets = arrival_offsets(40, seed=0)
    window = [next(offsets) for _ in range(9)][8]  # the arrivals span up to when a 9th would come
    assert summary["window"] == {"kind": "arrivals", "seconds": pytest.approx(window, abs=1e-9)}
    assert summary["duration_s"] > 1.0 > window
    assert summary["request_goodput_window"] == pytest.approx(8 / window)
    assert summary["request_goodput"] == pytest.approx(8 / summary["duration_s"])
    assert summary["request_throughput_window"] == pytest.approx(8 / window)
    assert "over the arrival window" in result.stdout and "over the run" in result.stdout
    html = (out / "bench.html").read_text()
    assert (
        "goodput req/s (window)" in html and "goodput req/s (full run)" in html and "arrival window" in html
    )


def test_failures_count_as_infinite_in_the_all_requests_percentiles(
    engine: FakeEngine, tmp_path: Path
) -> None:
    out = tmp_path / "f"
    common = ["--url", engine.url, "--model", "fake-model", "--concurrency", "1", "--num-requests", "4"]
    common += ["--timeout", "0.3", "--prompts", str(prompts(tmp_path / "p.jsonl", "a", "hold"))]
    # half the requests time out: over the successes P95 TTFT is small, over all it is infinite
    result = wave(*common, "--criteria", "p95_ttft_ms<60000,p95_ttft_all_ms<60000,p25_ttft_all_ms<60000")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 3 criteria failed: p95_ttft_all_ms<60000" in result.stderr
    assert wave(*common, "--out", str(out)).returncode == 0
    stats = json.loads((out / "bench.json").read_text())["levels"][0]["summary"]["stats"]
    assert stats["ttft_all"]["count"] == 4 and stats["ttft"]["count"] == 2
    # two of four failed: from the median up the percentiles fall on failures (null: infinite)
    assert stats["ttft_all"]["percentiles"]["p95"] is None and stats["ttft_all"]["median"] is None
    assert stats["ttft"]["percentiles"]["p95"] is not None


def test_the_default_url_is_the_gateway_that_wave_up_and_wave_serve_start(repo_root: Path) -> None:
    import re
    from urllib.parse import urlsplit

    from wavefleet.cli.bench import bench
    from wavefleet.cli.up import up
    from wavefleet.gateway.config import GatewayConfig

    default = urlsplit(next(p.default for p in bench.params if p.name == "url"))
    up_port = next(p.default for p in up.params if p.name == "port")
    assert (default.hostname, default.port) == ("127.0.0.1", 8080)
    assert default.port == up_port == GatewayConfig.model_fields["port"].default
    for doc in ("README.md", "docs/bench.md"):
        for line in (repo_root / doc).read_text().splitlines():
            if line.lstrip().startswith("wave bench") and "--url" in line:
                assert re.search(r"--url http://127\.0\.0\.1:8080/v1", line), f"{doc}: {line}"


def test_the_plan_is_announced_before_anything_is_sent(engine: FakeEngine) -> None:
    result = wave("--url", engine.url, "--concurrency", "1,2", "--rate", "50", "--num-requests", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    plan = lines[: next(i for i, line in enumerate(lines) if "TTFT" in line)]
    text = "\n".join(plan)
    assert "3 levels, 15 requests" in text
    assert any("concurrency=1" in line and "5 requests" in line and "ETA" in line for line in plan)
    assert any("rate=50/s" in line and "5 requests arriving over about 0.1 s" in line for line in plan)

    default = wave("--url", engine.url, "--rate", "400", "--input-len", "2", "--output-len", "2")
    assert default.returncode == 0
    assert "200 requests per level (the default; set --num-requests or --duration)" in default.stdout
    assert "arriving over about 0.5 s" in default.stdout


def render(progress: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(progress.bar.make_tasks_table(progress.bar.tasks))
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def test_the_progress_bar_counts_what_it_says(engine: FakeEngine) -> None:
    from rich.console import Console

    from wavefleet.bench.run import ProgressBar

    console = Console(file=io.StringIO(), width=200)
    target, workload = Target(engine.url, "fake-model"), SyntheticWorkload(input_len=2, output_len=2)
    by_count = ProgressBar(console, LoadSpec(concurrency=2, num_requests=6), disabled=False)
    run_load(target, workload, LoadSpec(concurrency=2, num_requests=6), by_count)
    text = render(by_count)
    assert "6/6 requests" in text and "ETA" in text

    load = LoadSpec(rate=40, duration_s=0.5)
    by_time = ProgressBar(console, load, disabled=False)
    result = run_load(target, workload, load, by_time)
    text = render(by_time)
    assert "0.5/0.5 s of arrivals" in text
    assert f"{len(result.records)} requests done" in text and "/0 requests" not in text


def test_the_windows_the_runner_reports(engine: FakeEngine) -> None:
    target, workload = Target(engine.url, "fake-model"), SyntheticWorkload(input_len=2, output_len=2)
    closed = run_load(target, workload, LoadSpec(concurrency=3, num_requests=9))
    assert closed.window is not None and closed.window.kind == "full concurrency"
    # every worker stays busy until the last request is sent; the first to run out ends it
    last_sent = max(r.sent for r in closed.records)
    assert last_sent <= closed.window.end <= max(r.done for r in closed.records)
    assert closed.window.seconds == pytest.approx(closed.window.end - closed.t0)

    timed = run_load(target, workload, LoadSpec(rate=40, duration_s=0.3))
    assert timed.window is not None and timed.window.kind == "arrivals"
    assert timed.window.seconds == pytest.approx(0.3)  # the arrivals' span, even if answers ended sooner


def test_bench_waits_for_a_gateway_that_is_still_starting() -> None:
    """`wave serve ... &` then `wave bench` in one paste: the bench waits for the server to listen."""
    port = free_port()
    late = FakeEngine(port=port)
    late_start = threading.Timer(1.5, late.__enter__)
    late_start.start()
    try:
        result = wave(
            "--url",
            f"http://127.0.0.1:{port}/v1",
            "--concurrency",
            "1",
            "--num-requests",
            "2",
            "--input-len",
            "5",
        )
    finally:
        late_start.join()
        late.__exit__()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting" in result.stderr


def test_bench_says_when_nothing_answers() -> None:
    port = free_port()
    result = wave(
        "--url", f"http://127.0.0.1:{port}/v1", "--concurrency", "1", "--num-requests", "2", "--wait", "1"
    )
    assert result.returncode == 1
    assert f"nothing answers at http://127.0.0.1:{port}/v1" in result.stderr
    assert "wave serve" in result.stderr


@pytest.mark.parametrize(
    ("flag", "value"), [("--concurrency", "1,x"), ("--rate", "0"), ("--percentiles", "50,101")]
)
def test_bad_flags_are_refused_before_waiting_for_the_server(flag: str, value: str) -> None:
    port = free_port()
    result = wave("--url", f"http://127.0.0.1:{port}/v1", "--wait", "30", flag, value)
    assert result.returncode == 2, result.stdout + result.stderr
    assert flag in result.stderr and "nothing answers" not in result.stderr
    assert "waiting" not in result.stderr
