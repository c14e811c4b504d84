"""Tables on narrow terminals: nothing cut with "…", ids whole."""

from __future__ import annotations

import io
import os
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console
from rich.table import Table

from wavefleet.cli import cli
from wavefleet.terminal import fit, folding_table


def render(table: Table, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    console.print(fit(table, console))
    return out.getvalue()


def test_a_folding_table_keeps_ids_whole_and_cuts_nothing() -> None:
    table = folding_table("id", "name", "models", "expires", title="keys")
    for i in range(3):
        table.add_row(
            f"3f9a0c1{i}",
            "laptop-of-the-household",
            "llama-3.1-8b qwen2.5-7b-instruct",
            "2027-01-01 14:22 UTC",
        )
    text = render(table, 60)
    assert "…" not in text
    for i in range(3):
        assert f"3f9a0c1{i}" in text


def test_wave_keys_list_and_sim_profiles_fit_80_columns(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"WAVE_DB": str(tmp_path / "wave.db"), "COLUMNS": "80"}
    ids = []
    for name in ("laptop-of-the-household", "phone"):
        made = runner.invoke(
            cli,
            ["keys", "create", "--name", name, "--model", "llama-3.1-8b", "--rpm", "60", "--expires", "30d"],
            env=env,
        )
        assert made.exit_code == 0, made.output
        ids.append(made.output.split("key ", 1)[1].split()[0])
    listed = runner.invoke(cli, ["keys", "list"], env=env, terminal_width=80)
    profiles = runner.invoke(
        cli, ["sim", "--list-profiles"], env={**os.environ, "COLUMNS": "80"}, terminal_width=80
    )
    assert listed.exit_code == 0 and profiles.exit_code == 0
    for output in (listed.output, profiles.output):
        assert "…" not in output
        assert max(len(line) for line in output.splitlines()) <= 80
    assert all(key_id in listed.output for key_id in ids)
    assert "rtx5070ti-vllm" in profiles.output
