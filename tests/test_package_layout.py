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


# Classes whose positional constructors belong to files other work is changing now; each entry
# goes once its file is converted.
_POSITIONAL_FOR_NOW = {
    "wavefleet.gateway.routing.base": {"RouteRequest", "Decision", "Outcome"},
    "wavefleet.gateway.routing.wave_model": {"EwmaLine", "EngineSpeed", "BackendModel"},
    "wavefleet.gateway.backends.fake_servers": {"RunningServer"},
}


def test_the_gateways_parts_take_more_than_three_arguments_by_keyword_only() -> None:
    import importlib
    import inspect

    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    offenders = []
    for path in sorted((PACKAGE / "gateway").rglob("*.py")):
        module_name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        )
        module = importlib.import_module(module_name)
        for name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module_name or issubclass(cls, tuple):
                continue  # named tuples are rows: positional by nature
            if name in _POSITIONAL_FOR_NOW.get(module_name, set()):
                continue
            try:
                parameters = inspect.signature(cls).parameters.values()
            except (TypeError, ValueError):
                continue
            if sum(p.kind in positional for p in parameters) > 3:
                offenders.append(f"{module_name}.{name}")
    assert offenders == [], f"constructors taking more than three positional arguments: {offenders}"
