"""`wave serve`'s command line: backends from flags, flags over the file, and the bind guard."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import openai
import pytest
from click.core import ParameterSource
from click.testing import CliRunner

from helpers import start_wave, wave_env
from wavefleet.cli.serve import build_config, gateway_keys, parse_backend, refuse_open_bind, serve
from wavefleet.engines import EngineKind
from wavefleet.errors import ConfigError, UsageError
from wavefleet.gateway.backends.fake_servers import FakeOpenAIEngine, serve_in_thread
from wavefleet.gateway.config import PolicyName


def test_backend_flag_takes_kind_models_and_gpu() -> None:
    backend = parse_backend("gpu=http://desktop:8000,kind=vllm,models=llama-3.1-8b|qwen,gpu=true")
    assert (backend.name, str(backend.url), backend.kind) == ("gpu", "http://desktop:8000/", EngineKind.VLLM)
    assert backend.models == ["llama-3.1-8b", "qwen"] and backend.gpu is True


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("http://x:1", "expected NAME=URL"),
        ("a=http://x:1,colour=red", "unknown option 'colour'"),
        ("a=http://x:1,kind=lmstudio", "kind"),
    ],
)
def test_bad_backend_flags_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_backend(spec)


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "wave.yaml"
    config.write_text(
        "port: 9000\npolicy: round-robin\nbackends:\n"
        "  - {name: a, url: 'http://a:8000', kind: vllm}\n  - {name: b, url: 'http://b:8000'}\n"
    )
    merged = build_config(config, None, 9100, ("b=http://elsewhere:1,kind=llamacpp",), "least-loaded")
    assert (merged.port, merged.policy) == (9100, PolicyName.LEAST_LOADED)
    assert [(b.name, str(b.url), b.kind) for b in merged.backends] == [
        ("a", "http://a:8000/", EngineKind.VLLM),
        ("b", "http://elsewhere:1/", EngineKind.LLAMACPP),
    ]


def test_config_errors_name_the_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "wave.yaml"
    config.write_text("backends:\n  - name: a\n    url: 'http://a:8000'\n    kind: lmstudio\n")
    with pytest.raises(ConfigError) as caught:
        build_config(config, None, None, (), None)
    assert f"{config}:4" in str(caught.value)


def test_no_backends_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--backend"):
        build_config(None, None, None, (), None)


def test_open_bind_needs_a_key() -> None:
    refuse_open_bind("127.0.0.1", [])
    refuse_open_bind("::1", [])
    refuse_open_bind("0.0.0.0", ["sk-some-key-1234"])
    with pytest.raises(UsageError, match="refusing to listen on 0.0.0.0 without an API key"):
        refuse_open_bind("0.0.0.0", [])


def test_serve_refuses_a_public_bind_without_a_key() -> None:
    result = CliRunner().invoke(
        serve, ["--host", "0.0.0.0", "--backend", "a=http://127.0.0.1:1"], env={"WAVE_API_KEY": ""}
    )
    assert isinstance(result.exception, UsageError)
    assert "--api-key" in str(result.exception)


def test_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    assert "wave serve --backend main=http://127.0.0.1:8000" in result.output
    assert "WAVE_API_KEY" in result.output


def test_wave_serve_runs_polls_and_stops_on_sigterm() -> None:
    engine = FakeOpenAIEngine("a", ["m1"])
    with serve_in_thread(engine.app()) as upstream:
        env = wave_env(WAVE_API_KEY="sk-cli-test-key")
        argv = ["serve", "--port", "0", "--backend", f"a={upstream.url}"]
        with start_wave(*argv, env=env, stdout=subprocess.DEVNULL) as process:  # exiting closes its pipes
            try:
                assert process.stderr is not None
                banner = process.stderr.readline()
                url = re.search(r"(http://127\.0\.0\.1:\d+)/v1", banner)
                assert url is not None, banner
                client = openai.OpenAI(
                    base_url=f"{url.group(1)}/v1", api_key="sk-cli-test-key", max_retries=0
                )
                reply = client.chat.completions.with_raw_response.create(
                    model="m1", messages=[{"role": "user", "content": "hi"}]
                )
                with urllib.request.urlopen(f"{url.group(1)}/health", timeout=10) as answer:
                    health = json.loads(answer.read())
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=20)
    assert reply.headers["x-wave-backend"] == "a"
    assert health["backends"]["a"]["healthy"] and health["backends"]["a"]["breaker"] == "closed"
    assert code == 0


def test_an_empty_api_key_on_the_command_line_is_refused() -> None:
    """`--api-key "$WAVE_API_KEY"` with the variable unset must not start a gateway without keys."""
    result = CliRunner().invoke(
        serve, ["--api-key", "", "--backend", "a=http://127.0.0.1:1"], env={"WAVE_API_KEY": ""}
    )
    assert isinstance(result.exception, UsageError)
    assert "--api-key is empty" in str(result.exception)


def test_api_key_file_is_read_and_a_bad_one_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-a-file-0123456789\n")
    keys, notes = gateway_keys(
        build_config(None, None, None, ("a=http://127.0.0.1:1",), None), None, key_file, None
    )
    assert keys == ["sk-from-a-file-0123456789"] and notes == []
    (tmp_path / "empty").write_text("\n")
    for bad, words in ((tmp_path / "missing", "cannot read"), (tmp_path / "empty", "is empty")):
        with pytest.raises(UsageError, match=words):
            gateway_keys(build_config(None, None, None, ("a=http://127.0.0.1:1",), None), None, bad, None)


def test_warnings_for_an_open_gateway_and_a_key_in_the_process_list() -> None:
    config = build_config(None, None, None, ("a=http://127.0.0.1:1",), None)
    keys, notes = gateway_keys(config, None, None, None)
    assert keys == [] and any("anyone" in n and "this machine" in n for n in notes)
    keys, notes = gateway_keys(config, "sk-on-the-command-line-1234", None, ParameterSource.COMMANDLINE)
    assert keys == ["sk-on-the-command-line-1234"] and any("process list" in n for n in notes)
    keys, notes = gateway_keys(config, "sk-from-the-environment-123", None, ParameterSource.ENVIRONMENT)
    assert keys == ["sk-from-the-environment-123"] and notes == []


def test_wave_serve_without_a_key_warns_after_its_banner() -> None:
    env = wave_env()
    env.pop("WAVE_API_KEY", None)
    argv = ["serve", "--port", "0", "--no-poll", "--backend", "a=http://127.0.0.1:9"]
    with start_wave(*argv, env=env, stdout=subprocess.DEVNULL) as process:  # exiting closes its pipes
        try:
            assert process.stderr is not None
            banner, warning = process.stderr.readline(), process.stderr.readline()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    assert "wave serve: http://127.0.0.1:" in banner
    assert "warning" in warning and "no API key" in warning
