"""Where collections and the converted model live.

The data directory comes from, in order: the `--data-dir` option, the `WAVE_RAG_DIR`
environment variable, `$XDG_DATA_HOME/wavefleet/rag` (`~/.local/share/wavefleet/rag` when
XDG_DATA_HOME is unset), next to the gateway's `wave.db`.

    <data dir>/collections/<name>/   one collection (store.py)
    <data dir>/models/               the bundled embedding model as GGUF (model.py)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from wavefleet.errors import UsageError

__all__ = ["collection_dir", "default_data_dir", "models_dir", "resolve_data_dir"]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wavefleet" / "rag"


def resolve_data_dir(given: Path | str | None) -> Path:
    """The option, else WAVE_RAG_DIR, else the user's data directory."""
    if given:
        return Path(given).expanduser()
    env = os.environ.get("WAVE_RAG_DIR")
    return Path(env).expanduser() if env else default_data_dir()


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def collection_dir(root: Path, name: str) -> Path:
    """The directory of collection `name`; a name that could leave `root` (`..`, `/`) is refused."""
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise UsageError(
            f"collection name {name!r}: use letters, digits, `.`, `_` and `-` (up to 64, starting with a "
            "letter or digit, no `..`)"
        )
    return root / "collections" / name


def models_dir(root: Path) -> Path:
    return root / "models"
