"""docs/telemetry.md's Python examples run as written, in order, and its CLI examples parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from click.testing import CliRunner

from wavefleet.cli import cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "telemetry.md"


def test_the_python_examples_run_in_order() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    result = namespace["result"]
    assert result.closure_error < 1e-12  # type: ignore[attr-defined]


def test_the_wave_telemetry_examples_are_valid_commands() -> None:
    commands = [
        line.split("#")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S)
        for line in block.splitlines()
        if line.startswith("wave telemetry")
    ]
    assert len(commands) >= 6
    for command in commands:
        args = shlex.split(command)[1:]
        # --help after the options: click parses (and rejects unknown) options without running
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, f"{command}: {result.output}"
