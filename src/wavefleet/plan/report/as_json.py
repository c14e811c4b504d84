"""The plan as one JSON object: the contract scripts read (keys documented in docs/plan.md)."""

from __future__ import annotations

import json

from wavefleet.plan.planner import Plan

__all__ = ["render_json"]


def render_json(plan: Plan) -> str:
    return json.dumps(plan.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
