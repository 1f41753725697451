"""Keeping the hourly task tiers true under writes.

:func:`qanalytics.upkeep.summarize_tasks` counts the finishes of whole hours into
``task_hours`` (tasks by final status and type) and ``attempt_hours`` (attempts by
outcome and their task's type), and records in ``meta['tasks_summarized_until']`` the
hour up to which it did (the watermark): every finish before it is counted in the
tiers, every finish at or after it is read from the raw rows. A write that adds,
changes or takes back a finish dated before the watermark (a clock behind the
summary, a recorder event that arrives late) adjusts the tiers in its own
transaction, through the helpers here. Deleting finished tasks (``prune``'s
``finished_keep``) leaves the tiers alone: the counts outlive the rows.

An hour is ``[h * 3600, (h + 1) * 3600)`` in epoch seconds: the hour of a finish is
decided by comparisons with those bounds, never by a rounded division, so the tiers,
the summary and the read side put a finish at the very edge of an hour in the same one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..history.marks import HOUR_S, META_TASKS_SUMMARIZED_UNTIL, hour_of, summarized_until

__all__ = [
    "HOUR_S",
    "META_TASKS_SUMMARIZED_UNTIL",
    "TierChanges",
    "apply_changes",
    "contributions",
    "hour_of",
    "summarized_until",
    "task_finish",
]

_FINAL = ("completed", "failed", "cancelled")

#: ``(tier, hour, type, status or outcome) -> change``, tier ``"task"`` or ``"attempt"``.
TierChanges = Counter[tuple[str, int, str, str]]


def contributions(conn: Any, external_id: str, until: float) -> TierChanges:
    """What one recorded task and its attempts count in the tiers (finishes before `until`).

    Parameters
    ----------
    conn : Connection
    external_id : str
        The task's id in the queue it was recorded from (nothing if not recorded yet).
    until : float
        The watermark.

    Returns
    -------
    TierChanges
    """
    rows = conn.execute(
        "SELECT 'task', finished_at, type, status FROM tasks WHERE external_id = ?1"
        " AND finished_at < ?2 AND status IN ('completed', 'failed', 'cancelled')"
        " UNION ALL SELECT 'attempt', a.finished_at, t.type, a.outcome"
        " FROM tasks t JOIN attempts a ON a.task_id = t.id"
        " WHERE t.external_id = ?1 AND a.finished_at < ?2 AND a.outcome IS NOT NULL",
        (external_id, until),
    ).fetchall()
    return Counter(
        (str(tier), hour_of(at), str(type_), str(what)) for tier, at, type_, what in rows
    )


def task_finish(
    at: float, type_: str, *, status: str | None = None, outcome: str | None = None
) -> TierChanges:
    """The change one finish at `at` makes: a task's final `status`, an attempt's `outcome`.

    Parameters
    ----------
    at : float
    type_ : str
    status, outcome : str, optional

    Returns
    -------
    TierChanges
    """
    changes: TierChanges = Counter()
    if status is not None and status in _FINAL:
        changes[("task", hour_of(at), type_, status)] += 1
    if outcome is not None:
        changes[("attempt", hour_of(at), type_, outcome)] += 1
    return changes


def apply_changes(conn: Any, changes: TierChanges) -> None:
    """Add `changes` to the tiers (negative entries take counts back), in the open transaction.

    Rows that drop to zero are deleted, so the tiers hold only hours with finishes.

    Parameters
    ----------
    conn : Connection
    changes : TierChanges
    """
    for (tier, hour, type_, what), n in sorted(changes.items()):
        if n == 0:
            continue
        table, column, count = (
            ("task_hours", "status", "tasks")
            if tier == "task"
            else ("attempt_hours", "outcome", "attempts")
        )
        if n > 0:
            conn.execute(
                f"INSERT INTO {table} (hour, type, {column}, {count}) VALUES (?, ?, ?, ?)"
                f" ON CONFLICT (hour, type, {column}) DO UPDATE"
                f" SET {count} = {table}.{count} + excluded.{count}",
                (hour, type_, what, n),
            )
            continue
        # Never below zero: a count taken back that the tier does not hold (it cannot
        # happen unless the tier was edited by hand) must not make the write fail.
        conn.execute(
            f"UPDATE {table} SET {count} = max({count} + ?, 0)"
            f" WHERE hour = ? AND type = ? AND {column} = ?",
            (n, hour, type_, what),
        )
        conn.execute(
            f"DELETE FROM {table} WHERE hour = ? AND type = ? AND {column} = ? AND {count} = 0",
            (hour, type_, what),
        )
