"""docs/cli.md is what scripts/gen_cli_docs.py writes from the commands' --help: it cannot drift."""

from __future__ import annotations

import importlib.util

from helpers import ROOT


def test_the_cli_reference_matches_every_commands_help() -> None:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    expected = generator.render()
    current = (ROOT / "docs" / "cli.md").read_text()
    assert (
        current == expected
    ), "docs/cli.md is out of date: run `./dev docs` (python scripts/gen_cli_docs.py)"
