"""The write side: the worker registry and the task queue."""

from __future__ import annotations

from .tasks import (
    Orphan,
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
from .workers import (
    MAX_ID_LENGTH,
    Worker,
    check_worker_id,
    classify,
    get_worker,
    heartbeat,
    list_workers,
    register_worker,
    remove_worker,
)

__all__ = [
    "MAX_ID_LENGTH",
    "Orphan",
    "Task",
    "Worker",
    "backoff_delay",
    "cancel",
    "check_worker_id",
    "claim",
    "classify",
    "complete",
    "enqueue",
    "fail",
    "find_orphans",
    "get_task",
    "get_worker",
    "heartbeat",
    "list_workers",
    "register_worker",
    "remove_worker",
    "requeue_orphans",
]
