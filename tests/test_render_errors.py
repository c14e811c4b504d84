"""Bad input gives a clear error and leaves the output folder as it was."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from pydantic import ValidationError

from render_example import example_fleet  # tests/ is on pytest's pythonpath
from wavefleet.errors import UsageError
from wavefleet.render.output import MARKER
from wavefleet.render.render import render_to
from wavefleet.render.spec import FleetSpec
from wavefleet.render.templating import make_environment


def clashing_fleet() -> FleetSpec:
    fleet = example_fleet()
    engines = [
        e.model_copy(update={"port": 8001}) if e.name in ("vllm-desktop", "triton-desktop") else e
        for e in fleet.engines
    ]
    return example_fleet(engines=engines)


def test_the_seeds_port_clash_is_an_error_naming_both_services(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UsageError) as caught:
        render_to(clashing_fleet(), out)
    message = str(caught.value)
    assert "port 8001" in message and "vllm-desktop" in message and "triton-desktop" in message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind


def test_a_failed_render_leaves_the_previous_one_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_to(example_fleet(), out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(UsageError):
        render_to(clashing_fleet(), out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_new_render_replaces_the_old_tree_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_to(example_fleet(), out)
    assert (out / "jetson" / "compose.yaml").exists()
    fleet = example_fleet()
    without_jetson = example_fleet(
        nodes=[n for n in fleet.nodes if n.name != "jetson"],
        engines=[e for e in fleet.engines if e.node != "jetson"],
    )
    render_to(without_jetson, out)
    assert not (out / "jetson").exists()  # stale files of a node no longer planned are gone
    assert "jetson/compose.yaml" not in (out / MARKER).read_text()


def test_a_folder_that_is_not_a_render_output_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not an earlier `wave render` output"):
        render_to(example_fleet(), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_unknown_references_in_the_fleet_are_reported_together() -> None:
    fleet = example_fleet()
    engine = fleet.engines[0].model_copy(update={"node": "nowhere"})
    with pytest.raises(ValidationError) as caught:
        example_fleet(engines=[engine, *fleet.engines[1:]], monitoring_node="also-nowhere")
    message = str(caught.value)
    assert "monitoring_node names unknown node 'also-nowhere'" in message
    assert "engine vllm-desktop: node 'nowhere' is unknown" in message


def test_an_engine_on_a_node_without_that_gpu_is_rejected() -> None:
    fleet = example_fleet()
    engine = fleet.engines[0].model_copy(update={"gpu_index": 3})
    with pytest.raises(ValidationError, match="has no GPU 3"):
        example_fleet(engines=[engine, *fleet.engines[1:]])


def test_templates_refuse_undefined_values() -> None:
    env = make_environment()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("port {{ engine.port }}").render(engine={})


def test_an_engine_on_an_exporters_port_is_a_clash(tmp_path: Path) -> None:
    fleet = example_fleet()
    engines = [e.model_copy(update={"port": 9400}) if e.name == "vllm-desktop" else e for e in fleet.engines]
    with pytest.raises(UsageError, match="port 9400 is used by vllm-desktop and dcgm-exporter"):
        render_to(example_fleet(engines=engines), tmp_path / "out")


def test_a_placement_the_agent_starts_binds_no_port_of_its_own(tmp_path: Path) -> None:
    """The agent gives each llama-server a loopback port of its own: a llama.cpp placement's port
    is no host port, so it clashes with nothing (here the seed's 8001 beside vLLM's)."""
    fleet = example_fleet()
    engines = [
        e.model_copy(update={"port": 8000}) if e.name == "llamacpp-desktop" else e for e in fleet.engines
    ]
    render_to(example_fleet(engines=engines), tmp_path / "out")
