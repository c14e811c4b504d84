"""scripts/agent_bench.py, the cold-start, swapping and chaos benchmarks of `wave agent`."""

from __future__ import annotations

import json
import subprocess
import sys

from agent_support import needs_llama_server
from helpers import ROOT, wave_env

SCRIPT = ROOT / "scripts" / "agent_bench.py"


def run_script(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=wave_env(),
        cwd=ROOT,
    )


def test_help_explains_each_benchmark() -> None:
    done = run_script("--help")
    assert done.returncode == 0, done.stderr
    for word in ("cold", "swap", "chaos", "--minutes", "--json", "SIGKILL", "backoff"):
        assert word in done.stdout, word


def test_a_short_cold_start_and_chaos_run_report_their_goals_as_json() -> None:
    needs_llama_server()
    done = run_script("cold", "--repeats", "1", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    cold = json.loads(done.stdout)["cold"]
    assert cold["median"]["agent_ttft"] > cold["median"]["agent_load"] > 0
    assert cold["median"]["direct_total"] > cold["median"]["direct_load"] > 0
    assert isinstance(cold["met"], bool)
    done = run_script("chaos", "--kills", "1", "--settle", "0.5", "--interval", "0.5", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    chaos = json.loads(done.stdout)["chaos"]
    (kill,) = chaos["kills"]
    assert kill["notes"] == []  # the killed pid was a llama-server child of the agent
    assert kill["back_after"] >= kill["backoff"]
    assert chaos["met"]["memory_accounting_back"] is True
