"""Routing policies: a str enum (`PolicyName`), one interface (`RoutingPolicy`), one module per
policy, and `build_policy(config)` to pick one."""

from wavefleet.gateway.routing.base import (
    Candidate,
    Decision,
    FleetView,
    Outcome,
    RouteRequest,
    RoutingPolicy,
)
from wavefleet.gateway.routing.factory import build_policy

__all__ = ["Candidate", "Decision", "FleetView", "Outcome", "RouteRequest", "RoutingPolicy", "build_policy"]
