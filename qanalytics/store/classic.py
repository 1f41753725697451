"""Recognising classic queue databases (``task_queue`` and ``workers`` tables, text
timestamps) and presenting them in the native shape.

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

What follows from that (:mod:`qanalytics.read.classic` reads workers and tasks; every
other read function raises :class:`UnsupportedError`, which
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

import sqlite3

from .schema import APPLICATION_ID

__all__ = ["CAPABILITIES", "install_views", "is_classic"]

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
