"""/health: backend errors (which name internal URLs) only for callers with a valid key, and the
audit writer's state, which fails /health when the writer stops."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wavefleet.gateway.app import create_app
from wavefleet.gateway.backends.fake_servers import serve_in_thread
from wavefleet.gateway.config import GatewayConfig
from wavefleet.gateway.monitor.snapshot import StaticMonitor
from wavefleet.gateway.security.audit import AuditRecord
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.gate import SecurityGate
from wavefleet.gateway.security.keys import KeyStore
from wavefleet.gateway.security.settings import SecurityConfig

KEY = "sk-test-0123456789"
INTERNAL = "cannot connect to http://10.0.0.5:8000 (ClientConnectorError: Connect call failed)"


def get(url: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextmanager
def gateway(security: SecurityGate | None = None) -> Iterator[str]:
    monitor = StaticMonitor()
    monitor.set("a", healthy=False, error=INTERNAL)
    config = GatewayConfig.model_validate(
        {
            "backends": [
                {"name": "a", "url": "http://10.0.0.5:8000", "models": ["m1"]},
                {"name": "b", "url": "http://10.0.0.6:8000", "models": ["m2"]},
            ],
            "api_keys": [{"key": KEY}],
        }
    )
    with serve_in_thread(create_app(config, monitor, security=security)) as server:
        yield server.url


def test_health_shows_backend_errors_only_to_callers_with_a_key() -> None:
    with gateway() as url:
        anonymous = get(f"{url}/health")
        wrong = get(f"{url}/health", "sk-wrong-key-000000")
        keyed = get(f"{url}/health", KEY)
    for status, body in (anonymous, wrong):
        assert status == 200 and body["status"] == "degraded"
        assert body["backends"]["a"]["healthy"] is False and body["backends"]["b"]["healthy"] is True
        assert "10.0.0.5" not in json.dumps(body) and "error" not in body["backends"]["a"]
    assert keyed[1]["backends"]["a"]["error"] == INTERNAL


def test_health_with_the_security_layer_shows_errors_to_stored_and_static_keys(tmp_path: Path) -> None:
    db = tmp_path / "wave.db"
    stored = KeyStore(connect(db)).create("ops").secret
    gate = SecurityGate.build(SecurityConfig(db=db), [KEY])
    with gateway(gate) as url:
        anonymous = get(f"{url}/health")
        wrong = get(f"{url}/health", "wave-00000000_nope")
        by_stored = get(f"{url}/health", stored)
        by_static = get(f"{url}/health", KEY)
    assert "10.0.0.5" not in json.dumps(anonymous[1]) and "10.0.0.5" not in json.dumps(wrong[1])
    assert by_stored[1]["backends"]["a"]["error"] == INTERNAL
    assert by_static[1]["backends"]["a"]["error"] == INTERNAL


class _Poison:
    """A value whose conversion for SQLite raises what no `except Exception` catches."""

    def __conform__(self, protocol: object) -> object:
        raise SystemExit("poisoned row")


def _row(model: object) -> AuditRecord:
    return AuditRecord(
        time.time(),
        "r",
        "static",
        "127.0.0.1",
        "POST",
        "/v1/chat/completions",
        model,
        None,
        200,
        None,
        None,
        None,
        1.0,
        "",
    )  # type: ignore[arg-type]


def test_a_stopped_audit_writer_fails_health_and_metrics(tmp_path: Path) -> None:
    gate = SecurityGate.build(
        SecurityConfig(audit=True, audit_db=tmp_path / "audit.db", audit_interval_s=0.02), [KEY]
    )
    assert gate.audit is not None
    with gateway(gate) as url:
        before = get(f"{url}/health", KEY)
        gate.audit.record(_row(_Poison()))
        deadline = time.monotonic() + 5
        while (after := get(f"{url}/health", KEY))[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.02)
        anonymous = get(f"{url}/health")
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
            metrics = reply.read().decode()
    assert before[1]["parts"]["audit"]["ok"] is True
    status, body = after
    assert status == 503 and body["status"] == "failing"
    assert body["parts"]["audit"]["state"] == "stopped" and "poisoned row" in body["parts"]["audit"]["error"]
    assert anonymous[0] == 503 and anonymous[1]["parts"]["audit"] == {
        "ok": False,
        "state": "stopped",
        "written": 0,
        "pending": 0,
        "dropped": 0,
        "lost": 0,
    }
    assert "wave_audit_writer_up 0.0" in metrics and "wave_audit_rows_dropped_total 0.0" in metrics
