"""Write side of the worker registry: register, heartbeat, remove; and liveness classes.

A worker is *active* when its last heartbeat is at most ``active_within`` seconds old,
*stale* when it is more than ``stale_after`` seconds old, and *late* in between. Removal
is soft: the worker's row, events and heartbeat history stay for analysis, and
registering the same id again revives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import WorkerNotFound
from ..history.intervals import check_interval
from ..history.model import (
    MAX_ID_LENGTH,
    MAX_JSON_DEPTH,
    WORKER_COLUMNS,
    Worker,
    check_worker_id,
    decode_json,
    encode_json,
    json_depth,
    worker_from_row,
)
from ..state import classify
from ..store import Store
from ..store.base import Connection

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "Worker",
    "check_worker_id",
    "classify",
    "decode_json",
    "encode_json",
    "get_worker",
    "heartbeat",
    "json_depth",
    "list_workers",
    "register_worker",
    "remove_worker",
]


def register_worker(
    db: Store,
    worker_id: str,
    capabilities: Mapping[str, Any] | None = None,
    *,
    interval: Any = None,
) -> Worker:
    """Register a worker, or update an existing one (UPSERT).

    Stamps the registration time and a first heartbeat (which is also kept in the
    history), and logs ``registered`` (new or revived) or ``updated`` (capabilities
    refreshed while registered) in ``worker_events``. Registering a removed worker
    revives it.

    Parameters
    ----------
    db : Store
        A writable store.
    worker_id : str
        1 to 200 characters.
    capabilities : dict, optional
        A JSON-serialisable dict describing what the worker can do.
    interval : float, str or None, optional
        How often the worker will beat (seconds or a duration string such as ``"2s"``).
        The liveness model (:mod:`qanalytics.history.intervals`) holds the worker to it:
        late after three intervals of silence, stale after ten. None: the interval is
        learned from the worker's own beats (or an earlier declaration still holds).

    Returns
    -------
    Worker
        The worker as stored after the call.

    Raises
    ------
    TypeError, ValueError
        For a bad id or capabilities that are not a JSON-serialisable dict.
    ReadOnlyError
        If the store is read-only.
    """
    check_worker_id(worker_id)
    declared = check_interval(interval)
    caps = encode_json(
        {} if capabilities is None else capabilities, name="capabilities", require_dict=True
    )
    action = f"register worker {worker_id!r}"
    with db.transaction(action) as conn:
        now = db.now()
        row = conn.execute(
            "SELECT worker_key, removed_at FROM workers WHERE worker_id = ?", (worker_id,)
        ).fetchone()
        if row is None:
            key = conn.execute(
                "INSERT INTO workers"
                " (worker_id, capabilities, registered_at, last_heartbeat_at, heartbeats)"
                " VALUES (?, ?, ?, ?, 1) RETURNING worker_key",
                (worker_id, caps, now, now),
            ).fetchone()[0]
            event = "registered"
        else:
            key, removed_at = row
            event = "registered" if removed_at is not None else "updated"
            if removed_at is not None:
                conn.execute(
                    "UPDATE workers SET capabilities = ?, registered_at = ?,"
                    " last_heartbeat_at = ?, removed_at = NULL, heartbeats = heartbeats + 1"
                    " WHERE worker_key = ?",
                    (caps, now, now, key),
                )
            else:
                conn.execute(
                    "UPDATE workers SET capabilities = ?, last_heartbeat_at = ?,"
                    " heartbeats = heartbeats + 1 WHERE worker_key = ?",
                    (caps, now, key),
                )
        if declared is None:
            conn.execute(
                "INSERT INTO worker_events (worker_key, at, event, capabilities)"
                " VALUES (?, ?, ?, ?)",
                (key, now, event, caps),
            )
        else:
            conn.execute(
                "INSERT INTO worker_events (worker_key, at, event, capabilities, interval_s)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, now, event, caps, declared),
            )
        conn.execute(
            "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, NULL)", (key, now)
        )
        stored = conn.execute(
            f"SELECT {WORKER_COLUMNS} FROM workers WHERE worker_key = ?", (key,)
        ).fetchone()
    return worker_from_row(stored)


def heartbeat(db: Store, worker_id: str, *, task_id: int | None = None) -> bool:
    """Record a heartbeat: update the worker's last beat and append it to the history.

    Both happen in one short transaction, so the history holds exactly the beats that
    returned True.

    Parameters
    ----------
    db : Store
        A writable store.
    worker_id : str
        The beating worker.
    task_id : int, optional
        The task the worker is working on, if any.

    Returns
    -------
    bool
        True if recorded; False for an unknown or removed worker.

    Raises
    ------
    TypeError, ValueError
        For a bad worker id or task id.
    ReadOnlyError
        If the store is read-only.
    """
    check_worker_id(worker_id)
    if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int)):
        raise TypeError(f"task_id must be an int or None, not {type(task_id).__name__}")
    # The hot path of every worker: Store.transaction's generator and nested wrap_errors
    # cost ~10 % of a beat, so the same BEGIN IMMEDIATE / COMMIT / ROLLBACK and the same
    # error wrapping are spelled out here, and the message is only formatted on failure.
    if db.readonly or db.write_setup_pending:
        db.require_writable(f"heartbeat for worker {worker_id!r}")
    conn = db.conn
    if conn.in_transaction:
        # Join the caller's transaction, as Store.transaction does; its own error
        # handling wraps and rolls back.
        return _record_beat(conn, db.now(), worker_id, task_id)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            recorded = _record_beat(conn, db.now(), worker_id, task_id)
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open; later calls would join it.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except db.driver_errors as exc:
        raise db.map_error(f"heartbeat for worker {worker_id!r}", exc) from exc
    return recorded


_UPDATE_LAST_BEAT = (
    "UPDATE workers SET last_heartbeat_at = max(ifnull(last_heartbeat_at, ?1), ?1),"
    " heartbeats = heartbeats + 1"
    " WHERE worker_id = ?2 AND removed_at IS NULL RETURNING worker_key"
)
_INSERT_BEAT = "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)"


def _record_beat(conn: Connection, now: float, worker_id: str, task_id: int | None) -> bool:
    row = conn.execute(_UPDATE_LAST_BEAT, (now, worker_id)).fetchone()
    if row is None:
        return False
    conn.execute(_INSERT_BEAT, (row[0], now, task_id))
    return True


def remove_worker(db: Store, worker_id: str) -> bool:
    """Remove a worker (softly: its row and history stay, and it can be revived).

    Parameters
    ----------
    db : Store
        A writable store.
    worker_id : str

    Returns
    -------
    bool
        True if the worker was registered and is now removed; False if it was unknown
        or already removed.
    """
    check_worker_id(worker_id)
    with db.transaction(f"remove worker {worker_id!r}") as conn:
        now = db.now()
        row = conn.execute(
            "UPDATE workers SET removed_at = ? WHERE worker_id = ? AND removed_at IS NULL"
            " RETURNING worker_key",
            (now, worker_id),
        ).fetchone()
        if row is None:
            return False
        conn.execute(
            "INSERT INTO worker_events (worker_key, at, event) VALUES (?, ?, 'removed')",
            (row[0], now),
        )
    return True


def get_worker(db: Store, worker_id: str) -> Worker:
    """Return one worker, removed or not.

    Parameters
    ----------
    db : Store
    worker_id : str

    Returns
    -------
    Worker

    Raises
    ------
    WorkerNotFound
        If no worker with that id was ever registered.
    """
    check_worker_id(worker_id)
    rows = db.query(
        f"SELECT {WORKER_COLUMNS} FROM workers WHERE worker_id = ?",
        (worker_id,),
        action=f"read worker {worker_id!r}",
    )
    if not rows:
        raise WorkerNotFound(f"no worker {worker_id!r} is registered")
    return worker_from_row(rows[0])


def list_workers(db: Store, *, include_removed: bool = False) -> list[Worker]:
    """Return all workers, most recent heartbeat first.

    Parameters
    ----------
    db : Store
    include_removed : bool, default False

    Returns
    -------
    list of Worker
    """
    where = "" if include_removed else " WHERE removed_at IS NULL"
    rows = db.query(
        f"SELECT {WORKER_COLUMNS} FROM workers{where} ORDER BY last_heartbeat_at DESC, worker_id",
        action="list workers",
    )
    return [worker_from_row(row) for row in rows]
