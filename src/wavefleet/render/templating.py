"""The Jinja environment every text artifact is rendered with: strict about missing values."""

from __future__ import annotations

import json
from typing import Any

import jinja2

__all__ = ["make_environment", "render_template"]


def make_environment() -> jinja2.Environment:
    """Templates from the package; an undefined name is an error, never an empty string."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("wavefleet.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # the outputs are YAML, shell, HCL and NGINX config, not HTML
    )
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any) -> str:
    # Jinja's own tojson escapes <, > and & for HTML; these files want plain JSON.
    return json.dumps(value)


def render_template(env: jinja2.Environment, name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)
