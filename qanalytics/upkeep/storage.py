"""Upkeep of a store's files: checkpoints, vacuum, the integrity check and statistics.

:func:`checkpoint` and :func:`vacuum` need a writable SQLite store; :func:`integrity_check`
and :func:`stats` work on a read-only one and never change the file. On PostgreSQL the
SQLite-only operations raise :class:`~qanalytics.errors.UnsupportedError`.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any, cast

from ..history.marks import (
    META_HEARTBEAT_BATCHES,
    META_HEARTBEATS_PRUNED_BEFORE,
    META_HEARTBEATS_SUMMARIZED_UNTIL,
    META_TASKS_PRUNED_BEFORE,
    ROLLUP_SECONDS,
    has_table,
    meta_get,
)
from ..read.rollups import as_timestamp, raw_history_starts_at
from ..store import Store
from ..store.schema import (
    COUNTERS_VERSION,
    OUTCOMES,
    TASK_STATUSES,
    TIERS_VERSION,
    WORKER_EVENTS,
)

__all__ = [
    "CHECKPOINT_MODES",
    "CheckpointResult",
    "VacuumResult",
    "checkpoint",
    "integrity_check",
    "stats",
    "vacuum",
]

#: Accepted ``mode`` values of :func:`checkpoint` (SQLite's ``wal_checkpoint`` modes).
CHECKPOINT_MODES = ("PASSIVE", "FULL", "RESTART", "TRUNCATE")

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
    with db.wrap_errors(f"{mode} vacuum of {db.path!r}"):
        if mode == "incremental":
            # incremental_vacuum frees one page per step and returns no rows, so execute()
            # would free a single page; executescript() steps it to completion.
            # Only SQLite gets this far: PostgreSQL refused the PRAGMAs above.
            cast(sqlite3.Connection, db.conn).executescript("PRAGMA incremental_vacuum;")
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
    if not (has_table(db, "heartbeat_rollups") and has_table(db, "meta")):
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
    value = meta_get(db, META_HEARTBEATS_PRUNED_BEFORE)
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



def _counter_problems(db: Store) -> list[str]:
    """Worker counters that disagree with the rows they count (workers() reads them)."""
    if db.schema_version < COUNTERS_VERSION:
        return []
    rows = db.query(
        "SELECT worker_id, heartbeats, beats, tasks_completed, completed, tasks_failed, failed"
        " FROM (SELECT w.worker_id, w.heartbeats, w.tasks_completed, w.tasks_failed,"
        "  (SELECT count(*) FROM heartbeats h WHERE h.worker_key = w.worker_key)"
        "  + (SELECT IFNULL(sum(r.beats), 0) FROM heartbeat_rollups r"
        "     WHERE r.worker_key = w.worker_key) AS beats,"
        "  (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "   AND a.outcome = 'completed') AS completed,"
        "  (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "   AND a.outcome = 'failed') AS failed FROM workers w) c"
        " WHERE heartbeats <> beats OR tasks_completed <> completed OR tasks_failed <> failed",
        action="check the workers' counters",
    )
    return [
        f"worker {name!r}: counters say {hb} beats, {done} completed, {bad} failed;"
        f" the rows hold {beats}, {n_done}, {n_bad}"
        for name, hb, beats, done, n_done, bad, n_bad in rows
    ]


def _tier_problems(db: Store) -> list[str]:
    """Summary tiers that readers would misread: short of the horizon, or past their mark."""
    if db.schema_version < TIERS_VERSION:
        return []
    value = meta_get(db, META_HEARTBEATS_SUMMARIZED_UNTIL)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return []
    mark = float(value)
    problems: list[str] = []
    horizon = meta_get(db, META_HEARTBEATS_PRUNED_BEFORE)
    if isinstance(horizon, (int, float)) and not isinstance(horizon, bool) and horizon > mark:
        problems.append(
            f"heartbeat_days: summarized until {_epoch_text(mark)} but raw beats were deleted"
            f" before {_epoch_text(float(horizon))}, so the liveness reads miss the beats between"
        )
    past = db.query(
        "SELECT (SELECT count(*) FROM heartbeat_days WHERE last_at >= ?),"
        " (SELECT count(*) FROM heartbeat_silences WHERE end_at >= ?)",
        (mark, mark),
        action="check the summary tiers against their mark",
    )[0]
    for table, n in zip(("heartbeat_days", "heartbeat_silences"), past, strict=True):
        if n:
            problems.append(
                f"{table}: {_rows(int(n))} at or after the mark {_epoch_text(mark)},"
                " where readers count raw beats only"
            )
    return problems


def _epoch_text(at: float) -> str:
    stamp = as_timestamp(at)
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
    before (otherwise readers would miss or double-count those beats); the summary tiers
    reach the horizon, and hold nothing at or after their own mark; each worker's counters
    (beats, completed and failed attempts) equal the rows they count.

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
        problems.extend(_tier_problems(db))
        problems.extend(_counter_problems(db))
    return problems


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
        ``raw_history_starts_at``; ``tiers``: ``heartbeats_summarized_until`` and
        ``tasks_summarized_until`` (UTC timestamps or None; see :func:`summarize`).
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
        "oldest": as_timestamp(oldest),
        "newest": as_timestamp(newest),
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
            first_minute=as_timestamp(first),
            last_minute=as_timestamp(last),
        )
    out["rollups"] = rollups
    marks: dict[str, Any] = {"heartbeats_summarized_until": None, "tasks_summarized_until": None}
    if db.schema_version >= TIERS_VERSION:
        for key in marks:
            value = meta_get(db, key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                marks[key] = as_timestamp(float(value))
    out["tiers"] = marks
    return out
