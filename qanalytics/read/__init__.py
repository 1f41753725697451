"""The read side: questions about the store, answered as pandas DataFrames."""

from __future__ import annotations

from .frames import (
    attempts,
    heartbeats,
    tasks,
    worker_events,
    workers,
)
from .liveness import (
    OUTAGE_FACTOR,
    alive_intervals,
    heartbeat_gaps,
    outages,
    uptime,
)
from .trends import (
    depth_timeline,
    latency,
    queue_depth,
    queue_metrics,
    retry_outcomes,
    success_rate,
    throughput,
    utilization,
)

__all__ = [
    "OUTAGE_FACTOR",
    "alive_intervals",
    "attempts",
    "depth_timeline",
    "heartbeat_gaps",
    "heartbeats",
    "latency",
    "outages",
    "queue_depth",
    "queue_metrics",
    "retry_outcomes",
    "success_rate",
    "tasks",
    "throughput",
    "uptime",
    "utilization",
    "worker_events",
    "workers",
]
