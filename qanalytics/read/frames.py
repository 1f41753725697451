"""Read side: the registry, heartbeat history, tasks and attempts as tidy DataFrames.

Every function answers as the store stood at ``now`` (default: the store clock): beats,
events, claims and finishes after ``now`` are ignored, a worker registered after ``now``
does not exist and a worker removed after ``now`` is not removed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._docstrings import share_docs
from .._suggest import check_task_types
from .._time import parse_duration
from ..history.intervals import SOURCES, expected_intervals
from ..history.model import check_worker_id, decode_json
from ..state import ACTIVE_WITHIN_S, STALE_AFTER_S, check_thresholds, classify_ages
from ..store import Store
from ..store.schema import COUNTERS_VERSION, TASK_STATUSES
from . import classic
from .common import (
    OUTCOME_DTYPE,
    STATE_DTYPE,
    STATUS_DTYPE,
    UTC_DTYPE,
    as_utc,
    empty_frame,
    in_list_sql,
    resolve_now,
    resolve_window,
    window_where,
)
from .liveness import (
    RESOLUTION_DTYPE,
    check_workers,
    horizon,
    mark_horizon,
    tasks_held_at,
    uses_rollups,
    worker_keys,
)
from .rollups import rollup_columns, rollup_totals, stable_read

__all__ = ["attempts", "heartbeats", "tasks", "worker_events", "workers"]

#: Where a worker's expected interval comes from (``interval_source``).
SOURCE_DTYPE = pd.CategoricalDtype(list(SOURCES))

_NONE = np.array(None, dtype=object)

# The registry as of ?1: latest event, registration, capabilities and last beat, from
# indexes. Counts follow, from the counters or from the history (see workers()).
_WORKER_SQL = """
SELECT w.worker_key, w.worker_id, ev.event, ev.at,
  (SELECT e.at FROM worker_events e WHERE e.worker_key = w.worker_key AND e.at <= ?1
     AND e.event = 'registered' ORDER BY e.at DESC, e.id DESC LIMIT 1),
  (SELECT e.capabilities FROM worker_events e WHERE e.worker_key = w.worker_key
     AND e.at <= ?1 AND e.capabilities IS NOT NULL ORDER BY e.at DESC, e.id DESC LIMIT 1),
  CASE WHEN w.last_heartbeat_at <= ?1 THEN w.last_heartbeat_at
       ELSE (SELECT max(h.at) FROM heartbeats h WHERE h.worker_key = w.worker_key
               AND h.at <= ?1) END,
  {counts}
FROM workers w
JOIN worker_events ev ON ev.id = (SELECT e.id FROM worker_events e
  WHERE e.worker_key = w.worker_key AND e.at <= ?1 ORDER BY e.at DESC, e.id DESC LIMIT 1)
"""

# A store before the counters: count the history, and find the open attempt per worker.
_COUNTING_SQL = _WORKER_SQL.format(
    counts="""(SELECT count(*) FROM heartbeats h WHERE h.worker_key = w.worker_key AND h.at <= ?1),
  (SELECT a.task_id FROM attempts a WHERE a.worker_key = w.worker_key AND a.claimed_at <= ?1
     AND (a.finished_at IS NULL OR a.finished_at > ?1)
     ORDER BY a.claimed_at DESC, a.task_id DESC LIMIT 1)"""
)

# A store with the counters: they hold everything written so far; what happened after
# `now` is subtracted (see _tail_counts).
_COUNTER_SQL = _WORKER_SQL.format(counts="w.heartbeats, w.tasks_completed, w.tasks_failed")


def _tail_counts(
    db: Store, at: float
) -> tuple[dict[int, int], dict[tuple[int, str], int], dict[int, int]]:
    """What the counters hold beyond `at`, and each worker's attempt open at `at`.

    Each query reads only rows after `at` (and the attempts still open) through the
    time indexes, so as of the latest event they read next to nothing.
    """
    beats = db.query(
        "SELECT worker_key, count(*) FROM heartbeats WHERE at > ? GROUP BY worker_key",
        (at,),
        action="count heartbeats after now",
    )
    # "+ 0" keeps the planner on the finish-time index (without statistics it would
    # walk another index for the grouping or the claim-time bound, through every row).
    done = db.query(
        "SELECT worker_key + 0, outcome, count(*) FROM attempts WHERE finished_at > ?"
        " AND outcome IN ('completed', 'failed') GROUP BY worker_key + 0, outcome",
        (at,),
        action="count attempts finished after now",
    )
    open_now = db.query(
        "SELECT worker_key, claimed_at, task_id FROM attempts"
        " WHERE (finished_at IS NULL OR finished_at > ?1) AND claimed_at + 0 <= ?1",
        (at,),
        action="find the attempts open at now",
    )
    current: dict[int, tuple[float, int]] = {}
    for key, claimed, task_id in open_now:
        # The most recently claimed open attempt; ties by the higher task id.
        if key not in current or (claimed, task_id) > current[key]:
            current[key] = (claimed, task_id)
    return (
        {int(k): int(n) for k, n in beats},
        {(int(k), str(o)): int(n) for k, o, n in done},
        {k: int(v[1]) for k, v in current.items()},
    )


def _rolled_last(db: Store, key: int) -> float | None:
    # The last rolled-up beat of a worker: its latest minute's last beat.
    rows = db.query(
        "SELECT last_at FROM heartbeat_rollups WHERE worker_key = ?"
        " ORDER BY minute DESC LIMIT 1",
        (key,),
        action="read the last rolled-up heartbeat",
    )
    return float(rows[0][0]) if rows else None


def _decode(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = decode_json(text)
    return value if isinstance(value, dict) else {"value": value}


def _fixed_thresholds(active_within: Any, stale_after: Any) -> tuple[float | None, float | None]:
    """The fixed thresholds given (None where the model decides), checked in order."""
    active_s = None if active_within is None else parse_duration(
        active_within, name="active_within"
    )
    stale_s = None if stale_after is None else parse_duration(stale_after, name="stale_after")
    if active_s is not None and stale_s is not None:
        check_thresholds(active_s, stale_s)
    return active_s, stale_s


def _held_at_last_beat(
    db: Store, keys: np.ndarray, last: np.ndarray, at: float
) -> tuple[pd.arrays.IntegerArray, pd.Categorical]:
    """The task each worker held at its last beat, and that task's status as of `at`."""
    ids: list[Any] = [pd.NA] * len(keys)
    beat = ~np.isnan(last)
    idx = np.flatnonzero(beat)
    if len(idx):
        beat_task = _last_beat_tasks(db, keys[idx], at)
        held = tasks_held_at(db, keys[idx], last[idx], beat_task)
        for i, tasks_of in zip(idx.tolist(), held, strict=True):
            if tasks_of:
                ids[i] = max(tasks_of)
    known = sorted({int(t) for t in ids if t is not pd.NA})
    status: dict[int, str] = {}
    if known:
        found = tasks(db, ids=known, now=at)
        status = dict(zip(found["id"].tolist(), found["status"].astype(str).tolist(), strict=True))
    states = [None if t is pd.NA else status.get(int(t)) for t in ids]
    return pd.array(ids, dtype="Int64"), pd.Categorical(states, dtype=STATUS_DTYPE)


def _last_beat_tasks(db: Store, keys: np.ndarray, at: float) -> np.ndarray:
    """The task named by each worker's last raw beat at or before `at` (-1: none)."""
    out = np.full(len(keys), -1, dtype="int64")
    where = {int(k): i for i, k in enumerate(keys.tolist())}
    for lo in range(0, len(keys), 500):
        part = keys[lo : lo + 500].tolist()
        marks = ", ".join("?" for _ in part)
        rows = db.query(
            "SELECT w.worker_key, (SELECT h.task_id FROM heartbeats h"
            " WHERE h.worker_key = w.worker_key AND h.at <= ? ORDER BY h.at DESC LIMIT 1)"
            f" FROM workers w WHERE w.worker_key IN ({marks})",
            [at, *part],
            action="read each worker's last beat's task",
        )
        for key, task in rows:
            if task is not None:
                out[where[int(key)]] = int(task)
    return out


@share_docs
def workers(
    db: Store,
    *,
    now: Any = None,
    active_within: Any = None,
    stale_after: Any = None,
    include_removed: bool = False,
) -> pd.DataFrame:
    """One row per worker, with its liveness state as of `now`.

    The state follows the liveness model (:mod:`qanalytics.history.intervals`): each
    worker has an expected beat interval ``I`` (declared, learned from its own beats,
    the fleet's, or 30 s), and is ``active`` while its silence is at most ``3 I`` (the
    outage threshold of :func:`qanalytics.outages`), ``late`` up to ``10 I`` and
    ``stale`` beyond. So with the default arguments no worker is active while an
    outage of it is ongoing, and every stale worker is in one. Fixed thresholds in
    seconds (the classic API's 60 s and 300 s) replace the model's.

    Point-in-time values come from indexes: the last beat is the registry's
    ``last_heartbeat_at`` when that is not after `now`, else the latest beat at or before
    `now` from the history's (worker, time) index. Counts come from counters on the
    worker rows, less what happened after `now` (read through the time indexes), so the
    answer as of the latest event costs the same at any history size; a `now` before a
    pruned store's raw history, or a read-only store of an older schema, counts the
    history instead.

    Parameters
    ----------
    {db}
    {now}
    active_within : float, str or None, default None
        A worker whose last beat is at most this old is ``active``; None: three of the
        worker's expected intervals.
    stale_after : float, str or None, default None
        A worker whose last beat is more than this old is ``stale``; in between it is
        ``late``; None: ten of the worker's expected intervals.
    include_removed : bool, default False
        Whether to list workers removed as of `now` (state ``removed``).

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``state`` (category: active / late / stale / removed),
        ``registered_at`` (UTC: the latest registration or revival), ``last_heartbeat_at``,
        ``removed_at`` (UTC), ``since_heartbeat_s`` (float), ``heartbeats`` (int64: beats
        so far, raw and rolled up into minutes by :func:`qanalytics.maintenance.prune`
        alike), ``current_task_id`` (Int64: the most recently claimed task still open),
        ``tasks_completed``, ``tasks_failed`` (int64: the worker's completed and failed
        attempts), ``interval_s`` (float: the expected beat interval) and
        ``interval_source`` (category: declared / learned / fleet / default),
        ``held_task_id`` (Int64: the task the worker held at its last beat, the newest
        when it held several, also once that task was requeued or finished elsewhere)
        and ``held_task_status`` (category: that task's status as of `now`),
        ``capabilities`` (dict), then one ``cap_<key>`` column per top-level capability
        key. Sorted by worker id.

    Raises
    ------
    ValueError
        If `active_within` exceeds `stale_after`.
    """
    if not isinstance(include_removed, bool):
        raise TypeError(f"include_removed must be a bool, not {type(include_removed).__name__}")
    fixed_active, fixed_stale = _fixed_thresholds(active_within, stale_after)
    at = resolve_now(db, now)
    if db.layout == "classic":  # no history: the classic layout has its own reading
        active_s, stale_s = check_thresholds(
            ACTIVE_WITHIN_S if fixed_active is None else fixed_active,
            STALE_AFTER_S if fixed_stale is None else fixed_stale,
        )
        frame = classic.workers(
            db, at=at, active_s=active_s, stale_s=stale_s, include_removed=include_removed
        )
        # No beat history: the classic layout's fixed thresholds, and what a worker holds
        # is what it holds now.
        at_caps = list(frame.columns).index("capabilities")
        frame.insert(
            at_caps, "held_task_status", pd.Series([None] * len(frame), dtype=STATUS_DTYPE)
        )
        frame.insert(at_caps, "held_task_id", frame["current_task_id"].astype("Int64"))
        frame.insert(
            at_caps, "interval_source", pd.Series([None] * len(frame), dtype=SOURCE_DTYPE)
        )
        frame.insert(at_caps, "interval_s", np.full(len(frame), np.nan))
        return frame
    counters = db.schema_version >= COUNTERS_VERSION

    def read() -> tuple[list[tuple[Any, ...]], float | None]:
        # Rows of (key, id, event, event at, registered at, capabilities, last beat,
        # beats, current task, completed, failed), as of one moment of any prune.
        horizon_at = horizon(db)
        if counters and (horizon_at is None or at >= horizon_at):
            # Counters first: a beat or finish committed in between is then counted
            # on both sides, so the difference stays right.
            found = db.query(_COUNTER_SQL, (at,), action="read workers")
            beats_after, done_after, current = _tail_counts(db, at)
            rows = []
            for key, wid, event, ev_at, reg, caps, last, beats, done, failed in found:
                if last is None and horizon_at is not None:
                    last = _rolled_last(db, key)  # every raw beat so far is after `now`
                rows.append(
                    (
                        key, wid, event, ev_at, reg, caps, last,
                        beats - beats_after.get(key, 0),
                        current.get(key),
                        done - done_after.get((key, "completed"), 0),
                        failed - done_after.get((key, "failed"), 0),
                    )
                )
            return rows, horizon_at
        found = db.query(_COUNTING_SQL, (at,), action="read workers")
        # Beats pruned into minutes still count, and may hold the last beat as of `now`.
        totals = {} if horizon_at is None else rollup_totals(db, until=at)
        finished = db.query(
            "SELECT worker_key, outcome, count(*) FROM attempts WHERE finished_at <= ?"
            " AND outcome IN ('completed', 'failed') GROUP BY worker_key, outcome",
            (at,),
            action="count finished attempts per worker",
        )
        counts = {(int(k), str(o)): int(n) for k, o, n in finished}
        rows = []
        for key, wid, event, ev_at, reg, caps, last, beats, task in found:
            rolled_beats, rolled_last = totals.get(key, (0, None))
            if rolled_last is not None and (last is None or rolled_last > last):
                last = rolled_last
            rows.append(
                (
                    key, wid, event, ev_at, reg, caps, last, beats + rolled_beats, task,
                    counts.get((key, "completed"), 0), counts.get((key, "failed"), 0),
                )
            )
        return rows, horizon_at

    rows, horizon_at = stable_read(db, read)
    if not include_removed:
        rows = [r for r in rows if r[2] != "removed"]
    rows.sort(key=lambda r: r[1])
    ids = [r[1] for r in rows]
    removed = np.array([r[2] == "removed" for r in rows], dtype=bool)
    removed_at = np.array([r[3] if r[2] == "removed" else np.nan for r in rows], dtype="float64")
    registered = np.array([np.nan if r[4] is None else r[4] for r in rows], dtype="float64")
    last = np.array([np.nan if r[6] is None else r[6] for r in rows], dtype="float64")
    beat_counts = np.array([r[7] for r in rows], dtype="int64")
    since_s = at - last
    keys = np.array([int(r[0]) for r in rows], dtype="int64")
    model = expected_intervals(db, at, keys=keys.tolist())
    pos = np.searchsorted(model.keys, keys)
    interval = model.interval_s[pos] if len(keys) else np.array([], dtype="float64")
    source = model.source[pos] if len(keys) else np.array([], dtype=object)
    stale_thr = (
        model.stale_after(keys) if fixed_stale is None else np.full(len(keys), fixed_stale)
    )
    active_thr = np.minimum(
        model.late_after(keys) if fixed_active is None else np.full(len(keys), fixed_active),
        stale_thr,
    )
    state = classify_ages(since_s, active_thr, stale_thr, removed=removed)
    held_id, held_status = _held_at_last_beat(db, keys, last, at)
    caps = [_decode(r[5]) for r in rows]
    frame = pd.DataFrame(
        {
            "worker_id": pd.Categorical(ids, categories=sorted(ids)),
            "state": pd.Categorical(state, dtype=STATE_DTYPE),
            "registered_at": as_utc(registered),
            "last_heartbeat_at": as_utc(last),
            "removed_at": as_utc(removed_at),
            "since_heartbeat_s": since_s,
            "heartbeats": beat_counts,
            "current_task_id": pd.array([r[8] for r in rows], dtype="Int64"),
            "tasks_completed": np.array([r[9] for r in rows], dtype="int64"),
            "tasks_failed": np.array([r[10] for r in rows], dtype="int64"),
            "interval_s": interval.astype("float64"),
            "interval_source": pd.Categorical(source, dtype=SOURCE_DTYPE),
            "held_task_id": held_id,
            "held_task_status": held_status,
            "capabilities": pd.Series(caps, dtype=object),
        }
    )
    for cap_key in sorted({k for c in caps for k in c}):
        frame[f"cap_{cap_key}"] = pd.Series([c.get(cap_key) for c in caps], dtype=object)
    return mark_horizon(frame, horizon_at)


@share_docs
def heartbeats(
    db: Store,
    *,
    workers: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The heartbeat history: one row per beat.

    Parameters
    ----------
    {db}
    workers : str, iterable of str or None
        Only these workers.
    {since_until}
        Beats in this window.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``at`` (UTC), ``task_id`` (Int64), ``resolution``
        (category: ``raw`` or ``minute``), ``beats`` (Int64: 1 for a raw beat), in time
        order.

    Notes
    -----
    Before the moment where a pruned store's raw history starts (see
    :func:`qanalytics.maintenance.prune`), beats exist only as rolled-up minutes: each
    gives one row, with ``resolution`` ``"minute"``, ``at`` its last beat, ``task_id``
    that beat's task and ``beats`` the number of beats in the minute, so
    ``frame["beats"].sum()`` counts beats on both sides. A minute whose last beat is
    after `until` (or before `since`) is left out whole. When the store was pruned,
    ``frame.attrs["raw_history_starts_at"]`` holds that moment (UTC).
    """
    db.require("heartbeat_history", "heartbeats()")
    names = check_workers(workers)
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    dtypes = {
        "worker_id": wk.dtype,
        "at": UTC_DTYPE,
        "task_id": "Int64",
        "resolution": RESOLUTION_DTYPE,
        "beats": "Int64",
    }
    where, params = window_where("at", lo, hi)
    keys: list[int] | None = None
    if names is not None:
        keys = wk.keys_for(names)
        if not keys:
            return mark_horizon(empty_frame(dtypes), horizon(db))
        clause, values = in_list_sql("worker_key", keys)
        where.append(clause)
        params.extend(values)

    def read() -> tuple[float | None, dict[str, Any], dict[str, Any] | None]:
        # The horizon, raw beats and rollups as of one moment of any prune.
        horizon_at = horizon(db)
        raw = db.read_columns(
            "SELECT worker_key, at, IFNULL(task_id, -1) FROM heartbeats WHERE "
            + " AND ".join(where),
            params,
            columns={"worker_key": "int64", "at": "float64", "task_id": "int?"},
            action="read heartbeats",
        )
        rolled = None
        if uses_rollups(horizon_at, lo):
            rolled = rollup_columns(db, since=lo, until=hi, keys=keys)
        return horizon_at, raw, rolled

    # Arrays rather than a frame: each column is converted once and the raw one dropped,
    # which keeps the peak near the result's own size on a history of millions of beats.
    horizon_at, raw, rolled = stable_read(db, read)
    worker_key, times, task_ids = raw.pop("worker_key"), raw.pop("at"), raw.pop("task_id")
    n_raw = len(times)
    beats: Any = None
    minute: Any = None
    if rolled is not None:
        last = rolled["last_at"]
        inside = last <= hi
        if lo is not None:
            inside &= last >= lo
        if inside.any():
            r_task = rolled["last_task_id"][inside]
            worker_key = np.concatenate([worker_key, rolled["worker_key"][inside]])
            times = np.concatenate([times, last[inside]])
            task_values = np.concatenate([task_ids.to_numpy(dtype="int64", na_value=-1), r_task])
            task_ids = pd.arrays.IntegerArray(task_values, task_values < 0)
            beats = np.concatenate([np.ones(n_raw, dtype="int64"), rolled["beats"][inside]])
            minute = np.concatenate([np.zeros(n_raw, dtype="int8"), np.ones(len(r_task), "int8")])
    n = len(times)
    if beats is None:
        beats = np.ones(n, dtype="int64")
        minute = np.zeros(n, dtype="int8")
    if n > 1 and not bool(np.all(times[1:] >= times[:-1])):
        order = np.argsort(times, kind="stable")
        worker_key, times, task_ids = worker_key[order], times[order], task_ids[order]
        beats, minute = beats[order], minute[order]
        del order
    worker_id = wk.categorical(worker_key)
    del worker_key
    at_column = as_utc(times)
    del times
    frame = pd.DataFrame(
        {
            "worker_id": worker_id,
            "at": at_column,
            "task_id": task_ids,
            "resolution": pd.Categorical.from_codes(minute, dtype=RESOLUTION_DTYPE),
            "beats": pd.arrays.IntegerArray(beats, np.zeros(n, dtype=bool)),
        },
        columns=list(dtypes),
        copy=False,
    )
    return mark_horizon(frame, horizon_at)


def _names(value: Any, name: str, allowed: tuple[str, ...] | None = None) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        check_worker_id(item, name=name)
        if allowed is not None and item not in allowed:
            raise ValueError(f"{name}={item!r} is not one of {', '.join(allowed)}")
    return items


_INT64 = (-(2**63), 2**63 - 1)


def _task_ids(value: Any, name: str = "ids") -> list[int] | None:
    """Validate a task-id filter: one task id or an iterable of them, as a sorted list."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be integer task ids, not {type(value).__name__}")
    items = [value] if isinstance(value, (int, np.integer)) else list(value)
    out: set[int] = set()
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name} must be integer task ids, not {item!r}")
        if not _INT64[0] <= int(item) <= _INT64[1]:
            raise ValueError(f"{name}: {item} is out of range for a task id")
        out.add(int(item))
    return sorted(out)


_ATTEMPT_COLUMNS = {
    "task_id": "int64",
    "attempt": "int64",
    "worker_key": "int64",
    "claimed_at": "float64",
    "finished_at": "time?",
    "outcome": "str?",
    "error": "str?",
}


def _read_attempts(db: Store, where: str, params: list[Any]) -> pd.DataFrame:
    return db.read_frame(
        "SELECT a.task_id, a.attempt, a.worker_key, a.claimed_at, IFNULL(a.finished_at, -1.0),"
        " IFNULL(a.outcome, ''), IFNULL(a.error, '') FROM attempts a WHERE " + where,
        params,
        columns=_ATTEMPT_COLUMNS,
        action="read attempts",
    )


def _moment(db: Store, when: Any, now: Any, name: str) -> float:
    """A time-like or a duration before `now` (as `since` takes them), in epoch seconds."""
    try:
        lo, _hi, _at = resolve_window(db, when, None, now)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None
    assert lo is not None
    return lo


def _has_external_ids(db: Store) -> bool:
    # Schema version 3 added tasks.external_id; an older file opened read-only lacks it.
    return db.schema_version >= 3


@share_docs
def tasks(
    db: Store,
    *,
    status: Any = None,
    types: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    ids: Any = None,
    open_since: Any = None,
) -> pd.DataFrame:
    """One row per task, as it stood at `now`.

    The status as of `now` is reconstructed from the created, claimed and finished
    times: finished by `now` keeps its final status; an attempt claimed by `now` and not
    finished by it means ``processing``; otherwise ``queued``.

    Parameters
    ----------
    {db}
    status : str, iterable of str or None
        Only tasks in these statuses (as of `now`).
    types : str, iterable of str or None
        Only tasks of these types.
    {since_until}
        Tasks created in this window.
    {now}
    ids : int, iterable of int or None
        Only these task ids (bound as parameters; ids not in the store are simply absent).
        A task created after `now` is absent too.
    open_since : time-like, duration or None
        Only tasks not finished before this moment (still open at it, or created or
        finished after it): with `until`, every task that was in the system during a
        window, without reading the history before it.

    Returns
    -------
    pandas.DataFrame
        ``id`` (int64), ``type`` (category), ``status`` (category), ``priority``,
        ``attempts`` (claims by `now`), ``max_attempts`` (int64), ``created_at``,
        ``run_after`` (the stored schedule), ``first_claimed_at``, ``started_at`` (the
        latest claim), ``finished_at`` (UTC), ``worker_id`` (category: the latest
        claimant, NaN while queued), ``wait_s`` (created to first claim), ``run_s``
        (latest claim to finish, NaN until finished), ``error`` (object),
        ``external_id`` (object: the id the task has in the queue it was recorded from,
        such as Celery's task UUID; None for tasks enqueued through qanalytics). Sorted by
        id.

    Warns
    -----
    UserWarning
        For a type in `types` that the store does not hold, naming close matches
        (``types="emial"``: did you mean 'email'?).
    """
    statuses = _names(status, "status", TASK_STATUSES)
    type_list = _names(types, "types")
    check_task_types(db, type_list)  # a typo warns, naming close matches
    id_list = _task_ids(ids)
    if db.layout == "classic":  # no per-attempt rows: the classic layout has its own reading
        frame = classic.tasks(
            db, status=statuses, types=type_list, since=since, until=until, now=now
        )
        frame["external_id"] = pd.Series([None] * len(frame), dtype=object, index=frame.index)
        if open_since is not None:
            from_ = pd.Timestamp(_moment(db, open_since, now, "open_since"), unit="s", tz="UTC")
            keep = frame["finished_at"].isna() | (frame["finished_at"] >= from_)
            frame = frame[keep].reset_index(drop=True)
        if id_list is None:
            return frame
        return frame[frame["id"].isin(id_list)].reset_index(drop=True)
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    where, params = window_where("t.created_at", lo, hi)
    if open_since is not None:
        where.append("(t.finished_at IS NULL OR t.finished_at >= ?)")
        params.append(_moment(db, open_since, now, "open_since"))
    if id_list is not None:
        # No ids selects nothing; "IN ()" is not valid SQL everywhere.
        clause, values = in_list_sql("t.id", id_list) if id_list else ("1 = 0", [])
        where.append(clause)
        params.extend(values)
    if type_list is not None:
        clause, values = in_list_sql("t.type", type_list)
        where.append(clause)
        params.extend(values)
    raw = db.read_frame(
        "SELECT t.id, t.type, t.status, t.priority, t.max_attempts, t.created_at, t.run_after,"
        " IFNULL(t.finished_at, -1.0), IFNULL(t.error, ''), "
        + ("IFNULL(t.external_id, '')" if _has_external_ids(db) else "''")
        + " FROM tasks t WHERE "
        + " AND ".join(where)
        + " ORDER BY t.id",
        params,
        columns={
            "id": "int64",
            "type": "str",
            "status": "str",
            "priority": "int64",
            "max_attempts": "int64",
            "created_at": "float64",
            "run_after": "float64",
            "finished_at": "time?",
            "error": "str?",
            "external_id": "str?",
        },
        action="read tasks",
    )
    att = _read_attempts(
        db,
        "a.claimed_at <= ? AND a.task_id IN (SELECT t.id FROM tasks t WHERE "
        + " AND ".join(where)
        + ")",
        [at, *params],
    )
    att = att.sort_values(["task_id", "attempt"], kind="stable")
    fin = att["finished_at"].to_numpy(dtype="float64")
    att["finished_at"] = np.where(fin <= at, fin, np.nan)
    n_att = att.groupby("task_id").size()
    first = att.groupby("task_id")["claimed_at"].min()
    last = att.drop_duplicates("task_id", keep="last").set_index("task_id")
    ids = raw["id"].to_numpy(dtype="int64")
    count = n_att.reindex(ids, fill_value=0).to_numpy(dtype="int64")
    first_claim = first.reindex(ids).to_numpy(dtype="float64")
    last = last.reindex(ids)
    last_claim = last["claimed_at"].to_numpy(dtype="float64")
    last_fin = last["finished_at"].to_numpy(dtype="float64")
    last_key = last["worker_key"].to_numpy(dtype="float64")
    last_error = last["error"].to_numpy(dtype=object)
    stored_fin = raw["finished_at"].to_numpy(dtype="float64")
    final = stored_fin <= at
    open_ = ~final & (count > 0) & np.isnan(last_fin)
    state = np.where(final, raw["status"].to_numpy(dtype=object), "queued")
    state = np.where(open_, "processing", state)
    finished = np.where(final, stored_fin, np.nan)
    # A task cancelled while queued after a failed try has no holder.
    holder = (state != "queued") & (count > 0)
    holder &= ~((state == "cancelled") & ~np.isnan(last_fin) & (last_fin < finished))
    keys = np.where(holder, last_key, np.nan)
    worker = wk.categorical(np.where(np.isnan(keys), -1, keys).astype("int64"))
    error = np.where(final, raw["error"].to_numpy(dtype=object), _NONE)
    retried = ~final & (state == "queued") & (count > 0)
    error = np.where(retried, last_error, error)
    error = np.array([None if (e is None or e != e) else e for e in error], dtype=object)
    types_raw = raw["type"].to_numpy(dtype=object)
    created = raw["created_at"].to_numpy(dtype="float64")
    started = np.where(count > 0, last_claim, np.nan)
    frame = pd.DataFrame(
        {
            "id": ids,
            "type": pd.Categorical(types_raw, categories=sorted(set(types_raw.tolist()))),
            "status": pd.Categorical(state, dtype=STATUS_DTYPE),
            "priority": raw["priority"].to_numpy(dtype="int64"),
            "attempts": count,
            "max_attempts": raw["max_attempts"].to_numpy(dtype="int64"),
            "created_at": as_utc(created),
            "run_after": as_utc(raw["run_after"].to_numpy(dtype="float64")),
            "first_claimed_at": as_utc(first_claim),
            "started_at": as_utc(started),
            "finished_at": as_utc(finished),
            "worker_id": worker,
            "wait_s": first_claim - created,
            "run_s": finished - started,
            "error": pd.Series(error, dtype=object),
            "external_id": pd.Series(raw["external_id"].to_numpy(dtype=object), dtype=object),
        }
    )
    if statuses is not None:
        frame = frame[frame["status"].isin(statuses)].reset_index(drop=True)
    return frame


@share_docs
def attempts(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    types: Any = None,
    workers: Any = None,
    task_ids: Any = None,
    open_since: Any = None,
) -> pd.DataFrame:
    """One row per attempt (claim) of a task, as it stood at `now`.

    Parameters
    ----------
    {db}
    {since_until}
        Attempts claimed in this window.
    {now}
        An attempt finished after `now` is still open.
    types : str, iterable of str or None
        Only attempts at tasks of these types.
    workers : str, iterable of str or None
        Only attempts by these workers.
    task_ids : int, iterable of int or None
        Only attempts at these tasks (bound as parameters).
    open_since : time-like, duration or None
        Only attempts at tasks not finished before this moment, as for
        :func:`qanalytics.tasks`.

    Returns
    -------
    pandas.DataFrame
        ``task_id``, ``attempt`` (int64), ``type``, ``worker_id`` (category),
        ``claimed_at``, ``finished_at`` (UTC), ``outcome`` (category: completed / failed /
        abandoned / cancelled, NaN while open), ``run_s`` (float, NaN while open),
        ``error`` (object). Sorted by claim time, then task and attempt.
    """
    db.require("attempt_history", "attempts()")
    type_list = _names(types, "types")
    names = check_workers(workers)
    id_list = _task_ids(task_ids, "task_ids")
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    where, params = window_where("a.claimed_at", lo, hi)
    if open_since is not None:
        where.append(
            "a.task_id IN (SELECT t.id FROM tasks t"
            " WHERE t.finished_at IS NULL OR t.finished_at >= ?)"
        )
        params.append(_moment(db, open_since, now, "open_since"))
    if id_list is not None:
        clause, values = in_list_sql("a.task_id", id_list) if id_list else ("1 = 0", [])
        where.append(clause)
        params.extend(values)
    if names is not None:
        clause, values = in_list_sql("a.worker_key", wk.keys_for(names))
        where.append(clause)
        params.extend(values)
    if type_list is not None:
        clause, values = in_list_sql("t.type", type_list)
        where.append("a.task_id IN (SELECT t.id FROM tasks t WHERE " + clause + ")")
        params.extend(values)
    att = _read_attempts(db, " AND ".join(where), params)
    type_rows = db.read_frame(
        "SELECT t.id, t.type FROM tasks t WHERE t.id IN (SELECT a.task_id FROM attempts a"
        " WHERE " + " AND ".join(where) + ")",
        params,
        columns={"id": "int64", "type": "str"},
        action="read task types",
    )
    att = att.sort_values(["claimed_at", "task_id", "attempt"], kind="stable")
    type_of = pd.Series(
        type_rows["type"].to_numpy(dtype=object), index=type_rows["id"].to_numpy(dtype="int64")
    )
    types_col = type_of.reindex(att["task_id"].to_numpy(dtype="int64")).to_numpy(dtype=object)
    fin = att["finished_at"].to_numpy(dtype="float64")
    done = fin <= at
    finished = np.where(done, fin, np.nan)
    claimed = att["claimed_at"].to_numpy(dtype="float64")
    outcome = np.where(done, att["outcome"].to_numpy(dtype=object), _NONE)
    error = np.where(done, att["error"].to_numpy(dtype=object), _NONE)
    return pd.DataFrame(
        {
            "task_id": att["task_id"].to_numpy(dtype="int64"),
            "attempt": att["attempt"].to_numpy(dtype="int64"),
            "type": pd.Categorical(types_col, categories=sorted(set(types_col.tolist()))),
            "worker_id": wk.categorical(att["worker_key"].to_numpy(dtype="int64")),
            "claimed_at": as_utc(claimed),
            "finished_at": as_utc(finished),
            "outcome": pd.Categorical(outcome, dtype=OUTCOME_DTYPE),
            "run_s": finished - claimed,
            "error": pd.Series(error, dtype=object),
        }
    )


#: The kinds of registry event, in the order a worker's life meets them.
EVENT_DTYPE = pd.CategoricalDtype(["registered", "updated", "removed"])


@share_docs
def worker_events(
    db: Store,
    *,
    workers: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The registry's history: one row per registration, update or removal.

    A worker that is registered again after a removal has a second ``registered`` row:
    that is how a revival shows.

    Parameters
    ----------
    {db}
    workers : str, iterable of str or None
        Only these workers.
    {since_until}
        Events in this window.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``at`` (UTC), ``event`` (category: registered /
        updated / removed), ``capabilities`` (dict, or None for a removal), in time order.

    Raises
    ------
    UnsupportedError
        If the store keeps no registry history (a classic-layout database).
    """
    db.require("worker_events", "worker_events()")
    names = check_workers(workers)
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    dtypes = {
        "worker_id": wk.dtype,
        "at": UTC_DTYPE,
        "event": EVENT_DTYPE,
        "capabilities": object,
    }
    where, params = window_where("at", lo, hi)
    if names is not None:
        keys = wk.keys_for(names)
        if not keys:
            return empty_frame(dtypes)
        clause, values = in_list_sql("worker_key", keys)
        where.append(clause)
        params.extend(values)
    rows = db.query(
        "SELECT worker_key, at, event, capabilities FROM worker_events WHERE "
        + " AND ".join(where)
        + " ORDER BY at, id",
        params,
        action="read worker events",
    )
    if not rows:
        return empty_frame(dtypes)
    keys_arr = np.array([r[0] for r in rows], dtype="int64")
    return pd.DataFrame(
        {
            "worker_id": wk.categorical(keys_arr),
            "at": as_utc(np.array([r[1] for r in rows], dtype="float64")),
            "event": pd.Categorical([r[2] for r in rows], dtype=EVENT_DTYPE),
            "capabilities": pd.Series(
                [None if r[3] is None else _decode(r[3]) for r in rows], dtype=object
            ),
        },
        columns=list(dtypes),
    )
