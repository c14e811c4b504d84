"""From the planner's inventory to simulated engines and a gateway config (the CLI end to end is in
test_sim_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("wavefleet.plan.inventory", reason="the planner's inventory model is not on this branch")

from wavefleet.catalog import Catalog  # noqa: E402
from wavefleet.engines import EngineKind  # noqa: E402
from wavefleet.sim.inventory import gateway_config, plan_fleet  # noqa: E402

HOME_LAB = Path(__file__).resolve().parent.parent / "examples" / "home-lab.yaml"


def test_plan_fleet_profiles_engines_and_skips_the_rest() -> None:
    planned = plan_fleet(HOME_LAB, Catalog.load())
    names = {p.name for p in planned.profiles}
    assert {"vllm-desktop", "llamacpp-desktop", "llamacpp-xps15"} <= names
    skipped = {s.deployment: s.reason for s in planned.skipped}
    assert "not an inference engine" in skipped["dcgm-desktop"]
    # Llama 3.2 3B in FP16 (6.4 GB) leaves the 8 GB Jetson no room for a KV cache
    assert "does not fit" in skipped["jetson-trt"]
    assert not names & set(skipped)
    desktop = next(p for p in planned.profiles if p.name == "llamacpp-desktop")
    assert desktop.max_num_seqs == 8  # the inventory's --parallel 8
    assert desktop.max_model_len == 8192 // 8  # its --ctx-size split over the slots
    config = gateway_config(
        planned, {p.name: f"http://127.0.0.1:{9000 + i}" for i, p in enumerate(planned.profiles)}, 1.0
    )
    kinds = {b.name: b.kind for b in config.backends}
    assert kinds["vllm-desktop"] is EngineKind.VLLM and kinds["llamacpp-desktop"] is EngineKind.LLAMACPP
    assert all(b.profile is not None and b.profile.basis for b in config.backends)
    triton = next(b for b in config.backends if b.kind is EngineKind.TRITON)
    assert str(triton.metrics_url).endswith("/metrics")  # the simulator has no separate port 8002
