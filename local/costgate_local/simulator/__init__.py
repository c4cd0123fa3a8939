"""A Claude API simulator: the upstream of costgate's local stack and of every test that needs Claude.

The official `anthropic` SDK works against it unmodified (`base_url=sim.base_url`). Its usage
accounting follows the Claude API's rules exactly (prompt caching, batches, tiers) under a documented
token approximation (`tokens.py`); answers are deterministic and start with "[simulated]".
"""

from costgate_local.simulator.clock import ManualClock, SystemClock
from costgate_local.simulator.faults import FaultConfig
from costgate_local.simulator.options import SimulatorOptions, add_simulator_arguments, simulator_options_from_args
from costgate_local.simulator.server import Simulator

__all__ = [
    "FaultConfig",
    "ManualClock",
    "Simulator",
    "SimulatorOptions",
    "SystemClock",
    "add_simulator_arguments",
    "simulator_options_from_args",
]
