"""The ``meta`` marks upkeep moves: horizons and watermarks that only move forward.

Every batch of :func:`~qanalytics.upkeep.prune` and of the summaries records how far
it got in the same transaction as its rows, through these two statements.
"""

from __future__ import annotations

from typing import Any

from ..read.rollups import META_HEARTBEAT_BATCHES

__all__ = ["advance_mark", "count_heartbeat_batch"]


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
