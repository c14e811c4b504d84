"""README's blocks, run as a new user pastes them: in order, in one shell."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_block(heading: str) -> str:
    """The first ```bash block under the README heading that starts with `heading`."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"### {heading}")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block is not None, heading
    return block.group(1)


@pytest.mark.slow
def test_the_measure_block_runs_in_order_as_pasted(tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = "set -e\n" + readme_block("Measure")
    bin_dir = Path(sys.executable).parent  # where `wave` is installed beside this interpreter
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT / "src"),
        "COLUMNS": "120",
    }
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        pid_file = tmp_path / "wave-sim.pid"
        if pid_file.exists():  # the block's own `kill` failed: do not leave engines behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert process.returncode == 0, output[-4000:]
    assert (tmp_path / "wave.yaml").exists()
    assert (tmp_path / "results" / "bench.json").exists()
    verdicts = re.findall(r"│ (pass|fail) ", output)
    assert verdicts and set(verdicts) == {"pass"}, output[-3000:]
