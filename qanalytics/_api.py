"""The public API, loaded on first use of a name from :mod:`qanalytics`.

``import qanalytics`` stays light (the command line's ``--help`` does not need pandas);
``qanalytics.tasks`` and every other public name come from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import capacity, upkeep
from ._time import FakeClock, parse_duration
from ._version import __version__
from .errors import (
    InvalidTransition,
    QAnalyticsError,
    ReadOnlyError,
    ReportError,
    SchemaError,
    StoreError,
    TaskNotFound,
    UnsupportedError,
    WorkerNotFound,
)
from .monitoring import QueueMonitoring
from .read.frames import attempts, heartbeats, tasks, worker_events, workers
from .read.liveness import alive_intervals, heartbeat_gaps, outages, unobserved, uptime
from .read.snapshot import active_workers, queue_depth, queue_metrics, stale_workers
from .read.trends import (
    depth_timeline,
    latency,
    retry_outcomes,
    success_rate,
    throughput,
    utilization,
)
from .report import write_report
from .simulation import SimulationResult, simulate
from .store import Store, StoreNotFound, connect
from .store import schema as schema
from .write.tasks import (
    Task,
    backoff_delay,
    cancel,
    claim,
    complete,
    enqueue,
    fail,
    find_orphans,
    get_task,
    requeue_orphans,
)
from .write.workers import (
    Worker,
    get_worker,
    heartbeat,
    list_workers,
    register_worker,
    remove_worker,
)

if TYPE_CHECKING:  # loaded on first use by qanalytics.__getattr__ (matplotlib, recorders)
    from . import plot as plot
    from . import record as record

#: ``qa.maintenance`` is the upkeep package under the name the API has always used.
maintenance = upkeep

__all__ = [
    "FakeClock",
    "InvalidTransition",
    "QAnalyticsError",
    "QueueMonitoring",
    "ReadOnlyError",
    "ReportError",
    "SchemaError",
    "SimulationResult",
    "Store",
    "StoreError",
    "StoreNotFound",
    "Task",
    "TaskNotFound",
    "UnsupportedError",
    "Worker",
    "WorkerNotFound",
    "__version__",
    "active_workers",
    "alive_intervals",
    "attempts",
    "backoff_delay",
    "cancel",
    "capacity",
    "claim",
    "complete",
    "connect",
    "depth_timeline",
    "enqueue",
    "fail",
    "find_orphans",
    "get_task",
    "get_worker",
    "heartbeat",
    "heartbeat_gaps",
    "heartbeats",
    "latency",
    "list_workers",
    "maintenance",
    "outages",
    "parse_duration",
    "plot",
    "queue_depth",
    "queue_metrics",
    "record",
    "register_worker",
    "remove_worker",
    "requeue_orphans",
    "retry_outcomes",
    "simulate",
    "stale_workers",
    "success_rate",
    "tasks",
    "throughput",
    "unobserved",
    "uptime",
    "utilization",
    "worker_events",
    "workers",
    "write_report",
]
