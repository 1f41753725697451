"""Retention and upkeep of a store: rollups, pruning, checkpoints, vacuum, checks, stats.

A heartbeat history grows by millions of rows a day. :func:`prune` keeps the recent
past raw and rolls older beats up into one row per worker and minute
(``heartbeat_rollups``: beats, first and last beat, the last task seen), so the long
view stays queryable at minute resolution. :func:`raw_history_starts_at` says where the
raw history begins, and :func:`heartbeat_rollups` reads the rolled-up minutes, so the read
side can tell "no beats" from "pruned to minutes".

Every function takes a :class:`~qanalytics.store.Store` first. :func:`prune`,
:func:`checkpoint` and :func:`vacuum` need a writable store; :func:`integrity_check`,
:func:`stats`, :func:`heartbeat_rollups` and :func:`raw_history_starts_at` work on a
read-only one and never change the file.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from ._frame import UTC_DTYPE, as_category, as_utc, empty_frame, resolve_window
from ._time import parse_duration
from .errors import UnsupportedError
from .schema import OUTCOMES, TASK_STATUSES, WORKER_EVENTS
from .store import Store, wrap_errors

__all__ = [
    "CHECKPOINT_MODES",
    "ROLLUP_SECONDS",
    "CheckpointResult",
    "PruneResult",
    "VacuumResult",
    "checkpoint",
    "heartbeat_rollups",
    "history_horizon",
    "integrity_check",
    "prune",
    "raw_history_starts_at",
    "rollup_columns",
    "rollup_totals",
    "stable_read",
    "stats",
    "vacuum",
]

#: Width of one rollup bucket, in seconds.
ROLLUP_SECONDS = 60
#: Accepted ``mode`` values of :func:`checkpoint` (SQLite's ``wal_checkpoint`` modes).
CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")

#: ``meta`` keys written by :func:`prune`.
META_HEARTBEATS_PRUNED_BEFORE = "heartbeats_pruned_before"
META_TASKS_PRUNED_BEFORE = "tasks_pruned_before"
#: ``meta`` key counting the heartbeat batches :func:`prune` has committed.
META_HEARTBEAT_BATCHES = "heartbeat_prune_batches"

_FINISHED = ("completed", "failed", "cancelled")

_ROLLUP_DTYPES: dict[str, Any] = {
    "worker_id": "category",
    "minute": UTC_DTYPE,
    "beats": "int64",
    "first_at": UTC_DTYPE,
    "last_at": UTC_DTYPE,
    "last_task_id": "Int64",
}


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` did.

    Attributes
    ----------
    cutoff : float
        Epoch seconds, aligned down to a minute: heartbeats before it were rolled up.
    heartbeats_rolled_up : int
        Raw heartbeats folded into rollups and deleted.
    rollup_rows : int
        Rollup rows inserted or merged into (one per worker, minute and batch).
    finished_cutoff : float or None
        Epoch seconds: finished tasks that ended before it were deleted; None when
        `finished_keep` was not given.
    tasks_deleted, attempts_deleted : int
        Finished tasks, and their attempts, deleted.
    transactions : int
        Write transactions used (each touches at most `batch` rows of one table).
    """

    cutoff: float
    heartbeats_rolled_up: int = 0
    rollup_rows: int = 0
    finished_cutoff: float | None = None
    tasks_deleted: int = 0
    attempts_deleted: int = 0
    transactions: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The result as a plain dict (for JSON output).

        Returns
        -------
        dict
        """
        return asdict(self)


@dataclass(frozen=True)
class CheckpointResult:
    """What :func:`checkpoint` reported (SQLite's ``PRAGMA wal_checkpoint`` row).

    Attributes
    ----------
    mode : str
    busy : bool
        Whether the checkpoint could not finish because readers or writers were active.
    wal_frames : int
        Frames in the WAL file (-1 when the store is not in WAL mode).
    checkpointed_frames : int
        Frames copied back into the database (-1 when not in WAL mode).
    """

    mode: str
    busy: bool
    wal_frames: int
    checkpointed_frames: int

    def as_dict(self) -> dict[str, Any]:
        """The result as a plain dict.

        Returns
        -------
        dict
        """
        return asdict(self)


@dataclass(frozen=True)
class VacuumResult:
    """What :func:`vacuum` did.

    Attributes
    ----------
    mode : {"incremental", "full", "none"}
        ``"none"`` when nothing was done (see `note`).
    pages_before, pages_after : int
        The database's page count.
    free_pages_before, free_pages_after : int
        Pages on the freelist (unused space inside the file).
    bytes_freed : int
        ``(pages_before - pages_after) * page_size``.
    note : str
        Why nothing was done, or an empty string.
    """

    mode: str
    pages_before: int
    pages_after: int
    free_pages_before: int
    free_pages_after: int
    bytes_freed: int
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The result as a plain dict.

        Returns
        -------
        dict
        """
        return asdict(self)


# -- helpers ------------------------------------------------------------------------------
def _has_table(db: Store, name: str) -> bool:
    rows = db.query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        (name,),
        action=f"look for table {name!r}",
    )
    return bool(rows)


def _require_rollups(db: Store, action: str) -> None:
    if not _has_table(db, "heartbeat_rollups"):
        raise UnsupportedError(
            f"cannot {action}: the store {db.path!r} has schema version {db.schema_version}, "
            "without rollup tables; open it writable once to migrate it"
        )


def _meta_get(db: Store, key: str) -> Any:
    if not _has_table(db, "meta"):
        return None
    rows = db.query("SELECT value FROM meta WHERE key = ?", (key,), action=f"read meta {key!r}")
    return rows[0][0] if rows else None


def _check_batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, not {type(batch).__name__}")
    if batch < 1 or batch > 1_000_000:
        raise ValueError(f"batch={batch!r} must be between 1 and 1,000,000")
    return batch


def _minute_floor(at: float) -> float:
    return math.floor(at / ROLLUP_SECONDS) * float(ROLLUP_SECONDS)


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row")


# -- prune --------------------------------------------------------------------------------
def _rollup_batch(db: Store, cutoff: float, batch: int) -> tuple[int, int, float]:
    """Roll up and delete the oldest heartbeats before `cutoff`, in one transaction.

    The batch ends at a moment, the horizon it records in the same transaction: every
    beat before it is rolled up, every beat at or after it is raw. Readers that trust the
    horizon therefore see each beat once at every commit, whatever happens to the rest of
    the prune. Returns the beats moved, the rollup rows written and that horizon.
    """
    select = "SELECT rowid, worker_key, at, task_id FROM heartbeats"
    with db.transaction("roll up old heartbeats") as conn:
        # One row more than the batch says where the next batch starts.
        rows = conn.execute(
            select + " WHERE at < ? ORDER BY at, rowid LIMIT ?", (cutoff, batch + 1)
        ).fetchall()
        boundary = cutoff
        if len(rows) > batch:
            boundary = float(rows[batch][2])
            rows = [row for row in rows[:batch] if row[2] < boundary]
            if not rows:
                # More than `batch` beats share the oldest moment: move all of them, so
                # the horizon never splits beats that happened at the same time.
                rows = conn.execute(select + " WHERE at = ? ORDER BY rowid", (boundary,)).fetchall()
                boundary = math.nextafter(boundary, math.inf)
        buckets: dict[tuple[int, int], list[Any]] = {}
        if rows:
            # (worker, minute) -> [beats, first_at, last_at, last_task_id]; rows come in
            # time order, so the last row seen for a bucket carries its last task.
            for _rowid, key, at, task_id in rows:
                minute = int(_minute_floor(at))
                bucket = buckets.get((key, minute))
                if bucket is None:
                    buckets[(key, minute)] = [1, at, at, task_id]
                else:
                    bucket[0] += 1
                    bucket[2] = at
                    bucket[3] = task_id
            conn.executemany(
                "INSERT INTO heartbeat_rollups"
                " (worker_key, minute, beats, first_at, last_at, last_task_id)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (worker_key, minute) DO UPDATE SET"
                # Existing columns are qualified: PostgreSQL finds them ambiguous otherwise.
                "  beats = heartbeat_rollups.beats + excluded.beats,"
                "  first_at = min(heartbeat_rollups.first_at, excluded.first_at),"
                "  last_task_id = CASE WHEN excluded.last_at >= heartbeat_rollups.last_at"
                "   THEN excluded.last_task_id ELSE heartbeat_rollups.last_task_id END,"
                "  last_at = max(heartbeat_rollups.last_at, excluded.last_at)",
                [(key, minute, *values) for (key, minute), values in buckets.items()],
            )
            deleted = conn.execute("DELETE FROM heartbeats WHERE at < ?", (boundary,)).rowcount
            if deleted != len(rows):  # pragma: no cover - the transaction holds the write lock
                raise RuntimeError(f"rolled up {len(rows)} heartbeats but deleted {deleted}")
            # Readers compare this counter before and after a read (see stable_read).
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, 1)"
                " ON CONFLICT (key) DO UPDATE SET value = meta.value + 1",
                (META_HEARTBEAT_BATCHES,),
            )
        _set_horizon(conn, META_HEARTBEATS_PRUNED_BEFORE, boundary)
        return len(rows), len(buckets), boundary


def _prune_tasks_batch(db: Store, cutoff: float, batch: int) -> tuple[int, int]:
    with db.transaction("delete old finished tasks") as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM tasks WHERE status IN (?, ?, ?) AND finished_at < ?"
                " ORDER BY id LIMIT ?",
                (*_FINISHED, cutoff, batch),
            ).fetchall()
        ]
        if not ids:
            return 0, 0
        marks = ", ".join("?" * len(ids))
        attempts = conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", ids).rowcount
        tasks = conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", ids).rowcount
        return tasks, attempts


def _set_horizon(conn: Any, key: str, value: float) -> None:
    # The horizon only moves forward: a later prune with a longer `keep` cannot bring
    # back beats that are already minutes. Runs inside the caller's transaction.
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = max(meta.value, excluded.value)",
        (key, value),
    )


def prune(
    db: Store,
    *,
    keep: Any = "7d",
    now: Any = None,
    finished_keep: Any = None,
    batch: int = 5000,
    progress: bool = False,
    on_batch: Callable[[int, float], Any] | None = None,
) -> PruneResult:
    """Roll up heartbeats older than `keep` into per-minute rows, then delete them.

    Each heartbeat before the cutoff (``now - keep``, aligned down to a whole minute) is
    folded into ``heartbeat_rollups``, one row per worker and minute holding the number
    of beats, the first and last beat and the task id of the last beat, and deleted
    from ``heartbeats``. Work is done in transactions of at most `batch` rows (more only
    when more than `batch` beats share one moment), so writers wait for the lock at most
    one batch at a time. Rollups merge: running again after more beats aged out adds to
    the existing rows (sums of beats, min of first, max of last), and running twice with
    the same `now` changes nothing the second time.

    Beats are rolled up oldest first, and each batch records how far it got (the horizon,
    see :func:`raw_history_starts_at`) in the same transaction that moves its beats. So
    at every moment of a prune, and after one that was killed or failed part way, the
    raw beats and the rollups together hold every beat exactly once, and readers see
    them all; running `prune` again finishes the job. The horizon only moves forward and
    ends at the cutoff. Worker rows keep ``last_heartbeat_at``, so liveness "now" is
    unaffected.

    Parameters
    ----------
    db : Store
        A writable store.
    keep : float or str, default "7d"
        How much raw history to keep, back from `now`.
    now : time-like, optional
        Defaults to the store clock.
    finished_keep : float or str, optional
        If given, tasks that finished (completed, failed or cancelled) more than this
        long before `now` are deleted with their attempts. Queued and processing tasks
        are never deleted. Metrics over the deleted span lose those tasks.
    batch : int, default 5000
        Rows per transaction.
    progress : bool, default False
        Show a progress bar.
    on_batch : callable, optional
        Called after each committed batch of heartbeats as ``on_batch(rolled, horizon)``:
        the beats rolled up so far and the horizon (epoch seconds) now recorded. An
        exception it raises stops the prune and propagates; the batches committed so far
        stay, and the store stays consistent.

    Returns
    -------
    PruneResult

    Raises
    ------
    ReadOnlyError
        If the store is read-only.
    TypeError, ValueError
        For a bad `keep`, `finished_keep`, `now` or `batch`.

    Examples
    --------
    >>> import qanalytics as qa
    >>> from qanalytics.maintenance import prune
    >>> with qa.connect(":memory:", clock=qa.FakeClock()) as db:
    ...     prune(db, keep="7d").heartbeats_rolled_up
    0
    """
    keep_s = parse_duration(keep, name="keep")
    finished_s = (
        None if finished_keep is None else parse_duration(finished_keep, name="finished_keep")
    )
    batch = _check_batch(batch)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}")
    if on_batch is not None and not callable(on_batch):
        raise TypeError(f"on_batch must be callable, not {type(on_batch).__name__}")
    db.require_writable("prune the store")
    _require_rollups(db, "prune heartbeats")
    at = db.resolve_now(now)
    cutoff = _minute_floor(at - keep_s)

    todo = db.query(
        "SELECT count(*) FROM heartbeats WHERE at < ?", (cutoff,), action="count old heartbeats"
    )[0][0]
    bar = _progress_bar(progress and todo > 0, int(todo), "rolling up heartbeats")
    rolled = rollup_rows = transactions = 0
    try:
        while True:
            n, buckets, reached = _rollup_batch(db, cutoff, batch)
            transactions += 1
            rolled += n
            rollup_rows += buckets
            if bar is not None and n:
                bar.update(n)
            if on_batch is not None:
                on_batch(rolled, reached)
            if reached >= cutoff:  # every beat before the cutoff is rolled up
                break
    finally:
        if bar is not None:
            bar.close()

    finished_cutoff = None
    tasks_deleted = attempts_deleted = 0
    if finished_s is not None:
        finished_cutoff = at - finished_s
        while True:
            n_tasks, n_attempts = _prune_tasks_batch(db, finished_cutoff, batch)
            transactions += 1
            if n_tasks == 0:
                break
            tasks_deleted += n_tasks
            attempts_deleted += n_attempts
        with db.transaction(f"record {META_TASKS_PRUNED_BEFORE}") as conn:
            _set_horizon(conn, META_TASKS_PRUNED_BEFORE, finished_cutoff)
        transactions += 1
    return PruneResult(
        cutoff=cutoff,
        heartbeats_rolled_up=rolled,
        rollup_rows=rollup_rows,
        finished_cutoff=finished_cutoff,
        tasks_deleted=tasks_deleted,
        attempts_deleted=attempts_deleted,
        transactions=transactions,
    )


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
    if db.conn.in_transaction or not _has_table(db, "meta"):
        return read()  # inside a transaction already, or a store that cannot be pruned
    for _ in range(_OPTIMISTIC_READS):
        before = _batches_committed(db)
        result = read()
        if _batches_committed(db) == before:
            return result
        del result  # a large read is dropped before it is read again
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ" if db.dialect == "postgresql" else "BEGIN"
    with wrap_errors("start a read transaction"):
        db.conn.execute(begin)
    try:
        return read()
    finally:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")  # nothing was written


def history_horizon(db: Store) -> float | None:
    """The epoch second before which raw heartbeats were pruned, or None if never.

    The read side's form of :func:`raw_history_starts_at`.

    Parameters
    ----------
    db : Store

    Returns
    -------
    float or None
    """
    value = _meta_get(db, META_HEARTBEATS_PRUNED_BEFORE)
    return None if value is None else float(value)


def raw_history_starts_at(db: Store) -> pd.Timestamp | None:
    """The moment before which raw heartbeats were pruned (rolled up into minutes).

    Before it, the heartbeat history exists only at minute resolution
    (:func:`heartbeat_rollups`); from it on, every beat is kept.

    Parameters
    ----------
    db : Store

    Returns
    -------
    pandas.Timestamp or None
        UTC; None if the store was never pruned (the raw history is complete).
    """
    horizon = history_horizon(db)
    return _timestamp(horizon)


def heartbeat_rollups(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    workers: Any = None,
) -> pd.DataFrame:
    """Heartbeats rolled up by :func:`prune`: one row per worker and minute.

    Parameters
    ----------
    db : Store
    since, until : time-like or duration, optional
        Minutes that start in ``[since, until]``; durations count back from `now`.
    now : time-like, optional
        Defaults to the store clock; `until` never exceeds it.
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
    if not _has_table(db, "heartbeat_rollups"):
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


def rollup_columns(
    db: Store,
    *,
    since: float | None,
    until: float,
    keys: list[int] | None = None,
    prior: bool = False,
) -> dict[str, Any]:
    """Rolled-up minutes as arrays keyed by worker key, for the read side.

    Parameters
    ----------
    db : Store
    since : float or None
        Epoch seconds: rows whose minute ends at or after it (a minute that holds
        `since` is included whole). None for no lower bound.
    until : float
        Epoch seconds: rows whose first beat is at or before it.
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
    if (keys is not None and not keys) or not _has_table(db, "heartbeat_rollups"):
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
        params.append(_minute_floor(since))
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
        params.append(_minute_floor(since))
        if keys is not None:
            sql += " WHERE " + key_clause
            params.extend(keys)
    raw = db.read_columns(sql, params, columns=columns, action="read heartbeat rollups")
    if len(raw["worker_key"]) == 0:
        return empty
    return {name: np.asarray(raw[name], dtype=empty[name].dtype) for name in columns}


def rollup_totals(db: Store, *, until: float) -> dict[int, tuple[int, float]]:
    """Per worker key, the beats rolled up and the last of them, as of `until`.

    Parameters
    ----------
    db : Store
    until : float
        Epoch seconds. Beats are counted in the minutes whose last beat is at or before
        it; the last beat is the latest kept (a minute's first or last) at or before it.

    Returns
    -------
    dict of int to (int, float)
        ``{worker_key: (beats, last_at)}``; empty for a store without rollups.
    """
    if not _has_table(db, "heartbeat_rollups"):
        return {}
    rows = db.query(
        "SELECT worker_key, sum(CASE WHEN last_at <= ?1 THEN beats ELSE 0 END),"
        " max(CASE WHEN last_at <= ?1 THEN last_at ELSE first_at END)"
        " FROM heartbeat_rollups WHERE first_at <= ?1 AND minute <= ?1 GROUP BY worker_key",
        (until,),
        action="count rolled-up heartbeats",
    )
    return {int(k): (int(n), float(last)) for k, n, last in rows}


# -- checkpoint, vacuum -------------------------------------------------------------------
def checkpoint(db: Store, mode: str = "PASSIVE") -> CheckpointResult:
    """Copy the WAL back into the database file (``PRAGMA wal_checkpoint``).

    Parameters
    ----------
    db : Store
        A writable store.
    mode : {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}, default "PASSIVE"
        ``PASSIVE`` never waits for readers or writers; ``FULL`` and ``RESTART`` wait for
        writers (up to the busy timeout); ``TRUNCATE`` also truncates the WAL file to
        zero bytes, returning its space to the file system.

    Returns
    -------
    CheckpointResult

    Raises
    ------
    ValueError
        For an unknown mode.
    ReadOnlyError
        If the store is read-only.
    """
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    upper = mode.strip().upper()
    if upper not in CHECKPOINT_MODES:
        raise ValueError(f"mode={mode!r} must be one of {', '.join(CHECKPOINT_MODES)}")
    db.require_writable("checkpoint the store")
    # PRAGMA arguments cannot be bound; the mode comes from the fixed list above.
    row = db.query(f"PRAGMA wal_checkpoint({upper})", action=f"checkpoint ({upper})")[0]
    return CheckpointResult(
        mode=upper, busy=bool(row[0]), wal_frames=int(row[1]), checkpointed_frames=int(row[2])
    )


def _pages(db: Store) -> tuple[int, int, int]:
    count = int(db.query("PRAGMA page_count", action="read the page count")[0][0])
    free = int(db.query("PRAGMA freelist_count", action="read the freelist")[0][0])
    size = int(db.query("PRAGMA page_size", action="read the page size")[0][0])
    return count, free, size


def vacuum(db: Store, *, incremental: bool = True, full_if_needed: bool = False) -> VacuumResult:
    """Return unused pages to the file system.

    An incremental vacuum (``PRAGMA incremental_vacuum``) frees the pages on the
    freelist quickly and without rewriting the file, but only on a store whose
    ``auto_vacuum`` setting is ``INCREMENTAL``. On a store without it (the SQLite default,
    ``NONE``), ``incremental=True`` does nothing and says so in the result's ``note``,
    unless `full_if_needed` is set, in which case a full ``VACUUM`` runs instead.

    A full ``VACUUM`` (``incremental=False``) rewrites the whole file: it needs free disk
    space about the size of the database, holds the write lock throughout and cannot run
    while another connection is reading. It also switches the store to
    ``auto_vacuum = INCREMENTAL``, so later calls can be incremental.

    Parameters
    ----------
    db : Store
        A writable store.
    incremental : bool, default True
    full_if_needed : bool, default False
        Fall back to a full ``VACUUM`` when incremental vacuum is not available.

    Returns
    -------
    VacuumResult

    Raises
    ------
    ReadOnlyError
        If the store is read-only.
    StoreError
        If SQLite refuses (for example another connection is in a transaction).
    """
    for value, name in ((incremental, "incremental"), (full_if_needed, "full_if_needed")):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    db.require_writable("vacuum the store")
    if db.conn.in_transaction:
        raise ValueError("vacuum cannot run inside a transaction")
    pages, free, size = _pages(db)
    auto = int(db.query("PRAGMA auto_vacuum", action="read auto_vacuum")[0][0])
    mode = "incremental" if incremental else "full"
    note = ""
    if incremental and auto != 2:
        if full_if_needed:
            mode = "full"
        else:
            return VacuumResult(
                mode="none",
                pages_before=pages,
                pages_after=pages,
                free_pages_before=free,
                free_pages_after=free,
                bytes_freed=0,
                note="the store's auto_vacuum is not INCREMENTAL; run a full vacuum once "
                "(incremental=False) to enable incremental vacuums",
            )
    with wrap_errors(f"{mode} vacuum of {db.path!r}"):
        if mode == "incremental":
            # incremental_vacuum frees one page per step and returns no rows, so execute()
            # would free a single page; executescript() steps it to completion.
            db.conn.executescript("PRAGMA incremental_vacuum;")
        else:
            db.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.conn.execute("VACUUM")
    after, free_after, _size = _pages(db)
    return VacuumResult(
        mode=mode,
        pages_before=pages,
        pages_after=after,
        free_pages_before=free,
        free_pages_after=free_after,
        bytes_freed=max(0, pages - after) * size,
        note=note,
    )


# -- integrity and stats ------------------------------------------------------------------
_INVARIANTS: tuple[tuple[str, str], ...] = (
    (
        "task {0}: attempts column is {1} but {2} attempt rows exist",
        "SELECT t.id, t.attempts, count(a.attempt) FROM tasks t"
        " LEFT JOIN attempts a ON a.task_id = t.id GROUP BY t.id"
        " HAVING t.attempts <> count(a.attempt)",
    ),
    (
        "task {0}: {1} attempts are open (at most one may be)",
        "SELECT task_id, count(*) FROM attempts WHERE outcome IS NULL"
        " GROUP BY task_id HAVING count(*) > 1",
    ),
    (
        "task {0} is processing but its attempt {1} is not open",
        "SELECT t.id, t.attempts FROM tasks t LEFT JOIN attempts a"
        " ON a.task_id = t.id AND a.attempt = t.attempts"
        " WHERE t.status = 'processing' AND (a.task_id IS NULL OR a.outcome IS NOT NULL)",
    ),
    (
        "task {0} is {1} but attempt {2} is still open",
        "SELECT t.id, t.status, a.attempt FROM tasks t JOIN attempts a ON a.task_id = t.id"
        " WHERE t.status <> 'processing' AND a.outcome IS NULL",
    ),
    (
        "task {0} is processing but held by no worker",
        "SELECT id FROM tasks WHERE status = 'processing' AND worker_key IS NULL",
    ),
)


# Columns whose values come from a fixed list: (table, column, allowed, nullable).
_LISTED: tuple[tuple[str, str, tuple[str, ...], bool], ...] = (
    ("tasks", "status", TASK_STATUSES, False),
    ("attempts", "outcome", OUTCOMES, True),
    ("worker_events", "event", WORKER_EVENTS, False),
)
# Epoch-second columns: (table, column, nullable).
_TIMES: tuple[tuple[str, str, bool], ...] = (
    ("workers", "registered_at", False),
    ("workers", "last_heartbeat_at", True),
    ("workers", "removed_at", True),
    ("worker_events", "at", False),
    ("heartbeats", "at", False),
    ("tasks", "created_at", False),
    ("tasks", "run_after", False),
    ("tasks", "started_at", True),
    ("tasks", "finished_at", True),
    ("tasks", "lease_until", True),
    ("attempts", "claimed_at", False),
    ("attempts", "finished_at", True),
    ("heartbeat_rollups", "minute", False),
    ("heartbeat_rollups", "first_at", False),
    ("heartbeat_rollups", "last_at", False),
)
# The schema's other CHECK constraints: (table, condition every row must meet).
_BOUNDS: tuple[tuple[str, str], ...] = (
    ("tasks", "attempts >= 0"),
    ("tasks", "max_attempts >= 1"),
    ("attempts", "attempt >= 1"),
    ("heartbeat_rollups", "beats >= 1"),
    ("heartbeat_rollups", "last_at >= first_at"),
)


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def _constraint_problems(db: Store) -> list[str]:
    """The schema's CHECK constraints and column types, queried row by row.

    A read-only SQLite connection skips CHECK constraints in ``PRAGMA integrity_check``,
    and SQLite's flexible typing lets any connection store text in a REAL column, so
    both are checked explicitly. Table and column names come from the constants above.
    """
    tables = {
        str(r[0])
        for r in db.query(
            "SELECT name FROM sqlite_master WHERE type = 'table'", action="list tables"
        )
    }
    problems: list[str] = []

    def count(table: str, where: str, shown: str, params: tuple[Any, ...] = ()) -> tuple[int, Any]:
        # The rows of `table` that match `where`, and the least of `shown` among them.
        n, example = db.query(
            f"SELECT count(*), min(quote({shown})) FROM {_quote(table)} WHERE {where}",
            params,
            action=f"check the values in {table}",
        )[0]
        return int(n), example

    for table, column, allowed, nullable in _LISTED:
        if table not in tables:
            continue
        where = f"{_quote(column)} NOT IN ({', '.join('?' * len(allowed))})"
        if not nullable:
            where = f"({where} OR {_quote(column)} IS NULL)"
        n, example = count(table, where, _quote(column), allowed)
        if n:
            problems.append(
                f"{table}: {_rows(n)} with {column} outside {', '.join(allowed)}"
                f" (for example {example})"
            )
    for table, column, nullable in _TIMES:
        if table not in tables:
            continue
        kinds = "'real', 'integer', 'null'" if nullable else "'real', 'integer'"
        where = f"typeof({_quote(column)}) NOT IN ({kinds})"
        n, example = count(table, where, _quote(column))
        if n:
            problems.append(
                f"{table}: {_rows(n)} with {column} not a number of epoch seconds"
                f" (for example {example})"
            )
    for table, rule in _BOUNDS:
        if table not in tables:
            continue
        n, _example = count(table, f"NOT ({rule})", "NULL")
        if n:
            problems.append(f"{table}: {_rows(n)} failing {rule}")
    if "meta" in tables:
        keys = (META_HEARTBEATS_PRUNED_BEFORE, META_TASKS_PRUNED_BEFORE, META_HEARTBEAT_BATCHES)
        for key, value in db.query(
            "SELECT key, quote(value) FROM meta WHERE key IN (?, ?, ?)"
            " AND typeof(value) NOT IN ('real', 'integer')",
            keys,
            action="check the values in meta",
        ):
            problems.append(f"meta: {key} is {value}, not a number")
    return problems


def _rollup_problems(db: Store) -> list[str]:
    """Rollups that readers would miscount: outside their minute, or past the horizon."""
    if not (_has_table(db, "heartbeat_rollups") and _has_table(db, "meta")):
        return []
    problems: list[str] = []
    outside = db.query(
        "SELECT count(*) FROM heartbeat_rollups"
        f" WHERE minute % {ROLLUP_SECONDS} <> 0 OR first_at < minute"
        f" OR last_at >= minute + {ROLLUP_SECONDS} OR (beats = 1 AND first_at <> last_at)",
        action="check the rollups",
    )[0][0]
    if outside:
        problems.append(f"heartbeat_rollups: {_rows(int(outside))} with beats outside their minute")
    total = int(db.query("SELECT count(*) FROM heartbeat_rollups", action="count rollups")[0][0])
    if not total:
        return problems
    value = _meta_get(db, META_HEARTBEATS_PRUNED_BEFORE)
    if value is None:
        problems.append(
            f"heartbeat_rollups: {_rows(total)} but no horizon ({META_HEARTBEATS_PRUNED_BEFORE}"
            " in meta), so readers do not see those beats; run prune again to record it"
        )
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        after = int(
            db.query(
                "SELECT count(*) FROM heartbeat_rollups WHERE last_at >= ?",
                (float(value),),
                action="check the rollups against the horizon",
            )[0][0]
        )
        if after:
            problems.append(
                f"heartbeat_rollups: {_rows(after)} with beats at or after the horizon"
                f" {_epoch_text(float(value))}, where readers count raw beats only"
            )
    return problems


def _epoch_text(at: float) -> str:
    stamp = _timestamp(at)
    return f"{at!r}" if stamp is None else stamp.isoformat()


def integrity_check(db: Store, *, invariants: bool = True) -> list[str]:
    """Check the database file and the queue's invariants.

    Runs ``PRAGMA integrity_check`` (every page and index) and
    ``PRAGMA foreign_key_check``, then queries the schema's rules row by row, because a
    read-only connection skips CHECK constraints and SQLite stores text in any column:
    statuses, outcomes and events in their lists, every timestamp a number of epoch
    seconds (not text), the counts' lower bounds. With `invariants`, also the queue's
    own rules: each task's attempt count matches its attempt rows, at most one attempt
    per task is open, a processing task's latest attempt is open and no finished task
    has an open one; and the retention rules: each rolled-up minute holds beats of that
    minute only, and a store with rollups records a horizon that every rolled-up beat is
    before (otherwise readers would miss or double-count those beats).

    Parameters
    ----------
    db : Store
        Read-only is fine; nothing is written.
    invariants : bool, default True
        Also check the queue's rules (slower on large stores: it scans tasks and attempts).

    Returns
    -------
    list of str
        One line per problem; empty when the store is sound.

    Raises
    ------
    StoreError
        If the file is too damaged for SQLite to run the checks at all.
    """
    problems: list[str] = []
    rows = db.query("PRAGMA integrity_check", action="check the database's integrity")
    problems.extend(str(r[0]) for r in rows if str(r[0]) != "ok")
    for table, rowid, parent, fkid in db.query(
        "PRAGMA foreign_key_check", action="check foreign keys"
    ):
        problems.append(
            f"foreign key: {table} row {rowid} refers to a missing {parent} row (constraint {fkid})"
        )
    file_sound = not problems
    if db.dialect == "sqlite" and db.layout == "native":
        # PostgreSQL enforces its CHECK constraints and column types on every write.
        problems.extend(_constraint_problems(db))
    if invariants and file_sound:
        for template, sql in _INVARIANTS:
            for row in db.query(sql, action="check the queue's invariants"):
                problems.append(template.format(*row))
        problems.extend(_rollup_problems(db))
    return problems


def _timestamp(seconds: float | None) -> pd.Timestamp | None:
    # Rounded to microseconds: float epochs convert up to ~65 ns off otherwise.
    return None if seconds is None else pd.Timestamp(round(float(seconds), 6), unit="s", tz="UTC")


def _file_size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def stats(db: Store) -> dict[str, Any]:
    """Sizes, row counts and the span of the heartbeat history.

    Parameters
    ----------
    db : Store
        Read-only is fine; nothing is written.

    Returns
    -------
    dict
        ``path``, ``file_bytes`` and ``wal_bytes`` (None in memory or when absent),
        ``page_size``, ``page_count``, ``free_pages``, ``journal_mode``,
        ``auto_vacuum`` (0 none, 1 full, 2 incremental), ``schema_version``;
        ``tables``: per table, ``rows``, ``bytes`` (its pages including its indexes,
        from the ``dbstat`` table when SQLite has it, else None) and ``indexes_bytes``;
        ``heartbeats``: ``oldest``, ``newest`` (UTC timestamps or None) and ``rows``;
        ``rollups``: ``rows``, ``beats``, ``first_minute``, ``last_minute``,
        ``raw_history_starts_at``.
    """
    pages, free, size = _pages(db)
    journal = str(db.query("PRAGMA journal_mode", action="read the journal mode")[0][0])
    auto = int(db.query("PRAGMA auto_vacuum", action="read auto_vacuum")[0][0])
    in_memory = db.in_memory
    out: dict[str, Any] = {
        "path": db.path,
        "file_bytes": None if in_memory else _file_size(db.path),
        "wal_bytes": None if in_memory else _file_size(db.path + "-wal"),
        "page_size": size,
        "page_count": pages,
        "free_pages": free,
        "journal_mode": journal.lower(),
        "auto_vacuum": auto,
        "schema_version": db.schema_version,
    }
    objects = db.query(
        "SELECT name, type, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
        " ORDER BY name",
        action="list tables",
    )
    sizes: dict[str, int] | None
    try:
        sizes = {
            str(name): int(total)
            for name, total in db.conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
            ).fetchall()
        }
    except sqlite3.OperationalError:  # dbstat is a compile-time option of SQLite
        sizes = None
    tables: dict[str, dict[str, Any]] = {}
    for name, kind, _owner in objects:
        if kind != "table" or str(name).startswith("sqlite_"):
            continue
        count = db.query(f"SELECT count(*) FROM {_quote(name)}", action=f"count {name}")[0][0]
        tables[name] = {"rows": int(count), "bytes": None, "indexes_bytes": None}
    if sizes is not None:
        for name, kind, owner in objects:
            if owner in tables:
                entry = tables[owner]
                key = "bytes" if kind == "table" else "indexes_bytes"
                entry[key] = (entry[key] or 0) + sizes.get(name, 0)
    out["tables"] = tables

    oldest, newest = db.query(
        "SELECT min(at), max(at) FROM heartbeats", action="find the heartbeat span"
    )[0]
    out["heartbeats"] = {
        "rows": tables.get("heartbeats", {}).get("rows", 0),
        "oldest": _timestamp(oldest),
        "newest": _timestamp(newest),
    }
    rollups: dict[str, Any] = {
        "rows": 0,
        "beats": 0,
        "first_minute": None,
        "last_minute": None,
        "raw_history_starts_at": raw_history_starts_at(db),
    }
    if "heartbeat_rollups" in tables:
        n, beats, first, last = db.query(
            "SELECT count(*), ifnull(sum(beats), 0), min(minute), max(minute)"
            " FROM heartbeat_rollups",
            action="summarise rollups",
        )[0]
        rollups.update(
            rows=int(n),
            beats=int(beats),
            first_minute=_timestamp(first),
            last_minute=_timestamp(last),
        )
    out["rollups"] = rollups
    return out
