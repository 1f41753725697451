"""Reading classic queue databases: ``task_queue`` and ``workers`` tables, text timestamps.

Many teams run a SQLite task queue of the classic layout::

    task_queue(id, type, priority, payload, compatibility, status, attempts, max_attempts,
               run_after_utc, lease_until_utc, reserved_at_utc, processing_started_utc,
               finished_at_utc, locked_by, error_message, idempotency_key,
               created_at_utc, updated_at_utc)
    workers(worker_id, capabilities, heartbeat_utc)
    task_logs(log_id, task_id, at_utc, level, message, details)

``qa.connect(path, readonly=True)`` recognises it and presents it in the native shape
through TEMP views created on the store's own read-only connection (they live in the
connection's temp database, never in the file), so the read functions run unchanged where
the data allows. How the classic columns map:

- **Timestamps** are UTC text, ``YYYY-MM-DD HH:MM:SS`` or ISO 8601 with ``T``, fractional
  seconds and ``+00:00`` / ``Z`` (mixed in one column), read as epoch seconds rounded to
  the millisecond; a numeric value is taken as epoch seconds, unparseable text as missing.
- **Statuses**: ``queued`` is queued; ``leased`` and ``processing`` are processing;
  ``completed`` is completed; ``failed`` with ``error_message`` 'Cancelled by user' (and
  ``cancelled``) is cancelled; other ``failed`` and ``dead_letter`` are failed. Rows with
  any other status are left out.
- **Claims**: ``attempts`` counts failures, so a task that is processing or completed was
  claimed ``attempts + 1`` times, any other ``attempts`` times (at least once when a claim
  time is recorded). A lease that expired without a recorded failure is invisible.
  The latest claim is ``reserved_at_utc`` (else ``processing_started_utc``); earlier claims
  are not recorded, so a retried task's first claim time is unknown.
- **Workers**: the last heartbeat only. ``locked_by`` names the worker of a task's latest
  claim.

What follows from that (every other read function raises :class:`UnsupportedError`, which
says what is missing and what works instead):

- :func:`workers`: state from the last heartbeat; ``heartbeats`` is ``<NA>`` and
  ``registered_at`` / ``removed_at`` are missing; ``tasks_completed`` and ``tasks_failed``
  count tasks whose final claim by the worker completed or failed for good (earlier failed
  attempts are not recorded). Ids that only appear in ``locked_by`` (their worker row is
  gone) are listed as removed with ``include_removed=True``.
- :func:`tasks`: ``wait_s`` and ``first_claimed_at`` only for tasks claimed once.
- ``latency``: wait quantiles over tasks claimed once; run quantiles over all.
- ``depth_timeline`` and ``queue_depth(now=...)``: a retried task counts as queued from its
  creation to its latest claim (the layout does not record when earlier attempts ran).
- ``queue_metrics``, ``queue_depth``, ``success_rate`` (task level) and ``throughput``
  are exact. ``queue_metrics(now=...)`` before the latest event is refused: worker states
  in the past need a heartbeat history.
- A task with a final status but no ``finished_at_utc`` counts in depths by status but not
  in the time-bucketed rates.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from ..read.common import (
    STATE_DTYPE,
    STATUS_DTYPE,
    as_utc,
    in_list_sql,
    resolve_window,
    window_where,
)
from .schema import APPLICATION_ID
from .sqlite import Store

__all__ = ["CAPABILITIES", "install_views", "is_classic", "tasks", "workers"]

#: What a classic queue database records (see :attr:`qanalytics.Store.capabilities`).
CAPABILITIES = frozenset({"tasks", "last_heartbeat"})

#: The error message that marks a failed row as a cancellation.
CANCELLED_MESSAGE = "Cancelled by user"

_REQUIRED = ("id", "type", "status", "created_at_utc")
_OPTIONAL = (
    "priority",
    "payload",
    "attempts",
    "max_attempts",
    "run_after_utc",
    "lease_until_utc",
    "reserved_at_utc",
    "processing_started_utc",
    "finished_at_utc",
    "locked_by",
    "error_message",
)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    # table_info does not list hidden (virtual generated) columns; none are needed.
    return {
        row[0] for row in conn.execute("SELECT name FROM pragma_table_info(?, 'main')", (table,))
    }


def is_classic(conn: sqlite3.Connection) -> bool:
    """Whether the connection's main database has the classic queue layout.

    Parameters
    ----------
    conn : sqlite3.Connection

    Returns
    -------
    bool
        True for tables ``task_queue`` (with ``id``, ``type``, ``status``,
        ``created_at_utc``) and ``workers`` (with ``worker_id`` and ``heartbeat_utc``) in a
        file without the qanalytics ``application_id``.
    """
    if conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID:
        return False
    tables = {
        row[0] for row in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")
    }
    if not {"task_queue", "workers"} <= tables:
        return False
    if not {"worker_id", "heartbeat_utc"} <= _columns(conn, "workers"):
        return False
    return set(_REQUIRED) <= _columns(conn, "task_queue")


def _epoch(column: str) -> str:
    """SQL for a classic timestamp column as epoch seconds (NULL when unreadable)."""
    return (
        f"(CASE WHEN typeof({column}) IN ('integer', 'real') THEN CAST({column} AS REAL)"
        f" ELSE round((julianday({column}) - 2440587.5) * 86400.0, 3) END)"
    )


def _status(column: str, error: str) -> str:
    return (
        f"(CASE {column} WHEN 'queued' THEN 'queued' WHEN 'leased' THEN 'processing'"
        f" WHEN 'processing' THEN 'processing' WHEN 'completed' THEN 'completed'"
        f" WHEN 'failed' THEN CASE WHEN {error} = '{CANCELLED_MESSAGE}' THEN 'cancelled'"
        f" ELSE 'failed' END WHEN 'dead_letter' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'"
        " END)"
    )


def install_views(conn: sqlite3.Connection) -> frozenset[str]:
    """Create TEMP views that present a classic queue database in the native shape.

    The views shadow the native table names (``workers``, ``tasks``, ``attempts``,
    ``heartbeats``, ``worker_events``, ``heartbeat_rollups``, ``meta``) on this connection
    only: SQLite looks names up in the temp schema first. ``attempts`` holds each task's
    latest claim (the only one the layout records), numbered by the claims count;
    ``heartbeats``, ``worker_events``, ``heartbeat_rollups`` and ``meta`` are empty.

    Parameters
    ----------
    conn : sqlite3.Connection
        A connection to a classic queue database (read-only is fine: TEMP objects live in
        the connection's temp database).

    Returns
    -------
    frozenset of str
        The capabilities of the layout, :data:`CAPABILITIES`.
    """
    have = _columns(conn, "task_queue")

    def col(name: str) -> str:
        return f"q.{name}" if name in have else "NULL"

    rowid_ok = True
    try:
        conn.execute("SELECT rowid FROM main.workers LIMIT 0")
    except sqlite3.Error:  # a WITHOUT ROWID table
        rowid_ok = False
    if rowid_ok:
        worker_key = "w.rowid"
        key_of = "(SELECT w.rowid FROM main.workers w WHERE w.worker_id = b.locked_by)"
    else:
        worker_key = "(SELECT count(*) FROM main.workers w2 WHERE w2.worker_id <= w.worker_id)"
        key_of = (
            "(SELECT count(*) FROM main.workers w2 WHERE w2.worker_id <= b.locked_by"
            " AND EXISTS (SELECT 1 FROM main.workers w3 WHERE w3.worker_id = b.locked_by))"
        )
    claim = f"COALESCE({_epoch(col('reserved_at_utc'))}, {_epoch(col('processing_started_utc'))})"
    base = (
        "SELECT q.id AS id, q.type AS type,"
        f" {_status('q.status', col('error_message'))} AS status,"
        f" IFNULL({col('priority')}, 100) AS priority, {col('payload')} AS payload,"
        f" IFNULL({col('attempts')}, 0) AS failures,"
        f" IFNULL({col('max_attempts')}, 1) AS max_attempts,"
        f" {_epoch('q.created_at_utc')} AS created_at,"
        f" {_epoch(col('run_after_utc'))} AS run_after, {claim} AS claim,"
        f" {_epoch(col('finished_at_utc'))} AS finished,"
        f" {_epoch(col('lease_until_utc'))} AS lease_until,"
        f" {col('locked_by')} AS locked_by, {col('error_message')} AS error"
        " FROM main.task_queue q"
    )
    statements = [
        "CREATE TEMP VIEW IF NOT EXISTS workers AS SELECT"
        f" {worker_key} AS worker_key, w.worker_id AS worker_id,"
        " IFNULL(w.capabilities, '{}') AS capabilities, NULL AS registered_at,"
        f" {_epoch('w.heartbeat_utc')} AS last_heartbeat_at, NULL AS removed_at"
        " FROM main.workers w",
        "CREATE TEMP VIEW IF NOT EXISTS tasks AS SELECT b.id AS id, b.type AS type,"
        " b.status AS status, b.priority AS priority, b.payload AS payload,"
        " CASE WHEN b.status = 'queued' THEN b.failures"
        "  WHEN b.status IN ('processing', 'completed') THEN b.failures + 1"
        "  WHEN b.claim IS NOT NULL THEN max(b.failures, 1) ELSE b.failures END AS attempts,"
        " b.max_attempts AS max_attempts, b.created_at AS created_at,"
        " IFNULL(b.run_after, b.created_at) AS run_after,"
        " CASE WHEN b.status != 'queued' THEN b.claim END AS started_at,"
        " CASE WHEN b.status IN ('completed', 'failed', 'cancelled') THEN b.finished END"
        "  AS finished_at,"
        " b.lease_until AS lease_until,"
        f" CASE WHEN b.status != 'queued' THEN {key_of} END AS worker_key,"
        " b.error AS error,"
        " CASE WHEN b.status != 'queued' THEN b.locked_by END AS worker_name"
        f" FROM ({base}) b WHERE b.status IS NOT NULL",
        "CREATE TEMP VIEW IF NOT EXISTS attempts AS SELECT t.id AS task_id,"
        " t.attempts AS attempt, t.worker_key AS worker_key, t.started_at AS claimed_at,"
        " t.finished_at AS finished_at,"
        " CASE WHEN t.finished_at IS NOT NULL AND t.status IN ('completed', 'failed',"
        " 'cancelled') THEN t.status END AS outcome,"
        " CASE WHEN t.status IN ('failed', 'cancelled') THEN t.error END AS error"
        " FROM temp.tasks t WHERE t.started_at IS NOT NULL",
        "CREATE TEMP VIEW IF NOT EXISTS heartbeats AS"
        " SELECT NULL AS worker_key, NULL AS at, NULL AS task_id WHERE 0",
        "CREATE TEMP VIEW IF NOT EXISTS worker_events AS SELECT NULL AS id,"
        " NULL AS worker_key, NULL AS at, NULL AS event, NULL AS capabilities WHERE 0",
        "CREATE TEMP VIEW IF NOT EXISTS heartbeat_rollups AS SELECT NULL AS worker_key,"
        " NULL AS minute, NULL AS beats, NULL AS first_at, NULL AS last_at,"
        " NULL AS last_task_id WHERE 0",
        "CREATE TEMP VIEW IF NOT EXISTS meta AS SELECT NULL AS key, NULL AS value WHERE 0",
    ]
    for statement in statements:
        conn.execute(statement)
    return CAPABILITIES


# -- read functions -------------------------------------------------------------------------
def _decode(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"value": text}
    return value if isinstance(value, dict) else {"value": value}


def _float(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype="float64")


def workers(
    db: Store,
    *,
    at: float,
    active_s: float,
    stale_s: float,
    include_removed: bool,
) -> pd.DataFrame:
    """The workers of a classic queue database, as :func:`qanalytics.workers` frames them.

    Parameters
    ----------
    db : Store
        A store with ``layout == "classic"``.
    at : float
        The moment to answer at, epoch seconds.
    active_s, stale_s : float
        The active and stale thresholds, seconds (already checked).
    include_removed : bool
        As for :func:`qanalytics.workers`, which checks the arguments and calls this.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`qanalytics.workers`, except that ``heartbeats`` is ``Int64``
        and ``<NA>`` (no history), ``registered_at`` and ``removed_at`` are missing, and
        ``tasks_completed`` / ``tasks_failed`` count tasks whose final claim by the worker
        completed or failed for good. A worker whose last heartbeat is after `now` has no
        known state then (state and last heartbeat missing).
    """
    registered = db.query(
        "SELECT worker_id, capabilities, last_heartbeat_at FROM workers",
        action="read workers",
    )
    done = db.query(
        "SELECT worker_name, status, count(*) FROM tasks WHERE worker_name IS NOT NULL"
        " AND finished_at <= ? AND status IN ('completed', 'failed') GROUP BY 1, 2",
        (at,),
        action="count finished tasks per worker",
    )
    held = db.query(
        "SELECT worker_name, id FROM tasks WHERE worker_name IS NOT NULL AND started_at <= ?1"
        " AND (finished_at IS NULL OR finished_at > ?1) AND status != 'queued'"
        " ORDER BY started_at, id",
        (at,),
        action="read the tasks workers hold",
    )
    counts = {(str(w), str(s)): int(n) for w, s, n in done}
    current = {str(w): int(i) for w, i in held}  # the latest claim wins
    rows = [(str(w), caps, last, False) for w, caps, last in registered]
    if include_removed:
        known = {r[0] for r in rows}
        gone = {w for w, _s in counts} | set(current)
        rows += [(w, None, None, True) for w in sorted(gone - known)]
    rows.sort(key=lambda r: r[0])
    ids = [r[0] for r in rows]
    last = _float([r[2] for r in rows])
    removed = np.array([r[3] for r in rows], dtype=bool)
    future = last > at  # no history: the state at `now` is unknown
    last = np.where(future, np.nan, last)
    since_s = at - last
    state = np.where(
        since_s > stale_s, "stale", np.where(since_s <= active_s, "active", "late")
    ).astype(object)
    state[np.isnan(last) & ~future] = "stale"
    state[future] = None
    state[removed] = "removed"
    caps = [_decode(r[1]) for r in rows]
    frame = pd.DataFrame(
        {
            "worker_id": pd.Categorical(ids, categories=sorted(ids)),
            "state": pd.Categorical(state, dtype=STATE_DTYPE),
            "registered_at": as_utc(np.full(len(rows), np.nan)),
            "last_heartbeat_at": as_utc(last),
            "removed_at": as_utc(np.full(len(rows), np.nan)),
            "since_heartbeat_s": since_s,
            "heartbeats": pd.array([None] * len(rows), dtype="Int64"),
            "current_task_id": pd.array(
                [None if r[3] else current.get(r[0]) for r in rows], dtype="Int64"
            ),
            "tasks_completed": np.array(
                [counts.get((w, "completed"), 0) for w in ids], dtype="int64"
            ),
            "tasks_failed": np.array([counts.get((w, "failed"), 0) for w in ids], dtype="int64"),
            "capabilities": pd.Series(caps, dtype=object),
        }
    )
    for cap_key in sorted({k for c in caps for k in c}):
        frame[f"cap_{cap_key}"] = pd.Series([c.get(cap_key) for c in caps], dtype=object)
    return frame


def tasks(
    db: Store,
    *,
    status: list[str] | None = None,
    types: list[str] | None = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The tasks of a classic queue database, as :func:`qanalytics.tasks` frames them.

    Parameters
    ----------
    db : Store
        A store with ``layout == "classic"``.
    status, types : list of str or None
        Already checked by :func:`qanalytics.tasks`.
    since, until, now
        As for :func:`qanalytics.tasks`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`qanalytics.tasks`. ``attempts`` (claims) is ``Int64``;
        ``first_claimed_at`` and ``wait_s`` are known only for tasks claimed once. As of a
        `now` before a retried task's latest claim, its status, claims and holder are
        unknown (missing), since earlier claims are not recorded.
    """
    lo, hi, at = resolve_window(db, since, until, now)
    where, params = window_where("created_at", lo, hi)
    if types is not None:
        clause, values = in_list_sql("type", types)
        where.append(clause)
        params.extend(values)
    rows = db.query(
        "SELECT id, type, status, priority, attempts, max_attempts, created_at, run_after,"
        " started_at, finished_at, worker_name, error FROM tasks WHERE "
        + " AND ".join(where)
        + " ORDER BY id",
        params,
        action="read tasks",
    )
    ids = np.array([r[0] for r in rows], dtype="int64")
    stored = np.array([r[2] for r in rows], dtype=object)
    claims = np.array([r[4] for r in rows], dtype="int64")
    created = _float([r[6] for r in rows])
    claim = _float([r[8] for r in rows])
    fin = _float([r[9] for r in rows])
    # As of the present (nothing recorded after `now`) the stored row is the state.
    latest = db.latest_event_at()
    current = latest is None or at >= latest
    final = fin <= at
    claimed = ~final & (claim <= at)
    # Before its latest claim a task claimed more than once may have been in an earlier
    # attempt or waiting for a retry: unknown.
    unknown = ~final & ~claimed & (claims > 1) & (not current)
    state = np.where(final, stored, np.where(claimed, "processing", "queued")).astype(object)
    state[unknown] = None
    if current:
        state = stored.copy()
    count = pd.array(np.where(final | claimed | current, claims, 0), dtype="Int64")
    count[unknown] = pd.NA
    known_claim = final | claimed
    started = np.where(known_claim, claim, np.nan)
    first = np.where(known_claim & (claims == 1), claim, np.nan)
    finished = np.where(final, fin, np.nan)
    holder = np.array(
        [r[10] if k else None for r, k in zip(rows, known_claim & ~np.isnan(claim), strict=True)],
        dtype=object,
    )
    error = np.array(
        [
            r[11] if (f or (current and s == "queued" and c > 0)) else None
            for r, f, s, c in zip(rows, final, stored, claims, strict=True)
        ],
        dtype=object,
    )
    types_raw = [str(r[1]) for r in rows]
    names = sorted({h for h in holder if h is not None})
    frame = pd.DataFrame(
        {
            "id": ids,
            "type": pd.Categorical(types_raw, categories=sorted(set(types_raw))),
            "status": pd.Categorical(state, dtype=STATUS_DTYPE),
            "priority": np.array([r[3] for r in rows], dtype="int64"),
            "attempts": count,
            "max_attempts": np.array([r[5] for r in rows], dtype="int64"),
            "created_at": as_utc(created),
            "run_after": as_utc(_float([r[7] for r in rows])),
            "first_claimed_at": as_utc(first),
            "started_at": as_utc(started),
            "finished_at": as_utc(finished),
            "worker_id": pd.Categorical(holder, categories=names),
            "wait_s": first - created,
            "run_s": finished - started,
            "error": pd.Series(error, dtype=object),
        }
    )
    if status is not None:
        frame = frame[frame["status"].isin(status)].reset_index(drop=True)
    return frame
