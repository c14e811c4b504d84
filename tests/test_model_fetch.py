"""`wave model fetch`: a real aiohttp server on loopback serves a GGUF-shaped file with and without
Range support, drops connections mid-file, lies about checksums; the local-path source too."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import Result

from helpers import free_port, invoke_wave, run_wave, wave_env
from wavefleet.errors import ChecksumError, ModelError, UsageError

PAYLOAD = b"GGUF" + hashlib.sha256(b"seed").digest() * (3 * 2**20 // 32)  # ~3 MiB, GGUF magic first
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class ModelFileServer:
    """Serves `files` on 127.0.0.1 in a thread of its own (the fetch runs its own event loop).

    `ranges` off: Range headers are ignored (a 200 with the whole file). `drops` > 0: that many
    answers for a .gguf stop after `drop_after` bytes and the connection closes (the Content-Length
    promised more). `claim_length` sends that Content-Length instead of the real one.
    """

    def __init__(self, files: dict[str, bytes], *, ranges: bool = True) -> None:
        self.files, self.ranges = files, ranges
        self.drops, self.drop_after = 0, 0
        self.stalls = 0  # answers that go silent after `drop_after` bytes, the connection left open
        self.claim_length: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ModelFileServer:
        self.thread.start()
        app = web.Application()
        app.router.add_get("/{path:.*}", self.handle)
        # handler_cancellation: a handler waiting on a client that left ends with it
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        asyncio.run_coroutine_threadsafe(self.runner.setup(), self.loop).result(10)
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        asyncio.run_coroutine_threadsafe(site.start(), self.loop).result(10)
        port = self.runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, request.headers.get("Range")))
        body = self.files.get(request.path.lstrip("/"))
        if body is None:
            return web.Response(status=404, text="Entry not found")
        start, status, headers = 0, 200, {}
        asked = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if self.ranges and asked:
            start = int(asked[1])
            if start >= len(body):
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        data = body[start:]
        headers["Content-Length"] = str(self.claim_length or len(data))
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if self.claim_length is not None:
            await response.write(data[:4096])
            await asyncio.sleep(30)  # cancelled when the client gives up
        if request.path.endswith(".gguf") and self.stalls > 0:
            self.stalls -= 1
            await response.write(data[: self.drop_after])
            await asyncio.sleep(30)  # silent, connection open; cancelled when the client leaves
        if request.path.endswith(".gguf") and self.drops > 0:
            self.drops -= 1
            await response.write(data[: self.drop_after])
            assert request.transport is not None
            request.transport.close()  # flushes what was written, then the connection ends
            return response
        for at in range(0, len(data), 256 * 1024):
            await response.write(data[at : at + 256 * 1024])
        await response.write_eof()
        return response


@pytest.fixture
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state") / "wave.db"  # beside, not inside, the folders fetched into


def fetch(db: Path, *args: str) -> Result:
    return invoke_wave("model", "fetch", *args, env={"WAVE_DB": str(db), "WAVE_ACTOR": "ci:test-1"})


def events(db: Path) -> list[dict[str, object]]:
    rows = sqlite3.connect(db).execute(
        "SELECT actor, action, subject, outcome, details FROM events ORDER BY id"
    )
    return [
        {"actor": a, "action": b, "subject": c, "outcome": d, "details": json.loads(e)}
        for a, b, c, d, e in rows
    ]


def test_fetches_over_http_verified_by_the_sidecar(tmp_path: Path, db: Path) -> None:
    files = {"m.gguf": PAYLOAD, "m.gguf.sha256": f"{SHA}  m.gguf\n".encode()}
    with ModelFileServer(files) as server:
        done = fetch(db, server.url("m.gguf?token=s3cret"), "--to", str(tmp_path / "models"))
    assert done.exit_code == 0, done.output
    target = tmp_path / "models" / "m.gguf"
    assert target.read_bytes() == PAYLOAD
    assert done.stdout.strip() == str(target)  # the path alone on stdout, for scripts
    assert not (tmp_path / "models" / "m.gguf.part").exists()
    assert "(100%)" in done.stderr  # progress lines in a log (no terminal here)
    (event,) = events(db)
    assert event["actor"] == "ci:test-1" and event["action"] == "model.fetch" and event["outcome"] == "ok"
    assert event["subject"] == str(target)
    details = event["details"]
    assert isinstance(details, dict)
    assert details["sha256"] == SHA and details["bytes"] == len(PAYLOAD)
    assert details["checksum_from"] == server.url("m.gguf.sha256")
    assert "s3cret" not in json.dumps(event)  # a signed URL's token stays out of the trail


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(tmp_path: Path, db: Path) -> None:
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        server.drops, server.drop_after = 1, 1_000_000
        done = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert done.exit_code == 0, done.output
    assert (tmp_path / "m.gguf").read_bytes() == PAYLOAD
    (first, second) = server.requests
    assert first == ("/m.gguf", None)
    assert second[1] is not None
    resumed_at = int(second[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 1_000_000
    assert "resuming" in done.stderr
    details = events(db)[0]["details"]
    assert isinstance(details, dict) and details["resumes"] == 1 and details["restarts"] == 0


def test_a_server_that_goes_silent_mid_file_is_resumed_after_the_read_timeout(
    tmp_path: Path, db: Path
) -> None:
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        server.stalls, server.drop_after = 1, 700_000
        done = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA, "--read-timeout", "1")
    assert done.exit_code == 0, done.output
    assert "no data for 1 s" in done.stderr
    assert server.requests[1][1] is not None and (tmp_path / "m.gguf").read_bytes() == PAYLOAD


def test_a_stopped_run_keeps_its_part_and_the_next_run_resumes_it(tmp_path: Path, db: Path) -> None:
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        server.drops, server.drop_after = 1, 1_500_000
        stopped = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA, "--retries", "0")
        assert isinstance(stopped.exception, ModelError), stopped.output
        assert "run the same command again to resume" in str(stopped.exception)
        part = tmp_path / "m.gguf.part"
        kept = part.stat().st_size
        assert 0 < kept <= 1_500_000 and not (tmp_path / "m.gguf").exists()
        assert part.read_bytes() == PAYLOAD[:kept]
        again = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert again.exit_code == 0, again.output
    assert server.requests[-1] == ("/m.gguf", f"bytes={kept}-")
    assert (tmp_path / "m.gguf").read_bytes() == PAYLOAD and not part.exists()
    first, second = events(db)
    assert first["outcome"] == "error" and "stopped" in str(first["details"])
    assert isinstance(second["details"], dict) and second["details"]["resumed_from"] == kept


def test_a_server_that_ignores_range_sends_the_file_again_from_the_start(tmp_path: Path, db: Path) -> None:
    with ModelFileServer({"m.gguf": PAYLOAD}, ranges=False) as server:
        server.drops, server.drop_after = 1, 1_000_000
        done = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert done.exit_code == 0, done.output
    assert server.requests[1][1] is not None  # it asked for the rest ...
    assert "ignores Range" in done.stderr  # ... got the whole file, and took it from byte 0
    assert (tmp_path / "m.gguf").read_bytes() == PAYLOAD
    details = events(db)[0]["details"]
    assert isinstance(details, dict) and details["restarts"] == 1


def test_a_bad_checksum_deletes_the_part_and_leaves_the_users_file(tmp_path: Path, db: Path) -> None:
    mine = tmp_path / "m.gguf"
    mine.write_bytes(b"GGUF the user's own older file")
    wrong = "0" * 64
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        refused = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", wrong)
        assert isinstance(refused.exception, UsageError) and "--force" in str(refused.exception)
        failed = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", wrong, "--force")
    assert isinstance(failed.exception, ChecksumError), failed.output
    message = str(failed.exception)
    assert f"expected {wrong}, got {SHA}" in message and "m.gguf is as it was" in message
    assert mine.read_bytes() == b"GGUF the user's own older file"
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]
    assert [e["outcome"] for e in events(db)] == ["error", "failed"]


def test_a_file_already_there_is_verified_and_kept(tmp_path: Path, db: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(PAYLOAD)
    before = (tmp_path / "m.gguf").stat().st_mtime_ns
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        done = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert done.exit_code == 0 and "already holds this file" in done.stderr
    assert server.requests == [] and (tmp_path / "m.gguf").stat().st_mtime_ns == before


def test_clear_errors_for_404_a_refused_connection_and_a_web_page(tmp_path: Path, db: Path) -> None:
    page = b"<!DOCTYPE html><html>" + b"x" * 500_000
    with ModelFileServer({"page.gguf": page}) as server:
        missing = fetch(db, server.url("nope.gguf"), "--to", str(tmp_path), "--sha256", SHA)
        html = fetch(db, server.url("page.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert isinstance(missing.exception, ModelError)
    assert "was not found (HTTP 404)" in str(missing.exception)
    assert not (tmp_path / "nope.gguf.part").exists()  # nothing fetched, nothing left to resume
    assert isinstance(html.exception, ChecksumError)
    assert "not a GGUF file (it starts with b'<!DO'" in str(html.exception)
    assert not (tmp_path / "page.gguf.part").exists() and not (tmp_path / "page.gguf").exists()
    port = free_port()
    refused = fetch(db, f"http://127.0.0.1:{port}/m.gguf", "--to", str(tmp_path), "--sha256", SHA)
    assert isinstance(refused.exception, ModelError)
    assert f"cannot connect to 127.0.0.1:{port}" in str(refused.exception)
    assert [e["outcome"] for e in events(db)] == ["error", "failed", "error"]


def test_no_checksum_is_refused_unless_asked_to_skip_it(tmp_path: Path, db: Path) -> None:
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        refused = fetch(db, server.url("m.gguf"), "--to", str(tmp_path))
        assert isinstance(refused.exception, UsageError)
        assert "no checksum" in str(refused.exception) and "--no-verify" in str(refused.exception)
        assert [path for path, _ in server.requests] == ["/m.gguf.sha256"]  # nothing downloaded
        taken = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--no-verify")
    assert taken.exit_code == 0, taken.output
    assert f"sha256 {SHA} (not verified: --no-verify)" in " ".join(taken.stderr.split())


def test_a_full_disk_is_named_and_the_part_is_kept_for_later(tmp_path: Path, db: Path) -> None:
    (tmp_path / "m.gguf.part").symlink_to("/dev/full")  # every write: ENOSPC, from the kernel
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        full = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
        assert isinstance(full.exception, ModelError), full.output
        assert "disk full writing" in str(full.exception) and "run the same command again" in str(
            full.exception
        )
        assert not (tmp_path / "m.gguf").exists()
        (tmp_path / "m.gguf.part").unlink()
        server.claim_length = 2**62  # more than any disk holds: refused before a byte is written
        short = fetch(db, server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA)
    assert isinstance(short.exception, ModelError)
    assert "not enough space in" in str(short.exception)
    assert list(tmp_path.iterdir()) == []  # not a byte written, no empty part left


def test_a_local_file_is_copied_verified_and_resumed(tmp_path: Path, db: Path) -> None:
    source = tmp_path / "src" / "m.gguf"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD)
    (source.parent / "m.gguf.sha256").write_text(SHA + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.gguf.part").write_bytes(PAYLOAD[:1234])
    done = fetch(db, str(source), "--to", str(out))
    assert done.exit_code == 0, done.output
    assert (out / "m.gguf").read_bytes() == PAYLOAD and not (out / "m.gguf.part").exists()
    details = events(db)[0]["details"]
    assert isinstance(details, dict) and details["resumed_from"] == 1234
    assert details["checksum_from"] == str(source.parent / "m.gguf.sha256")


def test_exit_codes_as_a_ci_job_sees_them(tmp_path: Path) -> None:
    env = wave_env(WAVE_DB=str(tmp_path / "wave.db"))
    with ModelFileServer({"m.gguf": PAYLOAD}) as server:
        ok = run_wave("model", "fetch", server.url("m.gguf"), "--to", str(tmp_path), "--sha256", SHA, env=env)
        bad = run_wave(
            "model", "fetch", server.url("m.gguf"), "--to", str(tmp_path / "b"), "--sha256", "1" * 64, env=env
        )
        usage = run_wave("model", "fetch", server.url("m.gguf"), "--to", str(tmp_path / "c"), env=env)
    assert (ok.returncode, bad.returncode, usage.returncode) == (0, 1, 2), (
        ok.stderr,
        bad.stderr,
        usage.stderr,
    )
    assert "sha256 mismatch" in bad.stderr and "Traceback" not in bad.stderr + usage.stderr
    with contextlib.suppress(FileNotFoundError):
        assert not os.listdir(tmp_path / "b")
