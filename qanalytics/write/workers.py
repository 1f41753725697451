"""Write side of the worker registry: register, heartbeat, remove; and liveness classes.

A worker is *active* when its last heartbeat is at most ``active_within`` seconds old,
*stale* when it is more than ``stale_after`` seconds old, and *late* in between. Removal
is soft: the worker's row, events and heartbeat history stay for analysis, and
registering the same id again revives it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._time import to_datetime
from ..errors import WorkerNotFound
from ..state import classify
from ..store import Store
from ..store.base import Connection

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "Worker",
    "check_worker_id",
    "classify",
    "get_worker",
    "heartbeat",
    "list_workers",
    "register_worker",
    "remove_worker",
]

#: The longest worker id or task type accepted, in characters.
MAX_ID_LENGTH = 200
#: The deepest nesting of dicts and lists accepted in capabilities and payloads.
MAX_JSON_DEPTH = 64



@dataclass(frozen=True)
class Worker:
    """A registered worker, as stored.

    Attributes
    ----------
    worker_id : str
    capabilities : dict
        What the worker declared it can do (decoded JSON).
    registered_at : datetime
        When the worker was last registered (or revived), UTC.
    last_heartbeat_at : datetime or None
        Its most recent heartbeat, UTC.
    removed_at : datetime or None
        When it was removed; None while registered.
    """

    worker_id: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    registered_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    removed_at: datetime | None = None

    @property
    def last_heartbeat(self) -> datetime | None:
        """Alias of :attr:`last_heartbeat_at`, the classic name."""
        return self.last_heartbeat_at

    @property
    def removed(self) -> bool:
        """Whether the worker has been removed."""
        return self.removed_at is not None

    def seconds_since_heartbeat(self, now: float) -> float | None:
        """Seconds from the last heartbeat to `now` (epoch seconds), or None if none.

        Parameters
        ----------
        now : float
            Epoch seconds.

        Returns
        -------
        float or None
        """
        if self.last_heartbeat_at is None:
            return None
        return now - self.last_heartbeat_at.timestamp()


def check_worker_id(value: Any, *, name: str = "worker_id") -> str:
    """Validate a worker id (or another identifier such as a task type).

    Parameters
    ----------
    value : Any
        The candidate id.
    name : str, default "worker_id"
        The argument's name, for messages.

    Returns
    -------
    str
        The id, unchanged.

    Raises
    ------
    TypeError
        If it is not a string.
    ValueError
        If it is empty or blank, longer than :data:`MAX_ID_LENGTH`, or holds NUL
        characters or text that is not valid Unicode.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty or blank, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed"
        )
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name}={value!r} is not valid Unicode text") from None
    return value


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply dicts, lists and tuples nest in `value`, without recursion.

    Parameters
    ----------
    value : Any
    limit : int, default MAX_JSON_DEPTH
        Stop counting once the depth exceeds this (so the walk stays short).

    Returns
    -------
    int
        0 for a scalar, 1 for a flat container, ...; at most ``limit + 1``. A container
        that contains itself is not followed into again.
    """
    if not isinstance(value, (Mapping, list, tuple)):
        return 0

    def children(container: Any) -> Any:
        return iter(container.values() if isinstance(container, Mapping) else container)

    stack = [children(value)]
    path = [id(value)]
    deepest = 1
    while stack:
        child = next(stack[-1], stack)  # the stack itself marks the end
        if child is stack:
            stack.pop()
            path.pop()
        elif isinstance(child, (Mapping, list, tuple)) and id(child) not in path:
            stack.append(children(child))
            path.append(id(child))
            deepest = max(deepest, len(stack))
            if deepest > limit:
                break
    return deepest


def decode_json(text: str) -> Any:
    """Parse stored JSON text; text that cannot be parsed is returned as it is.

    A store written by qanalytics holds only valid JSON no deeper than
    :data:`MAX_JSON_DEPTH`, but a file written by other means may hold anything: a value
    malformed or nested too deeply for the parser reads as its text instead of failing.

    Parameters
    ----------
    text : str

    Returns
    -------
    Any
    """
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return text


def encode_json(value: Any, *, name: str, require_dict: bool = False) -> str:
    """Serialise a value as JSON text, or raise a clear error.

    Parameters
    ----------
    value : Any
        The value; NaN and infinities are refused.
    name : str
        The argument's name, for messages.
    require_dict : bool
        Whether only a dict (with string keys) is acceptable.

    Returns
    -------
    str
    """
    if require_dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be strings, got {key!r}")
        value = dict(value)
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(
            f"{name} is nested more than {MAX_JSON_DEPTH} levels deep; at most "
            f"{MAX_JSON_DEPTH} levels of dicts and lists are allowed"
        )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=require_dict)
        text.encode("utf-8")
    except UnicodeEncodeError:  # a ValueError subclass, so it must come first
        raise ValueError(f"{name} holds text that is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable: {exc}") from None
    return text


def _decode_capabilities(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = decode_json(text)
    return value if isinstance(value, dict) else {"value": value}


def _worker_from_row(row: tuple[Any, ...]) -> Worker:
    worker_id, capabilities, registered_at, last_heartbeat_at, removed_at = row
    return Worker(
        worker_id=worker_id,
        capabilities=_decode_capabilities(capabilities),
        registered_at=to_datetime(registered_at),
        last_heartbeat_at=to_datetime(last_heartbeat_at),
        removed_at=to_datetime(removed_at),
    )


_WORKER_COLUMNS = "worker_id, capabilities, registered_at, last_heartbeat_at, removed_at"


def register_worker(
    db: Store, worker_id: str, capabilities: Mapping[str, Any] | None = None
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
        conn.execute(
            "INSERT INTO worker_events (worker_key, at, event, capabilities) VALUES (?, ?, ?, ?)",
            (key, now, event, caps),
        )
        conn.execute(
            "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, NULL)", (key, now)
        )
        stored = conn.execute(
            f"SELECT {_WORKER_COLUMNS} FROM workers WHERE worker_key = ?", (key,)
        ).fetchone()
    return _worker_from_row(stored)


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
        f"SELECT {_WORKER_COLUMNS} FROM workers WHERE worker_id = ?",
        (worker_id,),
        action=f"read worker {worker_id!r}",
    )
    if not rows:
        raise WorkerNotFound(f"no worker {worker_id!r} is registered")
    return _worker_from_row(rows[0])


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
        f"SELECT {_WORKER_COLUMNS} FROM workers{where} ORDER BY last_heartbeat_at DESC, worker_id",
        action="list workers",
    )
    return [_worker_from_row(row) for row in rows]
