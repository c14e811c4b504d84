"""The telemetry part's seams: attribution runs on a bare Python (the GPU check imports it on a
machine without the package's dependencies), constructors of more than three parts take them by
keyword, and each module's public names are listed in isort's order."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "wavefleet"
MODULES = sorted(
    ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in (PACKAGE / "telemetry").glob("*.py")
)


@pytest.mark.parametrize(
    "module",
    [
        "wavefleet.telemetry.attribution",
        "wavefleet.telemetry.counter",
        "wavefleet.telemetry.energy_log",
        "wavefleet.telemetry.gpu_model",
        "wavefleet.telemetry.replay",
    ],
)
def test_attribution_needs_only_the_standard_library(module: str) -> None:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    foreign = sorted(
        {name.split(".")[0] for name in json.loads(done.stdout)}
        & {"pydantic", "pynvml", "prometheus_client", "yaml", "click", "rich", "numpy"}
    )
    assert foreign == [], f"importing {module} loads {foreign}"


def test_constructors_of_more_than_three_parts_are_keyword_only() -> None:
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    offenders = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            try:
                parameters = inspect.signature(cls).parameters.values()
            except (TypeError, ValueError):
                continue
            if sum(p.kind in positional for p in parameters) > 3:
                offenders.append(f"{name}.{attr}")
    assert offenders == []


@pytest.mark.parametrize("module", MODULES)
def test_public_names_are_listed_sorted(module: str) -> None:
    path = PACKAGE.parent / Path(*module.split("."))
    source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    listed = [
        node.value
        for statement in ast.parse(source).body
        if isinstance(statement, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in statement.targets)
        for node in ast.walk(statement.value)
        if isinstance(node, ast.Constant)
    ]
    if module != "wavefleet.telemetry":
        assert listed, f"{module} has no __all__"
    # isort's order (ruff's RUF022): CONSTANTS, then Classes, then functions, each alphabetical
    assert listed == sorted(listed, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))
