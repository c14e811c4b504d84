"""Claims as data: every claim in the seed's claims file gets a verdict in `wave plan`'s output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wavefleet.catalog import Catalog
from wavefleet.cli import cli
from wavefleet.plan.claims import (
    ClaimsFile,
    Verdict,
    default_claims_path,
    evaluate_claims,
    load_claims,
)
from wavefleet.plan.inventory import default_inventory_path, load_inventory
from wavefleet.plan.planner import build_plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def output() -> dict[str, object]:
    result = CliRunner().invoke(cli, ["plan", "--format", "json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def test_every_claim_in_the_file_has_a_verdict_in_the_plan(output: dict[str, object]) -> None:
    claims = load_claims(ROOT / "examples" / "seed-claims.yaml")
    verdicts = {v["id"]: v for v in output["claims"]}  # type: ignore[attr-defined]
    missing = [c.id for c in claims.claims if c.id not in verdicts]
    assert missing == []
    for claim in claims.claims:
        verdict = verdicts[claim.id]
        assert verdict["verdict"] in {v.value for v in Verdict}, claim.id
        assert verdict["finding"], claim.id
        assert verdict["where"].startswith(f"examples/seed-report.txt:{claim.line} ")
        if verdict["verdict"] == "contradicted":
            assert verdict["right"], claim.id


def test_every_quote_is_on_the_line_it_names() -> None:
    claims = load_claims(ROOT / "examples" / "seed-claims.yaml")
    lines = (ROOT / claims.document).read_text().splitlines()
    assert len({c.id for c in claims.claims}) == len(claims.claims)
    for claim in claims.claims:
        assert claim.quote in lines[claim.line - 1], (claim.id, claim.line)


def test_the_packaged_claims_are_the_example() -> None:
    assert default_claims_path().read_text() == (ROOT / "examples" / "seed-claims.yaml").read_text()


def test_the_corrections_that_lived_in_docs_are_verdicts_in_the_plan(output: dict[str, object]) -> None:
    verdicts = {v["id"]: v for v in output["claims"]}  # type: ignore[attr-defined]
    for claim_id in (
        "jetson-usb4",
        "gtx-1650-gddr6",
        "limit-req-zone-in-server",
        "memory-alert-used-by-free",
        "vllm-image-v0-7-1",
        "h100-60-70",
        "aggregate-7x",
        "trtllm-onnx",
        "vllm-quantize",
        "fp8-online-caveats",
        "dgx-cloud-credits",
        "l3-holds-3b",
        "omniverse-dgx-cloud",
        "aodt-via-6g",
    ):
        assert verdicts[claim_id]["verdict"] == "contradicted", verdicts[claim_id]
    assert verdicts["ryzen-avx512-speedup"]["verdict"] == "unverifiable"
    assert verdicts["nvaie-price"]["verdict"] == "confirmed"  # published: $4,500 per GPU per year
    assert "27%" in verdicts["h100-60-70"]["right"]
    assert "GDDR5" in verdicts["gtx-1650-gddr6"]["right"]


def test_a_speed_claim_says_which_context_it_was_checked_at(output: dict[str, object]) -> None:
    verdicts = {v["id"]: v for v in output["claims"]}  # type: ignore[attr-defined]
    triton = verdicts["triton-242"]
    assert "4,096 tokens, the inventory's typical context (the claim states none)" in triton["context"]
    # The short-context bound (about 105 tokens/s), not the longest-context one (68.8).
    assert "at most 105 tokens/s" in triton["right"]


def _check(kind: str, **fields: object) -> Verdict:
    catalog = Catalog.load()
    claims = ClaimsFile.model_validate(
        {
            "document": "x.md",
            "claims": [
                {"id": "c", "quote": "q", "line": 1, "section": "s", "check": {"kind": kind, **fields}}
            ],
        }
    )
    [verdict] = evaluate_claims(claims, catalog, [], [], 4096, {})
    return verdict.verdict


def test_config_and_command_grammars_accept_what_is_right() -> None:
    right_nginx = (
        "limit_req_zone $binary_remote_addr zone=z:10m rate=1r/s;\nserver {\n limit_req zone=z;\n}\n"
    )
    assert _check("config", grammar="nginx", text=right_nginx) is Verdict.CONFIRMED
    share = "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.9"
    assert _check("config", grammar="promql", text=share) is Verdict.CONFIRMED
    assert _check("command", tool="vllm", text="vllm serve /models/x --quantization fp8") is Verdict.CONFIRMED
    assert _check("image", tool="vllm", version="0.10.1", device="rtx-5070-ti") is Verdict.CONFIRMED
    assert _check("fact", subject="nobody", key="nothing", value=True) is Verdict.UNVERIFIABLE


def test_the_speculative_claim_cites_a_measurement_once_one_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = Catalog.load()
    inventory = load_inventory(default_inventory_path(), catalog)
    claims = load_claims(default_claims_path())
    monkeypatch.chdir(tmp_path)
    before = {v.id: v for v in build_plan(inventory, catalog, claims).claims}["speculative-speedup"]
    assert before.verdict is Verdict.UNVERIFIABLE and "scripts/gpu/speculative.sh" in before.finding
    measured = tmp_path / "docs" / "measurements"
    measured.mkdir(parents=True)
    runs = [
        {"draft_on": "gpu", "speedup": 1.9, "acceptance": 0.8},
        {"draft_on": "cpu", "speedup": 0.6, "acceptance": 0.8},
    ]
    (measured / "speculative.json").write_text(json.dumps({"runs": runs}))
    after = {v.id: v for v in build_plan(inventory, catalog, claims).claims}["speculative-speedup"]
    assert after.verdict is Verdict.CONTRADICTED
    assert after.sources == ["docs/measurements/speculative.json"] and after.right == "0.60x"


def test_a_bad_claims_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "claims.yaml"
    bad.write_text(
        "document: r.md\nclaims:\n  - id: a\n    quote: q\n    line: 1\n    section: s\n    check: {kind: vibes}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "wavefleet", "plan", "--claims", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 2, result.stderr
    assert "claims.yaml:7" in result.stderr.replace("\n", "")
