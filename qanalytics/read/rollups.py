"""Reading the heartbeat history that :func:`qanalytics.maintenance.prune` rolled up.

Past the retention horizon, beats live in ``heartbeat_rollups``: one row per worker and
minute. These readers let the read side tell "no beats" from "pruned to minutes".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from .._docstrings import share_docs
from .._time import TimeLike, resolve_time
from ..history.marks import (
    META_HEARTBEAT_BATCHES,
    META_HEARTBEATS_PRUNED_BEFORE,
    META_HEARTBEATS_SUMMARIZED_UNTIL,
    META_TASKS_PRUNED_BEFORE,
    ROLLUP_SECONDS,
    has_table,
    history_horizon,
    minute_floor,
)
from ..store import Store
from .common import UTC_DTYPE, as_category, as_utc, empty_frame, resolve_window

__all__ = [
    "META_HEARTBEATS_PRUNED_BEFORE",
    "META_HEARTBEATS_SUMMARIZED_UNTIL",
    "META_HEARTBEAT_BATCHES",
    "META_TASKS_PRUNED_BEFORE",
    "ROLLUP_SECONDS",
    "heartbeat_rollups",
    "history_horizon",
    "raw_history_starts_at",
    "rollup_columns",
    "rollup_totals",
    "stable_read",
]

_ROLLUP_DTYPES: dict[str, Any] = {
    "worker_id": "category",
    "minute": UTC_DTYPE,
    "beats": "int64",
    "first_at": UTC_DTYPE,
    "last_at": UTC_DTYPE,
    "last_task_id": "Int64",
}



def _moment(db: Store, value: Any, name: str) -> float:
    # Epoch seconds pass as they are (the read side's hot path); anything else is read
    # as the reads read times: ISO strings, datetimes, or durations back from the clock.
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value)
    return resolve_time(value, now=db.now(), name=name)


def as_timestamp(seconds: float | None) -> pd.Timestamp | None:
    # Rounded to microseconds: float epochs convert up to ~65 ns off otherwise.
    return None if seconds is None else pd.Timestamp(round(float(seconds), 6), unit="s", tz="UTC")



@share_docs
def raw_history_starts_at(db: Store) -> pd.Timestamp | None:
    """The moment before which raw heartbeats were pruned (rolled up into minutes).

    Before it, the heartbeat history exists only at minute resolution
    (:func:`heartbeat_rollups`); from it on, every beat is kept.

    Parameters
    ----------
    {db}

    Returns
    -------
    pandas.Timestamp or None
        UTC; None if the store was never pruned (the raw history is complete).
    """
    horizon = history_horizon(db)
    return as_timestamp(horizon)


@share_docs
def heartbeat_rollups(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    workers: Any = None,
) -> pd.DataFrame:
    """Heartbeats rolled up by :func:`qanalytics.maintenance.prune`: one row per worker and minute.

    Parameters
    ----------
    {db}
    {since_until}
        Minutes that start in ``[since, until]``.
    {now}
        `until` never exceeds it.
    workers : str or list of str, optional
        Only these worker ids.

    Returns
    -------
    pandas.DataFrame
        Columns ``worker_id`` (category), ``minute`` (the bucket's start),
        ``beats`` (int64), ``first_at``, ``last_at`` (timestamps, UTC) and
        ``last_task_id`` (Int64, the task of the minute's last beat). Sorted by worker
        id, then minute. Empty, with these columns, for a store never pruned or with
        a schema older than the rollups.
    """
    lo, hi, _at = resolve_window(db, since, until, now)
    names: list[str] | None = None
    if workers is not None:
        names = [workers] if isinstance(workers, str) else list(workers)
        for name in names:
            if not isinstance(name, str):
                raise TypeError(f"workers must be a str or a list of str, not {workers!r}")
    if not has_table(db, "heartbeat_rollups"):
        return empty_frame(_ROLLUP_DTYPES)
    sql = (
        "SELECT w.worker_id, r.minute * 1.0, r.beats, r.first_at, r.last_at,"
        " IFNULL(r.last_task_id, -1) FROM heartbeat_rollups r"
        " JOIN workers w ON w.worker_key = r.worker_key WHERE r.minute <= ?"
    )
    params: list[Any] = [hi]
    if lo is not None:
        sql += " AND r.minute >= ?"
        params.append(lo)
    if names is not None:
        if not names:
            return empty_frame(_ROLLUP_DTYPES)
        sql += " AND w.worker_id IN (" + ", ".join("?" * len(names)) + ")"
        params.extend(names)
    sql += " ORDER BY w.worker_id, r.minute"
    raw = db.read_frame(
        sql,
        params,
        columns={
            "worker_id": "str",
            "minute": "float64",
            "beats": "int64",
            "first_at": "float64",
            "last_at": "float64",
            "last_task_id": "int?",
        },
        action="read heartbeat rollups",
    )
    if raw.empty:
        return empty_frame(_ROLLUP_DTYPES)
    return pd.DataFrame(
        {
            "worker_id": as_category(raw["worker_id"].to_numpy()),
            "minute": as_utc(raw["minute"].to_numpy()),
            "beats": raw["beats"].astype("int64"),
            "first_at": as_utc(raw["first_at"].to_numpy()),
            "last_at": as_utc(raw["last_at"].to_numpy()),
            "last_task_id": raw["last_task_id"].astype("Int64"),
        }
    )


@share_docs
def rollup_columns(
    db: Store,
    *,
    since: TimeLike | None,
    until: TimeLike,
    keys: list[int] | None = None,
    prior: bool = False,
) -> dict[str, Any]:
    """Rolled-up minutes as arrays keyed by worker key, for the read side.

    Parameters
    ----------
    {db}
    since : time-like, duration or None
        Rows whose minute ends at or after it (a minute that holds `since` is included
        whole). None for no lower bound. Epoch seconds, an ISO string, a datetime, or a
        duration back from the store clock (``"1d"``), as the reads take times.
    until : time-like or duration
        Rows whose first beat is at or before it.
    keys : list of int, optional
        Only these worker keys.
    prior : bool, default False
        With `since`, also each worker's latest row before the minute that holds it,
        so a silence that spans `since` can be measured from its last beat.

    Returns
    -------
    dict of str to numpy.ndarray
        ``worker_key`` (int64), ``minute``, ``first_at``, ``last_at`` (float64 epoch
        seconds), ``beats`` and ``last_task_id`` (int64, -1 for none), unordered. Empty
        arrays for a store without rollups.
    """
    columns = {
        "worker_key": "int64",
        "minute": "float64",
        "beats": "int64",
        "first_at": "float64",
        "last_at": "float64",
        "last_task_id": "int64",
    }
    empty = {
        name: np.empty(0, dtype="float64" if kind == "float64" else "int64")
        for name, kind in columns.items()
    }
    since = None if since is None else _moment(db, since, "since")
    until = _moment(db, until, "until")
    if (keys is not None and not keys) or not has_table(db, "heartbeat_rollups"):
        return empty
    select = (
        "SELECT r.worker_key, r.minute * 1.0, r.beats, r.first_at, r.last_at,"
        " IFNULL(r.last_task_id, -1) FROM heartbeat_rollups r"
    )
    # The bounds on `minute` let SQLite use the minute index; first_at does the rest.
    where = ["r.minute <= ?", "r.first_at <= ?"]
    params: list[Any] = [until, until]
    if since is not None:
        where.append("r.minute >= ?")
        params.append(minute_floor(since))
    key_clause = ""
    if keys is not None:
        key_clause = "r.worker_key IN (" + ", ".join("?" * len(keys)) + ")"
        where.append(key_clause)
        params.extend(keys)
    sql = select + " WHERE " + " AND ".join(where)
    if prior and since is not None:
        # Each worker's latest earlier minute, by the (worker_key, minute) primary key.
        sql += (
            " UNION ALL " + select + " JOIN workers w ON r.worker_key = w.worker_key"
            " AND r.minute = (SELECT max(r2.minute) FROM heartbeat_rollups r2"
            " WHERE r2.worker_key = w.worker_key AND r2.minute < ?)"
        )
        params.append(minute_floor(since))
        if keys is not None:
            sql += " WHERE " + key_clause
            params.extend(keys)
    raw = db.read_columns(sql, params, columns=columns, action="read heartbeat rollups")
    if len(raw["worker_key"]) == 0:
        return empty
    return {name: np.asarray(raw[name], dtype=empty[name].dtype) for name in columns}


@share_docs
def rollup_totals(db: Store, *, until: TimeLike) -> dict[int, tuple[int, float]]:
    """Per worker key, the beats rolled up and the last of them, as of `until`.

    Parameters
    ----------
    {db}
    until : time-like or duration
        Beats are counted in the minutes whose last beat is at or before it; the last
        beat is the latest kept (a minute's first or last) at or before it. Epoch
        seconds, an ISO string, a datetime, or a duration back from the store clock.

    Returns
    -------
    dict of int to (int, float)
        ``{worker_key: (beats, last_at)}``; empty for a store without rollups.
    """
    until = _moment(db, until, "until")
    if not has_table(db, "heartbeat_rollups"):
        return {}
    rows = db.query(
        "SELECT worker_key, sum(CASE WHEN last_at <= ?1 THEN beats ELSE 0 END),"
        " max(CASE WHEN last_at <= ?1 THEN last_at ELSE first_at END)"
        " FROM heartbeat_rollups WHERE first_at <= ?1 AND minute <= ?1 GROUP BY worker_key",
        (until,),
        action="count rolled-up heartbeats",
    )
    return {int(k): (int(n), float(last)) for k, n, last in rows}


# -- reading rollups ----------------------------------------------------------------------
_T = TypeVar("_T")



#: Reads :func:`stable_read` tries before it falls back to one snapshot transaction.
_OPTIMISTIC_READS = 3



def _batches_committed(db: Store) -> Any:
    rows = db.query(
        "SELECT value FROM meta WHERE key = ?",
        (META_HEARTBEAT_BATCHES,),
        action="read the prune batch counter",
    )
    return rows[0][0] if rows else None



def stable_read(db: Store, read: Callable[[], _T]) -> _T:
    """Run `read` so that it sees the heartbeat history at one moment of any prune.

    A reader that combines raw heartbeats, rollups and the horizon runs several queries;
    a prune batch committed between them would show some beats twice or not at all.
    Every batch bumps a counter in ``meta`` in its own transaction, so `read` is run
    between two reads of the counter and run again if it moved. After a few moved
    counters (a prune busy with small batches), `read` runs inside one read transaction
    (a snapshot; ``REPEATABLE READ`` on PostgreSQL), which costs the faster side reader.

    Parameters
    ----------
    db : Store
    read : callable
        Takes no arguments and only reads from `db`.

    Returns
    -------
    object
        What `read` returned.
    """
    if db.conn.in_transaction or not has_table(db, "meta"):
        return read()  # inside a transaction already, or a store that cannot be pruned
    for _ in range(_OPTIMISTIC_READS):
        before = _batches_committed(db)
        result = read()
        if _batches_committed(db) == before:
            return result
        del result  # a large read is dropped before it is read again
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ" if db.dialect == "postgresql" else "BEGIN"
    with db.wrap_errors("start a read transaction"):
        db.conn.execute(begin)
    try:
        return read()
    finally:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")  # nothing was written

