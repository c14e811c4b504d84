"""`wave` ends with the status a command exits with (`click.exceptions.Exit`), not 0."""

from __future__ import annotations

from pathlib import Path

from helpers import run_wave, wave_env


def test_a_command_that_exits_with_a_status_ends_the_process_with_it(tmp_path: Path) -> None:
    # `wave model check` exits 1 when a check fails: here the file is no GGUF at all
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    done = run_wave("model", "check", str(broken), "--no-audit", env=wave_env())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL" in done.stdout
