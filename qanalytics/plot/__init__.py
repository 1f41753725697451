"""One plot per frame: ``plot.success_rate(qa.success_rate(db))`` and so on."""

from __future__ import annotations

from .trends import (
    OUTCOME_COLORS,
    STATE_COLORS,
    STATUS_COLORS,
    capacity,
    heartbeat_timeline,
    latency,
    littles_law,
    queue_depth,
    retry_outcomes,
    success_rate,
    throughput,
    uptime,
    utilization,
    what_if,
    worker_states,
)

__all__ = [
    "OUTCOME_COLORS",
    "STATE_COLORS",
    "STATUS_COLORS",
    "capacity",
    "heartbeat_timeline",
    "latency",
    "littles_law",
    "queue_depth",
    "retry_outcomes",
    "success_rate",
    "throughput",
    "uptime",
    "utilization",
    "what_if",
    "worker_states",
]
