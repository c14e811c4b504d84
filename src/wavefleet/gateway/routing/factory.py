"""Build the routing policy a config names."""

from __future__ import annotations

from wavefleet.errors import UsageError
from wavefleet.gateway.config import GatewayConfig, PolicyName
from wavefleet.gateway.routing.base import RoutingPolicy
from wavefleet.gateway.routing.gpu_only import GpuOnlyPolicy
from wavefleet.gateway.routing.least_loaded import LeastLoadedPolicy
from wavefleet.gateway.routing.round_robin import RoundRobinPolicy
from wavefleet.gateway.routing.size_classes import SizeClassPolicy

__all__ = ["build_policy"]


def build_policy(config: GatewayConfig) -> RoutingPolicy:
    """The policy `config.policy` names, built from the config."""
    policy = PolicyName(config.policy)
    if policy is PolicyName.ROUND_ROBIN:
        return RoundRobinPolicy()
    if policy is PolicyName.LEAST_LOADED:
        return LeastLoadedPolicy()
    if policy is PolicyName.GPU_ONLY:
        return GpuOnlyPolicy()
    if policy is PolicyName.SIZE_CLASSES:
        if not config.size_classes:
            raise UsageError(
                "policy size-classes needs `size_classes` in the config "
                "(e.g. [{max_prompt_tokens: 512, backends: [small]}, {backends: [big]}])"
            )
        return SizeClassPolicy(config.size_classes)
    raise UsageError(
        f"policy {policy.value!r} is not available yet; use one of "
        "round-robin, least-loaded, size-classes, gpu-only"
    )
