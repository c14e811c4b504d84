"""`wave serve`'s security flags: how they fill the config, and what they refuse."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from helpers import free_port
from wavefleet.cli.security_options import security_options
from wavefleet.errors import UsageError
from wavefleet.gateway.security.options import SecurityFlags, apply_security_flags
from wavefleet.gateway.security.screening import Action
from wavefleet.gateway.security.settings import SecurityConfig


def test_flags_fill_the_security_section(tmp_path: Path) -> None:
    config = apply_security_flags(
        SecurityConfig(),
        SecurityFlags(
            db=tmp_path / "k.db",
            audit_db=tmp_path / "a.db",
            audit_prompts=True,
            screening=Action.FLAG,
            screening_rules=("template_tokens=block", "oversize=off"),
            api_key_limits="rpm=600,max-concurrent=8",
            oidc_issuer="https://auth.home/application/o/wave/",
            oidc_audience="wave",
        ),
    )
    assert config.active()
    assert (config.db, config.audit, config.audit_db, config.audit_prompts) == (
        tmp_path / "k.db",
        True,
        tmp_path / "a.db",
        True,
    )
    assert config.screening.action("template_tokens") == "block"
    assert config.screening.action("oversize") == "off"
    assert config.screening.action("injection_phrase") == "flag"
    assert (config.static_limits.rpm, config.static_limits.max_concurrent) == (600, 8)
    assert config.oidc is not None and config.oidc.audience == "wave"
    assert not SecurityConfig().active()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"screening_rules": ("template_tokens=loud",)}, "RULE=ACTION"),
        ({"screening_rules": ("nosuchrule=flag",)}, "RULE=ACTION"),
        ({"audit_prompts": True}, "--audit-db"),
        ({"api_key_limits": "rpm"}, "NAME=VALUE"),
        ({"api_key_limits": "rpm=0"}, "rpm"),
        ({"api_key_limits": "rps=5"}, "names: rpm"),
        ({"oidc_issuer": "https://a/"}, "together"),
    ],
)
def test_bad_flags_are_refused_with_the_fix(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        apply_security_flags(SecurityConfig(), SecurityFlags(**flags))


def test_stored_keys_allow_a_non_loopback_bind_and_no_credentials_do_not(tmp_path: Path) -> None:
    port = free_port()
    base = [
        sys.executable,
        "-m",
        "wavefleet",
        "serve",
        "--backend",
        "a=http://127.0.0.1:9",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
    }
    done = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "refusing to listen" in done.stderr
    server = subprocess.Popen(
        [*base, "--db", str(tmp_path / "k.db")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # it listens on 0.0.0.0: stored keys count as credentials
            assert server.poll() is None, "wave serve --db refused a non-loopback address"
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_flags_reach_the_command_as_one_typed_value() -> None:
    seen: list[SecurityFlags] = []

    @click.command()
    @security_options
    def probe(security: SecurityFlags) -> None:
        seen.append(security)

    args = ["--db", "k.db", "--screening", "block", "--screening-rule", "oversize=off", "--tls-key", "t.key"]
    result = CliRunner().invoke(probe, args, env={"WAVE_DB": None})
    assert result.exit_code == 0, result.output
    assert seen == [
        SecurityFlags(
            db=Path("k.db"), screening=Action.BLOCK, screening_rules=("oversize=off",), tls_key=Path("t.key")
        )
    ]
    with pytest.raises(UsageError, match="together"):
        seen[0].tls_files()
