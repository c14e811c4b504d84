"""`wave rollout`: blue-green model updates through the gateway, with real agents over real
llama-server engines (the bundled model at two context sizes is blue and green) and a
deliberately bad green (FlakyOpenAIEngine: a real HTTP engine that fails or is slow, behind the agent)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent_support import needs_llama_server, serving_agent, smol
from helpers import free_port, http_request, invoke_wave, run_wave, start_wave, wait_until, wave_env
from wavefleet.agent.config import resolve_gguf
from wavefleet.errors import UsageError
from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.base import BackendRequest
from wavefleet.gateway.backends.fake import FakeBackend, FakeReply, echo
from wavefleet.gateway.backends.fake_servers import FlakyOpenAIEngine, serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.rollout.live import (
    LiveCriterion,
    Outcome,
    Sample,
    VersionStats,
    Window,
    blue_baseline,
    decided_failure,
    default_min_requests,
    judge,
    parse_live_criteria,
)
from wavefleet.gateway.rollout.split import Split, VersionRouter
from wavefleet.gateway.rollout.state import Phase, Placement, Rollout, Version
from wavefleet.gateway.rollout.store import RolloutStore
from wavefleet.gateway.routing.base import Candidate
from wavefleet.gateway.security.db import connect

BLUE, GREEN = Version(backend="desk", model="chat"), Version(backend="desk", model="chat-v2")


def test_the_split_sends_exactly_the_weight_to_green_and_ranks_blue_after_it() -> None:
    router = VersionRouter()
    router.set_split("chat", Split(blue=BLUE, green=GREEN, weight=20, retry_on_blue=True))
    routes = [router.route("chat") for _ in range(100)]
    to_green = [r for r in routes if r is not None and r[0].model == "chat-v2"]
    assert len(to_green) == 20
    assert all(len(r) == 2 and r[1].model == "chat" for r in to_green)  # a green failure retries on blue
    assert router.route("other") is None  # not under rollout: the routing policy decides
    router.end_split("chat", GREEN)
    assert [c.model for c in router.route("chat") or ()] == ["chat-v2"]


def test_a_green_failure_is_answered_by_blue_even_with_retries_off_in_the_config() -> None:
    def broken(request: BackendRequest) -> FakeReply:
        return FakeReply(500, b'{"error": {"message": "green is broken"}}')

    config = GatewayConfig.model_validate(
        {
            "backends": [{"name": "g", "url": "http://unused:1"}, {"name": "b", "url": "http://unused:2"}],
            "retries": 0,
        }
    )
    versions = VersionRouter()
    green, blue = Version(backend="g", model="m-v2"), Version(backend="b", model="m")
    versions.set_split("m", Split(blue=blue, green=green, weight=100, retry_on_blue=True))
    backends = {"g": FakeBackend("g", broken), "b": FakeBackend("b", echo)}
    with serve_in_thread(create_app(config, backends=backends, versions=versions)) as server:
        code, headers, body = http_request(
            "POST",
            f"{server.url}/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert (code, headers["x-wave-backend"]) == (200, "b"), body
    assert json.loads(body)["model"] == "m"  # blue's own model entry answered
    stats = versions.stats(green).summary(since=0)
    assert stats["failed"] == 1  # green's failure counts against it, unseen by the client


def test_aliases_and_groups_of_a_model_under_rollout_follow_its_split_and_its_promotion() -> None:
    config = GatewayConfig.model_validate(
        {
            "backends": [{"name": "g", "url": "http://unused:1"}, {"name": "b", "url": "http://unused:2"}],
            "aliases": {"assistant": "m"},
            "groups": {"best": ["assistant", "other"]},
        }
    )
    versions = VersionRouter()
    green, blue = Version(backend="g", model="m-v2"), Version(backend="b", model="m")
    versions.set_split("m", Split(blue=blue, green=green, weight=50, retry_on_blue=True))
    backends = {"g": FakeBackend("g", echo, ["m-v2"]), "b": FakeBackend("b", echo, ["m", "other"])}

    def answered_by(server_url: str, model: str) -> str:
        code, headers, body = http_request(
            "POST",
            f"{server_url}/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert code == 200, body
        return headers["x-wave-backend"]

    with serve_in_thread(create_app(config, backends=backends, versions=versions)) as server:
        for name in ("m", "assistant", "best"):
            seen = [answered_by(server.url, name) for _ in range(10)]
            assert seen.count("g") == 5, (name, seen)  # green's 50 % whatever name the client used
        # each green answer counts for green's verdict (recorded as its reply ends)
        wait_until(lambda: versions.stats(green).total == 15, timeout_s=5)
        versions.end_split("m", green)
        for name in ("m", "assistant", "best"):  # promoted: every name reaches green alone
            assert {answered_by(server.url, name) for _ in range(4)} == {"g"}, name


def test_a_request_counts_in_the_window_it_began_in_not_the_one_it_ended_in() -> None:
    """A step's verdict must not see requests sent before it (in a swap, those that waited for
    green to load): samples are timed by when the request arrived."""

    async def slow(request: BackendRequest) -> FakeReply:
        await asyncio.sleep(0.6)
        return FakeReply.chat("late", model="m-v2")

    config = GatewayConfig.model_validate({"backends": [{"name": "g", "url": "http://unused:1"}]})
    versions = VersionRouter()
    green = Version(backend="g", model="m-v2")
    versions.set_split("m", Split(blue=green, green=green, weight=100, retry_on_blue=False))
    engine = FakeBackend("g", slow)
    with serve_in_thread(create_app(config, backends={"g": engine}, versions=versions)) as server:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        asked = threading.Thread(
            target=http_request, args=("POST", f"{server.url}/v1/chat/completions", body)
        )
        asked.start()
        # the request is in flight: a step that begins now must not count it
        wait_until(lambda: engine.requests, timeout_s=5)
        step_began = time.monotonic()
        asked.join(timeout=10)
    stats = versions.stats(green)
    assert stats.total == 1
    assert stats.count(since=step_began) == 0


def test_live_criteria_take_bench_syntax_and_ratios_and_refuse_what_is_not_measured() -> None:
    criteria = parse_live_criteria("error_rate<0.05,ratio.p95_ttft_ms<1.5")
    checks = judge(criteria, {"error_rate": 0.2, "p95_ttft_ms": 300.0}, {"p95_ttft_ms": 100.0})
    assert [(c.passed, c.value) for c in checks] == [(False, 0.2), (False, 3.0)]
    with pytest.raises(UsageError, match="not measured live"):
        parse_live_criteria("output_tps>10")
    with pytest.raises(UsageError, match="unknown metric"):
        parse_live_criteria("p95_speed_ms<3")


def test_a_version_summary_gives_error_rate_and_latency_statistics_of_its_window() -> None:
    stats = VersionStats()
    for at, ok, ttft in ((1.0, True, 0.1), (2.0, True, 0.3), (3.0, False, None), (4.0, True, 0.2)):
        stats.add(Sample(at=at, ok=ok, ttft_s=ttft, tpot_s=0.01 if ok else None, e2el_s=0.5 if ok else None))
    window = stats.summary(since=2.0)
    assert window["completed"] == 2 and window["failed"] == 1
    assert window["error_rate"] == pytest.approx(1 / 3)
    assert window["max_ttft_ms"] == pytest.approx(300) and window["mean_e2el_ms"] == pytest.approx(500)
    assert window["p50_tpot_ms"] == pytest.approx(10)


def test_failures_that_break_the_error_rate_whatever_comes_next_end_the_step_early() -> None:
    criteria = parse_live_criteria("error_rate<0.05,ratio.p95_ttft_ms<2")
    # 1 failure of 3 requests, 10 needed: even 7 more successes leave 10 %, over 5 %
    assert decided_failure(criteria, failed=1, count=3, min_requests=10)
    # 1 failure of 3, 30 needed: 27 successes could bring it to 3.3 %: not decided yet
    assert not decided_failure(criteria, failed=1, count=3, min_requests=30)
    assert not decided_failure(criteria, failed=0, count=50, min_requests=10)
    assert not decided_failure(parse_live_criteria("p95_ttft_ms<100"), failed=5, count=5, min_requests=5)


def _recorded(
    share_every: int, *, rate: float, seconds: float, fail_every: int = 0, ttft_s: float = 0.1
) -> list[Sample]:
    """Green's samples from `rate` requests/s for `seconds`, green getting every `share_every`-th one
    (10 % share: every 10th); every `fail_every`-th green request fails."""
    samples, n = [], 0
    for i in range(int(rate * seconds)):
        if (i + 1) % share_every:
            continue
        n += 1
        ok = not (fail_every and n % fail_every == 0)
        samples.append(Sample(at=i / rate, ok=ok, ttft_s=ttft_s if ok else None, tpot_s=None, e2el_s=None))
    return samples


def _replay(
    window: Window, criteria: list[LiveCriterion], samples: list[Sample], *, until: float
) -> tuple[Outcome, float]:
    """The window's decision at each recorded arrival (and every 0.5 s between), as the controller polls."""
    stats, pending, now = VersionStats(), list(samples), 0.0
    while now <= until:
        while pending and pending[0].at <= now:
            stats.add(pending.pop(0))
        outcome = window.decide(criteria, stats, now)
        if outcome is not Outcome.WAIT:
            return outcome, now
        now = round(now + 0.5, 3)
    return Outcome.WAIT, now


def test_the_default_minimum_tells_a_two_percent_budget_from_twenty_percent() -> None:
    # 21 requests: a green failing 20 % shows a failure in them with 99 % probability (0.8**21 < 0.01),
    # and one failure among 21 (4.8 %) already breaks a 2 % budget
    assert default_min_requests(parse_live_criteria("error_rate<0.02,ratio.p95_ttft_ms<2")) == 21
    assert 0.8**21 < 0.01 < 0.8**20
    # no error-rate budget: enough requests for a P95 that is not just the slowest one
    assert default_min_requests(parse_live_criteria("ratio.p95_ttft_ms<2")) == 10
    assert default_min_requests(parse_live_criteria("error_rate<0.05")) == 10


def test_at_one_request_a_second_a_20pct_failing_green_fails_its_first_window_at_its_first_failure() -> None:
    criteria = parse_live_criteria("error_rate<0.02,ratio.p95_ttft_ms<2")
    window = Window(began=0.0, bake_s=5.0, max_bake_s=600.0, min_requests=default_min_requests(criteria))
    # 10 % share of 1 request/s: one green request every 10 s, every fifth fails (its fifth, at 49 s)
    outcome, at = _replay(window, criteria, _recorded(10, rate=1, seconds=600, fail_every=5), until=600)
    assert (outcome, at) == (Outcome.FAILED, 49.0)
    # well inside the window's evidence: 21 green requests take 210 s at this rate
    assert at < window.began + 21 * 10


def test_a_window_lasts_until_both_its_time_and_its_requests_are_in() -> None:
    criteria = parse_live_criteria("error_rate<0.02,ratio.p95_ttft_ms<2")
    window = Window(began=0.0, bake_s=5.0, max_bake_s=600.0, min_requests=21)
    # a 3x slower green fails no request: its verdict comes when its 21st request is in (209 s), not at 5 s
    outcome, at = _replay(window, criteria, _recorded(10, rate=1, seconds=600, ttft_s=0.3), until=600)
    assert (outcome, at) == (Outcome.JUDGE, 209.0)
    # plenty of traffic: the time is what is missing, and the window ends at its bake
    outcome, at = _replay(window, criteria, _recorded(1, rate=20, seconds=60), until=60)
    assert (outcome, at) == (Outcome.JUDGE, 5.0)


def test_a_window_without_enough_traffic_ends_at_its_maximum_saying_so() -> None:
    criteria = parse_live_criteria("error_rate<0.02")
    window = Window(began=100.0, bake_s=5.0, max_bake_s=60.0, min_requests=21)
    outcome, at = _replay(
        window, criteria, [Sample(at=110.0, ok=True, ttft_s=0.1, tpot_s=None, e2el_s=None)], until=400
    )
    assert (outcome, at) == (Outcome.NOT_ENOUGH_TRAFFIC, 160.0)
    # a maximum shorter than the bake is the bake
    short = Window(began=0.0, bake_s=30.0, max_bake_s=10.0, min_requests=21)
    assert _replay(short, criteria, [], until=100) == (Outcome.NOT_ENOUGH_TRAFFIC, 30.0)


@contextmanager
def gateway(
    agent_url: str, db: Path, *, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`wave serve` with agent `desk` at `agent_url` and its rollouts in `db` (wave.yaml beside it);
    SIGTERM at the end unless the test killed it."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    config = db.parent / "wave.yaml"
    config.write_text(
        json.dumps({"agents": [{"name": "desk", "url": agent_url}], "rollout": {"db": str(db)}})
    )
    env = wave_env()
    env.pop("WAVE_AGENT_SECRET", None)
    env.pop("WAVE_DB", None)
    with tempfile.TemporaryFile(mode="w+") as log:
        process = start_wave(
            "serve", "--port", str(port), "--config", str(config), env=env, stdout=log, stderr=log
        )

        def up() -> bool:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"wave serve exited: {log.read()}")
            code, _, body = http_request("GET", f"{url}/health", timeout=2) if _open(port) else (0, {}, b"")
            return code == 200 and "chat" in json.loads(body)["backends"]["desk"]["models"]

        try:
            wait_until(up, timeout_s=60, interval_s=0.1, message="wave serve did not start")
            yield url, process
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
            log.seek(0)
            print(log.read()[-6000:])  # shown by pytest when the test fails


def _open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class Load:
    """Streamed chat requests for `chat`, one after another on a thread, counting what clients see."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 3,
            "stream": True,
        }
        while not self._stop.is_set():
            try:
                code, _, reply = http_request("POST", f"{self.url}/v1/chat/completions", body, timeout=60)
            except OSError as exc:
                self.failed.append(str(exc))
                continue
            if code == 200 and b"[DONE]" in reply and b'"error"' not in reply:
                self.ok += 1
            else:
                self.failed.append(f"{code}: {reply[:200]!r}")


def status(url: str) -> dict[str, Any]:
    code, _, body = http_request("GET", f"{url}/admin/v1/rollouts")
    assert code == 200, body
    found: dict[str, Any] = json.loads(body)
    return found


def ended(url: str, rollout: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in status(url)["recent"]
            if r["id"] == rollout and r["phase"] in ("done", "rolled-back", "aborted")
        ),
        None,
    )


def events(db: Path) -> list[tuple[str, str]]:
    connection = connect(db)
    try:
        return [(a, o) for a, o in connection.execute("SELECT action, outcome FROM events ORDER BY id")]
    finally:
        connection.close()


def served(db: Path) -> dict[str, Version]:
    connection = connect(db)
    try:
        return RolloutStore(connection).served()
    finally:
        connection.close()


def start(url: str, *args: str) -> str:
    result = run_wave("rollout", "start", "chat", "--gateway", url, *args, env=wave_env())
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[1].rstrip(":")


@pytest.mark.slow
def test_a_good_green_is_promoted_and_blue_drained_with_no_failed_request(tmp_path: Path) -> None:
    needs_llama_server()
    db = tmp_path / "wave.db"
    with serving_agent(tmp_path / "desk", [smol("chat", 256), smol("chat-v2", 512)]) as agent:
        with gateway(agent.url, db) as (url, _), Load(url) as load:
            wait_until(lambda: load.ok >= 2, timeout_s=120, message="blue never answered")
            # bad input: clear errors, non-zero exit
            unknown = run_wave("rollout", "start", "nope", "--to", "chat-v2", "--gateway", url)
            assert unknown.returncode != 0 and "not served here" in " ".join(unknown.stderr.split())
            missing = run_wave("rollout", "start", "chat", "--to", "chat-v9", "--gateway", url)
            assert (
                missing.returncode != 0
                and "no fleet agent has a model entry 'chat-v9' (by name or GGUF file)"
                in " ".join(missing.stderr.split())
            )
            rollout = start(url, "--to", "desk/chat-v2", "--canary", "50,100", "--bake", "2s",
                            "--min-requests", "2", "--criteria", "error_rate<0.05", "--expect", "Say hello.=>hello")  # fmt: skip
            again = run_wave("rollout", "start", "chat", "--to", "chat-v2", "--gateway", url)
            assert again.returncode != 0 and "is under way" in " ".join(again.stderr.split())
            final = wait_until(lambda: ended(url, rollout), timeout_s=240, interval_s=0.2)
        assert final["phase"] == "done", final
        assert final["placement"]["mode"] == "beside"
        assert [v["step"] for v in final["verdicts"]] == ["smoke", "canary 50%", "canary 100%"]
        assert final["verdicts"][1]["green"]["completed"] >= 2
        assert load.failed == [] and load.ok > 0
        assert agent.model("chat")["state"] == "stopped"  # blue drained and unloaded
        assert agent.model("chat-v2")["state"] == "ready"
    actions = [a for a, _ in events(db)]
    for action in (
        "rollout.start",
        "rollout.place",
        "rollout.smoke",
        "rollout.verdict",
        "rollout.promote",
        "rollout.done",
    ):
        assert action in actions
    assert served(db) == {"chat": GREEN}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("bad", "retry"),
    [({"fail_every": 5}, True), ({"slow_s": 1.5}, True), ({"fail_every": 5}, False)],
    ids=["fails-20pct", "3x-slower", "fails-20pct-retries-off"],
)
def test_a_bad_green_is_rolled_back_within_one_bake_with_no_client_visible_failure(
    tmp_path: Path, bad: dict[str, Any], retry: bool
) -> None:
    needs_llama_server()
    db = tmp_path / "wave.db"
    engine = FlakyOpenAIEngine("bad", **bad)
    with (
        serve_in_thread(engine.app()) as server,
        serving_agent(
            tmp_path / "desk", [smol("chat", 256), {"name": "chat-bad", "url": server.url}]
        ) as agent,
    ):
        with gateway(agent.url, db) as (url, _), Load(url) as load:
            wait_until(lambda: load.ok >= 2, timeout_s=120, message="blue never answered")
            waited = run_wave("rollout", "start", "chat", "--gateway", url, "--to", "chat-bad", "--canary", "50,100",
                              "--bake", "3s", "--min-requests", "5", "--criteria", "error_rate<0.05,ratio.p95_ttft_ms<2",
                              "--wait", *([] if retry else ["--no-retry"]), timeout=300)  # fmt: skip
            # --wait follows it to the end and fails the command (a CI build) on a rollback
            assert waited.returncode == 1, waited.stderr
            assert "rolled-back: canary 50% failed" in " ".join(waited.stdout.split())
            rollout = waited.stdout.split()[1].rstrip(":")
            final = wait_until(lambda: ended(url, rollout), timeout_s=10, interval_s=0.2)
        assert final["phase"] == "rolled-back", final
        verdicts = final["verdicts"]
        assert [v["step"] for v in verdicts] == ["smoke", "canary 50%"]  # within the first bake
        assert not verdicts[-1]["passed"]
        assert engine.seen > 2  # the smoke test's and the canary's
        if retry:
            assert load.failed == [], load.failed[:3]
        else:  # what the retry on blue saves clients from
            assert load.failed and all(f.startswith("500") for f in load.failed), load.failed[:3]
        assert agent.model("chat")["state"] == "ready"
    assert ("rollout.rollback", "failed") in events(db)
    assert served(db) == {"chat": BLUE}


@pytest.mark.slow
def test_a_gateway_killed_mid_canary_resumes_the_rollout_after_restart(tmp_path: Path) -> None:
    needs_llama_server()
    db = tmp_path / "wave.db"
    port = free_port()
    with serving_agent(tmp_path / "desk", [smol("chat", 256), smol("chat-v2", 512)]) as agent:
        with gateway(agent.url, db, port=port) as (url, process):
            green_file = str(resolve_gguf("bundled:smollm2"))  # chat-v2's file: the entry that is not blue
            rollout = start(url, "--to", green_file, "--canary", "100", "--bake", "60s", "--min-requests", "0",
                            "--criteria", "error_rate<0.05")  # fmt: skip
            wait_until(
                lambda: (status(url)["active"] or {}).get("phase") == "canary", timeout_s=120, interval_s=0.2
            )
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        connection = connect(db)
        record = RolloutStore(connection).active()
        assert [(r.id, r.phase.value) for r in record] == [(rollout, "canary")]
        # the rollout's saved bake is 60 s; shorten it in the record so the resumed step ends soon
        shortened = record[0].model_copy(update={"bake_s": 1.0})
        connection.execute(
            "UPDATE rollouts SET record = ? WHERE id = ?", (shortened.model_dump_json(), rollout)
        )
        connection.close()
        with gateway(agent.url, db, port=port) as (url, _):
            final = wait_until(lambda: ended(url, rollout), timeout_s=120, interval_s=0.2)
            assert final["phase"] == "done", final
            code, headers, _ = http_request(
                "POST", f"{url}/v1/chat/completions",
                {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}, timeout=60,
            )  # fmt: skip
            assert code == 200
        assert agent.model("chat")["state"] == "stopped"
        assert agent.model("chat-v2")["state"] == "ready"
    assert ("rollout.resume", "ok") in events(db)
    assert served(db) == {"chat": GREEN}


@pytest.mark.slow
def test_green_that_does_not_fit_beside_blue_is_swapped_in_and_requests_wait_instead_of_failing(
    tmp_path: Path,
) -> None:
    needs_llama_server()
    db = tmp_path / "wave.db"
    # each entry's estimate is about 140 MiB: one fits in 200 MiB, two do not
    with serving_agent(
        tmp_path / "desk", [smol("chat", 256), smol("chat-v2", 512)], budget="200MiB"
    ) as agent:
        with gateway(agent.url, db) as (url, _), Load(url) as load:
            wait_until(lambda: load.ok >= 2, timeout_s=120, message="blue never answered")
            rollout = start(url, "--to", "chat-v2", "--canary", "100", "--bake", "2s", "--min-requests", "2",
                            "--criteria", "error_rate<0.05")  # fmt: skip
            final = wait_until(lambda: ended(url, rollout), timeout_s=240, interval_s=0.2)
        assert final["phase"] == "done", final
        assert final["placement"]["mode"] == "swap", final["placement"]
        assert "blue is drained first" in final["placement"]["why"]
        assert load.failed == [], load.failed[:3]
        assert agent.model("chat")["state"] == "stopped"
        assert agent.model("chat-v2")["state"] == "ready"
    assert served(db) == {"chat": GREEN}


@pytest.mark.slow
def test_abort_rolls_back_to_blue_and_says_who(tmp_path: Path) -> None:
    needs_llama_server()
    db = tmp_path / "wave.db"
    with serving_agent(tmp_path / "desk", [smol("chat", 256), smol("chat-v2", 512)]) as agent:
        with gateway(agent.url, db) as (url, _):
            rollout = start(url, "--to", "chat-v2", "--canary", "50,100", "--bake", "120s")
            wait_until(
                lambda: (status(url)["active"] or {}).get("phase") == "canary", timeout_s=120, interval_s=0.2
            )
            metrics = http_request("GET", f"{url}/metrics")[2].decode()
            assert 'wave_rollout_green_weight_percent{model="chat",phase="canary"} 50.0' in metrics
            assert (
                'wave_rollout_version_requests{model="chat",outcome="failed",version="green"} 0.0' in metrics
            )
            aborted = run_wave("rollout", "abort", "--gateway", url)
            assert aborted.returncode == 0, aborted.stderr
            final = wait_until(lambda: ended(url, rollout), timeout_s=60, interval_s=0.2)
            assert final["phase"] == "aborted" and final["reason"].startswith("aborted by"), final
            again = run_wave("rollout", "abort", "--gateway", url)
            assert again.returncode != 0 and "no rollout is under way" in " ".join(again.stderr.split())
            shown = run_wave("rollout", "status", "--gateway", url)
            assert shown.returncode == 0 and f"{rollout} chat: aborted" in shown.stdout
        assert agent.model("chat-v2")["state"] == "stopped"
    assert served(db) == {"chat": BLUE}


@pytest.mark.parametrize(
    ("args", "told"),
    [
        (["--canary", "10,5"], "give rising percents that end at 100"),
        (["--canary", "10,50"], "give rising percents that end at 100"),
        (["--bake", "soon"], "--bake 'soon': give a duration"),
        (["--max-bake", "0s"], "--max-bake '0s': give a duration"),
        (["--criteria", "output_tps>3"], "output_tps is not measured live"),
        (["--expect", "no arrow"], "write PROMPT=>SUBSTRING"),
    ],
)
def test_bad_rollout_options_are_named_before_the_gateway_is_asked(args: list[str], told: str) -> None:
    result = invoke_wave(
        "rollout", "start", "chat", "--to", "chat-v2", "--gateway", "http://127.0.0.1:9", *args
    )
    assert isinstance(result.exception, UsageError)  # `wave` exits 2 with its message
    assert told in str(result.exception)


def test_an_unreachable_gateway_is_named_with_the_fix() -> None:
    result = invoke_wave("rollout", "status", "--gateway", f"http://127.0.0.1:{free_port()}")
    assert isinstance(result.exception, UsageError)
    assert "cannot reach the gateway" in str(result.exception) and "WAVE_GATEWAY" in str(result.exception)


@pytest.mark.parametrize(
    ("phase", "step_index", "outcome", "serving"),
    [
        (Phase.PLACING, 0, "rolled-back", BLUE),
        (Phase.SMOKE, 0, "rolled-back", BLUE),
        (Phase.CANARY, 1, "done", GREEN),
        (Phase.PROMOTING, 1, "done", GREEN),
        (Phase.DRAINING, 1, "done", GREEN),
        (Phase.ROLLING_BACK, 0, "rolled-back", BLUE),
    ],
    ids=lambda v: v.value if isinstance(v, Phase) else None,
)
def test_a_gateway_started_on_a_rollout_saved_in_any_phase_ends_it_with_one_version_serving(
    tmp_path: Path, phase: Phase, step_index: int, outcome: str, serving: Version
) -> None:
    """The record a gateway killed in `phase` left behind (promoting and draining last
    milliseconds, too short to catch with a SIGKILL): a gateway started on it resumes or rolls
    back, and afterwards every request for the model reaches one version."""
    db = tmp_path / "wave.db"
    blue, green = FlakyOpenAIEngine("blue"), FlakyOpenAIEngine("green")
    record = Rollout(
        model="chat", blue=BLUE, green=GREEN, actor="crash-test", steps=[50, 100], bake_s=0.3,
        criteria="error_rate<0.05", drain_timeout_s=1, min_requests=0, phase=phase, step_index=step_index,
        placement=None if phase is Phase.PLACING else Placement(mode="beside", why="saved by the test"),
    )  # fmt: skip
    connection = connect(db)
    RolloutStore(connection).save(record)
    connection.close()
    with (
        serve_in_thread(blue.app()) as blue_url,
        serve_in_thread(green.app()) as green_url,
        serving_agent(
            tmp_path / "desk",
            [{"name": "chat", "url": blue_url.url}, {"name": "chat-v2", "url": green_url.url}],
        ) as agent,
        gateway(agent.url, db) as (url, _),
    ):
        final = wait_until(lambda: ended(url, record.id), timeout_s=60, interval_s=0.1)
        assert final["phase"] == outcome, final
        assert status(url)["served"] == {"chat": str(serving)}
        before = (blue.seen, green.seen)
        for _ in range(4):
            code, _, body = http_request(
                "POST", f"{url}/v1/chat/completions",
                {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
            )  # fmt: skip
            assert code == 200, body
        grown = (blue.seen - before[0], green.seen - before[1])
        assert grown == ((4, 0) if serving == BLUE else (0, 4))
    assert served(db) == {"chat": serving}
    assert ("rollout.resume", "ok") in events(db)


def test_in_a_swap_blue_is_judged_against_its_requests_from_before_the_swap() -> None:
    """Blue takes no traffic beside green in a swap: its last requests before the rollout are the
    baseline ratio criteria compare green with, and the verdict says so."""
    router = VersionRouter()
    for i in range(20):  # blue serving as usual, no rollout yet
        router.observe(Candidate(BLUE.backend, BLUE.model), at=float(i), ok=True, ttft_s=0.1)
    router.set_split("chat", Split(blue=BLUE, green=GREEN, weight=100, retry_on_blue=True))
    for i in range(10):  # green alone, three and a half times slower
        router.observe(Candidate(GREEN.backend, GREEN.model), at=100.0 + i, ok=True, ttft_s=0.35)
    criteria = parse_live_criteria("error_rate<0.02,ratio.p95_ttft_ms<2")
    green = router.stats(GREEN).summary(100.0)
    blue, basis = blue_baseline(router.stats(BLUE), since=100.0)
    assert basis == "blue's last 20 requests before the rollout"
    checks = judge(criteria, green, blue)
    assert [(c.name, c.passed, c.value) for c in checks][1] == ("ratio.p95_ttft_ms<2", False, 3.5)
    # beside green, blue's own requests in the rollout are its baseline
    router.observe(Candidate(BLUE.backend, BLUE.model), at=101.0, ok=True, ttft_s=0.2)
    assert blue_baseline(router.stats(BLUE), since=100.0)[1] == "blue's 1 requests since the rollout began"
    # no baseline at all (a gateway restarted in a swap): ratio criteria say they were not evaluated
    empty, basis = blue_baseline(VersionRouter().stats(BLUE), since=100.0)
    assert basis == "no blue requests: ratio criteria not evaluated"
    ratio = judge(criteria, green, empty)[1]
    assert ratio.passed and ratio.detail == "not evaluated: blue has no requests to compare with"
