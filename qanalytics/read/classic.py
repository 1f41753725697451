"""The workers and tasks of a classic queue database, as the native frames show them.

:mod:`qanalytics.store.classic` presents the classic layout through TEMP views; what those
views cannot express (no heartbeat history, one claim per task) is read here.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..state import classify_ages
from ..store import Store
from .common import STATE_DTYPE, STATUS_DTYPE, as_utc, in_list_sql, resolve_window, window_where

__all__ = ["tasks", "workers"]


# -- read functions -------------------------------------------------------------------------
def _decode(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"value": text}
    return value if isinstance(value, dict) else {"value": value}


def _float(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype="float64")


def workers(
    db: Store,
    *,
    at: float,
    active_s: float,
    stale_s: float,
    include_removed: bool,
) -> pd.DataFrame:
    """The workers of a classic queue database, as :func:`qanalytics.workers` frames them.

    Parameters
    ----------
    db : Store
        A store with ``layout == "classic"``.
    at : float
        The moment to answer at, epoch seconds.
    active_s, stale_s : float
        The active and stale thresholds, seconds (already checked).
    include_removed : bool
        As for :func:`qanalytics.workers`, which checks the arguments and calls this.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`qanalytics.workers`, except that ``heartbeats`` is ``Int64``
        and ``<NA>`` (no history), ``registered_at`` and ``removed_at`` are missing, and
        ``tasks_completed`` / ``tasks_failed`` count tasks whose final claim by the worker
        completed or failed for good. A worker whose last heartbeat is after `now` has no
        known state then (state and last heartbeat missing).
    """
    registered = db.query(
        "SELECT worker_id, capabilities, last_heartbeat_at FROM workers",
        action="read workers",
    )
    done = db.query(
        "SELECT worker_name, status, count(*) FROM tasks WHERE worker_name IS NOT NULL"
        " AND finished_at <= ? AND status IN ('completed', 'failed') GROUP BY 1, 2",
        (at,),
        action="count finished tasks per worker",
    )
    held = db.query(
        "SELECT worker_name, id FROM tasks WHERE worker_name IS NOT NULL AND started_at <= ?1"
        " AND (finished_at IS NULL OR finished_at > ?1) AND status != 'queued'"
        " ORDER BY started_at, id",
        (at,),
        action="read the tasks workers hold",
    )
    counts = {(str(w), str(s)): int(n) for w, s, n in done}
    current = {str(w): int(i) for w, i in held}  # the latest claim wins
    rows = [(str(w), caps, last, False) for w, caps, last in registered]
    if include_removed:
        known = {r[0] for r in rows}
        gone = {w for w, _s in counts} | set(current)
        rows += [(w, None, None, True) for w in sorted(gone - known)]
    rows.sort(key=lambda r: r[0])
    ids = [r[0] for r in rows]
    last = _float([r[2] for r in rows])
    removed = np.array([r[3] for r in rows], dtype=bool)
    future = last > at  # no history: the state at `now` is unknown
    last = np.where(future, np.nan, last)
    since_s = at - last
    state = classify_ages(since_s, active_s, stale_s, removed=removed)
    state[future & ~removed] = None
    caps = [_decode(r[1]) for r in rows]
    frame = pd.DataFrame(
        {
            "worker_id": pd.Categorical(ids, categories=sorted(ids)),
            "state": pd.Categorical(state, dtype=STATE_DTYPE),
            "registered_at": as_utc(np.full(len(rows), np.nan)),
            "last_heartbeat_at": as_utc(last),
            "removed_at": as_utc(np.full(len(rows), np.nan)),
            "since_heartbeat_s": since_s,
            "heartbeats": pd.array([None] * len(rows), dtype="Int64"),
            "current_task_id": pd.array(
                [None if r[3] else current.get(r[0]) for r in rows], dtype="Int64"
            ),
            "tasks_completed": np.array(
                [counts.get((w, "completed"), 0) for w in ids], dtype="int64"
            ),
            "tasks_failed": np.array([counts.get((w, "failed"), 0) for w in ids], dtype="int64"),
            "capabilities": pd.Series(caps, dtype=object),
        }
    )
    for cap_key in sorted({k for c in caps for k in c}):
        frame[f"cap_{cap_key}"] = pd.Series([c.get(cap_key) for c in caps], dtype=object)
    return frame


def tasks(
    db: Store,
    *,
    status: list[str] | None = None,
    types: list[str] | None = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The tasks of a classic queue database, as :func:`qanalytics.tasks` frames them.

    Parameters
    ----------
    db : Store
        A store with ``layout == "classic"``.
    status, types : list of str or None
        Already checked by :func:`qanalytics.tasks`.
    since, until, now
        As for :func:`qanalytics.tasks`.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`qanalytics.tasks`. ``attempts`` (claims) is ``Int64``;
        ``first_claimed_at`` and ``wait_s`` are known only for tasks claimed once. As of a
        `now` before a retried task's latest claim, its status, claims and holder are
        unknown (missing), since earlier claims are not recorded.
    """
    lo, hi, at = resolve_window(db, since, until, now)
    where, params = window_where("created_at", lo, hi)
    if types is not None:
        clause, values = in_list_sql("type", types)
        where.append(clause)
        params.extend(values)
    rows = db.query(
        "SELECT id, type, status, priority, attempts, max_attempts, created_at, run_after,"
        " started_at, finished_at, worker_name, error FROM tasks WHERE "
        + " AND ".join(where)
        + " ORDER BY id",
        params,
        action="read tasks",
    )
    ids = np.array([r[0] for r in rows], dtype="int64")
    stored = np.array([r[2] for r in rows], dtype=object)
    claims = np.array([r[4] for r in rows], dtype="int64")
    created = _float([r[6] for r in rows])
    claim = _float([r[8] for r in rows])
    fin = _float([r[9] for r in rows])
    # As of the present (nothing recorded after `now`) the stored row is the state.
    latest = db.latest_event_at()
    current = latest is None or at >= latest
    final = fin <= at
    claimed = ~final & (claim <= at)
    # Before its latest claim a task claimed more than once may have been in an earlier
    # attempt or waiting for a retry: unknown.
    unknown = ~final & ~claimed & (claims > 1) & (not current)
    state = np.where(final, stored, np.where(claimed, "processing", "queued")).astype(object)
    state[unknown] = None
    if current:
        state = stored.copy()
    count = pd.array(np.where(final | claimed | current, claims, 0), dtype="Int64")
    count[unknown] = pd.NA
    known_claim = final | claimed
    started = np.where(known_claim, claim, np.nan)
    first = np.where(known_claim & (claims == 1), claim, np.nan)
    finished = np.where(final, fin, np.nan)
    holder = np.array(
        [r[10] if k else None for r, k in zip(rows, known_claim & ~np.isnan(claim), strict=True)],
        dtype=object,
    )
    error = np.array(
        [
            r[11] if (f or (current and s == "queued" and c > 0)) else None
            for r, f, s, c in zip(rows, final, stored, claims, strict=True)
        ],
        dtype=object,
    )
    types_raw = [str(r[1]) for r in rows]
    names = sorted({h for h in holder if h is not None})
    frame = pd.DataFrame(
        {
            "id": ids,
            "type": pd.Categorical(types_raw, categories=sorted(set(types_raw))),
            "status": pd.Categorical(state, dtype=STATUS_DTYPE),
            "priority": np.array([r[3] for r in rows], dtype="int64"),
            "attempts": count,
            "max_attempts": np.array([r[5] for r in rows], dtype="int64"),
            "created_at": as_utc(created),
            "run_after": as_utc(_float([r[7] for r in rows])),
            "first_claimed_at": as_utc(first),
            "started_at": as_utc(started),
            "finished_at": as_utc(finished),
            "worker_id": pd.Categorical(holder, categories=names),
            "wait_s": first - created,
            "run_s": finished - started,
            "error": pd.Series(error, dtype=object),
        }
    )
    if status is not None:
        frame = frame[frame["status"].isin(status)].reset_index(drop=True)
    return frame
