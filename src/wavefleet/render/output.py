"""Writing the rendered tree: all of it, or nothing.

The tree is written into a fresh folder beside the target, then swapped in with renames, so a
failure at any point leaves the previous output (or no output) as it was. A folder that holds
something other than a previous render is never replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from wavefleet.errors import UsageError
from wavefleet.render.artifacts import RenderedTree

__all__ = ["MARKER", "write_tree"]

MARKER = ".wavefleet-render"


def write_tree(tree: RenderedTree, out: Path) -> list[Path]:
    """Write every artifact under `out`, replacing an earlier render there. Returns the paths."""
    out = out.resolve()
    if out.exists() and not _replaceable(out):
        raise UsageError(
            f"{out} exists and is not an earlier `wave render` output (no {MARKER} in it); "
            "choose an empty or new folder with --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        written = []
        for path, artifact in sorted(tree.artifacts.items()):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(artifact.content, encoding="utf-8")
            if artifact.executable:
                target.chmod(0o755)
            written.append(out / path)
        (staging / MARKER).write_text("".join(f"{p}\n" for p in sorted(tree.artifacts)), encoding="utf-8")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def _replaceable(out: Path) -> bool:
    return out.is_dir() and ((out / MARKER).is_file() or not any(out.iterdir()))


def _swap_in(staging: Path, out: Path) -> None:
    if not out.exists():
        os.rename(staging, out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    retired.rmdir()
    os.rename(out, retired)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(retired, out)
        raise
    shutil.rmtree(retired, ignore_errors=True)
