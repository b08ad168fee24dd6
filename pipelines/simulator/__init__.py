"""The bundled Resend simulator: one implementation for tests, the demo and benchmarks."""

from .server import FAULT_KINDS, FaultPlan, RunningSimulator, Simulator
from .store import ImportStore

__all__ = ["FAULT_KINDS", "FaultPlan", "ImportStore", "RunningSimulator", "Simulator"]
