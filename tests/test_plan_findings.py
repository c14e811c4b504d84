"""Findings for the seed's deployments, checked against numbers computed here, not copied."""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from wavefleet.catalog import Catalog
from wavefleet.plan.findings import FACT_TOLERANCE, Finding, FindingCode, check_inventory, size_deployment
from wavefleet.plan.inventory import Inventory, default_inventory_path, fleet_devices, load_inventory
from wavefleet.plan.sizing import GIB


@pytest.fixture(scope="module")
def home_lab(catalog: Catalog) -> Inventory:
    return load_inventory(default_inventory_path(), catalog)


@pytest.fixture(scope="module")
def findings(catalog: Catalog, home_lab: Inventory) -> list[Finding]:
    return check_inventory(home_lab, catalog, fleet_devices(home_lab, catalog))[0]


def by_code(findings: list[Finding], code: FindingCode) -> list[Finding]:
    return [f for f in findings if f.code is code]


def test_the_manual_explains_every_finding_code() -> None:
    manual = (Path(__file__).parents[1] / "docs" / "plan.md").read_text(encoding="utf-8")
    section = manual.split("\n## Findings\n", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    documented = {code for cell in first_cells for code in re.findall(r"`([a-z-]+)`", cell)}
    assert documented == {code.value for code in FindingCode}


def test_port_clashes_are_every_host_port_published_twice(
    home_lab: Inventory, findings: list[Finding]
) -> None:
    published: Counter[tuple[str, int]] = Counter()
    for d in home_lab.deployments:
        for port in ([d.port] if d.port else []) + d.extra_ports:
            published[(d.host, port)] += 1
    expected = {f"{host}:{port}" for (host, port), n in published.items() if n > 1}
    assert expected, "the seed maps vLLM and llama.cpp to the same host port"
    assert {f.subject for f in by_code(findings, FindingCode.PORT_CLASH)} == expected
    assert all(f.severity == "error" for f in by_code(findings, FindingCode.PORT_CLASH))


def test_moving_a_port_removes_its_clash(tmp_path: Path, catalog: Catalog) -> None:
    data = yaml.safe_load(default_inventory_path().read_text())
    for d in data["deployments"]:
        if d["id"] in ("llamacpp-desktop", "triton-desktop"):
            d.pop("extra_ports", None)
            d["port"] = {"llamacpp-desktop": 8081, "triton-desktop": 8000}[d["id"]]
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(data))
    inventory = load_inventory(path, catalog)
    found, _ = check_inventory(inventory, catalog, fleet_devices(inventory, catalog))
    assert not by_code(found, FindingCode.PORT_CLASH)


def test_every_claim_above_the_bandwidth_bound_is_flagged_and_none_below(
    catalog: Catalog, home_lab: Inventory, findings: list[Finding]
) -> None:
    devices = fleet_devices(home_lab, catalog)
    flagged = {
        f.subject for f in by_code(findings, FindingCode.CLAIM_ABOVE_BOUND) if "per sequence" in f.message
    }
    checked = 0
    for d in home_lab.deployments:
        if d.claims is None or d.claims.per_sequence_tokens_per_s is None or d.n_gpu_layers not in (None, 0):
            continue
        device = next(x for x in devices if x.host.id == d.host and x.ref.device == d.device)
        container = next((c for c in device.host.containers if c.id == d.container), None)
        sized = size_deployment(catalog, d, device, container.memory_gib if container else None)
        assert sized is not None
        bound = sized[0].decode_tokens_per_s_upper_bound
        assert (d.claims.per_sequence_tokens_per_s[1] > bound) == (d.id in flagged), (d.id, bound)
        checked += 1
    assert checked >= 2
    assert "triton-desktop" in flagged  # 242 tokens/s single stream on a 896 GB/s card


def test_kv_capacity_finding_counts_sequences_from_its_own_numbers(findings: list[Finding]) -> None:
    [kv] = [f for f in by_code(findings, FindingCode.KV_CAPACITY) if f.subject == "vllm-desktop"]
    n = kv.numbers
    capacity = int(float(n["kv_budget_gib"]) * GIB // 65536)  # llama-3.1-8b fp8 KV: 2 x 32 x 8 x 128 x 1 byte
    assert abs(int(n["kv_capacity_tokens"]) - capacity) <= capacity * 0.01
    assert n["sequences_at_max_model_len"] == int(n["kv_capacity_tokens"]) // 16384
    assert int(n["sequences_at_max_model_len"]) < int(n["max_num_seqs"])


def test_ttft_claims_are_checked_against_prefill(findings: list[Finding]) -> None:
    for f in by_code(findings, FindingCode.CLAIM_BELOW_TTFT_BOUND):
        assert float(f.numbers["claimed_ms"]) < float(f.numbers["prefill_floor_ms"])


def test_services_on_unsupported_devices_are_errors(
    catalog: Catalog, home_lab: Inventory, findings: list[Finding]
) -> None:
    unsupported = {
        d.id
        for d in home_lab.deployments
        if d.device and catalog.services[d.service].supported_devices.get(d.device, "").startswith("no")
    }
    assert unsupported  # DCGM and TensorRT-LLM on the Jetson
    assert {f.subject for f in by_code(findings, FindingCode.UNSUPPORTED_DEVICE)} >= unsupported


def test_two_engines_on_one_gpu_are_oversubscribed(home_lab: Inventory, findings: list[Finding]) -> None:
    [over] = by_code(findings, FindingCode.GPU_OVERSUBSCRIBED)
    assert over.subject == "rtx-5070-ti"
    assert float(over.numbers["requested_gib"]) > float(over.numbers["capacity_gib"])


def test_llama_cpp_slots_share_the_context(home_lab: Inventory, findings: list[Finding]) -> None:
    flagged = {f.subject: f for f in by_code(findings, FindingCode.SLOT_CONTEXT)}
    for d in home_lab.deployments:
        if d.service == "llama.cpp" and d.max_model_len and d.parallel:
            short = d.max_model_len // d.parallel < 2048
            assert (d.id in flagged) == short
            if short:
                assert flagged[d.id].numbers["tokens_per_slot"] == d.max_model_len // d.parallel


def test_seed_facts_are_compared_with_the_catalog(
    catalog: Catalog, home_lab: Inventory, findings: list[Finding]
) -> None:
    contradicted = {
        (f.subject, f.numbers["field"]) for f in by_code(findings, FindingCode.SEED_FACT_CONTRADICTED)
    }
    for fact in home_lab.facts:
        known = getattr(catalog.hardware[fact.device], fact.field)
        differs = not math.isclose(fact.value, known, rel_tol=FACT_TOLERANCE)
        assert ((fact.device, fact.field) in contradicted) == differs


@settings(max_examples=40, deadline=None)
@given(
    claim=st.floats(min_value=1, max_value=2000, allow_nan=False),
    port=st.integers(min_value=1024, max_value=65535),
)
def test_any_claim_is_flagged_exactly_when_above_the_bound(claim: float, port: int) -> None:
    catalog = Catalog.load()
    base = load_inventory(default_inventory_path(), catalog)
    vllm = next(d for d in base.deployments if d.id == "vllm-desktop")
    claims = (
        vllm.claims.model_copy(update={"per_sequence_tokens_per_s": (claim / 2, claim)})
        if vllm.claims
        else None
    )
    deployment = vllm.model_copy(update={"claims": claims, "port": port})
    inventory = base.model_copy(update={"deployments": [deployment]})
    devices = fleet_devices(inventory, catalog)
    found, _ = check_inventory(inventory, catalog, devices)
    device = next(x for x in devices if x.ref.device == deployment.device)
    sized = size_deployment(catalog, deployment, device)
    assert sized is not None
    bound = sized[0].decode_tokens_per_s_upper_bound
    flagged = any(f.code is FindingCode.CLAIM_ABOVE_BOUND and "per sequence" in f.message for f in found)
    assert flagged == (claim > bound)
    assert not by_code(found, FindingCode.PORT_CLASH)  # one deployment cannot clash with itself
