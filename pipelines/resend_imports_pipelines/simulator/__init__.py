"""The bundled Resend simulator: one implementation for tests, the demo and benchmarks."""

from .account import FAULT_KINDS, FaultPlan, Simulator
from .server import RunningSimulator
from .store import ImportStore

__all__ = ["FAULT_KINDS", "FaultPlan", "ImportStore", "RunningSimulator", "Simulator"]
