"""The engines table: one row per kind, the leaf it lives in, and the lookups the packages use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from wavefleet.catalog import Catalog
from wavefleet.engines import (
    ENGINES,
    Api,
    EngineKind,
    EnvVar,
    Flag,
    KvCache,
    kind_of_service,
    sizing_engine,
    sizing_kind,
)
from wavefleet.errors import ConfigError
from wavefleet.gateway.config import BackendConfig, load_gateway_config
from wavefleet.gateway.monitor.snapshot import LoadSnapshot
from wavefleet.gateway.routing.load import capacity, runs_on_gpu
from wavefleet.plan.inventory import load_inventory
from wavefleet.plan.sizing import SizingInput, size_model
from wavefleet.sim.inventory import plan_fleet_from

ROOT = Path(__file__).resolve().parents[1]
HOME_LAB = ROOT / "examples" / "home-lab.yaml"


def test_every_kind_has_exactly_its_own_row() -> None:
    assert list(ENGINES) == list(EngineKind)
    assert all(traits.kind is kind for kind, traits in ENGINES.items())


def test_the_engines_package_imports_nothing_else_of_wavefleet() -> None:
    # the error tree (and the wire builder it uses) is the one shared root every part may raise from
    allowed = ("wavefleet.engines", "wavefleet.errors")
    package = ROOT / "src" / "wavefleet" / "engines"
    foreign = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            foreign += [
                f"{path.name}: {n}" for n in names if n.startswith("wavefleet") and not n.startswith(allowed)
            ]
    assert foreign == []


def test_every_catalog_id_in_the_table_is_a_catalog_service() -> None:
    services = Catalog.load().services
    named = {s for traits in ENGINES.values() for s in [*traits.services(), *traits.services().values()]}
    assert named - set(services) == set()


def test_catalog_services_map_to_one_kind_and_a_sizing_engine() -> None:
    assert kind_of_service("llama.cpp") is EngineKind.LLAMACPP
    assert kind_of_service("tensorrt-llm") is EngineKind.TRITON  # served through Triton's backend
    assert kind_of_service("dcgm-exporter") is None
    assert (sizing_engine("triton"), sizing_engine("tensorrt-llm"), sizing_engine("nim")) == (
        "vllm",
        "tensorrt-llm",
        "vllm",
    )
    assert sizing_engine("openvino") == "openvino"  # no kind claims it: sized as itself
    # the sizing engine's own engines, and only those, carry default slots and a KV model
    assert sizing_kind("tensorrt-llm") is EngineKind.TRITON
    assert sizing_kind("tgi") is None
    assert [k for k in EngineKind if sizing_kind(k.traits.catalog_id or "") is k] == [
        EngineKind.VLLM,
        EngineKind.LLAMACPP,
        EngineKind.SGLANG,
    ]


def test_every_kind_states_where_its_default_slots_come_from() -> None:
    for traits in ENGINES.values():
        assert traits.slots.count >= 1 and len(traits.slots.source) > 10, traits.kind


def test_launch_puts_each_setting_where_the_engine_reads_it() -> None:
    launch = EngineKind.VLLM.traits.launch
    assert launch is not None
    argv, env = launch.arguments(model="meta-llama/Llama-3.1-8B", port=8001, context=8192, slots=64)
    assert argv == [
        "vllm",
        "serve",
        "--model",
        "meta-llama/Llama-3.1-8B",
        "--port",
        "8001",
        "--max-model-len",
        "8192",
        "--max-num-seqs",
        "64",
    ]
    assert env == {}
    triton = EngineKind.TRITON.traits.launch
    assert triton is not None
    argv, _ = triton.arguments(model="ignored: the model repository names it", port=9000, slots=8)
    assert argv == ["tritonserver", "--model-repository=/models", "--http-port", "9000"]


def test_a_launch_setting_can_be_an_environment_variable() -> None:
    from wavefleet.engines import Launch

    launch = Launch(command=("serve",), image="x", port=EnvVar("HOST", "0.0.0.0:{}"), slots=Flag("-n"))
    assert launch.arguments(model=None, port=7, slots=2) == (["serve", "-n", "2"], {"HOST": "0.0.0.0:7"})


@pytest.mark.parametrize("kind", list(EngineKind))
def test_every_kind_validates_in_wave_yaml(tmp_path: Path, kind: EngineKind) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text(f"backends:\n  - {{name: b, url: 'http://h:1', kind: {kind.value}}}\n")
    assert load_gateway_config(path).backends[0].kind is kind


def test_an_unknown_kind_in_wave_yaml_names_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text("backends:\n  - {name: b, url: 'http://h:1', kind: llama.cpp}\n")
    with pytest.raises(ConfigError) as err:
        load_gateway_config(path)
    assert "llamacpp" in str(err.value) and "wave.yaml:2" in str(err.value)


def test_the_gpu_guess_and_the_fallback_capacity_come_from_the_table() -> None:
    for kind in EngineKind:
        config = BackendConfig.model_validate({"name": "b", "url": "http://h:1", "kind": kind})
        assert runs_on_gpu(config) is kind.traits.needs_gpu
        assert capacity(config, LoadSnapshot(backend="b")) == kind.traits.slots.count
    assert {k for k in EngineKind if k.traits.kv_cache is KvCache.PAGED} >= {
        EngineKind.VLLM,
        EngineKind.TRITON,
    }
    assert {k for k in EngineKind if k.traits.api is Api.TRITON} == {EngineKind.TRITON}


def test_a_triton_backend_that_sets_no_slots_gets_one_default_everywhere() -> None:
    """The simulator, the router and the sizing engine assume the same concurrency for a Triton
    deployment that leaves it unset (once 16, 64 and 256)."""
    catalog = Catalog.load()
    inventory = load_inventory(HOME_LAB, catalog)
    assert next(d for d in inventory.deployments if d.id == "triton-desktop").max_num_seqs is None
    simulated = next(p for p in plan_fleet_from(inventory, catalog).profiles if p.name == "triton-desktop")
    config = BackendConfig.model_validate({"name": "t", "url": "http://t:8000", "kind": "triton"})
    routed = capacity(config, LoadSnapshot(backend="t"))
    # a 1B model at a short context on a 16 GB GPU: memory holds more sequences than the cap
    sized = size_model(
        SizingInput(
            model=catalog.get_model("llama-3.2-1b"),
            device=catalog.get_hardware("rtx-5070-ti"),
            quant=catalog.get_quantization("fp8"),
            context=512,
            engine="tensorrt-llm",
        )
    ).max_concurrent_sequences
    assert simulated.max_num_seqs == routed == sized


DOC = ROOT / "docs" / "engines.md"
START, END = (
    "<!-- engines table: generated from ENGINES, checked by tests/test_engines.py -->",
    "<!-- end -->",
)


def engines_markdown() -> str:
    """The two tables of docs/engines.md, from the engines table."""

    def code(value: object) -> str:
        return "—" if value is None else f"`{value}`"

    def setting(s: Flag | EnvVar | None) -> str:
        return "—" if s is None else f"`{s.name}`" if isinstance(s, Flag) else f"env `{s.name}`"

    wire = [
        "| kind | engine | API | port | health | metrics | first token | usage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    running = [
        "| kind | catalog services → sized as | default slots | GPU | KV cache | launch: model, port, context, slots | render | sim |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in ENGINES.values():
        metrics = (
            "—"
            if t.metrics_path is None
            else f"`{t.metrics_path}`" + (f" on port {t.metrics_port}" if t.metrics_port else "")
        )
        usage = t.reporting.usage.value + (" + `timings`" if t.reporting.timings else "")
        wire.append(
            f"| `{t.kind.value}` | {t.title} | {t.api.value} | {code(t.port)} | `{t.health_path}` | {metrics} "
            f"| {t.reporting.first_token.value} | {usage} |"
        )
        services = ", ".join(f"`{s}` → `{e}`" for s, e in t.services().items()) or "—"
        launch = (
            "—"
            if t.launch is None
            else f"`{' '.join(t.launch.command)}`: "
            + ", ".join(setting(s) for s in (t.launch.model, t.launch.port, t.launch.context, t.launch.slots))
        )
        running.append(
            f"| `{t.kind.value}` | {services} | {t.slots.count}: {t.slots.source} | "
            f"{'needs one' if t.needs_gpu else 'optional'} | {t.kv_cache.value if t.kv_cache else '—'} | {launch} "
            f"| {'yes' if t.rendered else 'no'} | {'yes' if t.simulated else 'no'} |"
        )
    return "\n".join([START, "", *wire, "", *running, "", END])


def test_the_manuals_table_is_the_engines_table() -> None:
    text = DOC.read_text()
    block = text[text.index(START) : text.index(END) + len(END)]
    assert (
        block == engines_markdown()
    ), "docs/engines.md is stale; paste engines_markdown() between the markers"
