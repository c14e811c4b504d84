"""agent.yaml: what it accepts, and errors that name the file, the line and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SRC
from wavefleet.agent.config import AgentConfig, MemoryBudget, load_agent_config, resolve_gguf
from wavefleet.agent.units import FOREVER, format_bytes, parse_duration, parse_size
from wavefleet.errors import ConfigError, UsageError
from wavefleet.models.bundled import bundled_model_path

TWO_MODELS = """\
port: 9191
secret: {env: TEST_AGENT_SECRET}
devices:
  cpu: {budget: 2GiB}
models:
  - {name: smollm2-short, gguf: "bundled:smollm2", context: 512, slots: 2, ttl: 10m}
  - {name: smollm2-long, gguf: "bundled:smollm2", context: 4096, slots: 4, pinned: true}
defaults: {load_timeout: 90s, max_restarts: 3, backoff: {base: 2s, max: 1m}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_a_two_model_config_loads_with_its_durations_and_budget(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, TWO_MODELS))
    short, long = config.models
    assert (short.context, short.slots, short.ttl, short.pinned) == (512, 2, 600.0, False)
    assert (long.context, long.slots, long.ttl, long.pinned) == (4096, 4, None, True)
    assert resolve_gguf(short.gguf or "") == bundled_model_path()
    assert config.devices["cpu"].budget == MemoryBudget(bytes=2 * 2**30)
    assert config.devices["cpu"].budget_of(16 * 2**30) == 2 * 2**30
    defaults = config.defaults
    assert (defaults.load_timeout, defaults.max_restarts, defaults.ttl) == (90.0, 3, FOREVER)
    assert [defaults.backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 32, 60]
    assert long.ttl_or(defaults.ttl) == FOREVER


def test_the_default_backoff_is_gpustacks() -> None:
    config = AgentConfig.model_validate({"models": [{"name": "m", "command": ["x"], "memory": "1GiB"}]})
    # GPUStack's restart_on_error: min(10 x 2^(n-1), 300) s
    assert [config.defaults.backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [10, 20, 40, 80, 160, 300]
    assert config.devices["cpu"].budget_of(10 * 2**30) == 5 * 2**30  # half of host RAM by default


def test_budgets_are_bytes_or_a_fraction_never_a_bare_count() -> None:
    assert MemoryBudget.model_validate(0.9).of(1000) == 900
    assert MemoryBudget.model_validate("512MiB").of(2**40) == 512 * 2**20
    assert MemoryBudget.model_validate("4GiB").of(2 * 2**30) == 2 * 2**30  # never more than the device has
    with pytest.raises(ValueError, match="a bare number is a fraction"):
        MemoryBudget.model_validate(4)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25), (30, 30.0), ("45", 45.0), (-1, FOREVER), ("-1", FOREVER),
     ("-5m", FOREVER), (0, 0.0), ("0s", 0.0)],
)  # fmt: skip
def test_durations_read_like_ollamas_keep_alive(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "m5", "", True, "1d", float("nan"), None])
def test_a_bad_duration_says_what_is_accepted(text: object) -> None:
    with pytest.raises(ValueError, match="'5m' or '1h30m', or -1 for forever|finite number|not a duration"):
        parse_duration(text)


def test_sizes_need_a_unit() -> None:
    assert parse_size("4GiB") == 4 * 2**30
    assert parse_size("2 GB") == 2 * 10**9
    assert parse_size("1.5MiB") == 1572864
    with pytest.raises(ValueError, match="with a unit"):
        parse_size("4096")
    assert format_bytes(129 * 2**20) == "129.0 MiB"
    assert format_bytes(None) == "—"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (TWO_MODELS.replace("context: 512", "contxt: 512"), ":6: models.0.contxt", "remove 'contxt'"),
        (TWO_MODELS.replace('"bundled:smollm2", context: 512', '"missing.gguf", context: 512'), ":6: models.0.gguf",
         "missing.gguf: no such file"),
        (TWO_MODELS.replace("ttl: 10m", "ttl: 10 minutes"), ":6: models.0.ttl", "is not a duration"),
        (TWO_MODELS.replace("budget: 2GiB", "budget: 2048"), ":4: devices.cpu.budget", "a bare number is a fraction"),
        (TWO_MODELS.replace("slots: 2,", "slots: 0,"), ":6: models.0.slots", "greater than or equal to 1"),
        (TWO_MODELS.replace("{env: TEST_AGENT_SECRET}", "{env: A, file: b}"), ":2: secret", "exactly one"),
        (TWO_MODELS.replace("smollm2-long", "smollm2-short"), "", "model names must be unique; repeated: smollm2-short"),
        (TWO_MODELS.replace("pinned: true}", "device: gpu9}"), "", "names device 'gpu9'; devices: cpu"),
        (TWO_MODELS.replace("slots: 4,", "slots: 4, n_gpu_layers: all,"), "", "put it on a GPU device"),
        (TWO_MODELS.replace('gguf: "bundled:smollm2", context: 512', "kind: nim, context: 512"), ":6: models.0",
         "kind nim cannot be started per model"),
        (TWO_MODELS.replace('gguf: "bundled:smollm2", context: 512', "kind: vllm, context: 512"), ":6: models.0",
         "needs `model:` (what to load) and `memory:`"),
        (TWO_MODELS.replace('"bundled:smollm2", context: 512', '"bundled:llama", context: 512'), ":6: models.0.gguf",
         "no such bundled model; bundled: smollm2"),
    ],
)  # fmt: skip
def test_errors_name_the_file_line_and_fix(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    shown = str(caught.value)
    assert f"{path}{where}" in shown
    assert message in shown
    assert caught.value.exit_code == 2


def test_a_relative_gguf_is_read_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.gguf").write_bytes(bundled_model_path().read_bytes()[:4096])
    config = load_agent_config(write(tmp_path, "models:\n  - {name: tiny, gguf: models/tiny.gguf}\n"))
    assert config.models[0].gguf == str(tmp_path / "models" / "tiny.gguf")
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        load_agent_config(tmp_path / "agent.yaml")


def test_other_ways_to_run_an_engine(tmp_path: Path) -> None:
    config = load_agent_config(
        write(
            tmp_path,
            "models:\n"
            "  - {name: ext, url: 'http://127.0.0.1:8000/v1'}\n"
            "  - {name: cmd, command: [my-engine, --port, '{port}'], memory: 1GiB}\n"
            "  - {name: big, kind: vllm, model: meta-llama/Llama-3.1-8B, memory: 20GiB, device: cpu}\n",
        )
    )
    assert [m.name for m in config.models] == ["ext", "cmd", "big"]
    with pytest.raises(ConfigError, match="needs `memory`"):
        load_agent_config(write(tmp_path, "models:\n  - {name: cmd, command: [my-engine]}\n"))
    with pytest.raises(ConfigError, match="give no gguf, model or command with it"):
        load_agent_config(write(tmp_path, "models:\n  - {name: e, url: 'http://x:1', command: [a]}\n"))
    with pytest.raises(ConfigError, match="kind triton does not serve OpenAI's API.*gateway's `backends:`"):
        load_agent_config(write(tmp_path, "models:\n  - {name: t, kind: triton, url: 'http://x:1'}\n"))


def test_the_secret_comes_from_the_environment_or_a_file_never_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_agent_config(write(tmp_path, TWO_MODELS))
    monkeypatch.delenv("TEST_AGENT_SECRET", raising=False)
    with pytest.raises(UsageError, match=r"\$TEST_AGENT_SECRET is unset or empty"):
        config.secret_value()
    monkeypatch.setenv("TEST_AGENT_SECRET", "s3cret-value")
    assert config.secret_value() == "s3cret-value"
    secret = tmp_path / "agent.secret"
    secret.write_text("from-a-file\n")
    in_file = load_agent_config(
        write(tmp_path, TWO_MODELS.replace("{env: TEST_AGENT_SECRET}", f"{{file: {secret}}}"))
    )
    assert in_file.secret_value() == "from-a-file"
    with pytest.raises(ConfigError, match="remove 'value'"):
        load_agent_config(write(tmp_path, TWO_MODELS.replace("{env: TEST_AGENT_SECRET}", "{value: inline}")))


def test_a_dumped_config_loads_back_as_the_same(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, TWO_MODELS))
    dumped = tmp_path / "again.yaml"
    dumped.write_text(json.dumps(config.model_dump(mode="json", exclude_none=True)))  # JSON is YAML
    assert load_agent_config(dumped) == config


def test_the_config_schema_imports_no_server_parts() -> None:
    # `wave render` writes and validates agent.yaml with this module alone
    code = "import json, sys, wavefleet.agent.config; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
        check=True,
    )
    loaded = json.loads(done.stdout)
    heavy = sorted(n for n in loaded if n.split(".")[0] in ("aiohttp", "prometheus_client", "click", "gguf"))
    assert heavy == [], f"importing wavefleet.agent.config loads {heavy}"
