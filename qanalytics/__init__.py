"""qanalytics: understand SQLite-backed task queues.

Write side: :func:`connect` a store, :func:`register_worker`, :func:`heartbeat`,
:func:`enqueue`, :func:`claim`, :func:`complete`, :func:`fail`, :func:`cancel`,
:func:`requeue_orphans`. Classic API: :class:`QueueMonitoring`. Read side:
:func:`queue_metrics` and the frame functions.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

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
from .read.liveness import alive_intervals, heartbeat_gaps, outages, uptime
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

#: ``qa.maintenance`` is the upkeep package under the name the API has always used.
maintenance = upkeep

# Module paths of the flat layout this package had before it was split by layer; code
# that imports them (``from qanalytics.frames import workers``) keeps working.
_MOVED = {
    "frames": "read.frames",
    "liveness": "read.liveness",
    "maintenance": "upkeep",
    "metrics": "read",
    "registry": "write.workers",
    "schema": "store.schema",
    "taskqueue": "write.tasks",
}
for _old, _new in _MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = importlib.import_module(f".{_new}", __name__)


def __getattr__(name: str) -> Any:
    # qa.plot loads matplotlib.pyplot on first use, not on every `import qanalytics`;
    # qa.record (recorders of other queues) is loaded on first use too.
    if name in ("plot", "record"):
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "uptime",
    "utilization",
    "worker_events",
    "workers",
    "write_report",
]
