"""The `--inventory/-i` option every planning command takes, spelled once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["inventory_option"]


def inventory_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--inventory PATH` (`-i`, or $WAVE_INVENTORY) into the `inventory_path` parameter."""
    return click.option(
        "--inventory",
        "-i",
        "inventory_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="WAVE_INVENTORY",
        show_envvar=True,
        help=help,
    )
