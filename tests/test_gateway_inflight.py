"""The gateway's in-flight counts: the forwarder adds and removes, routing and metrics read."""

from __future__ import annotations

import pytest

from wavefleet.gateway.inflight import InflightCounts


def test_counts_rise_and_fall_per_backend_and_read_as_a_mapping() -> None:
    inflight = InflightCounts(["gpu", "cpu"])
    inflight.add("gpu")
    inflight.add("gpu")
    inflight.add("cpu")
    inflight.remove("gpu")
    assert dict(inflight) == {"gpu": 1, "cpu": 1}
    assert inflight.get("elsewhere", 0) == 0
    with pytest.raises(KeyError):
        inflight.add("elsewhere")  # only the configured backends are counted
