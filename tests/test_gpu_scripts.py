"""scripts/gpu/: the scripts a GPU measurement page reruns, checked without a GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

GPU = ROOT / "scripts" / "gpu"
SCRIPTS = sorted(GPU.glob("*.sh"))
RUNNERS = [s for s in SCRIPTS if s.name not in ("common.sh", "prepare.sh", "prepare_rag.sh")]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck missing: `./dev test` installs it")
def test_the_gpu_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", "-x", *[s.name for s in SCRIPTS]], cwd=GPU, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", RUNNERS, ids=lambda s: s.name)
def test_without_prepared_files_a_script_says_how_to_make_them(script: Path, tmp_path: Path) -> None:
    # a clone without .device/: the script must stop before building anything, naming the fix
    (tmp_path / "scripts").mkdir()
    shutil.copytree(GPU, tmp_path / "scripts" / "gpu")
    result = subprocess.run(
        ["bash", f"scripts/gpu/{script.name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert ".device/llama.cpp.tar.gz is missing" in result.stderr
    assert "bash scripts/gpu/prepare.sh" in result.stderr
    assert not (tmp_path / ".gpuwork" / "build").exists()
