"""Read side: queue metrics and trends.

Point-in-time questions (depth now, oldest queued task, workers by state) are answered
from indexes and stay near-instant however long the history is.
"""

from __future__ import annotations

from typing import Any

from ._time import parse_duration, to_epoch
from .schema import TASK_STATUSES
from .store import Store

__all__ = ["queue_metrics"]


def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def queue_metrics(
    db: Store,
    *,
    now: Any = None,
    active_within: Any = 60,
    stale_after: Any = 300,
) -> dict[str, Any]:
    """The queue's health at a glance, as a dict with the classic keys.

    Parameters
    ----------
    db : Store
    now : time-like, optional
        The moment ages and worker states are judged at; defaults to the store clock.
    active_within : float or str, default 60
        A worker that beat at most this long ago is active.
    stale_after : float or str, default 300
        A worker silent for longer than this is stale.

    Returns
    -------
    dict
        ``queue_depth_by_status`` (every status, zero-filled), ``queue_depth_by_type``
        (queued tasks by type), ``oldest_queued_task_age_seconds`` (None when nothing is
        queued), ``task_statistics`` (``total``, ``finished``, ``runnable`` and
        ``delayed`` queued tasks), ``success_rate`` and ``failure_rate`` (completed or
        failed over completed + failed; None when nothing has finished),
        ``total_workers``, ``active_workers``, ``stale_workers`` (removed workers are
        not counted).
    """
    at = db.now() if now is None else to_epoch(now, name="now")
    active_s = parse_duration(active_within, name="active_within")
    stale_s = parse_duration(stale_after, name="stale_after")
    by_status = dict.fromkeys(TASK_STATUSES, 0)
    by_type: dict[str, int] = {}
    for status, type_, count in db.query(
        "SELECT status, type, count(*) FROM tasks GROUP BY status, type",
        action="count tasks by status and type",
    ):
        by_status[status] = by_status.get(status, 0) + count
        if status == "queued":
            by_type[type_] = count
    oldest, runnable = db.query(
        "SELECT (SELECT min(created_at) FROM tasks WHERE status = 'queued'),"
        " (SELECT count(*) FROM tasks WHERE status = 'queued' AND run_after <= ?)",
        (at,),
        action="read the oldest queued task",
    )[0]
    total_workers, active, stale = db.query(
        "SELECT count(*), ifnull(sum(last_heartbeat_at >= ?), 0),"
        " ifnull(sum(last_heartbeat_at IS NULL OR last_heartbeat_at < ?), 0)"
        " FROM workers WHERE removed_at IS NULL",
        (at - active_s, at - stale_s),
        action="count workers by state",
    )[0]
    completed, failed = by_status["completed"], by_status["failed"]
    finished = completed + failed + by_status["cancelled"]
    return {
        "queue_depth_by_status": by_status,
        "queue_depth_by_type": dict(sorted(by_type.items())),
        "oldest_queued_task_age_seconds": None if oldest is None else max(0.0, at - oldest),
        "task_statistics": {
            "total": sum(by_status.values()),
            "finished": finished,
            "runnable": int(runnable),
            "delayed": by_status["queued"] - int(runnable),
        },
        "success_rate": _rate(completed, completed + failed),
        "failure_rate": _rate(failed, completed + failed),
        "total_workers": int(total_workers),
        "active_workers": int(active),
        "stale_workers": int(stale),
    }
