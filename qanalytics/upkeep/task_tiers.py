"""Hourly task tiers: fold the finishes of whole hours into per-hour counts.

:func:`summarize_tasks` counts, hour by hour, the tasks that finished (by final status
and type) into ``task_hours`` and the attempts that ended (by outcome and their task's
type) into ``attempt_hours``, and moves the watermark ``meta['tasks_summarized_until']``
to the end of the last hour counted, in the same transaction. :func:`success_rate` and
:func:`throughput` then read hours before the watermark from the tiers and scan only
the finishes after it. Writes that date a finish before the watermark keep the tiers
true (:mod:`qanalytics.write.task_hours`). Deleting old finished tasks
(``prune(finished_keep=...)``) leaves the tiers as they are: metrics keep counting them.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from .._time import resolve_time
from ..errors import UnsupportedError
from ..history.marks import (
    HOUR_S,
    META_TASKS_SUMMARIZED_UNTIL,
    has_table,
    hour_of,
    summarized_until,
)
from ..read.trends import finished_pairs
from ..store import Store
from ..write.task_hours import TierChanges, apply_changes
from .marks import advance_mark

__all__ = ["TaskSummary", "summarize_tasks"]

_FINISHED = ("completed", "failed", "cancelled")

#: A transaction folds hours until it has counted about this many finished rows.
ROWS_PER_TRANSACTION = 200_000
#: ... or this many hours (hours with no finish are skipped, not counted).
HOURS_PER_TRANSACTION = 24 * 7


@dataclass(frozen=True)
class TaskSummary:
    """What :func:`summarize_tasks` did.

    Attributes
    ----------
    summarized_until : float or None
        The watermark after the call (epoch seconds, a whole hour): finishes before it
        are counted in the tiers. None when the store has no finish and no watermark.
    previous : float or None
        The watermark before the call.
    hours : int
        Hours with at least one finish folded into the tiers.
    tasks, attempts : int
        Finished tasks and ended attempts counted.
    transactions : int
        Write transactions committed.
    """

    summarized_until: float | None
    previous: float | None = None
    hours: int = 0
    tasks: int = 0
    attempts: int = 0
    transactions: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The result as a plain dict (for JSON output).

        Returns
        -------
        dict
        """
        return asdict(self)


def _next_finish(conn: Any, pairs: list[tuple[str, str]], start: float) -> float | None:
    """The earliest task or attempt finish at or after `start` (index seeks)."""
    found = [
        conn.execute(
            "SELECT min(finished_at) FROM tasks WHERE status = ? AND type = ?"
            " AND finished_at >= ?",
            (status, type_, start),
        ).fetchone()[0]
        for status, type_ in pairs
    ]
    found.append(
        conn.execute(
            "SELECT min(finished_at) FROM attempts WHERE finished_at >= ?", (start,)
        ).fetchone()[0]
    )
    values = [float(v) for v in found if v is not None]
    return min(values) if values else None


def _fold_hour(conn: Any, pairs: list[tuple[str, str]], hour: int) -> tuple[int, int]:
    """Count one hour's finishes into the tiers; returns (tasks, attempts) counted."""
    lo, hi = float(hour * HOUR_S), float((hour + 1) * HOUR_S)
    # Per (status, type): a seek and a count in tasks_finished, no sort.
    tasks = []
    for status, type_ in pairs:
        n = conn.execute(
            "SELECT count(*) FROM tasks WHERE status = ? AND type = ? AND finished_at >= ?"
            " AND finished_at < ?",
            (status, type_, lo, hi),
        ).fetchone()[0]
        if n:
            tasks.append((type_, status, int(n)))
    attempts = conn.execute(
        "SELECT t.type, a.outcome, count(*) FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " WHERE a.finished_at >= ? AND a.finished_at < ? AND a.outcome IS NOT NULL"
        " GROUP BY t.type, a.outcome",
        (lo, hi),
    ).fetchall()
    # The hour lies at or after the watermark, so it holds no row yet; adding (rather
    # than replacing) keeps a row that a writer dated there all the same.
    changes: TierChanges = Counter()
    for type_, status, n in tasks:
        changes[("task", hour, type_, status)] += int(n)
    for type_, outcome, n in attempts:
        changes[("attempt", hour, str(type_), str(outcome))] += int(n)
    apply_changes(conn, changes)
    return sum(int(r[2]) for r in tasks), sum(int(r[2]) for r in attempts)


def summarize_tasks(db: Store, *, until: Any, progress: bool = False) -> TaskSummary:
    """Fold the task and attempt finishes of whole hours, up to `until`, into the tiers.

    Every hour from the watermark (``meta['tasks_summarized_until']``; on the first run,
    the hour of the earliest finish) up to `until` aligned down to a whole hour is
    counted: tasks by type and final status (completed, failed, cancelled) into
    ``task_hours``, attempts by their task's type and outcome into ``attempt_hours``.
    Hours are folded oldest first, several per transaction (up to about 200,000 rows
    or a week), and each transaction moves the watermark to the end of its last hour,
    so memory and the time writers wait for the lock stay bounded, and a summary that
    was interrupted leaves every finish counted exactly once (in the tiers before the
    watermark, in the raw rows after it); running it again carries on. Running it again
    with the same `until` changes nothing. The watermark only moves forward.

    After it, :func:`qanalytics.success_rate` and :func:`qanalytics.throughput` read
    whole hours before the watermark from the tiers. Writes that date a finish before
    the watermark adjust the tiers in their own transaction; deleting finished tasks
    (``prune(finished_keep=...)``) does not, so metrics keep counting them.

    Parameters
    ----------
    db : Store
        A writable store of schema version 5 or later.
    until : time-like or duration
        Summarize finishes before this moment (aligned down to a whole UTC hour):
        epoch seconds, an ISO string, a datetime, or a duration back from the store
        clock's now (``"1d"``).
    progress : bool, default False
        Show a progress bar over the hours.

    Returns
    -------
    TaskSummary

    Raises
    ------
    ReadOnlyError
        If the store is read-only.
    UnsupportedError
        If the store predates the tiers (open it writable once to migrate it).
    TypeError, ValueError
        For a bad `until` or `progress`.

    Examples
    --------
    >>> import qanalytics as qa
    >>> from qanalytics.upkeep import summarize_tasks
    >>> with qa.connect(":memory:", clock=qa.FakeClock(7200.0)) as db:
    ...     summarize_tasks(db, until="1h").hours
    0
    """
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}")
    db.require_writable("summarize tasks")
    if db.layout != "native" or not has_table(db, "task_hours"):
        raise UnsupportedError(
            f"cannot summarize tasks: the store {db.path!r} has schema version "
            f"{db.schema_version}, without task tiers; open it writable once to migrate it"
        )
    at = resolve_time(until, now=db.now(), name="until")
    if not math.isfinite(at):
        raise ValueError(f"until={until!r} must be a finite time")
    end_hour = hour_of(at)
    end = float(end_hour * HOUR_S)

    # The first watermark is set in a transaction of its own, at the earliest finish's
    # hour (nothing counted yet), so from then on every writer sees one.
    with db.transaction("start the task tiers") as conn:
        previous = summarized_until(db, conn, for_update=True)
        if previous is None:
            first = _next_finish(conn, finished_pairs(db, _FINISHED), -math.inf)
            start = end if first is None else min(end, float(hour_of(first) * HOUR_S))
            advance_mark(conn, META_TASKS_SUMMARIZED_UNTIL, start)
    if previous is None and start >= end:
        return TaskSummary(summarized_until=end, previous=None, transactions=1)
    if previous is not None and previous >= end:
        return TaskSummary(summarized_until=previous, previous=previous, transactions=1)

    first_hour = hour_of(previous if previous is not None else start)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # on demand, as prune's bar

        bar = tqdm(total=end_hour - first_hour, desc="summarizing task hours", unit="hour")
    hours = n_tasks = n_attempts = 0
    transactions = 1
    reached = float(first_hour * HOUR_S)
    try:
        while reached < end:
            with db.transaction("summarize task hours") as conn:
                mark = summarized_until(db, conn, for_update=True)
                hour = hour_of(mark if mark is not None else reached)
                rows = folded = 0
                pairs = finished_pairs(db, _FINISHED)
                while hour < end_hour and rows < ROWS_PER_TRANSACTION:
                    nxt = _next_finish(conn, pairs, float(hour * HOUR_S))
                    if nxt is None or hour_of(nxt) >= end_hour:
                        hour = end_hour  # nothing more to count before `until`
                        break
                    hour = max(hour, hour_of(nxt))
                    t, a = _fold_hour(conn, pairs, hour)
                    rows += t + a
                    n_tasks += t
                    n_attempts += a
                    hours += 1
                    folded += 1
                    hour += 1
                    if folded >= HOURS_PER_TRANSACTION:
                        break
                new = float(hour * HOUR_S)
                advance_mark(conn, META_TASKS_SUMMARIZED_UNTIL, new)
            transactions += 1
            if bar is not None:
                bar.update(hour_of(new) - hour_of(reached))
            reached = new
    finally:
        if bar is not None:
            bar.close()
    return TaskSummary(
        summarized_until=reached,
        previous=previous,
        hours=hours,
        tasks=n_tasks,
        attempts=n_attempts,
        transactions=transactions,
    )
