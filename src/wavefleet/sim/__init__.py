"""Simulated engines: OpenAI API, engine metrics dialects, a latency model, fault injection.

    async with SimFleet([profile], speed=10) as fleet: ...     # engines in-process on port 0
    with ThreadedSimFleet([profile]) as fleet: ...              # the same, for synchronous code

Built-in profiles from the sizing engine live in `wavefleet.sim.profiles`; see docs/sim.md.
"""

from wavefleet.sim.engine import RequestRejected, SimEngine, SimSequence
from wavefleet.sim.faults import FaultConfig, FaultInjector
from wavefleet.sim.fleet import SimFleet, ThreadedSimFleet
from wavefleet.sim.profile import SimProfile, load_profile, save_profile
from wavefleet.sim.server import SimServer

__all__ = [
    "FaultConfig",
    "FaultInjector",
    "RequestRejected",
    "SimEngine",
    "SimFleet",
    "SimProfile",
    "SimSequence",
    "SimServer",
    "ThreadedSimFleet",
    "load_profile",
    "save_profile",
]
