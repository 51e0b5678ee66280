"""Timing core, free of I/O: clock-sync estimator, PLL-disciplined network clock, jitter
buffer, scheduler, and a simulator of clocks and links to test them in simulated time."""

from .estimator import ClockEstimator, Estimate, EstimatorConfig, Sample
from .jitter import AdaptiveDelayConfig, Item, JitterBuffer, JitterStats
from .pll import ClockEvent, DisciplinedClock, LockState, PllConfig
from .scheduler import Scheduler

__all__ = [
    "AdaptiveDelayConfig",
    "ClockEstimator",
    "ClockEvent",
    "DisciplinedClock",
    "Estimate",
    "EstimatorConfig",
    "Item",
    "JitterBuffer",
    "JitterStats",
    "LockState",
    "PllConfig",
    "Sample",
    "Scheduler",
]
