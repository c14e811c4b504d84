"""Routing policies: a str enum (`PolicyName`) and one interface (`RoutingPolicy`)."""

from wavefleet.gateway.routing.base import (
    Candidate,
    Decision,
    FleetView,
    Outcome,
    RouteRequest,
    RoutingPolicy,
)

__all__ = ["Candidate", "Decision", "FleetView", "Outcome", "RouteRequest", "RoutingPolicy"]
