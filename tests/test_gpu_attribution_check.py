"""scripts/gpu/attribution_check.py's parts that need no GPU: reading llama-server's stream, and
recording, saving and replaying a run (of the synthetic GPU) under every scheme side by side."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pynvml
import pytest

from wavefleet.telemetry.fake_nvml import RECORDINGS, FakeNvml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu" / "attribution_check.py"


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("attribution_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Completion(BaseHTTPRequestHandler):
    """llama-server's /completion stream: a token with no text, two tokens, then its timings."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        timings = {
            "prompt_n": 7,
            "predicted_n": 3,
            "prompt_ms": 12.5,
            "prompt_per_second": 560.0,
            "predicted_per_second": 40.0,
        }
        for event in (
            {"content": "", "stop": False},
            {"content": "a", "stop": False},
            {"content": "b", "stop": False},
            {"content": "", "stop": True, "timings": timings},
        ):
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Completion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_every_streamed_token_is_timed_and_the_first_one_is_the_first_token(
    check: ModuleType, engine: str
) -> None:
    done = check.complete(engine, "hello", 3, "r", "short-alone", 0)
    assert len(done.token_times) == 3
    assert done.first_token == done.token_times[0]  # a token whose text is empty is a token
    assert done.first_content == done.token_times[1]
    assert done.start <= done.first_token <= done.end
    assert (done.prompt_tokens, done.completion_tokens, done.prompt_ms) == (7, 3, 12.5)


def test_a_synthetic_run_is_saved_with_its_raw_readings_and_replays_to_the_same_figures(
    check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check.main(["--synthetic", "--repeats", "2", "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "attribution.json").read_text())
    assert len(saved["readings"]) > 1000 and all(len(r) == 3 for r in saved["readings"])
    assert {len(r["token_times"]) for r in saved["requests"]} == {16, 768}
    assert set(saved["results"]) == {"spread", "streamed", "pooled"}
    assert saved["goals"]["spread"]["ratio_within_15pct"] is False
    assert saved["goals"]["pooled"] == {"closure_within_2pct": True, "ratio_within_15pct": True}
    printed = capsys.readouterr().out
    assert "spread:" in printed and "pooled:" in printed

    replay = tmp_path / "replay"
    assert check.main(["--replay", str(tmp_path / "run" / "attribution.json"), "--out", str(replay)]) == 0
    again = json.loads((replay / "attribution.json").read_text())
    assert again["results"] == saved["results"]


def test_a_file_without_raw_readings_cannot_be_replayed_and_says_why(
    check: ModuleType, tmp_path: Path
) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"requests": [], "results": {}}))
    with pytest.raises(SystemExit, match="holds no raw readings"):
        check.main(["--replay", str(old), "--out", str(tmp_path / "out")])


class _Engine(BaseHTTPRequestHandler):
    """A llama-server-like /completion that streams `n_predict` tokens, a millisecond apart, on a
    fake GPU that draws more while it answers."""

    nvml: FakeNvml
    running = 0
    lock = threading.Lock()

    def _draw(self, change: int) -> None:
        with self.lock:
            type(self).running += change
            self.nvml.set_draw(0, 60 + 200 * type(self).running)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt_n, made = len(body["prompt"].split()), int(body["n_predict"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self._draw(+1)
        try:
            for _ in range(made):
                time.sleep(0.001)
                self.wfile.write(b'data: {"content": "x", "stop": false}\n\n')
                self.wfile.flush()
        finally:
            self._draw(-1)
        timings = {
            "prompt_n": prompt_n,
            "predicted_n": made,
            "prompt_ms": 1.0,
            "prompt_per_second": prompt_n * 1000.0,
            "predicted_per_second": 500.0,
        }
        self.wfile.write(
            f"data: {json.dumps({'content': '', 'stop': True, 'timings': timings})}\n\n".encode()
        )

    def log_message(self, *args: object) -> None:
        pass


def test_a_live_run_on_a_gpu_records_and_evaluates_every_scheme(
    check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = FakeNvml(RECORDINGS["rtx-4080-super"])
    nvml.set_draw(0, 60)
    fake = ModuleType("pynvml")
    for name in dir(nvml):
        if name.startswith("nvml"):
            setattr(fake, name, getattr(nvml, name))
    fake.NVMLError = pynvml.NVMLError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    handler = type("Engine", (_Engine,), {"nvml": nvml})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        arguments = ["--url", url, "--out", str(tmp_path), "--repeats", "2", "--idle", "0.3", "--gap", "0.2"]
        check.main([*arguments, "--long-words", "300", "--long-predict", "4", "--short-predict", "60"])
    finally:
        server.shutdown()
        server.server_close()
    saved = json.loads((tmp_path / "attribution.json").read_text())
    assert saved["gpu"] == "NVIDIA GeForce RTX 4080 SUPER"
    assert [r["kind"] for r in saved["requests"]].count("long-together") == 2
    assert all(len(r["token_times"]) == r["completion_tokens"] for r in saved["requests"])
    assert set(saved["results"]) == {"spread", "streamed", "pooled"}
    assert all(r["closure_error"] < 1e-9 and len(r["repeats"]) == 2 for r in saved["results"].values())
    assert (tmp_path / "attribution.json").stat().st_size > 0
