"""Retention: roll old heartbeats up into minutes, and delete old finished tasks.

A heartbeat history grows by millions of rows a day. :func:`prune` keeps the recent
past raw and rolls older beats up into one row per worker and minute
(``heartbeat_rollups``: beats, first and last beat, the last task seen), so the long
view stays queryable at minute resolution. :func:`~qanalytics.read.rollups.raw_history_starts_at`
says where the raw history begins, and :func:`~qanalytics.read.rollups.heartbeat_rollups`
reads the rolled-up minutes, so the read side can tell "no beats" from "pruned to minutes".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .._time import parse_duration
from ..errors import UnsupportedError
from ..read.rollups import (
    META_HEARTBEATS_PRUNED_BEFORE,
    META_TASKS_PRUNED_BEFORE,
    has_table,
    minute_floor,
)
from ..store import Store
from ..store.schema import TIERS_VERSION
from .marks import advance_mark, count_heartbeat_batch
from .task_tiers import summarize_tasks
from .tiers import summarize_heartbeats

__all__ = ["PruneResult", "prune"]

_FINISHED = ("completed", "failed", "cancelled")

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



def _require_rollups(db: Store, action: str) -> None:
    if not has_table(db, "heartbeat_rollups"):
        raise UnsupportedError(
            f"cannot {action}: the store {db.path!r} has schema version {db.schema_version}, "
            "without rollup tables; open it writable once to migrate it"
        )


def _check_batch(batch: Any) -> int:
    if isinstance(batch, bool) or not isinstance(batch, int):
        raise TypeError(f"batch must be an int, not {type(batch).__name__}")
    if batch < 1 or batch > 1_000_000:
        raise ValueError(f"batch={batch!r} must be between 1 and 1,000,000")
    return batch


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    # Imported on demand: tqdm.auto warns at import in a kernel without ipywidgets, and
    # importing qanalytics (in the report's kernel, say) should not.
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
                minute = int(minute_floor(at))
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
            count_heartbeat_batch(conn)
        # The horizon only moves forward: a later prune with a longer `keep` cannot bring
        # back beats that are already minutes.
        advance_mark(conn, META_HEARTBEATS_PRUNED_BEFORE, boundary)
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
        # The workers' counters drop with the attempts they count (see workers()).
        counted = conn.execute(
            "SELECT worker_key, sum(CASE WHEN outcome = 'completed' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END) FROM attempts"
            f" WHERE task_id IN ({marks}) GROUP BY worker_key",
            ids,
        ).fetchall()
        conn.executemany(
            "UPDATE workers SET tasks_completed = tasks_completed - ?,"
            " tasks_failed = tasks_failed - ? WHERE worker_key = ?",
            [(int(done), int(failed), key) for key, done, failed in counted if done or failed],
        )
        attempts = conn.execute(f"DELETE FROM attempts WHERE task_id IN ({marks})", ids).rowcount
        tasks = conn.execute(f"DELETE FROM tasks WHERE id IN ({marks})", ids).rowcount
        return tasks, attempts


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

    First, every beat before the cutoff is folded into the summary tiers (see
    :func:`summarize`), which the liveness reads use for old history. Beats are rolled
    up oldest first, and each batch records how far it got (the horizon,
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
    cutoff = minute_floor(at - keep_s)
    if db.schema_version >= TIERS_VERSION:
        # The summary tiers must hold every beat before they are rolled up and deleted:
        # the liveness reads take history before the tiers' mark from them.
        summarize_heartbeats(db, until=cutoff, progress=progress)
        summarize_tasks(db, until=cutoff)

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
        if db.schema_version >= TIERS_VERSION:
            # Counted into the hourly task tiers first: metrics keep what is deleted.
            summarize_tasks(db, until=finished_cutoff)
        while True:
            n_tasks, n_attempts = _prune_tasks_batch(db, finished_cutoff, batch)
            transactions += 1
            if n_tasks == 0:
                break
            tasks_deleted += n_tasks
            attempts_deleted += n_attempts
        with db.transaction(f"record {META_TASKS_PRUNED_BEFORE}") as conn:
            advance_mark(conn, META_TASKS_PRUNED_BEFORE, finished_cutoff)
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
