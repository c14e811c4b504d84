"""The package's seams: click stays in the CLI, and the gateway's config schema is a leaf that
render, sim and `wave up` import without the gateway's server parts."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "wavefleet"


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
    return names


def test_click_is_imported_only_by_the_cli() -> None:
    outside = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "cli" not in path.relative_to(PACKAGE).parts[:1]
        and any(name == "click" or name.startswith("click.") for name in _imported_modules(path))
    ]
    assert outside == [], f"click imported outside wavefleet/cli/: {outside}"


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module", ["wavefleet.gateway.config", "wavefleet.gateway.security.settings"])
def test_the_gateway_config_schema_imports_no_server_parts(module: str) -> None:
    loaded = _modules_after_import(module)
    heavy = sorted(
        name
        for name in loaded
        if name.split(".")[0] in ("aiohttp", "jwt", "click", "prometheus_client")
        or name.startswith(
            ("wavefleet.gateway.app", "wavefleet.gateway.proxy", "wavefleet.gateway.security.middleware")
        )
    )
    assert heavy == [], f"importing {module} loads {heavy}"
