"""Read side: the queue as it stands at one moment.

Point-in-time questions (depth now, oldest queued task, workers by state) are answered
from indexes and stay near-instant however long the history is. Asked as of a past
moment, the store is replayed from its history instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from .._compat import UNSET, renamed_argument
from .._docstrings import share_docs
from .._time import parse_duration
from ..history.intervals import expected_intervals
from ..history.model import WORKER_COLUMNS, Worker, worker_from_row
from ..state import ACTIVE_WITHIN_S, STALE_AFTER_S, classify_ages, state_sql
from ..store import Store
from ..store.schema import TASK_STATUSES
from .common import (
    _FAILED,
    _O_ABANDONED,
    _O_FAILED,
    _PROCESSING,
    _QUEUED,
    _STATUS_CODE,
    STATUS_DTYPE,
    _attempt_times,
    _categorical,
    _read_with_types,
    _TypeExpr,
    empty_frame,
)
from .frames import workers as workers_frame

__all__ = ["active_workers", "queue_depth", "queue_metrics", "stale_workers"]


# -- queue_metrics --------------------------------------------------------------------------
def _rate(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _has_events_after(db: Store, at: float) -> bool:
    """Whether anything in the store happened after `at` (indexed checks first)."""
    indexed = db.query(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE created_at > ?1)"
        " OR EXISTS (SELECT 1 FROM attempts WHERE claimed_at > ?1)"
        " OR EXISTS (SELECT 1 FROM heartbeats WHERE at > ?1)"
        " OR EXISTS (SELECT 1 FROM worker_events WHERE at > ?1)",
        (at,),
        action="look for events after now",
    )[0][0]
    if indexed:
        return True
    # Finishes carry no index; every finish ends a task or an attempt.
    return bool(
        db.query(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE finished_at > ?1)"
            " OR EXISTS (SELECT 1 FROM attempts WHERE finished_at > ?1)",
            (at,),
            action="look for finishes after now",
        )[0][0]
    )


@dataclass
class _States:
    """Task states reconstructed as of a moment."""

    status: np.ndarray  # status code per task
    type_codes: np.ndarray
    types: list[str]
    created_at: np.ndarray
    runnable: np.ndarray  # bool, meaningful for queued tasks


def _states_at(db: Store, at: float) -> _States:
    def build(expr: _TypeExpr) -> tuple[str, list[Any], dict[str, str]]:
        sql = (
            f"SELECT id, created_at, run_after, IFNULL(finished_at, -1.0),"
            f" {_STATUS_CODE.format(col='status')}, attempts, {expr.sql} AS type"
            " FROM tasks WHERE created_at <= ? ORDER BY id"
        )
        cols = {
            "id": "int64",
            "created_at": "float64",
            "run_after": "float64",
            "finished_at": "time?",
            "status": "int64",
            "attempts": "int64",
            "type": expr.kind,
        }
        return sql, [*expr.params, at], cols

    tasks, type_codes, types = _read_with_types(db, build, "type")
    att = _attempt_times(db)
    ids = tasks["id"].to_numpy()
    fin = tasks["finished_at"].to_numpy()
    now_status = tasks["status"].to_numpy()
    status = np.full(len(tasks), _QUEUED, dtype="int64")
    done = ~np.isnan(fin) & (fin <= at)
    status[done] = now_status[done]

    a_task = att["task_id"].to_numpy()
    pos = np.searchsorted(ids, a_task)
    pos_ok = pos < len(ids)
    pos_ok[pos_ok] = ids[pos[pos_ok]] == a_task[pos_ok]
    a_pos = pos[pos_ok]
    a_claim = att["claimed_at"].to_numpy()[pos_ok]
    a_fin = att["finished_at"].to_numpy()[pos_ok]
    a_out = att["outcome"].to_numpy()[pos_ok]
    a_num = att["attempt"].to_numpy()[pos_ok]
    open_at = (a_claim <= at) & (np.isnan(a_fin) | (a_fin > at))
    held = np.zeros(len(tasks), dtype=bool)
    held[a_pos[open_at]] = True
    status[held & ~done] = _PROCESSING

    # run_after is overwritten by each retry; trust it only if no retry happened after `at`.
    final_fail = (a_num == tasks["attempts"].to_numpy()[a_pos]) & (now_status[a_pos] == _FAILED)
    requeue = np.isin(a_out, (_O_FAILED, _O_ABANDONED)) & ~final_fail
    rewritten = np.zeros(len(tasks), dtype=bool)
    rewritten[a_pos[requeue & (a_fin > at)]] = True
    runnable = rewritten | (tasks["run_after"].to_numpy() <= at)
    return _States(status, type_codes, types, tasks["created_at"].to_numpy(), runnable)


def _workers_at(
    db: Store, at: float, active_s: float | None, stale_s: float | None
) -> tuple[int, int, int]:
    rows = db.query(
        "SELECT w.worker_key,"
        " (SELECT e.event FROM worker_events e WHERE e.worker_key = w.worker_key AND e.at <= ?1"
        "  ORDER BY e.at DESC, e.id DESC LIMIT 1),"
        " (SELECT max(h.at) FROM heartbeats h WHERE h.worker_key = w.worker_key AND h.at <= ?1)"
        " FROM workers w",
        (at,),
        action="read worker states as of now",
    )
    return _count_states(
        db, at, [(r[0], r[2]) for r in rows if r[1] not in (None, "removed")], active_s, stale_s
    )


@share_docs
def queue_metrics(
    db: Store,
    *,
    now: Any = None,
    active_within: Any = None,
    stale_after: Any = None,
) -> dict[str, Any]:
    """The queue's health at a glance, as a dict with the classic keys.

    Without `now` (or with a `now` at or after the store's latest event) the answer
    comes from indexes and the denormalised worker columns and is near-instant. With an
    earlier `now` the store is replayed: task states are rebuilt from created, claimed
    and finished times, and worker states from the registration events and heartbeat
    history, so events after `now` are ignored.

    Parameters
    ----------
    {db}
    {now}
        The moment ages and worker states are judged at; defaults to the store clock.
    active_within : float, str or None, default None
        A worker that beat at most this long ago is active; None: the liveness model's
        rule (three of the worker's expected intervals), as :func:`qanalytics.workers`.
    stale_after : float, str or None, default None
        A worker silent for longer than this is stale; None: ten expected intervals.

    Returns
    -------
    dict
        ``queue_depth_by_status`` (every status, zero-filled), ``queue_depth_by_type``
        (queued tasks by type), ``oldest_queued_task_age_seconds`` (None when nothing is
        queued), ``task_statistics`` (``total``, ``finished``, ``runnable`` and
        ``delayed`` queued tasks), ``success_rate`` and ``failure_rate`` (completed or
        failed over completed + failed; None when nothing has finished),
        ``total_workers``, ``active_workers``, ``stale_workers`` (removed workers are
        not counted).

    Notes
    -----
    As of a past moment, ``runnable`` uses each queued task's stored ``run_after``; a
    task whose ``run_after`` was rewritten by a retry after that moment counts as
    runnable.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.queue_metrics(db)["queue_depth_by_status"]["queued"]
    0
    """
    at = db.resolve_now(now)
    active_s = None if active_within is None else parse_duration(
        active_within, name="active_within"
    )
    stale_s = None if stale_after is None else parse_duration(stale_after, name="stale_after")
    if "heartbeat_history" not in db.capabilities:  # the classic layout: fixed seconds
        active_s = ACTIVE_WITHIN_S if active_s is None else active_s
        stale_s = STALE_AFTER_S if stale_s is None else stale_s
    if now is not None and "heartbeat_history" not in db.capabilities:
        latest = db.latest_event_at()
        if latest is not None and latest > at:
            db.require("heartbeat_history", "queue_metrics(now=...) before the latest event")
    if now is not None and _has_events_after(db, at):
        return _queue_metrics_as_of(db, at, active_s, stale_s)
    by_status = dict.fromkeys(TASK_STATUSES, 0)
    by_type: dict[str, int] = {}
    for status, type_, count in db.query(
        "SELECT status, type, count(*) FROM tasks GROUP BY status, type",
        action="count tasks by status and type",
    ):
        by_status[status] = by_status.get(status, 0) + count
        if status == "queued":
            by_type[type_] = count
    oldest, runnable = db.query(
        "SELECT (SELECT min(created_at) FROM tasks WHERE status = 'queued'),"
        " (SELECT count(*) FROM tasks WHERE status = 'queued' AND run_after <= ?)",
        (at,),
        action="read the oldest queued task",
    )[0]
    if active_s is not None and stale_s is not None:
        is_active, active_params = state_sql("active", "last_heartbeat_at", at, active_s)
        is_stale, stale_params = state_sql("stale", "last_heartbeat_at", at, stale_s)
        total_workers, active, stale = db.query(
            f"SELECT count(*), ifnull(sum(CASE WHEN {is_active} THEN 1 ELSE 0 END), 0),"
            f" ifnull(sum(CASE WHEN {is_stale} THEN 1 ELSE 0 END), 0)"
            " FROM workers WHERE removed_at IS NULL",
            (*active_params, *stale_params),
            action="count workers by state",
        )[0]
        counts = (int(total_workers), int(active), int(stale))
    else:
        rows = db.query(
            "SELECT worker_key, last_heartbeat_at FROM workers WHERE removed_at IS NULL",
            action="read the registered workers' last beats",
        )
        counts = _count_states(db, at, rows, active_s, stale_s)
    return _metrics_dict(by_status, by_type, oldest, int(runnable), at, counts)


def _count_states(
    db: Store, at: float, rows: list[Any], active_s: float | None, stale_s: float | None
) -> tuple[int, int, int]:
    """(workers, active, stale) of (key, last beat) rows; None thresholds: the model's."""
    keys = np.array([int(r[0]) for r in rows], dtype="int64")
    last = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype="float64")
    model = expected_intervals(db, at, keys=keys.tolist())
    stale_thr = model.stale_after(keys) if stale_s is None else np.full(len(keys), stale_s)
    active_thr = model.late_after(keys) if active_s is None else np.full(len(keys), active_s)
    if active_s is None:
        active_thr = np.minimum(active_thr, stale_thr)
    age = at - last
    stale = classify_ages(age, active_thr, stale_thr) == "stale"
    # Counted apart, as the indexed query counts them: queue_metrics() does not insist
    # on active_within <= stale_after, and a worker may then count as both.
    active = classify_ages(age, active_thr, np.maximum(active_thr, stale_thr)) == "active"
    return len(keys), int(np.count_nonzero(active)), int(np.count_nonzero(stale))


def _metrics_dict(
    by_status: dict[str, int],
    by_type: dict[str, int],
    oldest: float | None,
    runnable: int,
    at: float,
    workers: tuple[int, int, int],
) -> dict[str, Any]:
    completed, failed = by_status["completed"], by_status["failed"]
    finished = completed + failed + by_status["cancelled"]
    total_workers, active, stale = workers
    return {
        "queue_depth_by_status": by_status,
        # str(): a store written by other means may hold a NULL or numeric type.
        "queue_depth_by_type": dict(sorted(by_type.items(), key=lambda kv: str(kv[0]))),
        "oldest_queued_task_age_seconds": None if oldest is None else max(0.0, at - oldest),
        "task_statistics": {
            "total": sum(by_status.values()),
            "finished": finished,
            "runnable": runnable,
            "delayed": by_status["queued"] - runnable,
        },
        "success_rate": _rate(completed, completed + failed),
        "failure_rate": _rate(failed, completed + failed),
        "total_workers": int(total_workers),
        "active_workers": int(active),
        "stale_workers": int(stale),
    }


def _queue_metrics_as_of(
    db: Store, at: float, active_s: float | None, stale_s: float | None
) -> dict[str, Any]:
    st = _states_at(db, at)
    counts = np.bincount(st.status[st.status >= 0], minlength=len(TASK_STATUSES))
    by_status = {s: int(counts[i]) for i, s in enumerate(TASK_STATUSES)}
    queued = st.status == _QUEUED
    type_counts = np.bincount(st.type_codes[queued], minlength=len(st.types))
    by_type = {t: int(n) for t, n in zip(st.types, type_counts, strict=True) if n}
    oldest = float(st.created_at[queued].min()) if queued.any() else None
    runnable = int((queued & st.runnable).sum())
    return _metrics_dict(
        by_status, by_type, oldest, runnable, at, _workers_at(db, at, active_s, stale_s)
    )


# -- queue_depth ----------------------------------------------------------------------------
@share_docs
def queue_depth(db: Store, *, now: Any = None) -> pd.DataFrame:
    """How many tasks are in each status, by type.

    Parameters
    ----------
    {db}
    {now}
        Answer as the store stood at this moment (replaying history when later events
        exist); defaults to the current state.

    Returns
    -------
    pandas.DataFrame
        ``status`` (category, every status), ``type`` (category), ``count`` (int64): one
        row per status and type with at least one task, ordered by status then type.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.queue_depth(db).columns.tolist()
    ['status', 'type', 'count']
    """
    columns = {"status": STATUS_DTYPE, "type": "category", "count": "int64"}
    if now is not None and _has_events_after(db, db.resolve_now(now)):
        st = _states_at(db, db.resolve_now(now))
        n_types = max(len(st.types), 1)
        combined = np.bincount(
            st.status * n_types + st.type_codes, minlength=len(TASK_STATUSES) * n_types
        )
        nz = np.flatnonzero(combined)
        status_codes, type_codes, counts = nz // n_types, nz % n_types, combined[nz]
        types = st.types
    else:
        rows = db.query(
            "SELECT status, type, count(*) FROM tasks GROUP BY status, type",
            action="count tasks by status and type",
        )
        types = sorted({r[1] for r in rows})
        index = {t: i for i, t in enumerate(types)}
        status_codes = np.array([TASK_STATUSES.index(r[0]) for r in rows], dtype="int64")
        type_codes = np.array([index[r[1]] for r in rows], dtype="int64")
        counts = np.array([r[2] for r in rows], dtype="int64")
    if len(counts) == 0:
        return empty_frame(columns)
    frame = pd.DataFrame(
        {
            "status": pd.Categorical.from_codes(status_codes, dtype=STATUS_DTYPE),
            "type": _categorical(type_codes, types),
            "count": np.asarray(counts, dtype="int64"),
        }
    )
    return frame.sort_values(["status", "type"], kind="stable").reset_index(drop=True)


# -- workers by state ------------------------------------------------------------------------
@share_docs
def active_workers(db: Store, within: Any = None, *, now: Any = None) -> list[Worker]:
    """Workers whose last heartbeat is recent: within three of their expected intervals.

    Parameters
    ----------
    {db}
    within : float, str or None
        A fixed threshold (seconds or a duration string) for every worker. None (the
        default) follows the liveness model, as :func:`qanalytics.workers` does: a
        worker is active while its silence is at most three of its expected beat
        intervals (see :mod:`qanalytics.history.intervals`). A legacy-layout store has
        no model and uses 60 s.
    {now}
        The moment to judge at; defaults to the store clock. A past moment is answered from
        the heartbeat history, as the registry stood then.

    Returns
    -------
    list of Worker
        Most recent heartbeat first; removed workers are never active.
    """
    if within is None:
        if db.layout == "native":
            return _as_of(db, now, active_within=None, stale_after=None, state="active")
        within = ACTIVE_WITHIN_S
    within_s = parse_duration(within, name="within")
    if now is not None:
        return _as_of(db, now, active_within=within_s, stale_after=within_s, state="active")
    is_active, params = state_sql("active", "last_heartbeat_at", db.resolve_now(now), within_s)
    rows = db.query(
        f"SELECT {WORKER_COLUMNS} FROM workers WHERE removed_at IS NULL"
        f" AND {is_active} ORDER BY last_heartbeat_at DESC, worker_id",
        params,
        action="list active workers",
    )
    return [worker_from_row(row) for row in rows]


@share_docs
def stale_workers(
    db: Store, stale_after: Any = None, *, now: Any = None, after: Any = UNSET
) -> list[Worker]:
    """Workers silent for too long: more than ten of their expected beat intervals.

    Parameters
    ----------
    {db}
    stale_after : float, str or None
        A fixed threshold (seconds or a duration string) for every worker, named as in
        :func:`qanalytics.workers`, :func:`qanalytics.queue_metrics` and
        :func:`qanalytics.find_orphans`. None (the default) follows the liveness model,
        as :func:`qanalytics.workers` does: stale after ten of the worker's expected
        beat intervals (see :mod:`qanalytics.history.intervals`). A legacy-layout store
        has no model and uses 300 s.
    {now}
        The moment to judge at; defaults to the store clock.
    after : float or str, optional
        Deprecated: the old name of `stale_after` (warns with a DeprecationWarning).

    Returns
    -------
    list of Worker
        Oldest heartbeat first; removed workers are not listed.

    Examples
    --------
    >>> import qanalytics as qa
    >>> clock = qa.FakeClock("2024-01-01T00:00:00Z")
    >>> with qa.connect(":memory:", clock=clock) as db:
    ...     _ = qa.register_worker(db, "w1")
    ...     clock.advance("10min")
    ...     [w.worker_id for w in qa.stale_workers(db, stale_after="5min")]
    ['w1']
    """
    stale_after = renamed_argument(
        "stale_workers", "after", "stale_after", after, stale_after, None
    )
    if stale_after is None:
        if db.layout == "native":
            return _as_of(db, now, active_within=None, stale_after=None, state="stale")
        stale_after = STALE_AFTER_S
    after_s = parse_duration(stale_after, name="stale_after")
    if now is not None:
        return _as_of(db, now, active_within=0.0, stale_after=after_s, state="stale")
    is_stale, params = state_sql("stale", "last_heartbeat_at", db.resolve_now(now), after_s)
    rows = db.query(
        f"SELECT {WORKER_COLUMNS} FROM workers WHERE removed_at IS NULL"
        f" AND {is_stale} ORDER BY last_heartbeat_at, worker_id",
        params,
        action="list stale workers",
    )
    return [worker_from_row(row) for row in rows]


def _as_of(
    db: Store, now: Any, *, active_within: float | None, stale_after: float | None, state: str
) -> list[Worker]:
    # The registry row holds only the latest beat; a past moment needs the history.
    frame = workers_frame(db, now=now, active_within=active_within, stale_after=stale_after)
    chosen = frame[frame["state"] == state].sort_values(
        ["last_heartbeat_at", "worker_id"], ascending=[state == "stale", True], kind="stable"
    )

    def when(value: Any) -> datetime | None:
        return None if pd.isna(value) else value.to_pydatetime()

    columns: list[list[Any]] = [
        chosen[name].tolist()
        for name in ("worker_id", "capabilities", "registered_at", "last_heartbeat_at")
    ]
    return [
        Worker(
            worker_id=str(worker_id),
            capabilities=dict(capabilities),
            registered_at=when(registered),
            last_heartbeat_at=when(last),
        )
        for worker_id, capabilities, registered, last in zip(*columns, strict=True)
    ]
