"""llama.cpp's llama-server: finding the built binary, its command line, and the real server with the
bundled SmolLM2 (two slots) through the official openai client, `/metrics` and `/slots`."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from openai import OpenAI

from helpers import free_port
from wavefleet.engines import EngineKind
from wavefleet.engines.llama_server import (
    AMX_SYMBOL,
    LlamaServerArgs,
    LlamaServerBinary,
    built_with_amx,
    cpu_has_amx,
    find_llama_server,
)
from wavefleet.errors import EngineError, UsageError
from wavefleet.gateway.config import BackendConfig
from wavefleet.gateway.monitor import PollingMonitor
from wavefleet.gateway.monitor.prometheus import parse_metrics
from wavefleet.models.bundled import bundled_model_path

MODEL = "smollm2"
SLOTS = 2
CONTEXT = 512
GGUF = Path("/models/m.gguf")


def args(**changes: object) -> LlamaServerArgs:
    values: dict[str, object] = {"model_path": GGUF, "alias": MODEL, "port": 8081, **changes}
    return LlamaServerArgs(**values)  # type: ignore[arg-type]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_command_asks_for_context_per_slot_and_the_monitoring_endpoints() -> None:
    binary = LlamaServerBinary(path=Path("/opt/llama-server"), amx_kernels=False)
    argv = args(context=1024, parallel=4, threads=2, gpu_layers="all").command(binary, cpu_amx=False)
    assert argv[0] == "/opt/llama-server"
    assert flag(argv, "--model") == str(GGUF) and flag(argv, "--alias") == MODEL
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("127.0.0.1", "8081")
    assert (flag(argv, "--ctx-size"), flag(argv, "--parallel")) == ("4096", "4")  # split evenly per slot
    assert (flag(argv, "--threads"), flag(argv, "--n-gpu-layers"), flag(argv, "--fit")) == ("2", "all", "off")
    assert {"--metrics", "--slots", "--no-webui"} <= set(argv)
    assert "--embedding" not in argv and "--no-repack" not in argv
    plain = args().command(binary, cpu_amx=False)
    assert "--threads" not in plain and "--n-gpu-layers" not in plain  # llama-server's own defaults
    embed = args(embedding=True, extra=("--pooling", "mean")).command(binary, cpu_amx=False)
    assert "--embedding" in embed and embed[-2:] == ["--pooling", "mean"]


@pytest.mark.parametrize(
    ("cpu_amx", "amx_kernels", "no_repack"),
    [
        (True, True, True),
        (True, None, True),  # unknown binary on an AMX CPU: the safe side
        (True, False, False),  # built without AMX (./dev's build on such CPUs): repacking stays on
        (False, True, False),
        (False, None, False),
    ],
)
def test_no_repack_only_where_amx_buffers_could_crash(
    cpu_amx: bool, amx_kernels: bool | None, no_repack: bool
) -> None:
    binary = LlamaServerBinary(path=Path("/opt/llama-server"), amx_kernels=amx_kernels)
    assert ("--no-repack" in args().command(binary, cpu_amx=cpu_amx)) is no_repack


def test_amx_kernels_are_read_from_the_cpu_backend_beside_the_binary(tmp_path: Path) -> None:
    bin_dir, lib_dir = tmp_path / "bin", tmp_path / "lib"
    bin_dir.mkdir()
    lib_dir.mkdir()
    binary = bin_dir / "llama-server"
    binary.write_bytes(b"\x7fELF llama-server")
    assert built_with_amx(binary) is None  # no CPU backend to read
    backend = lib_dir / "libggml-cpu.so"
    backend.write_bytes(b"\x7fELF ggml_graph_compute ggml_cpu_has_amx_int8")
    assert built_with_amx(binary) is False
    backend.write_bytes(b"\x7fELF _Z28" + AMX_SYMBOL + b"v")
    assert built_with_amx(binary) is True
    backend.unlink()
    binary.write_bytes(b"\x7fELF static " + AMX_SYMBOL)
    assert built_with_amx(binary) is True


def test_cpu_has_amx_reads_the_flags_lines() -> None:
    sapphire = "processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8 arch_capabilities\n"
    zen4 = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\nbugs\t\t: amx_int8_lookalike\n"
    assert cpu_has_amx(sapphire) is True
    assert cpu_has_amx(zen4) is False
    assert cpu_has_amx("") is False


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"parallel": 0}, "parallel 0 must be at least 1 slot"),
        ({"context": 0}, "context 0 must be at least 1 token per slot"),
        ({"port": 0}, "port 0 must be within 1-65535"),
        ({"alias": "a,b"}, "must be a non-empty name without commas"),
        ({"threads": 0}, "threads 0 must be at least 1"),
        ({"gpu_layers": -1}, "gpu_layers -1 must be 0 or more, 'all' or 'auto'"),
        ({"gpu_layers": "most"}, "gpu_layers 'most' must be a layer count, 'all' or 'auto'"),
    ],
)
def test_bad_settings_name_the_problem(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match="llama-server settings: ") as caught:
        args(**changes)
    assert message in str(caught.value)


def test_an_explicit_binary_that_is_missing_or_not_executable_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no such file"):
        find_llama_server(tmp_path / "llama-server")
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    with pytest.raises(EngineError, match=f"not executable; fix: chmod \\+x {plain}"):
        find_llama_server(plain)


# ---- the real llama-server -------------------------------------------------------------------


def installed_binary() -> LlamaServerBinary:
    try:
        return find_llama_server()
    except EngineError as exc:
        pytest.skip(f"no llama-server binary: {exc}")


class RunningServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.process, self.log = url, process, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    binary = installed_binary()
    port = free_port()
    # one thread: CI boxes run other tests beside this one, and llama.cpp threads spin
    settings = LlamaServerArgs(
        model_path=bundled_model_path(), alias=MODEL, port=port, context=CONTEXT, parallel=SLOTS, threads=1
    )
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            settings.command(binary), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = RunningServer(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_ready(running, deadline_s=120)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(server: RunningServer, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"llama-server exited with {server.process.returncode}:\n{server.log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    pytest.fail(f"llama-server not ready within {deadline_s} s:\n{server.log.read_text()[-3000:]}")


def client(server: RunningServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


COUNT = [{"role": "user", "content": "Count from one to twenty in words."}]


@pytest.mark.slow
def test_chat_completion_and_a_stream_through_the_openai_client(server: RunningServer) -> None:
    openai = client(server)
    assert [m.id for m in openai.models.list().data] == [MODEL]
    whole = openai.chat.completions.create(model=MODEL, messages=COUNT, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert whole.model == MODEL and whole.choices[0].message.content
    assert whole.usage is not None and whole.usage.completion_tokens == 16
    assert whole.choices[0].finish_reason == "length"

    stream = openai.chat.completions.create(
        model=MODEL,
        messages=COUNT,  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert usage is not None and usage.completion_tokens == 16 and finish == "length"
    assert "".join(pieces) == whole.choices[0].message.content  # greedy: the same text either way


@pytest.mark.slow
def test_two_streams_decode_at_once_on_two_slots(server: RunningServer) -> None:
    openai = client(server)
    started = [threading.Event() for _ in range(SLOTS)]
    generated: list[int] = [0] * SLOTS

    def stream(index: int) -> None:
        chunks = openai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Story {index}: write a long story about rivers."}],
            max_tokens=160,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                started[index].set()
            if chunk.usage is not None:
                generated[index] = chunk.usage.completion_tokens

    async def busy_slots() -> list[dict[str, object]]:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/slots") as response:
            assert response.status == 200
            slots: list[dict[str, object]] = await response.json()
            return slots

    workers = [threading.Thread(target=stream, args=(i,)) for i in range(SLOTS)]
    for worker in workers:
        worker.start()
    assert all(event.wait(timeout=60) for event in started), "both streams started"
    slots = asyncio.run(busy_slots())
    for worker in workers:
        worker.join(timeout=120)
    assert len(slots) == SLOTS and all(slot["n_ctx"] == CONTEXT for slot in slots)
    assert [slot["is_processing"] for slot in slots] == [True] * SLOTS  # batched, not queued
    assert generated == [160] * SLOTS


@pytest.mark.slow
def test_metrics_and_the_llamacpp_dialect_read_the_real_server(server: RunningServer) -> None:
    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.url}/metrics") as response:
                assert response.status == 200
                before = parse_metrics(await response.text())
            body = {"model": MODEL, "messages": COUNT, "max_tokens": 8, "temperature": 0}
            async with session.post(f"{server.url}/v1/chat/completions", json=body) as response:
                assert response.status == 200
            async with session.get(f"{server.url}/metrics") as response:
                after = parse_metrics(await response.text())
            predicted = "llamacpp:tokens_predicted_total"
            assert (after.total(predicted) or 0) >= (before.total(predicted) or 0) + 8
            assert after.has("llamacpp:prompt_tokens_total") and after.has("llamacpp:requests_processing")

            backend = BackendConfig.model_validate(
                {"name": "ls", "url": server.url, "kind": EngineKind.LLAMACPP}
            )
            snapshot = await PollingMonitor([backend], session, interval_s=60).poll("ls")
            assert snapshot.healthy, snapshot.error
            assert (snapshot.running, snapshot.slots_total, snapshot.models) == (0, SLOTS, (MODEL,))

    asyncio.run(scenario())
