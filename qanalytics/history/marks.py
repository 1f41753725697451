"""Where the history is kept: the ``meta`` marks, and the minute and hour arithmetic.

Raw heartbeats start at the horizon (``meta['heartbeats_pruned_before']``; minute
rollups hold what is before it); the heartbeat summary tiers hold what is before
``meta['heartbeats_summarized_until']`` and the task tiers what is before
``meta['tasks_summarized_until']``. Every reader and writer takes those keys, and the
statements that move them, from here.
"""

from __future__ import annotations

import math
from typing import Any

from ..store import Store
from ..store.schema import TIERS_VERSION

__all__ = [
    "HOUR_S",
    "META_HEARTBEATS_PRUNED_BEFORE",
    "META_HEARTBEATS_SUMMARIZED_UNTIL",
    "META_HEARTBEAT_BATCHES",
    "META_TASKS_PRUNED_BEFORE",
    "META_TASKS_SUMMARIZED_UNTIL",
    "ROLLUP_SECONDS",
    "advance_mark",
    "count_heartbeat_batch",
    "has_table",
    "history_horizon",
    "hour_of",
    "meta_get",
    "minute_floor",
    "summarized_until",
    "summary_mark",
]

#: Width of one rollup bucket, in seconds.
ROLLUP_SECONDS = 60

#: ``meta`` keys written by :func:`prune`.
META_HEARTBEATS_PRUNED_BEFORE = "heartbeats_pruned_before"
META_TASKS_PRUNED_BEFORE = "tasks_pruned_before"
#: ``meta`` key counting the heartbeat batches prune has committed.
META_HEARTBEAT_BATCHES = "heartbeat_prune_batches"
#: ``meta`` key of the heartbeat summary tiers: beats before this moment are in
#: ``heartbeat_days``/``heartbeat_silences`` (the task tiers' is below).
META_HEARTBEATS_SUMMARIZED_UNTIL = "heartbeats_summarized_until"
#: Width of one tier row, in seconds.
HOUR_S = 3600
#: The ``meta`` key of the watermark: finishes before it are counted in the tiers.
META_TASKS_SUMMARIZED_UNTIL = "tasks_summarized_until"


def has_table(db: Store, name: str) -> bool:
    """Whether the store has table `name`.

    Parameters
    ----------
    db : Store
    name : str

    Returns
    -------
    bool
    """
    rows = db.query(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        (name,),
        action=f"look for table {name!r}",
    )
    return bool(rows)


def meta_get(db: Store, key: str) -> Any:
    """``meta[key]``, or None when unset (or the store has no ``meta`` table).

    Parameters
    ----------
    db : Store
    key : str

    Returns
    -------
    Any
    """
    if not has_table(db, "meta"):
        return None
    rows = db.query("SELECT value FROM meta WHERE key = ?", (key,), action=f"read meta {key!r}")
    return rows[0][0] if rows else None


def minute_floor(at: float) -> float:
    """The start of the rollup minute holding `at` (epoch seconds).

    Parameters
    ----------
    at : float

    Returns
    -------
    float
    """
    return math.floor(at / ROLLUP_SECONDS) * float(ROLLUP_SECONDS)


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
    value = meta_get(db, META_HEARTBEATS_PRUNED_BEFORE)
    return None if value is None else float(value)


def summary_mark(db: Store, now: float) -> float | None:
    """Where the heartbeat summary tiers end (epoch seconds), when a read at `now` uses them.

    None when the store has no tiers, or when `now` is before the mark (a question about
    the past inside the summarized history is answered from the raw beats and minutes).

    Parameters
    ----------
    db : Store
    now : float
        Epoch seconds.

    Returns
    -------
    float or None
    """
    if db.schema_version < TIERS_VERSION:
        return None
    value = meta_get(db, META_HEARTBEATS_SUMMARIZED_UNTIL)
    if value is None or now < float(value):
        return None
    return float(value)


def hour_of(at: float) -> int:
    """The hour ``h`` with ``h * 3600 <= at < (h + 1) * 3600``.

    Parameters
    ----------
    at : float
        Epoch seconds.

    Returns
    -------
    int
    """
    h = math.floor(at / HOUR_S)
    # The division rounds; the bounds decide (a finish a hair before an hour's end).
    if h * HOUR_S > at:
        h -= 1
    elif (h + 1) * HOUR_S <= at:
        h += 1
    return int(h)


def summarized_until(db: Store, conn: Any, *, for_update: bool = False) -> float | None:
    """The watermark, read inside the caller's write transaction (None: no summary yet).

    On PostgreSQL the row is locked: a write reads it share-locked and the summary that
    moves it (`for_update`) holds it exclusively, so a write that dates a finish into the
    hours being folded either committed before (its row is counted) or waits and then
    sees where the summary ended (and adjusts the tiers).

    Parameters
    ----------
    db : Store
    conn : Connection
        The connection of the open transaction.
    for_update : bool, default False
        Lock for the summary that moves the watermark.

    Returns
    -------
    float or None
    """
    lock = ""
    if db.dialect == "postgresql":
        lock = " FOR UPDATE" if for_update else " FOR SHARE"
    row = conn.execute(
        "SELECT value FROM meta WHERE key = ?" + lock, (META_TASKS_SUMMARIZED_UNTIL,)
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def advance_mark(conn: Any, key: str, value: float) -> None:
    """Set ``meta[key]`` to `value` unless it is already later, in the open transaction.

    Parameters
    ----------
    conn : Connection
    key : str
    value : float
        Epoch seconds.
    """
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = max(meta.value, excluded.value)",
        (key, value),
    )


def count_heartbeat_batch(conn: Any) -> None:
    """Count one committed batch that moved heartbeats between raw rows and summaries.

    Readers compare this counter before and after a read (see
    :func:`~qanalytics.read.rollups.stable_read`) and read again when it moved.

    Parameters
    ----------
    conn : Connection
    """
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, 1)"
        " ON CONFLICT (key) DO UPDATE SET value = meta.value + 1",
        (META_HEARTBEAT_BATCHES,),
    )
