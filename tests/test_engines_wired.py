"""Every engine kind, walked through every stage it takes part in: catalog -> plan -> render ->
gateway config -> monitor dialect -> sim.

Which stages a kind takes part in comes from its row in the engines table (`stages()` says why a
kind sits one out), so a new row is walked the same way without editing this file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from pydantic import ValidationError

from wavefleet.catalog import Catalog
from wavefleet.engines import Api, EngineKind, EngineTraits, Flag, WeightFormat
from wavefleet.gateway.backends import OpenAIBackend, TritonBackend, build_backend
from wavefleet.gateway.config import BackendConfig, GatewayConfig
from wavefleet.gateway.monitor import PollingMonitor
from wavefleet.gateway.monitor.dialects import DIALECTS, dialect_for
from wavefleet.plan.findings import check_inventory
from wavefleet.plan.inventory import Inventory, fleet_devices, load_inventory
from wavefleet.render.agent_config import agent_settings
from wavefleet.render.from_inventory import EngineSource, fleet_from_inventory
from wavefleet.render.gateway_config import gateway_config as rendered_gateway_config
from wavefleet.render.services import agent_starts, node_services
from wavefleet.sim.fleet import SimFleet
from wavefleet.sim.inventory import gateway_config as simulated_gateway_config
from wavefleet.sim.inventory import plan_fleet_from
from wavefleet.sim.profile import SimProfile

HOME_LAB = Path(__file__).resolve().parents[1] / "examples" / "home-lab.yaml"
MODEL = "llama-3.2-1b"


def stages(traits: EngineTraits) -> dict[str, str | None]:
    """Each stage, with why this kind takes no part in it (None: it does)."""
    in_catalog = traits.catalog_id is not None
    return {
        "catalog": None if in_catalog else "it has no catalog entry (catalog_id: None)",
        "plan": None
        if in_catalog and traits.sized_as
        else "no catalog service to plan, nothing for the sizing engine to size",
        "render": None
        if traits.rendered
        else "`wave render` writes no compose service or agent model for it (rendered: False)",
        "gateway": None,
        "monitor": None,
        "sim": None if traits.simulated else "`wave sim` does not imitate it (simulated: False)",
    }


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def inventory_of(kind: EngineKind, catalog: Catalog, tmp_path: Path) -> Inventory:
    """The home lab with one deployment: this kind's catalog service, a 1B model, on the RTX GPU."""
    data = yaml.safe_load(HOME_LAB.read_text())
    gguf = kind.traits.weights is WeightFormat.GGUF
    data["deployments"] = [
        {
            "id": f"probe-{kind.value}",
            "service": kind.traits.catalog_id,
            "host": "schlimers-server",
            "device": "rtx-5070-ti",
            "model": MODEL,
            "quant": "q4_k_m" if gguf else "fp8",
            "max_model_len": 4096,
        }
    ]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_inventory(path, catalog)


def test_the_table_says_which_stages_each_kind_sits_out() -> None:
    out = {kind.value: {s: why for s, why in stages(kind.traits).items() if why} for kind in EngineKind}
    # every kind reaches the gateway and the monitor; vLLM takes part everywhere
    assert out["vllm"] == {}
    assert all("gateway" not in sat_out and "monitor" not in sat_out for sat_out in out.values())


@pytest.mark.parametrize("kind", list(EngineKind))
def test_catalog(kind: EngineKind, catalog: Catalog) -> None:
    if stages(kind.traits)["catalog"]:
        return
    assert kind.traits.catalog_id is not None
    service = catalog.services[kind.traits.catalog_id]
    assert service.category in ("inference", "serving")


@pytest.mark.parametrize("kind", list(EngineKind))
def test_plan(kind: EngineKind, catalog: Catalog, tmp_path: Path) -> None:
    if stages(kind.traits)["plan"]:
        return
    inventory = inventory_of(kind, catalog, tmp_path)
    _, sizings = check_inventory(inventory, catalog, fleet_devices(inventory, catalog))
    assert [(s.deployment, s.engine) for s in sizings] == [(f"probe-{kind.value}", kind.traits.sized_as)]
    assert sizings[0].result.fits


@pytest.mark.parametrize("kind", list(EngineKind))
def test_render(kind: EngineKind, catalog: Catalog, tmp_path: Path) -> None:
    why_not = stages(kind.traits)["render"]
    if stages(kind.traits)["catalog"]:
        return  # no service to put in a deployment
    inventory = inventory_of(kind, catalog, tmp_path)
    translation = fleet_from_inventory(inventory, catalog, source=EngineSource.DEPLOYMENTS)
    [decision] = translation.decisions
    if why_not:
        assert not decision.rendered and "not an engine `wave render` renders" in decision.reason
        return
    assert decision.rendered, decision.reason
    [engine] = translation.fleet.engines
    assert engine.kind is kind and engine.port == kind.traits.port
    node = translation.fleet.node(engine.node)
    containers = [s for s in node_services(translation.fleet, node) if s.engine]
    if agent_starts(engine):  # the node's agent starts it from agent.yaml: no container of its own
        assert containers == []
        settings = agent_settings(translation.fleet, node)
        assert settings is not None
        [model] = settings["models"]
        assert (model["context"], model["slots"]) == (engine.max_model_len, engine.parallel)
    else:
        [service] = containers
        assert kind.traits.health_path in " ".join(service.healthcheck or [])
        assert service.ports[0][1] == kind.traits.port  # the container listens on the engine's default
        launch = kind.traits.launch
        assert launch is not None
        flags = [s.name for s in (launch.model, launch.context, launch.slots) if isinstance(s, Flag)]
        assert [f for f in flags if f not in service.command] == []
    gateway = rendered_gateway_config(translation.fleet)
    if kind.traits.api is Api.TRITON:  # the agent relays OpenAI's API only: Triton stays a backend
        [backend] = gateway.backends
        assert backend.kind is kind and backend.triton_model is not None
        assert gateway.agents == []
    else:  # the node's agent runs the engine; the gateway federates the agent
        assert gateway.backends == []
        [agent] = gateway.agents
        assert translation.fleet.node(engine.node).address in str(agent.url)


@pytest.mark.parametrize("kind", list(EngineKind))
def test_gateway_config_picks_the_adapter_of_the_kinds_api(kind: EngineKind) -> None:
    config = BackendConfig.model_validate({"name": "b", "url": "http://h:1", "kind": kind.value})

    async def adapter() -> type:
        async with aiohttp.ClientSession() as session:
            backend = build_backend(config, session)
            await backend.aclose()
            return type(backend)

    expected = TritonBackend if kind.traits.api is Api.TRITON else OpenAIBackend
    assert asyncio.run(adapter()) is expected
    assert dialect_for(kind) is DIALECTS[kind.traits.metrics]


class TablePathsEngine:
    """An engine that answers only what the table says the monitor polls: its health path (a
    JSON body carrying a model list and a version) and its metrics path (no series)."""

    def __init__(self, traits: EngineTraits) -> None:
        self.traits = traits
        self.url = ""
        self.hits: list[str] = []

    async def _health(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.json_response({"object": "list", "data": [{"id": MODEL}], "version": "0.0.0"})

    async def _metrics(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(text="")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TablePathsEngine]:
        app = web.Application()
        app.router.add_get(self.traits.health_path, self._health)
        if self.traits.metrics_path and self.traits.metrics_path != self.traits.health_path:
            app.router.add_get(self.traits.metrics_path, self._metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.mark.parametrize("kind", list(EngineKind))
def test_monitor_polls_the_paths_in_the_table(kind: EngineKind) -> None:
    async def main() -> None:
        async with TablePathsEngine(kind.traits).running() as engine, aiohttp.ClientSession() as session:
            config = BackendConfig.model_validate(
                {
                    "name": "b",
                    "url": engine.url,
                    "kind": kind.value,
                    # an engine with its own metrics port (Triton's 8002) is pointed here instead
                    **({"metrics_url": engine.url + "/metrics"} if kind.traits.metrics_port else {}),
                }
            )
            monitor = PollingMonitor([config], session, interval_s=60)
            await monitor.start()
            try:
                snapshot = monitor.snapshot("b")
            finally:
                await monitor.aclose()
            assert snapshot.healthy, snapshot.error
            assert kind.traits.health_path in engine.hits

    asyncio.run(main())


@pytest.mark.parametrize("kind", list(EngineKind))
def test_sim(kind: EngineKind, catalog: Catalog, tmp_path: Path) -> None:
    why_not = stages(kind.traits)["sim"]
    if why_not:
        with pytest.raises(ValidationError, match="does not imitate"):
            SimProfile(
                name="x",
                dialect=kind,
                model="m",
                prefill_tokens_per_s=1.0,
                itl_at_batch=[(1, 0.1)],
                max_num_seqs=1,
                kv_capacity_tokens=64,
            )
        if kind.traits.catalog_id is not None:
            planned = plan_fleet_from(inventory_of(kind, catalog, tmp_path), catalog)
            assert planned.profiles == [] and "not an inference engine" in planned.skipped[0].reason
        return
    planned = plan_fleet_from(inventory_of(kind, catalog, tmp_path), catalog)
    [profile] = planned.profiles
    assert profile.dialect is kind

    async def main() -> None:
        fast = profile.model_copy(update={"itl_at_batch": [(1, 0.001)], "prefill_tokens_per_s": 1e6})
        async with SimFleet([fast]) as fleet, aiohttp.ClientSession() as session:
            config: GatewayConfig = simulated_gateway_config(planned, dict(fleet.urls), speed=1.0)
            [backend] = config.backends
            assert backend.kind is kind
            monitor = PollingMonitor(config.backends, session, interval_s=60)
            await monitor.start()
            try:
                snapshot = monitor.snapshot(backend.name)
            finally:
                await monitor.aclose()
            assert snapshot.healthy, snapshot.error
            assert snapshot.models == (MODEL,)

    asyncio.run(main())
