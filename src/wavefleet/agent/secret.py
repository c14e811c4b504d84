"""The shared secret between gateways and agents, read from an environment variable or a file.

    secret: {env: WAVE_AGENT_SECRET}          # in agent.yaml, and in wave.yaml's `agents:`
    secret: {file: /etc/wavefleet/agent.secret}

A leaf: the gateway's config and the agent's config both import it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import model_validator

from wavefleet.errors import UsageError
from wavefleet.files import FrozenModel

__all__ = ["SecretSource"]


class SecretSource(FrozenModel):
    """Where the shared secret is: an environment variable or a file's first line (never inline,
    so it stays out of the config file, the process list and shell history)."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (a variable's name) or `file` (a path)")
        return self

    def resolve(self) -> str:
        """The secret; UsageError naming the fix when the variable is unset or the file unreadable."""
        if self.env is not None:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise UsageError(
                    f"the agent's secret: ${self.env} is unset or empty; set it (e.g. `export {self.env}="
                    '"$(openssl rand -hex 32)"`) or point `secret: {file: PATH}` at a file'
                )
            return value
        assert self.file is not None
        try:
            lines = self.file.expanduser().read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"the agent's secret file {self.file}: cannot read it ({exc})") from exc
        if not lines or not lines[0].strip():
            raise UsageError(
                f"the agent's secret file {self.file} is empty: put the secret on its first line"
            )
        return lines[0].strip()
