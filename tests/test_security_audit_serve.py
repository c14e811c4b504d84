"""The audit trail of a real `wave serve` process: hostile bytes, /health, and the README's
`wave serve --audit` / `wave audit` pair."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reliability_support as support  # tests/ is on pytest's pythonpath
from helpers import chat_body, http_request, run_wave

STATIC = "sk-local-0123456789abcdef"


def chat(model: str = "m") -> dict[str, Any]:
    return chat_body("hi", model=model, max_tokens=4)


def rows_in(db: Path, at_least: int, within_s: float = 10.0) -> list[tuple[Any, ...]]:
    """The audit rows once `at_least` are there, or what is there after `within_s`."""
    deadline = time.monotonic() + within_s
    while True:
        rows = (
            sqlite3.connect(db).execute("SELECT request_id, principal, model, status FROM audit").fetchall()
        )
        if len(rows) >= at_least or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.fixture
def engine() -> Iterator[support.EngineProcess]:
    engine = support.EngineProcess("a", "--tokens", "3")
    try:
        yield engine
    finally:
        engine.stop()


def test_a_non_utf8_request_id_does_not_stop_the_audit_trail(
    tmp_path: Path, engine: support.EngineProcess
) -> None:
    db = tmp_path / "audit.db"
    gateway = support.GatewayProcess(
        "--backend", f"a={engine.url}", "--audit-db", str(db), "--api-key", STATIC, log=tmp_path / "gw.log"
    )
    try:
        # http.client sends header values as latin-1: this is the raw byte 0xff, and no key
        status, _, _ = http_request(
            "POST", gateway.url + "/v1/chat/completions", {}, {"x-request-id": "\xff"}
        )
        assert status == 401
        keyed = {"Authorization": f"Bearer {STATIC}"}
        rows = rows_in(db, 1)
        statuses = [
            http_request("POST", gateway.url + "/v1/chat/completions", chat(), keyed)[0] for _ in range(3)
        ]
        assert statuses == [200, 200, 200]
        # a lone surrogate in the model name, as JSON allows it
        http_request("POST", gateway.url + "/v1/chat/completions", json.dumps(chat("\udc80")).encode(), keyed)
        rows = rows_in(db, 5)
        health_status, _, health_body = http_request("GET", gateway.url + "/health")
    finally:
        gateway.stop()
    assert len(rows) == 5, rows
    assert rows[0][:2] == ("\\udcff", "unauthenticated")
    assert [r[3] for r in rows[1:4]] == [200, 200, 200]
    assert rows[4][2] == "\\udc80"
    health = json.loads(health_body)
    assert health_status == 200 and health["status"] == "ok" and health["parts"]["audit"]["ok"] is True
    assert health["parts"]["audit"]["dropped"] == 0


def test_the_readme_pair_serve_audit_then_wave_audit_finds_the_row(
    tmp_path: Path, engine: support.EngineProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wave serve --audit` and `wave audit`, neither given a path, use the same database."""
    monkeypatch.delenv("WAVE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    gateway = support.GatewayProcess("--backend", f"a={engine.url}", "--audit")
    try:
        status, _, _ = http_request(
            "POST", gateway.url + "/v1/chat/completions", chat(), {"x-request-id": "readme-pair"}
        )
        assert status == 200
        deadline = time.monotonic() + 15
        while True:
            done = run_wave("audit", "--since", "1h", "--format", "jsonl", timeout=60)
            found = [json.loads(line) for line in done.stdout.splitlines()]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        gateway.stop()
    assert done.returncode == 0, done.stderr
    assert [(r["request_id"], r["status"]) for r in found] == [("readme-pair", 200)]
    assert (tmp_path / "data" / "wavefleet" / "wave.db").exists()
