"""Summary tiers of the heartbeat history: days and silences, kept for ever.

A year of a thousand workers beating every 30 s is a billion beats, and even its minute
rollups are half a billion rows. What outages, uptime and alive intervals need of old
history is much less: where each worker's beats were (its first and last beat of each day,
and its usual interval) and every silence worth knowing, with its exact start and end.
:func:`summarize_heartbeats` folds the raw beats into those two tables, one hour per
transaction, and records how far it got in ``meta['heartbeats_summarized_until']``; the
liveness reads (:mod:`qanalytics.read.liveness`) take history before that watermark from
the tiers and after it from the raw beats.

What a silence is here: a gap between consecutive beats of a worker that is longer than
twice the median interval of that worker's beats in the hour (60 s when the hour has no
interval of its own) or twice the worker's expected interval (the liveness model of
:mod:`qanalytics.history.intervals`), any gap longer than :data:`SILENCE_CAP_S`, and any
gap across a removal of the worker. The outage threshold is three expected intervals, so
every outage the model finds is among the silences kept. Each day row records the gap
above which every silence was kept (``silences_over_s``), so a read with a finer fixed
threshold knows the tiers cannot answer it. A store pruned to minutes before it had tiers is
summarized from its minute rollups the first time (there, a silence inside one minute is
not known, as it was not before).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._time import parse_duration
from ..errors import UnsupportedError
from ..history.intervals import Intervals, expected_intervals, remember_learned, removal_times
from ..history.marks import META_HEARTBEATS_SUMMARIZED_UNTIL, history_horizon, meta_get
from ..store import Store
from ..store.schema import TIERS_VERSION
from .marks import advance_mark, count_heartbeat_batch
from .task_tiers import summarize_tasks

__all__ = ["SILENCE_CAP_S", "SummaryResult", "summarize", "summarize_heartbeats"]

#: Every gap longer than this (seconds) is kept as a silence, whatever the interval.
SILENCE_CAP_S = 60.0
#: A gap longer than this many times the hour's median interval is kept as a silence.
SILENCE_FACTOR = 2.0
_HOUR = 3600.0
_DAY = 86400.0
#: A batch aims at about this many beats: an hour of a large fleet beating every 2 s is
#: split into shorter batches, so writers never wait long for the write lock.
BATCH_BEATS = 250_000
_MIN_SPAN = 60.0


@dataclass(frozen=True)
class SummaryResult:
    """What :func:`summarize_heartbeats` did.

    Attributes
    ----------
    until : float or None
        The watermark after the call (epoch seconds): heartbeats before it are in the
        tiers. None when the store holds no heartbeat yet.
    beats : int
        Beats (raw, or counted by minute rollups) folded in by this call.
    silences : int
        Silences recorded.
    transactions : int
        Write transactions used.
    tasks_until : float or None
        The task tiers' watermark after the call (:func:`summarize` only; whole hours).
    tasks : int
        Finished tasks counted into the hourly task tiers by this call.
    """

    until: float | None
    beats: int = 0
    silences: int = 0
    transactions: int = 0
    tasks_until: float | None = None
    tasks: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The result as a plain dict (for JSON output).

        Returns
        -------
        dict
        """
        return asdict(self)


def _hour_floor(at: float) -> float:
    return math.floor(at / _HOUR) * _HOUR


@dataclass
class _Points:
    """Beats of one batch, sorted by (worker, time).

    A minute rollup stands for its beats by two points: its first beat (``visible``: the
    gap before it is a true gap) and its last (the gap before it is inside the minute,
    ``est`` its mean interval); ``weight`` is the number of beats a point stands for.
    """

    key: np.ndarray
    at: np.ndarray
    task: np.ndarray  # -1: none
    visible: np.ndarray
    weight: np.ndarray
    est: np.ndarray


def _raw_points(conn: Any, lo: float, hi: float) -> _Points:
    rows = conn.execute(
        "SELECT worker_key, at, IFNULL(task_id, -1) FROM heartbeats WHERE at >= ? AND at < ?",
        (lo, hi),
    ).fetchall()
    arr = np.array(rows, dtype="float64").reshape(-1, 3)
    key = arr[:, 0].astype("int64")
    at = arr[:, 1]
    task = arr[:, 2].astype("int64")
    order = np.lexsort((at, key))
    n = len(key)
    return _Points(
        key[order], at[order], task[order], np.ones(n, dtype=bool),
        np.ones(n, dtype="int64"), np.full(n, np.nan),
    )


def _minute_points(conn: Any, lo: float, hi: float) -> _Points:
    rows = conn.execute(
        "SELECT worker_key, first_at, last_at, beats, IFNULL(last_task_id, -1)"
        " FROM heartbeat_rollups WHERE minute >= ? AND minute < ?",
        (lo, hi),
    ).fetchall()
    arr = np.array(rows, dtype="float64").reshape(-1, 5)
    key = arr[:, 0].astype("int64")
    first, last, beats = arr[:, 1], arr[:, 2], arr[:, 3].astype("int64")
    task = arr[:, 4].astype("int64")
    two = (last > first) & (beats > 1)
    n2 = int(two.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (last - first) / (beats - 1)
    # The first point stands for one beat (all of them when the minute is one point).
    k = np.concatenate([key, key[two]])
    at = np.concatenate([first, last[two]])
    tk = np.concatenate([np.where(two, -1, task), task[two]])
    vis = np.concatenate([np.ones(len(key), dtype=bool), np.zeros(n2, dtype=bool)])
    w = np.concatenate([np.where(two, 1, beats), beats[two] - 1])
    est = np.concatenate([np.full(len(key), np.nan), mean[two]])
    order = np.lexsort((~vis, at, k))
    return _Points(k[order], at[order], tk[order], vis[order], w[order], est[order])


def _previous(conn: Any, keys: np.ndarray) -> dict[int, tuple[float, int, float]]:
    """Each worker's last summarized beat: (time, task or -1, its latest day's median)."""
    out: dict[int, tuple[float, int, float]] = {}
    uniq = np.unique(keys).tolist()
    for i in range(0, len(uniq), 500):
        part = uniq[i : i + 500]
        marks = ", ".join("?" * len(part))
        rows = conn.execute(
            "SELECT d.worker_key, d.last_at, IFNULL(d.last_task_id, -1), d.median_gap_s"
            " FROM heartbeat_days d WHERE d.worker_key IN (" + marks + ") AND d.day ="
            " (SELECT max(d2.day) FROM heartbeat_days d2 WHERE d2.worker_key = d.worker_key)",
            part,
        ).fetchall()
        for key, at, task, med in rows:
            out[int(key)] = (float(at), int(task), math.nan if med is None else float(med))
    return out


def _fold(
    conn: Any, p: _Points, removals: dict[int, np.ndarray], intervals: Intervals
) -> tuple[int, int]:
    """Write one batch's day rows and silences; returns (beats, silences).

    `removals`: each worker's removal times (:func:`removal_times`); `intervals`: the
    workers' expected intervals (the liveness model), so that every silence the model
    calls an outage is kept.
    """
    n = len(p.key)
    if n == 0:
        return 0, 0
    first = np.ones(n, dtype=bool)
    first[1:] = p.key[1:] != p.key[:-1]
    prev = _previous(conn, p.key[first])
    starts = np.flatnonzero(first)
    none = (np.nan, -1, np.nan)
    prev_at, prev_task, prev_med = (
        np.array(col) for col in zip(*(prev.get(int(k), none) for k in p.key[starts]), strict=True)
    )
    before_at = np.empty(n)
    before_at[1:] = p.at[:-1]
    before_at[starts] = prev_at
    before_task = np.empty(n, dtype="int64")
    before_task[1:] = p.task[:-1]
    before_task[starts] = prev_task
    gap = p.at - before_at  # NaN for a worker's first beat ever
    hour = np.floor(p.at / _HOUR).astype("int64")
    # The usual interval per (worker, hour): the visible gaps inside this batch and the
    # minutes' mean intervals; else the worker's latest day median; else none (60 s cap).
    inside = p.visible & ~first & (gap > 0)
    sample = np.where(inside, gap, p.est)
    has = ~np.isnan(sample)
    med = (
        pd.Series(sample[has]).groupby([p.key[has], hour[has]]).median()
        if has.any()
        else pd.Series(dtype="float64")
    )
    idx = pd.MultiIndex.from_arrays([p.key, hour])
    usual = med.reindex(idx).to_numpy(dtype="float64") if len(med) else np.full(n, np.nan)
    fallback = np.repeat(prev_med, np.diff(np.append(starts, n)))
    usual = np.where(np.isnan(usual), fallback, usual)
    floor = np.where(
        np.isnan(usual), SILENCE_CAP_S, np.minimum(SILENCE_CAP_S, SILENCE_FACTOR * usual)
    )
    # Never above the model's own threshold: the outage rule (3 expected intervals) is
    # answered exactly from the tiers.
    floor = np.minimum(floor, SILENCE_FACTOR * intervals.of(p.key))
    silent = p.visible & ~np.isnan(gap) & (gap > floor)
    # A gap across a removal ends a life: always kept, so both lives' ends are known.
    if removals:
        crossing = np.zeros(n, dtype=bool)
        for wk, times in removals.items():
            lo_i = int(np.searchsorted(p.key, wk, side="left"))
            hi_i = int(np.searchsorted(p.key, wk, side="right"))
            if lo_i == hi_i:
                continue
            # A beat at or before a removal belongs to the life that removal ends.
            life_now = np.searchsorted(times, p.at[lo_i:hi_i], side="left")
            life_before = np.searchsorted(times, before_at[lo_i:hi_i], side="left")
            crossing[lo_i:hi_i] = ~np.isnan(before_at[lo_i:hi_i]) & (life_now != life_before)
        silent |= crossing & (gap > 0)
    s = np.flatnonzero(silent)
    silences = [
        (int(p.key[i]), float(before_at[i]), float(p.at[i]),
         None if before_task[i] < 0 else int(before_task[i]))
        for i in s.tolist()
    ]
    # Day rows: beats, first and last beat, the last beat's task, the usual interval.
    day = np.floor(p.at / _DAY).astype("int64")
    frame = pd.DataFrame(
        {"k": p.key, "d": day, "at": p.at, "w": p.weight, "task": p.task,
         "h": hour, "sample": sample, "floor": floor}
    )
    days = frame.groupby(["k", "d"], sort=True).agg(
        beats=("w", "sum"),
        first_at=("at", "min"),
        last_at=("at", "max"),
        last_task=("task", "last"),
        floor=("floor", "max"),
    )
    days["median"] = np.nan
    if has.any():
        # The day's usual interval: the hours' medians weighted by their beats.
        hours = frame[has].groupby(["k", "d", "h"])["sample"].median()
        hour_beats = frame[has].groupby(["k", "d", "h"])["w"].sum()
        weighted = (hours * hour_beats).groupby(level=[0, 1]).sum() / hour_beats.groupby(
            level=[0, 1]
        ).sum()
        days["median"] = weighted.reindex(days.index)
    last_task = days["last_task"].to_numpy(dtype="int64")
    median = days["median"].to_numpy(dtype="float64")
    rows = list(
        zip(
            days.index.get_level_values(0).tolist(),
            days.index.get_level_values(1).tolist(),
            days["beats"].to_numpy(dtype="int64").tolist(),
            days["first_at"].to_numpy(dtype="float64").tolist(),
            days["last_at"].to_numpy(dtype="float64").tolist(),
            [None if t < 0 else t for t in last_task.tolist()],
            [None if np.isnan(m) else m for m in median.tolist()],
            days["floor"].to_numpy(dtype="float64").tolist(),
            strict=True,
        )
    )
    conn.executemany(
        "INSERT INTO heartbeat_days"
        " (worker_key, day, beats, first_at, last_at, last_task_id, median_gap_s,"
        " silences_over_s)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (worker_key, day) DO UPDATE SET"
        # The day kept every silence over the widest floor any of its batches used.
        "  silences_over_s = CASE WHEN heartbeat_days.silences_over_s IS NULL"
        "   OR excluded.silences_over_s > heartbeat_days.silences_over_s"
        "   THEN excluded.silences_over_s ELSE heartbeat_days.silences_over_s END,"
        # Existing columns are qualified: PostgreSQL finds them ambiguous otherwise.
        "  median_gap_s = CASE WHEN excluded.median_gap_s IS NULL"
        "   THEN heartbeat_days.median_gap_s WHEN heartbeat_days.median_gap_s IS NULL"
        "   THEN excluded.median_gap_s ELSE (heartbeat_days.median_gap_s * heartbeat_days.beats"
        "   + excluded.median_gap_s * excluded.beats) / (heartbeat_days.beats + excluded.beats)"
        "   END,"
        "  last_task_id = CASE WHEN excluded.last_at >= heartbeat_days.last_at"
        "   THEN excluded.last_task_id ELSE heartbeat_days.last_task_id END,"
        "  beats = heartbeat_days.beats + excluded.beats,"
        "  first_at = min(heartbeat_days.first_at, excluded.first_at),"
        "  last_at = max(heartbeat_days.last_at, excluded.last_at)",
        rows,
    )
    if silences:
        conn.executemany(
            "INSERT INTO heartbeat_silences (worker_key, start_at, end_at, task_id)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (worker_key, start_at) DO NOTHING",
            silences,
        )
    return int(p.weight.sum()), len(silences)


def _start(db: Store) -> tuple[float | None, float | None]:
    """(watermark, minute-rollup horizon to convert first) for a first or later call."""
    done = meta_get(db, META_HEARTBEATS_SUMMARIZED_UNTIL)
    if done is not None:
        return float(done), None
    horizon = history_horizon(db)
    if horizon is not None:
        rows = db.query("SELECT min(minute) FROM heartbeat_rollups", action="read rollups")
        if rows and rows[0][0] is not None:
            return _hour_floor(float(rows[0][0])), horizon
        return horizon, None
    rows = db.query("SELECT min(at) FROM heartbeats", action="read the first heartbeat")
    if not rows or rows[0][0] is None:
        return None, None
    return _hour_floor(float(rows[0][0])), None


def summarize_heartbeats(
    db: Store,
    *,
    until: float,
    progress: bool = False,
    on_batch: Callable[[float], Any] | None = None,
) -> SummaryResult:
    """Fold heartbeats before `until` into the summary tiers.

    Beats from the watermark (``meta['heartbeats_summarized_until']``) up to `until` are
    read an hour at a time (shorter spans when an hour holds more than
    :data:`BATCH_BEATS` beats); each batch's day rows and silences are written, and the
    watermark advanced, in one transaction, so a crash repeats nothing and loses
    nothing. Raw beats are left in place (:func:`qanalytics.maintenance.prune` deletes
    them later). The first call on a store pruned before it had tiers first summarizes
    its minute rollups, up to where its raw history starts.

    Parameters
    ----------
    db : Store
        A writable store at schema version 5 or later.
    until : float
        Epoch seconds. The watermark never moves back: an earlier `until` does nothing.
    progress : bool, default False
        Show a progress bar (hours).
    on_batch : callable, optional
        Called after each committed hour as ``on_batch(watermark)``.

    Returns
    -------
    SummaryResult

    Raises
    ------
    ReadOnlyError
        If the store is read-only.
    UnsupportedError
        If the store's schema has no tiers.
    """
    db.require_writable("summarize heartbeats")
    db.prepare_writes()  # migrate first: the model's columns are read before any write
    if db.schema_version < TIERS_VERSION:
        raise UnsupportedError(
            f"cannot summarize heartbeats: the store {db.path!r} has schema version "
            f"{db.schema_version}, without tier tables; open it writable once to migrate it"
        )
    until = float(until)
    mark, minutes_until = _start(db)
    if mark is None:
        return SummaryResult(until=None)
    beats = silences = transactions = 0
    # The liveness model first: learned intervals are stored before the beats they were
    # learned from can be pruned, and each silence is judged against the model's rule.
    remember_learned(db, until)
    intervals = expected_intervals(db, until)
    todo = max(0, math.ceil((until - mark) / _HOUR))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo, desc="summarizing heartbeats", unit="h")
    try:
        span = _HOUR
        while mark < until:
            stop = min(mark + span, _hour_floor(mark) + _HOUR, until)
            with db.transaction("summarize heartbeats") as conn:
                current = conn.execute(
                    "SELECT value FROM meta WHERE key = ?", (META_HEARTBEATS_SUMMARIZED_UNTIL,)
                ).fetchone()
                if current is not None and float(current[0]) > mark:
                    mark = float(current[0])  # another process got there first
                    continue
                if minutes_until is not None and mark < minutes_until:
                    stop = min(stop, minutes_until)
                    points = _minute_points(conn, mark, stop)
                else:
                    points = _raw_points(conn, mark, stop)
                n, s = _fold(conn, points, removal_times(db, stop), intervals)
                advance_mark(conn, META_HEARTBEATS_SUMMARIZED_UNTIL, stop)
                count_heartbeat_batch(conn)
            # The next batch's span follows this one's size (one hour at most).
            if len(points.key) > BATCH_BEATS:
                span = max(_MIN_SPAN, span / 2)
            elif len(points.key) < BATCH_BEATS / 4:
                span = min(_HOUR, span * 2)
            beats += n
            silences += s
            transactions += 1
            if bar is not None:
                bar.update(round((stop - mark) / _HOUR, 3))
            mark = stop
            if on_batch is not None:
                on_batch(mark)
    finally:
        if bar is not None:
            bar.close()
    return SummaryResult(until=mark, beats=beats, silences=silences, transactions=transactions)


def summarize(
    db: Store,
    *,
    lag: Any = "1h",
    now: Any = None,
    progress: bool = False,
) -> SummaryResult:
    """Bring the summary tiers up to `lag` before `now`, so long reads stay fast.

    Folds heartbeats into the heartbeat tiers (:func:`summarize_heartbeats`) and the
    finishes of whole hours into the hourly task tiers
    (:func:`~qanalytics.upkeep.task_tiers.summarize_tasks`), which :func:`success_rate`
    and :func:`throughput` read for the hours before their watermark.

    :func:`outages`, :func:`uptime` and :func:`alive_intervals` read history before the
    tiers' mark from the tiers (a row per worker and day, and the silences) and only
    what came after it from the raw heartbeats, so a year of a large fleet answers in
    seconds when the mark is recent. :func:`prune` summarizes up to its own cutoff
    before it deletes anything; run this more often (every few minutes to hours) to
    keep the raw part of every read short. Raw beats are not touched. Cheap when there
    is nothing new: it costs an hour of beats per transaction.

    Beats written later with a time before the mark (a recorder's very late events) are
    kept in the raw table and counted by :func:`workers`, but the liveness reads no
    longer see them: keep `lag` longer than your writers' delays.

    Parameters
    ----------
    db : Store
        A writable store.
    lag : float or str, default "1h"
        How far behind `now` the tiers stop (zero allowed).
    now : time-like, optional
        Defaults to the store clock.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    SummaryResult

    Raises
    ------
    ReadOnlyError
        If the store is read-only.
    UnsupportedError
        If the store's schema predates the tiers (open it writable once to migrate).
    TypeError, ValueError
        For a bad `lag` or `now`.

    Examples
    --------
    >>> import qanalytics as qa
    >>> from qanalytics.maintenance import summarize
    >>> with qa.connect(":memory:", clock=qa.FakeClock()) as db:
    ...     summarize(db).beats
    0
    """
    lag_s = parse_duration(lag, name="lag", allow_zero=True)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}")
    at = db.resolve_now(now)
    beats = summarize_heartbeats(db, until=at - lag_s, progress=progress)
    tasks = summarize_tasks(db, until=at - lag_s)
    return SummaryResult(
        until=beats.until,
        beats=beats.beats,
        silences=beats.silences,
        transactions=beats.transactions + tasks.transactions,
        tasks_until=tasks.summarized_until,
        tasks=tasks.tasks,
    )
