"""What energy costs: joules at the inventory's tariff, plus hardware amortisation if set.

A request's cost is its energy (optionally with its share of the idle draw) at
`power_price_per_kwh`, plus `amortisation_per_hour` of the host for the device time it held
(`RequestEnergy.busy_s`, its share of each moment it shared the device), in the inventory's
`currency`.
"""

from __future__ import annotations

from dataclasses import dataclass

from wavefleet.plan.inventory import Inventory
from wavefleet.telemetry.attribution import RequestEnergy

__all__ = ["JOULES_PER_KWH", "RequestCost", "Tariff"]

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True, kw_only=True)
class RequestCost:
    energy: float
    amortisation: float
    currency: str
    completion_tokens: int

    @property
    def total(self) -> float:
        return self.energy + self.amortisation

    @property
    def per_output_token(self) -> float | None:
        return self.total / self.completion_tokens if self.completion_tokens else None


@dataclass(frozen=True, kw_only=True)
class Tariff:
    price_per_kwh: float
    currency: str
    amortisation_per_hour: float = 0.0

    def __post_init__(self) -> None:
        if self.price_per_kwh < 0 or self.amortisation_per_hour < 0:
            raise ValueError("prices cannot be negative")

    @classmethod
    def from_inventory(cls, inventory: Inventory, host: str | None = None) -> Tariff:
        """The inventory's tariff and currency, with `host`'s amortisation when it sets one."""
        amortisation = inventory.host(host).amortisation_per_hour if host is not None else 0.0
        return cls(
            price_per_kwh=inventory.power_price_per_kwh,
            currency=inventory.currency,
            amortisation_per_hour=amortisation,
        )

    def energy_cost(self, joules: float) -> float:
        return joules / JOULES_PER_KWH * self.price_per_kwh

    def request_cost(self, request: RequestEnergy, *, include_idle: bool = True) -> RequestCost:
        joules = request.total_j if include_idle else request.energy_j
        return RequestCost(
            energy=self.energy_cost(joules),
            amortisation=self.amortisation_per_hour * request.busy_s / 3600,
            currency=self.currency,
            completion_tokens=request.completion_tokens,
        )
