"""`wave up` as a person runs it: a subprocess, the official openai client, Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from helpers import start_wave, wait_until, wave_env

ROOT = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"


def wave(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return start_wave(*args, env=wave_env(**(env or {})))


@dataclass
class Running:
    process: subprocess.Popen[str]
    base_url: str
    api_key: str
    banner: str


def start_up(*args: str, env: dict[str, str] | None = None) -> Running:
    process = wave("up", "--port", "0", "--threads", "1", "--ctx", "1024", *args, env=env)
    assert process.stdout is not None
    banner = ""
    while "Ctrl-C stops" not in banner:
        line = process.stdout.readline()
        if not line:
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"wave up ended before printing its URL:\n{banner}\n{err}")
        banner += line
    url = re.search(r"URL:\s+(http://\S+/v1)", banner)
    key = re.search(r"API key:\s+(\S+)", banner)
    assert url and key, banner
    return Running(process, url.group(1), key.group(1), banner)


def engine_children(pid: int) -> list[int]:
    """Engine processes whose parent is `pid` (from /proc: Linux only)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and "llama-server" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    up = start_up()
    try:
        yield up
    finally:
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGINT)
            up.process.communicate(timeout=60)


@pytest.mark.slow
def test_banner_has_url_key_curl_and_python_example(running: Running) -> None:
    assert running.api_key.startswith("wave-") and len(running.api_key) > 20
    assert f"curl {running.base_url}/chat/completions" in running.banner
    assert f'Authorization: Bearer {running.api_key}"' in running.banner
    assert f'OpenAI(base_url="{running.base_url}", api_key="{running.api_key}")' in running.banner


@pytest.mark.slow
def test_the_printed_examples_run_as_printed_from_a_plain_shell(running: Running) -> None:
    """Pasted into a shell outside the project's virtualenv (system PATH, no PYTHONPATH)."""
    start = running.banner.rindex("\n", 0, running.banner.index("<<'PY'")) + 1
    snippet = running.banner[start : running.banner.index("\nPY", start) + 3]
    curl = running.banner[
        running.banner.index("curl ") : running.banner.index("}'", running.banner.index("curl ")) + 2
    ]
    plain = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    for example in (snippet, curl):
        result = subprocess.run(
            ["bash", "-c", example], env=plain, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (example, result.stderr[-2000:])
        assert result.stdout.strip(), example


def test_the_python_example_says_how_to_get_the_client_when_it_is_missing() -> None:
    from wavefleet.up import usage_examples

    without = usage_examples("http://127.0.0.1:8080/v1", "wave-k", "m", python=None)
    assert "pip install openai" in without
    assert "python3 - <<'PY'" in without
    found = usage_examples("http://127.0.0.1:8080/v1", "wave-k", "m", python="/opt/venv/bin/python")
    assert "/opt/venv/bin/python - <<'PY'" in found and "pip install" not in found


@pytest.mark.slow
def test_chat_through_the_gateway_with_the_openai_client(running: Running) -> None:
    client = OpenAI(base_url=running.base_url, api_key=running.api_key, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == [MODEL]
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=10, temperature=0
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 10

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=10,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for chunk in stream:
        usage = chunk.usage or usage
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    assert "".join(pieces) == reply.choices[0].message.content  # greedy: same text streamed or not
    assert usage is not None and usage.completion_tokens == reply.usage.completion_tokens


@pytest.mark.slow
def test_a_wrong_key_is_refused(running: Running) -> None:
    client = OpenAI(base_url=running.base_url, api_key="wave-not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


@pytest.mark.slow
def test_ctrl_c_stops_gateway_and_engine_leaving_no_process() -> None:
    up = start_up(env={"WAVE_API_KEY": "sk-given-by-env-123"})
    assert up.api_key == "sk-given-by-env-123"
    engines = engine_children(up.process.pid)
    assert len(engines) == 1
    up.process.send_signal(signal.SIGINT)
    out, _ = up.process.communicate(timeout=60)
    assert up.process.returncode == 0
    assert "stopping" in out
    assert not Path(f"/proc/{engines[0]}").exists()


def test_non_gguf_model_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    process = wave("up", "--model", str(notes), "--port", "0")
    out, err = process.communicate(timeout=60)
    message = " ".join(err.split())  # the console wraps long lines
    assert process.returncode == 2
    assert "not a GGUF file" in message and str(notes) in message
    assert "URL:" not in out


def test_missing_model_exits_2(tmp_path: Path) -> None:
    process = wave("up", "--model", str(tmp_path / "absent.gguf"), "--port", "0")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "no such file" in " ".join(err.split())


@pytest.mark.slow
def test_four_streams_run_at_once_in_its_slots(running: Running) -> None:
    """Each of four streams gets its first token before any of them ends: none waits for another."""
    import threading
    import time

    client = OpenAI(base_url=running.base_url, api_key=running.api_key, max_retries=0, timeout=120)
    first: list[float] = []
    ended: list[float] = []
    lock = threading.Lock()

    def stream() -> None:
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Tell a long story."}],
            max_tokens=120,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        seen = False
        for chunk in chunks:
            if not seen and chunk.choices and chunk.choices[0].delta.content:
                seen = True
                with lock:
                    first.append(time.monotonic())
        with lock:
            ended.append(time.monotonic())

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(first) == 4 and len(ended) == 4
    assert max(first) < min(ended), "a stream waited for another to end"


@pytest.mark.slow
def test_a_killed_engine_is_restarted_and_serves_again() -> None:
    up = start_up()
    try:
        (engine,) = engine_children(up.process.pid)
        os.kill(engine, signal.SIGKILL)
        client = OpenAI(base_url=up.base_url, api_key=up.api_key, max_retries=0, timeout=120)

        def answered() -> bool:
            try:
                reply = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
                )
            except openai.APIStatusError as exc:
                assert exc.status_code in (502, 503), exc
                return False
            return bool(reply.choices)

        wait_until(answered, timeout_s=60, interval_s=0.5, message="the engine did not come back")
        (restarted,) = engine_children(up.process.pid)
        assert restarted != engine
    finally:
        up.process.send_signal(signal.SIGINT)
        up.process.communicate(timeout=60)
    assert up.process.returncode == 0


@pytest.mark.slow
def test_an_engine_outlives_no_wave_up_killed_with_sigkill() -> None:
    up = start_up()
    (engine,) = engine_children(up.process.pid)
    up.process.kill()
    up.process.communicate(timeout=60)
    wait_until(
        lambda: not Path(f"/proc/{engine}").exists(), timeout_s=10, message="the engine outlived wave up"
    )


def test_own_model_needs_no_llama_cpp_package_when_llama_server_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A machine with its own (e.g. CUDA) llama-server build on PATH and no llama-cpp-python:
    `wave up --model FILE` runs on that build rather than asking for the package."""
    from wavefleet import up as up_module
    from wavefleet.engines.llama_server import find_llama_server
    from wavefleet.models.bundled import bundled_model_path

    own_build = tmp_path / "bin"
    own_build.mkdir()
    (own_build / "llama-server").symlink_to(find_llama_server().path)
    monkeypatch.setenv("PATH", f"{own_build}{os.pathsep}{os.environ['PATH']}")
    hidden = importlib.util.find_spec

    def without_llama_cpp(name: str, *args: object) -> object:
        return None if name == "llama_cpp" else hidden(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", without_llama_cpp)
    options = up_module.UpOptions(
        model=bundled_model_path(), host="127.0.0.1", port=0, api_key=None, threads=1, ctx=512, slots=2
    )
    found = up_module.up_model(options)
    assert found.path == bundled_model_path().resolve() or found.path == bundled_model_path()
    assert find_llama_server().path == (own_build / "llama-server").resolve()
