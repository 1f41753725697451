"""Capacity planning: queueing formulas (:mod:`.queueing`) and plans from observed rates
(:mod:`.planning`). See :mod:`qanalytics.capacity.queueing` for the models and their limits.
"""

from __future__ import annotations

from .planning import _PLAN_COLUMNS as _PLAN_COLUMNS
from .planning import (
    arrival_rates,
    fleet,
    littles_law,
    plan,
    service_times,
    understaffed,
)
from .queueing import (
    erlang_b,
    erlang_c,
    mean_wait,
    mean_wait_gg,
    servers_needed,
    wait_exceeds,
    wait_exceeds_gg,
    wait_percentile,
    wait_percentile_gg,
    what_if,
)

__all__ = [
    "arrival_rates",
    "erlang_b",
    "erlang_c",
    "fleet",
    "littles_law",
    "mean_wait",
    "mean_wait_gg",
    "plan",
    "servers_needed",
    "service_times",
    "understaffed",
    "wait_exceeds",
    "wait_exceeds_gg",
    "wait_percentile",
    "wait_percentile_gg",
    "what_if",
]
