"""Fuzzing the HTTP API of a real `wave serve` (security layer on) with hypothesis: random
methods, paths, headers and bodies, from junk bytes to nearly valid chat requests. The gateway
serves no OpenAPI document, so schemathesis has nothing to read; hypothesis drives it directly.

No answer may be a 5xx and the process must survive. WAVE_FUZZ_EXAMPLES sets how many cases
run (default 400; the figure in docs/reliability.md comes from a longer run).
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reliability_support as support  # tests/ is on pytest's pythonpath
from helpers import http_request
from wavefleet.gateway.security.db import connect
from wavefleet.gateway.security.keys import KeyLimits, KeyStore

STATIC = "sk-local-0123456789abcdef"
EXAMPLES = int(os.environ.get("WAVE_FUZZ_EXAMPLES", "400"))
RAN: list[int] = []

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | json_values},
        optional={
            "content": st.text(max_size=200)
            | json_values
            | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}), max_size=3)
        },
    )
    | json_values,
    max_size=4,
)
nearly_valid = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "", "other"]) | json_values},
    optional={
        "messages": messages,
        "prompt": st.text(max_size=100) | json_values,
        "input": st.text(max_size=50) | json_values,
        "stream": st.booleans() | json_values,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
        "max_tokens": st.integers(-5, 2**40) | json_values,
        "max_completion_tokens": st.integers(-5, 100) | json_values,
        "user": st.text(max_size=20) | json_values,
    },
)
bodies = (
    nearly_valid.map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
paths = st.sampled_from(
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/health",
        "/metrics",
        "/",
        "/v1",
        "/v1/chat/completions/x",
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#?%"), max_size=40).map(
    lambda p: "/" + p
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("fuzz")
    db = work / "wave.db"
    stored = KeyStore(connect(db)).create(
        "fuzz", limits=KeyLimits(rpm=10**9, max_concurrent=1000, max_tokens=64)
    )
    engine = support.EngineProcess("z", "--token-delay", "0", "--tokens", "3")
    gateway = support.GatewayProcess(
        "--backend", f"z={engine.url},models=m", "--api-key", STATIC, "--db", str(db), "--audit-db", str(db),
        "--screening", "flag", "--screening-rule", "template_tokens=block", log=work / "gateway.log",
    )  # fmt: skip
    try:
        yield {"gateway": gateway, "keys": [STATIC, stored.secret]}
    finally:
        alive = gateway.proc.poll() is None
        gateway.stop()
        engine.stop()
        assert alive, "the gateway died during the fuzz run"


proxied = st.sampled_from(
    ["/v1/chat/completions", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
)
# half the cases get past authentication with a nearly valid body (deep into parsing, screening,
# limits and the forwarder); the other half are anything at all
valid_chat = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=300)}
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "stream": st.booleans(),
        "max_tokens": st.integers(1, 64),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "temperature": st.floats(0, 2),
    },
)
cases = st.one_of(
    st.tuples(
        st.just("POST"),
        st.just("/v1/chat/completions"),
        valid_chat.map(lambda d: json.dumps(d).encode()),
        st.sampled_from(["static", "stored"]),
    ),
    st.tuples(
        st.just("POST"),
        proxied,
        nearly_valid.map(lambda d: json.dumps(d).encode()),
        st.sampled_from(["static", "stored"]),
    ),
    st.tuples(
        st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
        paths,
        bodies,
        st.sampled_from(["static", "stored", "none", "junk"]),
    ),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    case=cases,
    junk=header_text,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=latin-1"]),
    extra=st.dictionaries(
        st.sampled_from(["x-request-id", "x-session-id", "Accept", "Content-Encoding"]),
        header_text,
        max_size=2,
    ),
)
def test_no_request_makes_the_gateway_fail(
    target: dict[str, Any],
    case: tuple[str, str, bytes, str],
    junk: str,
    content_type: str,
    extra: dict[str, str],
) -> None:
    method, path, body, auth = case
    headers = dict(extra)
    if auth == "static":
        headers["Authorization"] = f"Bearer {target['keys'][0]}"
    elif auth == "stored":
        headers["Authorization"] = f"Bearer {target['keys'][1]}"
    elif auth == "junk":
        headers["Authorization"] = junk
    if content_type:
        headers["Content-Type"] = content_type
    connection = http.client.HTTPConnection("127.0.0.1", target["gateway"].port, timeout=30)
    try:
        connection.request(
            method, path, body=body if method not in ("GET", "HEAD") else None, headers=headers
        )
        reply = connection.getresponse()
        payload = reply.read()
    finally:
        connection.close()
    RAN.append(reply.status)
    assert reply.status < 500, (reply.status, payload[:300])


def test_fuzz_ran(target: dict[str, Any]) -> None:
    """Runs after the fuzz test (file order): it ran, and the gateway still answers."""
    assert len(RAN) >= min(EXAMPLES, 100)
    status, _, _ = http_request("GET", target["gateway"].url + "/health")
    assert status == 200
    counts: dict[int, int] = {}
    for status in RAN:
        counts[status] = counts.get(status, 0) + 1
    print(f"\nfuzz: {len(RAN)} cases, statuses {dict(sorted(counts.items()))}")
