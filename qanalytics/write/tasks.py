"""Write side of the task queue: enqueue, claim, complete, fail, cancel, requeue orphans.

Every claim opens an attempt row (``attempts``); every way an attempt ends closes it
with an outcome: ``completed``, ``failed``, ``abandoned`` (its lease expired or its
worker went stale or was removed) or ``cancelled``. Claims run in ``BEGIN IMMEDIATE``
transactions, so two workers never hold the same task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from .._time import parse_duration, to_datetime, to_epoch
from ..errors import InvalidTransition, TaskNotFound, WorkerNotFound
from ..history.intervals import Intervals, expected_intervals
from ..history.marks import summarized_until
from ..state import STALE_AFTER_S
from ..store import Store
from .task_hours import apply_changes, task_finish
from .workers import check_worker_id, decode_json, encode_json

__all__ = [
    "Orphan",
    "Task",
    "backoff_delay",
    "cancel",
    "claim",
    "complete",
    "enqueue",
    "fail",
    "find_orphans",
    "get_task",
    "requeue_orphans",
]

#: Retry backoff: the first retry waits about BACKOFF_BASE_S, doubling up to BACKOFF_CAP_S.
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 3600.0


@dataclass(frozen=True)
class Task:
    """A task, as stored.

    Attributes
    ----------
    id : int
    type : str
    status : str
        One of queued, processing, completed, failed, cancelled.
    priority : int
        Lower numbers are claimed first.
    payload : Any
        The decoded JSON payload.
    attempts : int
        How many times the task has been claimed.
    max_attempts : int
    created_at, run_after : datetime
    started_at, finished_at, lease_until : datetime or None
        Start of the current (last) attempt, the final outcome, the current lease.
    worker_id : str or None
        The worker holding (or that last held) the task.
    error : str or None
        The last error message.
    """

    id: int
    type: str
    status: str
    priority: int
    payload: Any
    attempts: int
    max_attempts: int
    created_at: datetime | None
    run_after: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    lease_until: datetime | None
    worker_id: str | None
    error: str | None


_TASK_SELECT = (
    "SELECT t.id, t.type, t.status, t.priority, t.payload, t.attempts, t.max_attempts,"
    " t.created_at, t.run_after, t.started_at, t.finished_at, t.lease_until, w.worker_id,"
    " t.error FROM tasks t LEFT JOIN workers w ON w.worker_key = t.worker_key"
)


def _task_from_row(row: tuple[Any, ...]) -> Task:
    (
        id_,
        type_,
        status,
        priority,
        payload,
        attempts,
        max_attempts,
        created_at,
        run_after,
        started_at,
        finished_at,
        lease_until,
        worker_id,
        error,
    ) = row
    return Task(
        id=id_,
        type=type_,
        status=status,
        priority=priority,
        payload=None if payload is None else decode_json(payload),
        attempts=attempts,
        max_attempts=max_attempts,
        created_at=to_datetime(created_at),
        run_after=to_datetime(run_after),
        started_at=to_datetime(started_at),
        finished_at=to_datetime(finished_at),
        lease_until=to_datetime(lease_until),
        worker_id=worker_id,
        error=error,
    )


def _check_task_id(task_id: Any) -> int:
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise TypeError(f"task_id must be an int, not {type(task_id).__name__}")
    if task_id < 1 or task_id > 2**63 - 1:
        raise ValueError(f"task_id={task_id!r} is not a valid task id (ids start at 1)")
    return task_id


def _check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    if abs(value) > 2**63 - 1:
        raise ValueError(f"{name}={value!r} is out of range")
    return value


def _load_task(conn: Any, task_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, attempts, max_attempts, worker_key FROM tasks WHERE id = ?", (task_id,)
    ).fetchone()
    if row is None:
        raise TaskNotFound(f"no task with id {task_id}")
    return tuple(row)


def get_task(db: Store, task_id: int) -> Task:
    """Return one task.

    Parameters
    ----------
    db : Store
    task_id : int

    Returns
    -------
    Task

    Raises
    ------
    TaskNotFound
        If there is no such task.
    """
    _check_task_id(task_id)
    rows = db.query(_TASK_SELECT + " WHERE t.id = ?", (task_id,), action=f"read task {task_id}")
    if not rows:
        raise TaskNotFound(f"no task with id {task_id}")
    return _task_from_row(rows[0])


def enqueue(
    db: Store,
    type: str,
    payload: Any = None,
    *,
    priority: int = 100,
    run_after: Any = None,
    max_attempts: int = 3,
) -> int:
    """Add a task to the queue.

    Parameters
    ----------
    db : Store
        A writable store.
    type : str
        The task type, 1 to 200 characters.
    payload : Any, optional
        Any JSON-serialisable value.
    priority : int, default 100
        Lower numbers are claimed first.
    run_after : time-like or duration, optional
        Not claimable before this: an absolute time (epoch seconds, ISO string,
        datetime) or a delay from now (a timedelta or a string such as ``"5min"``).
        Defaults to now.
    max_attempts : int, default 3
        How many claims the task gets before a failure is final.

    Returns
    -------
    int
        The new task's id.
    """
    check_worker_id(type, name="type")
    text = None if payload is None else encode_json(payload, name="payload")
    _check_int(priority, "priority")
    _check_int(max_attempts, "max_attempts", minimum=1)
    with db.transaction(f"enqueue a {type!r} task") as conn:
        now = db.now()
        start = now if run_after is None else _run_after(run_after, now)
        row = conn.execute(
            "INSERT INTO tasks (type, status, priority, payload, max_attempts, created_at,"
            " run_after) VALUES (?, 'queued', ?, ?, ?, ?, ?) RETURNING id",
            (type, priority, text, max_attempts, now, start),
        ).fetchone()
    return int(row[0])


def _run_after(value: Any, now: float) -> float:
    # A delay is a timedelta or a duration string with a unit ("30s"); everything else is
    # an absolute time, numbers included (epoch seconds, as for every time argument).
    if isinstance(value, (timedelta, pd.Timedelta)):
        return now + parse_duration(value, name="run_after")
    if isinstance(value, str) and value.strip() and value.strip()[-1].isalpha():
        try:
            return now + parse_duration(value, name="run_after")
        except ValueError:
            pass  # not a duration: maybe an ISO time ending in "Z"
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        raise ValueError(
            f"run_after={value!r} is ambiguous: give a delay with a unit ('30s') or an "
            "absolute time (ISO 8601 string or epoch seconds as a number)"
        )
    return to_epoch(value, name="run_after")


def claim(db: Store, worker_id: str, *, types: Any = None, lease: Any = "60s") -> Task | None:
    """Atomically take the next runnable task.

    The next task is the queued one whose ``run_after`` has passed, with the lowest
    priority number, then the oldest. It becomes ``processing``, held by the worker
    until its lease ends, and a new attempt row is opened.

    Parameters
    ----------
    db : Store
        A writable store.
    worker_id : str
        A registered, not removed, worker.
    types : str or iterable of str, optional
        Only claim tasks of these types.
    lease : float or str, default "60s"
        How long the claim holds before :func:`requeue_orphans` may take it back.

    Returns
    -------
    Task or None
        The claimed task, or None when nothing is runnable.

    Raises
    ------
    WorkerNotFound
        If the worker is unknown or removed.
    """
    check_worker_id(worker_id)
    if types is not None:
        if isinstance(types, str):
            types = [types]
        else:
            try:
                types = list(types)
            except TypeError:
                raise TypeError(
                    f"types must be a str, an iterable of str or None, not {type(types).__name__}"
                ) from None
        if not types:
            raise ValueError("types must name at least one task type, or be None")
        for t in types:
            check_worker_id(t, name="types")
    lease_s = parse_duration(lease, name="lease", allow_zero=False)
    with db.transaction(f"claim a task for worker {worker_id!r}") as conn:
        now = db.now()
        worker = conn.execute(
            "SELECT worker_key FROM workers WHERE worker_id = ? AND removed_at IS NULL",
            (worker_id,),
        ).fetchone()
        if worker is None:
            raise WorkerNotFound(f"worker {worker_id!r} is not registered (or was removed)")
        key = worker[0]
        sql = (
            "SELECT id FROM tasks" + db.claim_index + " WHERE status = 'queued' AND run_after <= ?"
        )
        params: list[Any] = [now]
        if types is not None:
            sql += " AND type IN (" + ", ".join("?" * len(types)) + ")"
            params.extend(types)
        sql += " ORDER BY priority, created_at, id LIMIT 1" + db.claim_lock
        row = conn.execute(sql, params).fetchone()
        if row is None:
            return None
        task_id = row[0]
        attempt = conn.execute(
            "UPDATE tasks SET status = 'processing', attempts = attempts + 1, started_at = ?,"
            " lease_until = ?, worker_key = ? WHERE id = ? RETURNING attempts",
            (now, now + lease_s, key, task_id),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at) VALUES (?, ?, ?, ?)",
            (task_id, attempt, key, now),
        )
        task = conn.execute(_TASK_SELECT + " WHERE t.id = ?", (task_id,)).fetchone()
    return _task_from_row(task)


def _holder_check(conn: Any, task_id: int, worker_id: str | None, key: Any, verb: str) -> None:
    if worker_id is None:
        return
    check_worker_id(worker_id)
    row = conn.execute("SELECT worker_key FROM workers WHERE worker_id = ?", (worker_id,))
    found = row.fetchone()
    if found is None or found[0] != key:
        raise InvalidTransition(
            f"cannot {verb} task {task_id}: it is not held by worker {worker_id!r}"
            " (its lease may have expired and been requeued)"
        )


_COUNTED = {
    "completed": "UPDATE workers SET tasks_completed = tasks_completed + 1 WHERE worker_key = ?",
    "failed": "UPDATE workers SET tasks_failed = tasks_failed + 1 WHERE worker_key = ?",
}


def _close_attempt(
    conn: Any, task_id: int, attempt: int, now: float, outcome: str, error: str | None
) -> bool:
    row = conn.execute(
        "UPDATE attempts SET finished_at = ?, outcome = ?, error = ?"
        " WHERE task_id = ? AND attempt = ? AND outcome IS NULL RETURNING worker_key",
        (now, outcome, error, task_id, attempt),
    ).fetchone()
    # The worker's counters (read by workers()) move with the attempt they count.
    if row is not None and outcome in _COUNTED:
        conn.execute(_COUNTED[outcome], (row[0],))
    return row is not None


def _count_finish(
    db: Store,
    conn: Any,
    task_id: int,
    at: float,
    *,
    status: str | None = None,
    outcome: str | None = None,
) -> None:
    """Count a finish dated before the summary's watermark into the hourly tiers.

    Finishes are stamped with the store clock, normally after the watermark; a clock
    behind it (or a past ``now``) dates them into hours already summarized.
    """
    until = summarized_until(db, conn)
    if until is None or at >= until or (status is None and outcome is None):
        return
    type_ = conn.execute("SELECT type FROM tasks WHERE id = ?", (task_id,)).fetchone()[0]
    apply_changes(conn, task_finish(at, type_, status=status, outcome=outcome))


def complete(db: Store, task_id: int, *, worker_id: str | None = None) -> None:
    """Mark a processing task completed.

    Parameters
    ----------
    db : Store
        A writable store.
    task_id : int
    worker_id : str, optional
        If given, the task must be held by this worker (guards against completing a
        task whose lease expired and went to someone else).

    Raises
    ------
    TaskNotFound
        If there is no such task.
    InvalidTransition
        If the task is not ``processing`` (or not held by `worker_id`).
    """
    _check_task_id(task_id)
    with db.transaction(f"complete task {task_id}") as conn:
        status, attempts, _max, key = _load_task(conn, task_id)
        if status != "processing":
            raise InvalidTransition(
                f"cannot complete task {task_id}: it is {status}, not processing"
            )
        _holder_check(conn, task_id, worker_id, key, "complete")
        now = db.now()
        conn.execute(
            "UPDATE tasks SET status = 'completed', finished_at = ?, lease_until = NULL,"
            " error = NULL WHERE id = ?",
            (now, task_id),
        )
        closed = _close_attempt(conn, task_id, attempts, now, "completed", None)
        _count_finish(
            db, conn, task_id, now, status="completed", outcome="completed" if closed else None
        )


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    rng: random.Random | None = None,
) -> float:
    """The retry delay after the `attempt`-th failure: exponential with jitter.

    ``min(cap, base * 2 ** (attempt - 1))`` scaled by a random factor in [0.5, 1), so
    tasks that failed together do not retry together.

    Parameters
    ----------
    attempt : int
        1 for the first failure.
    base, cap : float
        Seconds.
    rng : random.Random, optional
        Source of jitter (pass a seeded one for reproducible runs).

    Returns
    -------
    float
        Seconds.
    """
    attempt = _check_int(attempt, "attempt", minimum=1)
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def fail(
    db: Store,
    task_id: int,
    error: str,
    *,
    retry: bool = True,
    delay: Any = None,
    worker_id: str | None = None,
) -> str:
    """Record a failed attempt; retry with backoff while attempts remain.

    Parameters
    ----------
    db : Store
        A writable store.
    task_id : int
    error : str
        What went wrong (kept on the task and the attempt).
    retry : bool, default True
        Whether the task may be retried. With retries left it goes back to ``queued``,
        runnable after :func:`backoff_delay`; otherwise it ends ``failed``.
    delay : float or str, optional
        Override the backoff delay before the retry.
    worker_id : str, optional
        If given, the task must be held by this worker.

    Returns
    -------
    str
        The task's new status: ``"queued"`` or ``"failed"``.

    Raises
    ------
    TaskNotFound
        If there is no such task.
    InvalidTransition
        If the task is not ``processing``.
    """
    _check_task_id(task_id)
    if not isinstance(error, str):
        raise TypeError(f"error must be a str, not {type(error).__name__}")
    try:
        error.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("error holds text that is not valid Unicode") from None
    delay_s = None if delay is None else parse_duration(delay, name="delay")
    with db.transaction(f"fail task {task_id}") as conn:
        status, attempts, max_attempts, key = _load_task(conn, task_id)
        if status != "processing":
            raise InvalidTransition(f"cannot fail task {task_id}: it is {status}, not processing")
        _holder_check(conn, task_id, worker_id, key, "fail")
        now = db.now()
        closed = _close_attempt(conn, task_id, attempts, now, "failed", error)
        outcome = "failed" if closed else None
        if retry and attempts < max_attempts:
            wait = backoff_delay(attempts) if delay_s is None else delay_s
            conn.execute(
                "UPDATE tasks SET status = 'queued', run_after = ?, lease_until = NULL,"
                " worker_key = NULL, error = ? WHERE id = ?",
                (now + wait, error, task_id),
            )
            _count_finish(db, conn, task_id, now, outcome=outcome)
            return "queued"
        conn.execute(
            "UPDATE tasks SET status = 'failed', finished_at = ?, lease_until = NULL,"
            " error = ? WHERE id = ?",
            (now, error, task_id),
        )
        _count_finish(db, conn, task_id, now, status="failed", outcome=outcome)
        return "failed"


def cancel(db: Store, task_id: int) -> bool:
    """Cancel a queued or processing task.

    Parameters
    ----------
    db : Store
        A writable store.
    task_id : int

    Returns
    -------
    bool
        True if cancelled; False if it had already finished (completed, failed or
        cancelled).

    Raises
    ------
    TaskNotFound
        If there is no such task.
    """
    _check_task_id(task_id)
    with db.transaction(f"cancel task {task_id}") as conn:
        status, attempts, _max, _key = _load_task(conn, task_id)
        if status not in ("queued", "processing"):
            return False
        now = db.now()
        closed = status == "processing" and _close_attempt(
            conn, task_id, attempts, now, "cancelled", "cancelled"
        )
        conn.execute(
            "UPDATE tasks SET status = 'cancelled', finished_at = ?, lease_until = NULL"
            " WHERE id = ?",
            (now, task_id),
        )
        _count_finish(
            db, conn, task_id, now, status="cancelled", outcome="cancelled" if closed else None
        )
    return True


@dataclass(frozen=True)
class Orphan:
    """A processing task whose holder is gone, as :func:`find_orphans` reports it.

    Attributes
    ----------
    task_id : int
    type : str
    worker_id : str or None
        The worker that held it.
    attempts, max_attempts : int
    reason : str
        ``"worker removed"``, ``"worker stale"`` or ``"lease expired"``.
    next_status : str
        Where :func:`requeue_orphans` sends it: ``"queued"`` while attempts remain,
        else ``"failed"``.
    """

    task_id: int
    type: str
    worker_id: str | None
    attempts: int
    max_attempts: int
    reason: str
    next_status: str


def _orphan_rows(conn: Any, at: float, stale_s: float | Intervals) -> list[Orphan]:
    """Processing tasks whose lease expired or whose worker is removed or stale at `at`.

    `stale_s` is one threshold for every worker, or the liveness model's intervals (each
    worker stale after ``STALE_FACTOR`` of its own).
    """
    rows = conn.execute(
        "SELECT t.id, t.type, w.worker_id, t.attempts, t.max_attempts, t.lease_until,"
        " w.worker_key, w.removed_at, w.last_heartbeat_at"
        " FROM tasks t LEFT JOIN workers w ON w.worker_key = t.worker_key"
        " WHERE t.status = 'processing' ORDER BY t.id"
    ).fetchall()
    keys = [-1 if r[6] is None else int(r[6]) for r in rows]
    if isinstance(stale_s, Intervals):
        limits = stale_s.stale_after(keys).tolist()
    else:
        limits = [stale_s] * len(rows)
    found = []
    for row, limit in zip(rows, limits, strict=True):
        task_id, type_, worker_id, attempts, max_attempts, lease, key, removed, last = row
        if key is not None and removed is not None:
            reason = "worker removed"
        elif key is None or last is None or at - last > limit:
            reason = "worker stale"  # the age as classify_ages computes it
        elif lease is not None and lease < at:
            reason = "lease expired"
        else:
            continue
        found.append(
            Orphan(
                task_id=int(task_id),
                type=type_,
                worker_id=worker_id,
                attempts=int(attempts),
                max_attempts=int(max_attempts),
                reason=reason,
                next_status="queued" if attempts < max_attempts else "failed",
            )
        )
    return found


def _stale_rule(db: Store, stale_after: Any, at: float) -> float | Intervals:
    """A fixed stale threshold in seconds, or the model's intervals when it is None."""
    if stale_after is None:
        if db.layout == "native":
            return expected_intervals(db, at)
        stale_after = STALE_AFTER_S
    return parse_duration(stale_after, name="stale_after")


def find_orphans(db: Store, *, stale_after: Any = None, now: Any = None) -> list[Orphan]:
    """The tasks :func:`requeue_orphans` would take back now, without changing anything.

    Works on a read-only store, so an engineer can look before acting.

    Parameters
    ----------
    db : Store
    stale_after : float, str or None
        A fixed stale threshold for every worker (seconds or a duration string). None
        (the default) follows the liveness model, as :func:`qanalytics.workers` does:
        a worker is stale after ten of its expected beat intervals (see
        :mod:`qanalytics.history.intervals`; 300 s on a legacy-layout store).
    now : time-like, optional
        Defaults to the store clock.

    Returns
    -------
    list of Orphan
        In task id order.
    """
    at = db.resolve_now(now)
    rule = _stale_rule(db, stale_after, at)
    with db.wrap_errors("find orphaned tasks"):
        return _orphan_rows(db.conn, at, rule)


def requeue_orphans(
    db: Store, *, stale_after: Any = None, now: Any = None
) -> list[int]:
    """Take back tasks whose holder is gone, and queue them again.

    A processing task is orphaned when its lease has expired, or its worker is
    stale (no heartbeat for more than `stale_after`) or removed. Its attempt is closed
    as ``abandoned``; the task goes back to ``queued`` if it has attempts left and
    ends ``failed`` otherwise. :func:`find_orphans` lists the same tasks without
    writing.

    Parameters
    ----------
    db : Store
        A writable store.
    stale_after : float, str or None
        A fixed stale threshold for every worker (seconds or a duration string). None
        (the default) follows the liveness model, as :func:`qanalytics.workers` does:
        a worker is stale after ten of its expected beat intervals (see
        :mod:`qanalytics.history.intervals`; 300 s on a legacy-layout store).
    now : time-like, optional
        Defaults to the store clock.

    Returns
    -------
    list of int
        The ids of the tasks taken back, in id order.
    """
    # The thresholds (the model's reads of beat history) are settled before the write
    # lock is taken; a bad value fails before anything is written.
    rule = _stale_rule(db, stale_after, db.resolve_now(now))
    with db.transaction("requeue orphaned tasks") as conn:
        at = db.resolve_now(now)
        found = _orphan_rows(conn, at, rule)
        for orphan in found:
            task_id, attempts, reason = orphan.task_id, orphan.attempts, orphan.reason
            closed = _close_attempt(conn, task_id, attempts, at, "abandoned", reason)
            outcome = "abandoned" if closed else None
            if orphan.next_status == "queued":
                conn.execute(
                    "UPDATE tasks SET status = 'queued', run_after = ?, lease_until = NULL,"
                    " worker_key = NULL, error = ? WHERE id = ?",
                    (at, f"abandoned: {reason}", task_id),
                )
                _count_finish(db, conn, task_id, at, outcome=outcome)
            else:
                conn.execute(
                    "UPDATE tasks SET status = 'failed', finished_at = ?, lease_until = NULL,"
                    " error = ? WHERE id = ?",
                    (at, f"abandoned after {attempts} attempts: {reason}", task_id),
                )
                _count_finish(db, conn, task_id, at, status="failed", outcome=outcome)
    return [orphan.task_id for orphan in found]
