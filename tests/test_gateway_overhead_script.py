"""scripts/gateway_overhead.py, the overhead yardstick the measurement pages rerun."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from helpers import ROOT, wave_env

SCRIPT = ROOT / "scripts" / "gateway_overhead.py"
MISSING = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} missing: `./dev test` installs the Debian packages"
)
WAVE = f"{sys.executable} -m wavefleet"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gateway_overhead", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=wave_env(),
        cwd=ROOT,
    )


def test_gateways_are_named_commands_in_the_order_given() -> None:
    parse = load_script().parse_gateways
    plain = "wave serve --port $PORT --backend main=$UPSTREAM"
    assert parse([f"this={plain}", f"previous=PYTHONPATH=$PREV/src {plain}"]) == {
        "this": plain,
        "previous": f"PYTHONPATH=$PREV/src {plain}",
    }
    assert parse([plain]) == {"gateway": plain}
    # an environment assignment opening a bare command is not a name
    assert parse([f"PYTHONPATH=src {plain}"]) == {"gateway": f"PYTHONPATH=src {plain}"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a=x", "a=y"], "given twice"),
        (["minproxy=wave serve"], "built-in target"),
        (["a="], "the command is empty"),
    ],
)
def test_ambiguous_gateways_are_refused_with_the_fix(values: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        load_script().parse_gateways(values)


@needs_tools
@pytest.mark.slow
def test_a_gateway_that_cannot_start_is_named_with_its_output() -> None:
    result = run_script(
        "--duration", "1", "--rounds", "1", "--gateway", "broken=echo no engine here >&2; exit 3"
    )
    assert result.returncode != 0
    assert "broken exited with status 3" in result.stderr and "no engine here" in result.stderr


@needs_tools
@pytest.mark.slow
def test_two_gateways_are_measured_side_by_side_with_a_key_wave_accepts(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    plain = f"plain={WAVE} serve --port $PORT --backend main=$UPSTREAM --api-key $API_KEY"
    # `wave keys import` refuses weak keys: the gateway starts only if the harness's key is strong
    secure = (
        f"secure={WAVE} keys import --name bench --from-env API_KEY --db $WORK/wave.db "
        f"--rpm 100000000 --tpm 1000000000 --max-concurrent 1000 && exec {WAVE} serve --port $PORT "
        "--backend main=$UPSTREAM --db $WORK/wave.db --audit-db $WORK/audit.db --screening flag"
    )
    args = ["--duration", "1", "--rounds", "1", "--concurrency", "1,2", "--json", str(out)]
    result = run_script(*args, "--gateway", plain, "--gateway", secure)
    assert result.returncode == 0, result.stderr[-3000:]

    record = json.loads(out.read_text())
    targets = {(c["target"], c["body"], c["concurrency"]) for c in record["cells"]}
    names = ("direct", "nginx", "minproxy", "plain", "secure")
    assert targets == {(n, b, c) for n in names for b in ("json", "stream") for c in (1, 2)}
    assert all(c["rps"] > 0 and c["failed"] == 0 for c in record["cells"])
    summary = record["summary"]
    for name in ("plain", "secure"):
        for body in ("json", "stream"):
            assert summary[f"{name}.{body}.rps_vs_minproxy"] > 0
            assert f"{name}.{body}.added_p50_ms" in summary
    assert summary["minproxy.json.rps_vs_minproxy"] == 1.0
    assert "plain.stream.rps_vs_minproxy" in result.stdout
    assert record["settings"]["gateways"]["secure"].startswith(WAVE)
