"""The read side: questions about the store, answered as pandas DataFrames.

:mod:`.frames` (workers, heartbeats, tasks, attempts), :mod:`.liveness` (gaps, outages,
uptime), :mod:`.snapshot` (the queue at one moment), :mod:`.trends` (the queue over time),
:mod:`.rollups` (the history past retention), :mod:`.classic` (classic-layout databases).
"""

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
from .snapshot import (
    active_workers,
    queue_depth,
    queue_metrics,
    stale_workers,
)
from .trends import (
    depth_timeline,
    latency,
    retry_outcomes,
    success_rate,
    throughput,
    utilization,
)

__all__ = [
    "OUTAGE_FACTOR",
    "active_workers",
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
    "stale_workers",
    "success_rate",
    "tasks",
    "throughput",
    "uptime",
    "utilization",
    "worker_events",
    "workers",
]
