"""Read side of liveness: heartbeat gaps, outages, alive intervals and uptime.

Everything here is derived from the heartbeat history and the worker events, as the store
stood at ``now`` (beats, registrations and removals after ``now`` are ignored).

The model
---------
A worker's beats are split into *lives*: a removal ends a life and a registration (which
records a beat) starts the next one, so the silence between a removal and a revival is
neither a gap nor an outage. Within a life, the *gap* before a beat is the time since the
previous beat. A gap is an *outage* when it exceeds the worker's *threshold*: ``min_gap``
when given, else three of the worker's expected beat intervals (the liveness model of
:mod:`qanalytics.history.intervals`: declared, learned from its first gaps, the fleet's,
or 30 s), the same rule :func:`qanalytics.workers` uses for its states. After a life's
last beat, the silence up to the removal (or up to ``now`` while still registered) is an
outage when it exceeds the threshold too.

Alive time is the complement of outages within each life: a beat covers ``[beat, next
beat]`` when the gap to the next beat is not an outage; the last beat of a life covers up
to the removal or ``now`` unless that silence is an outage; a beat followed by an outage
covers only its own moment (a zero-length interval).

Windows
-------
``since``/``until`` choose what is reported, not what is known: a windowed read also
takes each worker's last :data:`CONTEXT_BEATS` beats before the window, so a silence
that started before the window (a worker that died long ago) is seen, and the usual
interval is measured even when the window holds no beat at all. An outage that overlaps
the window is reported whole, with its true ``start`` (possibly before ``since``) and
``end``; alive intervals are clipped to the window. A worker is alive only from its first
beat and, after its last beat, for at most its threshold: in a window after its last
beat a registered worker is dead (uptime 0, no alive interval), and a window that ends
before a worker's first beat has no row for it.

Across the retention boundary
-----------------------------
Before the moment where a pruned store's raw history starts
(:func:`qanalytics.read.rollups.history_horizon`), beats exist only as rolled-up minutes.
There, each minute's first and last beat stand for its beats: the minute is alive from
its first to its last beat, and the gap from one minute's last beat to the next kept
beat is a true gap between consecutive beats, judged by the rule above; a silence inside
one minute cannot be seen. Rows say which they come from in a ``resolution`` column
(``raw`` / ``minute``) where that applies, and frames carry
``attrs["raw_history_starts_at"]``. A read whose window starts at or after the horizon
reads only the last rolled-up minute of a worker with no raw beat before the window (a
worker silent since before the horizon), so that its silence is still seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from .._docstrings import share_docs
from .._time import parse_duration, parse_freq
from ..history.intervals import OUTAGE_FACTOR, Intervals, expected_intervals, removal_times
from ..history.marks import history_horizon
from ..history.marks import summary_mark as _summary_mark
from ..history.model import check_worker_id
from ..store import Store
from ..store.schema import COUNTERS_VERSION, INTERVALS_VERSION, TIERS_VERSION
from .common import (
    MAX_BUCKETS,
    UTC_DTYPE,
    as_utc,
    empty_frame,
    in_list_sql,
    resolve_window,
    window_where,
)
from .coverage import overlap_s, unobserved_intervals
from .rollups import rollup_columns, stable_read

__all__ = [
    "CONTEXT_BEATS",
    "OUTAGE_FACTOR",
    "alive_intervals",
    "alive_spans",
    "heartbeat_gaps",
    "outages",
    "unobserved",
    "uptime",
]

#: A windowed read also takes up to this many beats per worker from before the window:
#: they carry a silence that started earlier into the window and give the usual interval.
CONTEXT_BEATS = 100
#: outages(), uptime() and alive_intervals() read the history in groups of workers that
#: hold about this many beats together (by the workers' beat counters), so their memory
#: is bounded by a group and the result, not by the history.
GROUP_BEATS = 1_000_000

_T = TypeVar("_T")

ENDED_BY_DTYPE = pd.CategoricalDtype(["resumed", "removed", "still silent", "not observed"])
#: ``resolution`` of a row: from a raw beat, or from a minute rolled up by ``prune``.
RESOLUTION_DTYPE = pd.CategoricalDtype(["raw", "minute"])
#: ``resolution`` of an outage: also ``summary``, found in the summary tiers.
OUTAGE_RESOLUTION_DTYPE = pd.CategoricalDtype(["raw", "minute", "summary"])
#: A windowed read takes the summary tiers from this many days before the window.
CONTEXT_DAYS = 2
_DAY_S = 86400.0


@share_docs
def horizon(db: Store) -> float | None:
    """Where raw heartbeats start (epoch seconds), or None if the store was never pruned.

    Parameters
    ----------
    {db}

    Returns
    -------
    float or None
    """
    return history_horizon(db)


@share_docs
def summary_mark(db: Store, now: float) -> float | None:
    """Where the summary tiers end (epoch seconds), when a read at `now` uses them.

    History before the mark is read from ``heartbeat_days``/``heartbeat_silences`` (see
    :mod:`qanalytics.upkeep.tiers`), history after it from the raw beats. None when the
    store has no tiers, or when `now` is before the mark (a question about the past
    inside the summarized history is answered from the raw beats and minutes).

    Parameters
    ----------
    {db}
    now : float
        Epoch seconds.

    Returns
    -------
    float or None
    """
    return _summary_mark(db, now)


def uses_rollups(horizon_at: float | None, since: float | None) -> bool:
    """Whether a read starting at `since` reaches back before the raw history.

    Parameters
    ----------
    horizon_at : float or None
        :func:`horizon`.
    since : float or None
        The window's start (None: unbounded).

    Returns
    -------
    bool
    """
    return horizon_at is not None and (since is None or since < horizon_at)


def mark_horizon(frame: pd.DataFrame, horizon_at: float | None) -> pd.DataFrame:
    """Record where raw history starts in ``frame.attrs["raw_history_starts_at"]``.

    Parameters
    ----------
    frame : pandas.DataFrame
    horizon_at : float or None
        Epoch seconds; nothing is recorded when None.

    Returns
    -------
    pandas.DataFrame
        `frame`, for chaining.
    """
    if horizon_at is not None:
        frame.attrs["raw_history_starts_at"] = pd.Timestamp(horizon_at, unit="s", tz="UTC")
    return frame


# -- workers: integer keys to categorical ids ------------------------------------------
def _code_dtype(n: int) -> np.dtype:
    # pandas' own choice (coerce_indexer_dtype): codes must also hold -1 for missing.
    for candidate in ("int8", "int16", "int32"):
        if n < np.iinfo(candidate).max:
            return np.dtype(candidate)
    return np.dtype("int64")


#: The largest worker key mapped through a lookup table (a few MiB at most).
_MAX_LOOKUP = 1 << 20


@dataclass(frozen=True)
class WorkerKeys:
    """The workers that existed as of a moment: integer keys and their text ids.

    Attributes
    ----------
    keys : numpy.ndarray of int64
        Sorted worker keys.
    ids : numpy.ndarray of object
        The worker id of each key (aligned with `keys`).
    """

    keys: np.ndarray
    ids: np.ndarray

    @property
    def dtype(self) -> pd.CategoricalDtype:
        """The categorical dtype of ``worker_id`` columns: the ids, sorted."""
        return pd.CategoricalDtype(sorted(self.ids.tolist()))

    def categorical(self, row_keys: Any) -> pd.Categorical:
        """Map an array of worker keys to a categorical of worker ids.

        Parameters
        ----------
        row_keys : array-like of int

        Returns
        -------
        pandas.Categorical
            Unknown keys become NaN.
        """
        row_keys = np.asarray(row_keys, dtype="int64")
        dtype = self.dtype
        n = len(self.keys)
        # The narrowest code type pandas would pick itself, so from_codes keeps the array.
        code_type = _code_dtype(n)
        order = np.argsort(self.ids.astype(str), kind="stable")
        code_of = np.empty(n, dtype=code_type)
        code_of[order] = np.arange(n, dtype=code_type)
        if n == 0:
            codes = np.full(len(row_keys), -1, dtype=code_type)
        elif self.keys[0] >= 1 and self.keys[-1] <= _MAX_LOOKUP:
            # Keys are small positive integers (SQLite rowids), so a table indexed by key
            # maps millions of rows in one pass and one narrow array; index 0 and the last
            # slot hold -1, and clipping sends every unknown key to one of them.
            lookup = np.full(int(self.keys[-1]) + 2, -1, dtype=code_type)
            lookup[self.keys] = code_of
            codes = np.take(lookup, row_keys, mode="clip")
        else:
            pos = np.searchsorted(self.keys, row_keys)
            pos_c = np.minimum(pos, n - 1)
            found = self.keys[pos_c] == row_keys
            codes = np.where(found, code_of[pos_c], -1).astype(code_type)
        return pd.Categorical.from_codes(codes, dtype=dtype)

    def keys_for(self, worker_ids: Iterable[str]) -> list[int]:
        """The keys of these worker ids (ids unknown as of the moment are skipped).

        Parameters
        ----------
        worker_ids : iterable of str

        Returns
        -------
        list of int
        """
        lookup = dict(zip(self.ids.tolist(), self.keys.tolist(), strict=True))
        return [lookup[w] for w in worker_ids if w in lookup]


@share_docs
def worker_keys(db: Store, now: float) -> WorkerKeys:
    """The workers registered at or before `now` (removed or not).

    Parameters
    ----------
    {db}
    now : float
        Epoch seconds.

    Returns
    -------
    WorkerKeys
    """
    rows = db.query(
        "SELECT w.worker_key, w.worker_id FROM workers w WHERE EXISTS (SELECT 1 FROM"
        " worker_events e WHERE e.worker_key = w.worker_key AND e.at <= ?)"
        " ORDER BY w.worker_key",
        (now,),
        action="read worker ids",
    )
    keys = np.array([r[0] for r in rows], dtype="int64")
    ids = np.array([r[1] for r in rows], dtype=object)
    return WorkerKeys(keys, ids)


def check_workers(workers: Any) -> list[str] | None:
    """Validate a ``workers=`` filter argument.

    Parameters
    ----------
    workers : str, iterable of str or None

    Returns
    -------
    list of str or None
    """
    if workers is None:
        return None
    items = [workers] if isinstance(workers, str) else list(workers)
    for item in items:
        check_worker_id(item, name="workers")
    return items


# -- the heartbeat model ----------------------------------------------------------------
@dataclass
class _Beats:
    key: np.ndarray  # int64, sorted with `at`
    at: np.ndarray  # float64
    task: np.ndarray  # int64, -1 for none; a SQLite raw beat: -2 - rowid (see _beat_tasks)
    seg_start: np.ndarray  # bool: first beat of a life (or of the history read)
    seg_end: np.ndarray  # bool: last beat of a life
    gap: np.ndarray  # float64, NaN at seg_start
    removal: np.ndarray  # float64: the removal that ends this beat's life, NaN if none
    minute: np.ndarray  # bool: the first or last beat of a rolled-up minute
    inner: np.ndarray  # bool: a minute's last beat; the gap before it is inside the minute
    mean_gap: np.ndarray  # float64: at `inner`, the minute's mean interval; else NaN
    horizon: float | None  # where raw history starts, None if never pruned
    summary: np.ndarray  # bool: a point of the summary tiers (then `minute` is set too)


def _read_beats(
    db: Store, since: float | None, now: float, keys: list[int] | None, mark: float | None = None
) -> pd.DataFrame:
    cols = {"worker_key": "int64", "at": "float64", "task_id": "int64"}
    # With summary tiers, raw beats are read from the mark on only.
    where, params = window_where("at", since if mark is None else max(since or mark, mark), now)
    if keys is not None:
        clause, values = in_list_sql("worker_key", keys)
        where.append(clause)
        params.extend(values)
    # On SQLite a beat's rowid stands in for its task: (worker_key, at, rowid) is read
    # from the covering index alone, in index order, and only the tasks of the beats
    # that start outages are looked up (_beat_tasks).
    sqlite = db.dialect == "sqlite"
    task = "-2 - rowid" if sqlite else "IFNULL(task_id, -1)"
    prior_task = "-2 - h.rowid" if sqlite else "IFNULL(h.task_id, -1)"
    frame = db.read_frame(
        f"SELECT worker_key, at, {task} FROM heartbeats WHERE " + " AND ".join(where),
        params,
        columns=cols,
        action="read heartbeats",
    )
    if since is not None and (mark is None or since > mark):
        # The last beats before the window, per worker, via the (worker_key, at) index:
        # the latest one carries the worker's state into the window (a silence that
        # started before it), the others give its usual interval when the window itself
        # holds too few beats to judge one.
        sql = (
            f"SELECT w.worker_key, h.at, {prior_task} FROM workers w"
            " JOIN heartbeats h ON h.rowid IN (SELECT h2.rowid FROM heartbeats h2"
            " WHERE h2.worker_key = w.worker_key AND h2.at < ? AND h2.at >= ?"
            " ORDER BY h2.at DESC LIMIT ?)"
        )
        prior_params: list[Any] = [since, -np.inf if mark is None else mark, CONTEXT_BEATS]
        if keys is not None:
            clause, values = in_list_sql("w.worker_key", keys)
            sql += " WHERE " + clause
            prior_params.extend(values)
        rows = db.query(sql, prior_params, action="read heartbeats before the window")
        if rows:
            prior = pd.DataFrame(rows, columns=list(cols)).astype(
                {"worker_key": "int64", "at": "float64", "task_id": "int64"}
            )
            frame = pd.concat([prior, frame], ignore_index=True)
    return frame


def _rollup_points(
    db: Store, since: float | None, now: float, keys: list[int] | None
) -> tuple[np.ndarray, ...]:
    """Rolled-up minutes as beats: a minute's first and last beat (one if they coincide).

    A minute whose last beat is after `now` keeps only its first beat, whose task is
    unknown (-1); the last beat carries the minute's last task.
    """
    cols = rollup_columns(db, since=since, until=now, keys=keys, prior=True)
    first, last = cols["first_at"], cols["last_at"]
    visible = last <= now
    two = visible & (last > first)
    key = np.concatenate([cols["worker_key"], cols["worker_key"][two]])
    at = np.concatenate([np.where(visible, last, first), first[two]])
    task = np.concatenate([np.where(visible, cols["last_task_id"], -1), np.full(two.sum(), -1)])
    inner = np.concatenate([two, np.zeros(int(two.sum()), dtype=bool)])
    with np.errstate(invalid="ignore", divide="ignore"):
        per_minute = (last - first) / (cols["beats"] - 1)
    mean_gap = np.concatenate([np.where(two, per_minute, np.nan), np.full(two.sum(), np.nan)])
    return key, at, task.astype("int64"), inner, mean_gap


def _summary_points(
    db: Store, since: float | None, now: float, keys: list[int] | None, mark: float
) -> tuple[np.ndarray, ...]:
    """The summary tiers as beats, in the form of :func:`_rollup_points`.

    Each day row gives its first and last beat, each silence its two ends. Only the gap
    before a silence's end is a true gap between consecutive beats; every other gap
    between these points hides beats and no silence (``inner``), so it is never an
    outage. A day's last beat carries the day's usual interval (``mean_gap``) and task.
    A read from `since` takes the days from :data:`CONTEXT_DAYS` before it and each
    worker's last day before those; a window starting after the mark needs only each
    worker's last day (a worker silent since before the mark).
    """
    day_cols = {
        "worker_key": "int64",
        "first_at": "float64",
        "last_at": "float64",
        "last_task_id": "int64",
        "median": "float64",
    }
    select = (
        "SELECT d.worker_key, d.first_at, d.last_at, IFNULL(d.last_task_id, -1),"
        " IFNULL(d.median_gap_s, -1) FROM heartbeat_days d"
    )
    # Each worker's last day before a given day.
    latest = (
        "d.day = (SELECT max(d2.day) FROM heartbeat_days d2"
        " WHERE d2.worker_key = d.worker_key AND d2.day < ?)"
    )
    key_clause: list[str] = []
    key_params: list[Any] = []
    if keys is not None:
        clause, key_params = in_list_sql("d.worker_key", keys)
        key_clause = [clause]

    def days(where: list[str], params: list[Any]) -> dict[str, np.ndarray]:
        return db.read_columns(
            select + " WHERE " + " AND ".join(where + key_clause),
            params + key_params,
            columns=day_cols,
            action="read the summary tiers",
        )

    parts: list[dict[str, np.ndarray]] = []
    silences: dict[str, np.ndarray] | None = None
    if since is not None and since > mark:
        parts.append(days([latest], [int(mark // _DAY_S) + 1]))
    else:
        where = ["d.first_at <= ?"]
        params: list[Any] = [now]
        day0 = None
        if since is not None:
            day0 = int(since // _DAY_S) - CONTEXT_DAYS
            where.append("d.day >= ?")
            params.append(day0)
            parts.append(days([latest], [day0]))
        parts.append(days(where, params))
        s_where = ["s.start_at <= ?"]
        s_params: list[Any] = [now]
        if day0 is not None:
            s_where.append("s.end_at >= ?")
            s_params.append(day0 * _DAY_S)
        if keys is not None:
            clause, values = in_list_sql("s.worker_key", keys)
            s_where.append(clause)
            s_params.extend(values)
        silences = db.read_columns(
            "SELECT s.worker_key, s.start_at, s.end_at, IFNULL(s.task_id, -1)"
            " FROM heartbeat_silences s WHERE " + " AND ".join(s_where),
            s_params,
            columns={"worker_key": "int64", "start": "float64", "end": "float64", "task": "int64"},
            action="read the summary tiers",
        )
    d = {c: np.concatenate([p[c] for p in parts]) for c in day_cols}
    first, last = d["first_at"], d["last_at"]
    visible = last <= now
    # A day whose last beat is after `now` keeps only its first beat (task unknown).
    two = visible & (last > first)
    med = np.where(d["median"] > 0, d["median"], np.nan)
    key = [d["worker_key"][two], d["worker_key"]]
    at = [first[two], np.where(visible, last, first)]
    task = [np.full(int(two.sum()), -1), np.where(visible, d["last_task_id"], -1)]
    inner = [np.ones(int(two.sum()), dtype=bool), np.ones(len(first), dtype=bool)]
    mean_gap = [np.full(int(two.sum()), np.nan), np.where(visible, med, np.nan)]
    if silences is not None:
        s_key, s_start, s_end = silences["worker_key"], silences["start"], silences["end"]
        ended = s_end <= now
        key += [s_key, s_key[ended]]
        at += [s_start, s_end[ended]]
        task += [silences["task"], np.full(int(ended.sum()), -1)]
        inner += [np.ones(len(s_key), dtype=bool), np.zeros(int(ended.sum()), dtype=bool)]
        mean_gap += [np.full(len(s_key), np.nan), np.full(int(ended.sum()), np.nan)]
    return (
        np.concatenate(key),
        np.concatenate(at),
        np.concatenate(task).astype("int64"),
        np.concatenate(inner),
        np.concatenate(mean_gap),
    )


def _model(
    db: Store,
    since: float | None,
    now: float,
    keys: list[int] | None,
    removals: dict[int, np.ndarray] | None = None,
    *,
    tiers: bool = True,
) -> _Beats:


    def read() -> tuple[pd.DataFrame, float | None, float | None, tuple[np.ndarray, ...] | None]:
        # Raw beats, the horizon and the rollups as of one moment of any prune.
        mark = summary_mark(db, now) if tiers else None
        beats = _read_beats(db, since, now, keys, mark)
        horizon_at = horizon(db)
        rolled = None
        if mark is not None:
            rolled = _summary_points(db, since, now, keys, mark)
        elif horizon_at is not None:
            # Even a window after the horizon needs each worker's last rolled-up minute:
            # a silence that began before the horizon runs into the window.
            rolled = _rollup_points(db, since, now, keys)
        return beats, horizon_at, mark, rolled

    raw, horizon_at, mark, rolled = stable_read(db, read)
    key = raw["worker_key"].to_numpy(dtype="int64")
    at = raw["at"].to_numpy(dtype="float64")
    task = raw["task_id"].to_numpy(dtype="int64")
    n_raw = len(key)
    summary = np.zeros(n_raw, dtype=bool)
    if rolled is not None:
        r_key, r_at, r_task, r_inner, r_mean = rolled
        after = mark is not None and since is not None and since > mark
        if after or (mark is None and since is not None and not uses_rollups(horizon_at, since)):
            # A window after the horizon needs the last rolled-up minute only of a worker
            # with no raw beat before the window: it went silent before the horizon.
            take = ~np.isin(r_key, key[at < since])
            r_key, r_at, r_task = r_key[take], r_at[take], r_task[take]
            r_inner, r_mean = r_inner[take], r_mean[take]
        key = np.concatenate([key, r_key])
        at = np.concatenate([at, r_at])
        task = np.concatenate([task, r_task])
        minute = np.concatenate([np.zeros(n_raw, dtype=bool), np.ones(len(r_key), dtype=bool)])
        inner = np.concatenate([np.zeros(n_raw, dtype=bool), r_inner])
        mean_gap = np.concatenate([np.full(n_raw, np.nan), r_mean])
        summary = np.concatenate([summary, np.full(len(r_key), mark is not None)])
        # Sorted by (key, at), a minute's first beat before its last: inner last.
        order = np.lexsort((inner, at, key))
        key, at, task = key[order], at[order], task[order]
        minute, inner, mean_gap = minute[order], inner[order], mean_gap[order]
        summary = summary[order]
    else:
        order = np.lexsort((at, key))
        key, at, task = key[order], at[order], task[order]
        minute = np.zeros(n_raw, dtype=bool)
        inner = minute
        mean_gap = np.full(n_raw, np.nan)
    n = len(key)
    life = np.zeros(n, dtype="int64")
    removal = np.full(n, np.nan)
    if removals is None:
        removals = removal_times(db, now)
    for wk, times in removals.items():
        lo = int(np.searchsorted(key, wk, side="left"))
        hi = int(np.searchsorted(key, wk, side="right"))
        if lo == hi:
            continue
        # A beat at or before a removal belongs to the life that removal ends.
        lives = np.searchsorted(times, at[lo:hi], side="left")
        life[lo:hi] = lives
        padded = np.append(times, np.nan)
        removal[lo:hi] = padded[lives]
    seg_start = np.ones(n, dtype=bool)
    if n:
        seg_start[1:] = (key[1:] != key[:-1]) | (life[1:] != life[:-1])
    seg_end = np.ones(n, dtype=bool)
    if n:
        seg_end[:-1] = seg_start[1:]
    gap = np.full(n, np.nan)
    if n:
        gap[1:] = at[1:] - at[:-1]
    gap[seg_start] = np.nan
    return _Beats(
        key, at, task, seg_start, seg_end, gap, removal, minute, inner, mean_gap, horizon_at,
        summary,
    )


@dataclass
class _Liveness:
    beats: _Beats
    thr: np.ndarray
    outage_before: np.ndarray  # bool: the gap before this beat is an outage
    tail_end: np.ndarray  # float: removal time or now, meaningful at seg_end
    tail_outage: np.ndarray  # bool: the silence after this (last) beat is an outage
    # Outage silences not observed (a recorder was not listening; see _unobserved_silences).
    blind_before: np.ndarray
    blind_tail: np.ndarray


def _thresholds(beats: _Beats, rule: _Rule) -> np.ndarray:
    """The outage threshold of each beat's worker: `min_gap`, or the model's."""
    if rule.fixed is not None:
        return np.full(len(beats.key), rule.fixed)
    return rule.intervals.late_after(beats.key)


def _live_from(db: Store, beats: _Beats, thr: np.ndarray, now: float) -> _Liveness:
    with np.errstate(invalid="ignore"):
        # A silence inside a rolled-up minute cannot be seen: only gaps between beats
        # that were both kept (raw, or a minute's first and last) can be outages.
        outage_before = (beats.gap > thr) & ~beats.inner
    tail_end = np.where(np.isnan(beats.removal), now, beats.removal)
    tail_outage = beats.seg_end & ((tail_end - beats.at) > thr)
    blind_before, blind_tail = _unobserved_silences(
        db, now, beats, thr, outage_before, tail_end, tail_outage
    )
    return _Liveness(
        beats, thr, outage_before, tail_end, tail_outage, blind_before, blind_tail
    )


def _key_groups(db: Store, now: float) -> list[list[int]] | None:
    """Worker keys in groups of about :data:`GROUP_BEATS` beats; None for one group.

    A store before the beat counters is read in one group.
    """
    if db.schema_version < COUNTERS_VERSION:
        return None
    rows = db.query(
        "SELECT worker_key, heartbeats FROM workers ORDER BY worker_key",
        action="read the workers' beat counts",
    )
    if summary_mark(db, now) is not None:
        # Raw beats after the mark (all beats less those summarized), plus two points
        # per day and per silence before it.
        tier = {
            int(k): (int(b), int(n))
            for k, b, n in db.query(
                "SELECT worker_key, sum(beats), count(*) FROM heartbeat_days GROUP BY worker_key",
                action="read the summary tiers' sizes",
            )
        }
        gaps = dict(
            db.query(
                "SELECT worker_key, count(*) FROM heartbeat_silences GROUP BY worker_key",
                action="read the summary tiers' sizes",
            )
        )
        rows = [
            (k, max(0, int(n) - tier.get(k, (0, 0))[0]) + 2 * tier.get(k, (0, 0))[1]
             + 2 * int(gaps.get(k, 0)))
            for k, n in rows
        ]
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for key, n in rows:
        if current and size + int(n) > GROUP_BEATS:
            groups.append(current)
            current, size = [], 0
        current.append(int(key))
        size += int(n)
    if current:
        groups.append(current)
    return groups if len(groups) > 1 else None


@dataclass(frozen=True)
class _Rule:
    """What decides an outage for one read: each worker's expected interval (the model of
    :mod:`qanalytics.history.intervals`) or a fixed `min_gap`, and whether the summary
    tiers answer it exactly."""

    intervals: Intervals
    fixed: float | None
    tiers: bool


def _rule(db: Store, since: float | None, now: float, min_gap: Any, removals: Any) -> _Rule:
    fixed = None
    if min_gap is not None:
        fixed = parse_duration(min_gap, name="min_gap", allow_zero=False)
    intervals = expected_intervals(db, now, removals=removals)
    return _Rule(intervals, fixed, _tiers_answer(db, since, now, intervals, fixed, min_gap))


def _tiers_answer(
    db: Store, since: float | None, now: float, intervals: Intervals, fixed: float | None,
    min_gap: Any,
) -> bool:
    """Whether to read the summary tiers: they kept every silence the thresholds ask for.

    Each summarized day says the gap above which every silence was kept
    (``silences_over_s``). A threshold below it is answered from the raw beats while
    they are still there (summarizing deletes none; only ``prune`` does). Once they are
    pruned, a fixed `min_gap` below it cannot be answered and is refused; the model's
    own thresholds are what the tiers were kept for.
    """
    if summary_mark(db, now) is None:
        return False
    if db.schema_version < INTERVALS_VERSION:
        floors = {}
        widest = 60.0
    else:
        floors = {
            int(k): float(v)
            for k, v in db.query(
                "SELECT worker_key, max(silences_over_s) FROM heartbeat_days"
                " WHERE silences_over_s IS NOT NULL GROUP BY worker_key",
                action="read the summary tiers' floors",
            )
        }
        widest = max(floors.values(), default=0.0)
    if fixed is not None:
        exact = fixed >= widest
    else:
        keys = np.fromiter(floors, dtype="int64", count=len(floors))
        need = np.fromiter(floors.values(), dtype="float64", count=len(floors))
        exact = bool(np.all(intervals.late_after(keys) >= need))
    if exact:
        return True
    horizon_at = horizon(db)
    if horizon_at is None or (since is not None and since - _DAY_S * CONTEXT_DAYS >= horizon_at):
        return False  # the raw beats answer exactly
    if fixed is not None:
        raise ValueError(
            f"min_gap={min_gap!r} is finer than the summary tiers kept (every silence over "
            f"{widest:g} s) before the raw history starts at "
            f"{pd.Timestamp(horizon_at, unit='s', tz='UTC')}; use min_gap of at least "
            f"{widest:g} s, or a window that starts after the raw history does"
        )
    return True


def _map_liveness(
    db: Store,
    since: float | None,
    now: float,
    min_gap: Any,
    consume: Callable[[_Liveness], _T],
) -> tuple[list[_T], float | None]:
    """`consume` applied to the liveness model of each group of workers.

    Every worker's threshold comes from the model (or is `min_gap`), known before any
    beat is read, so groups are independent and the answer is the same as one model of
    all workers. Returns the results and the horizon.
    """
    removals = removal_times(db, now)
    rule = _rule(db, since, now, min_gap, removals)
    found = _key_groups(db, now)
    groups: list[list[int] | None] = list(found) if found else [None]

    def read() -> tuple[list[_T], float | None]:
        out: list[_T] = []
        horizon_at = None
        for keys in groups:
            beats = _model(db, since, now, keys, removals, tiers=rule.tiers)
            horizon_at = beats.horizon
            out.append(consume(_live_from(db, beats, _thresholds(beats, rule), now)))
            del beats
        return out, horizon_at

    return stable_read(db, read)


def _alive_arrays(live: _Liveness) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = live.beats
    if len(b.key) == 0:
        empty = np.array([], dtype="float64")
        return np.array([], dtype="int64"), empty, empty
    # A silence nobody listened to is not an outage: the worker counts as alive through
    # it (uptime() then leaves the unobserved time out of its buckets).
    run_start = b.seg_start | (live.outage_before & ~live.blind_before)
    starts = np.flatnonzero(run_start)
    ends = np.append(starts[1:] - 1, len(b.key) - 1)
    start_t = b.at[starts]
    end_t = b.at[ends].copy()
    extend = b.seg_end[ends] & ~(live.tail_outage[ends] & ~live.blind_tail[ends])
    end_t[extend] = live.tail_end[ends][extend]
    return b.key[starts], start_t, end_t


# -- public functions -------------------------------------------------------------------
@share_docs
def alive_intervals(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    min_gap: Any = None,
) -> pd.DataFrame:
    """The intervals during which each worker counts as alive.

    A beat covers ``[beat, next beat]`` when the gap to the next beat is not an outage;
    a life's last beat covers up to its removal, or up to `now` while still registered,
    unless that silence is an outage; a beat followed by an outage covers only its own
    moment, so zero-length intervals appear. Consecutive covered stretches are merged.
    Alive intervals and :func:`outages` never overlap (except at endpoints) and together
    span each life from its first beat to its removal or `now`, with one exception: a
    silence no recorder heard (``ended_by="not observed"``, see
    :mod:`qanalytics.read.coverage`) is not evidence of death and counts as alive here.
    See the module docstring for the outage threshold.

    Parameters
    ----------
    {db}
    {since_until}
        Clip the intervals to this window. Intervals wholly outside are dropped.
    {now}
    min_gap : float, str or None
        A fixed outage threshold (seconds or a duration string) instead of three of each
        worker's expected beat intervals.

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``start``, ``end`` (UTC timestamps), sorted by
        worker and start. Before the store's raw history starts (see
        :func:`qanalytics.maintenance.prune`), a rolled-up minute counts as alive from its
        first to its last beat, and the gaps between minutes follow the rule above;
        ``attrs["raw_history_starts_at"]`` then says where raw history starts.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     spans = qa.alive_intervals(db, since="24h")
    """
    frame = alive_spans(db, since=since, until=until, now=now, min_gap=min_gap)
    for column in ("start", "end"):
        frame[column] = as_utc(frame[column].to_numpy(), frame.index)
    return frame


def alive_spans(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    min_gap: Any = None,
) -> pd.DataFrame:
    """:func:`alive_intervals` with ``start`` and ``end`` as float epoch seconds.

    For the reads that do arithmetic on the spans (utilization, capacity planning).

    Parameters
    ----------
    db : Store
        The store.
    since, until, now, min_gap
        As for :func:`alive_intervals`.

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``start``, ``end`` (float64 epoch seconds).
    """
    db.require("heartbeat_history", "alive_intervals()")
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    parts, horizon_at = _map_liveness(db, lo, at, min_gap, _alive_arrays)
    key = np.concatenate([p[0] for p in parts])
    start = np.concatenate([p[1] for p in parts])
    end = np.concatenate([p[2] for p in parts])
    keep = end >= (lo if lo is not None else -np.inf)
    keep &= start <= hi
    key, start, end = key[keep], start[keep], end[keep]
    if lo is not None:
        start = np.maximum(start, lo)
    end = np.minimum(end, hi)
    frame = pd.DataFrame(
        {"worker_id": wk.categorical(key), "start": start, "end": end},
        columns=["worker_id", "start", "end"],
    )
    frame = frame.sort_values(["worker_id", "start"], kind="stable").reset_index(drop=True)
    return mark_horizon(frame, horizon_at)


@share_docs
def heartbeat_gaps(
    db: Store,
    *,
    workers: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The interval before each heartbeat, per worker.

    Parameters
    ----------
    {db}
    workers : str, iterable of str or None
        Only these workers.
    {since_until}
        Beats in this window. The gap of the first beat in the window is measured from the
        worker's previous beat.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``at`` (UTC), ``gap_s`` (float seconds; NaN for a
        worker's first beat, and for the first beat after a removal, which starts a new
        life), ``resolution`` (category: ``raw``, or ``minute`` for a minute rolled up by
        :func:`qanalytics.maintenance.prune`: its row is at the minute's first beat, with
        the gap since the previous kept beat, so silences inside a minute are not seen),
        sorted by worker and time. ``attrs["raw_history_starts_at"]`` is set when the
        store was pruned.
    """
    db.require("heartbeat_history", "heartbeat_gaps()")
    names = check_workers(workers)
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    keys = None if names is None else wk.keys_for(names)
    dtypes = {
        "worker_id": wk.dtype,
        "at": UTC_DTYPE,
        "gap_s": "float64",
        "resolution": RESOLUTION_DTYPE,
    }
    if keys is not None and not keys:
        return mark_horizon(empty_frame(dtypes), horizon(db))
    beats = _model(db, lo, at, keys, tiers=False)
    keep = (beats.at <= hi) & ~beats.inner
    if lo is not None:
        keep &= beats.at >= lo
    frame = pd.DataFrame(
        {
            "worker_id": wk.categorical(beats.key[keep]),
            "at": as_utc(beats.at[keep]),
            "gap_s": beats.gap[keep],
            "resolution": _resolution(beats.minute[keep]),
        },
        columns=list(dtypes),
    )
    return mark_horizon(frame.reset_index(drop=True), beats.horizon)


def _resolution(minute: np.ndarray) -> pd.Categorical:
    return pd.Categorical.from_codes(minute.astype("int8"), dtype=RESOLUTION_DTYPE)


@share_docs
def outages(
    db: Store,
    *,
    min_gap: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    include_unobserved: bool = False,
) -> pd.DataFrame:
    """One row per silence episode: when each worker went quiet and what it held.

    A gap between consecutive beats is an outage when it exceeds the worker's threshold
    (three of its expected beat intervals, see :mod:`qanalytics.history.intervals`, or
    `min_gap`); so is the silence after a life's last beat, up to its removal or, while
    still registered, up to `now`.

    Parameters
    ----------
    {db}
    min_gap : float, str or None
        A fixed threshold (seconds or a duration string such as ``"2min"``). Once raw
        beats are pruned, a `min_gap` finer than the summary tiers kept (every silence
        over twice the expected interval, at most a minute) raises ``ValueError``.
    {since_until}
        Outages overlapping this window, each reported whole: an outage that started
        before `since` and is still going (or ended inside the window) is included,
        with its true `start`.
    {now}
    include_unobserved : bool, default False
        Also list the silences that fell mostly while no recorder was listening
        (``ended_by="not observed"``): time nobody listened to is not evidence that a
        worker was down, so by default they are left out; :func:`unobserved` lists the
        stretches themselves.

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category); ``start`` (UTC: the last beat before the silence);
        ``end`` (UTC: the resuming beat, the removal, or `now` when ongoing);
        ``duration_s`` (float); ``ongoing`` (bool); ``tasks_in_flight`` (list of int:
        tasks the worker held at `start`, i.e. attempts claimed at or before it and not
        finished by it, plus the task named by that beat); ``ended_by`` (category:
        resumed / removed / still silent, or ``not observed`` when part of the silence
        fell while no recorder was listening, see :mod:`qanalytics.record`, and the part
        heard is no longer than the threshold: no evidence of an outage); ``resolution``
        (category: ``minute`` when the silence starts before the store's raw history, see
        below, else ``raw``). Sorted by worker and start.

    Notes
    -----
    Before the raw history starts (heartbeats rolled up by
    :func:`qanalytics.maintenance.prune`), each minute's first and last beat stand for
    its beats: silences between minutes are found with their exact start and end, but a
    silence inside one minute cannot be seen. Thresholds come from raw gaps (or from the
    mean interval inside rolled-up minutes when a worker has no raw gaps).
    ``attrs["raw_history_starts_at"]`` says where raw history starts.
    """
    db.require("heartbeat_history", "outages()")
    if not isinstance(include_unobserved, bool | np.bool_):
        raise TypeError(
            f"include_unobserved must be True or False, not {include_unobserved!r}"
        )
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)

    def found(live: _Liveness) -> tuple[np.ndarray, ...]:
        # This group's outages overlapping the window, with the tasks held at each start.
        b = live.beats
        gap_idx = np.flatnonzero(live.outage_before)
        tail_idx = np.flatnonzero(live.tail_outage)
        start_idx = np.concatenate([gap_idx - 1, tail_idx])
        key = b.key[start_idx]
        start = b.at[start_idx]
        end = np.concatenate([b.at[gap_idx], live.tail_end[tail_idx]])
        removed = ~np.isnan(b.removal[tail_idx])
        ended_by = np.concatenate(
            [
                np.full(len(gap_idx), "resumed", dtype=object),
                np.where(removed, "removed", "still silent").astype(object),
            ]
        )
        keep = start <= hi
        if lo is not None:
            keep &= end >= lo
        key, start, end, ended_by = key[keep], start[keep], end[keep], ended_by[keep]
        # A silence mostly outside the recorder's listening periods was not observed.
        blind = np.concatenate([live.blind_before[gap_idx], live.blind_tail[tail_idx]])[keep]
        ended_by = np.where(blind, "not observed", ended_by).astype(object)
        level = b.minute[start_idx].astype("int8") + b.summary[start_idx].astype("int8")
        return key, start, end, ended_by, level[keep], _beat_tasks(db, b.task[start_idx][keep])

    parts, horizon_at = _map_liveness(db, lo, at, min_gap, found)
    key, start, end, ended_by, minute, beat_task = (
        np.concatenate([p[i] for p in parts]) for i in range(6)
    )
    held = np.empty(len(key), dtype=object)
    held[:] = tasks_held_at(db, key, start, beat_task)
    frame = pd.DataFrame(
        {
            "worker_id": wk.categorical(key),
            "start": as_utc(start),
            "end": as_utc(end),
            "duration_s": end - start,
            "ongoing": ended_by == "still silent",
            "tasks_in_flight": pd.Series(held, dtype=object),
            "ended_by": pd.Categorical(ended_by, dtype=ENDED_BY_DTYPE),
            "resolution": pd.Categorical.from_codes(
                minute.astype("int8"), dtype=OUTAGE_RESOLUTION_DTYPE
            ),
        }
    )
    if not include_unobserved:
        frame = frame[frame["ended_by"] != "not observed"]
    frame = frame.sort_values(["worker_id", "start"], kind="stable").reset_index(drop=True)
    return mark_horizon(frame, horizon_at)


@share_docs
def unobserved(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """The stretches of time no recorder was listening to, as a frame.

    A store written by a recorder of another queue (:mod:`qanalytics.record`) heard its
    workers only while the recorder ran. A silence of a worker in a stretch listed here
    is not evidence of an outage, so :func:`outages` leaves such silences out by
    default and :func:`uptime` does not count the time. A store written through the
    qanalytics API directly is always observed: the frame is empty.

    Parameters
    ----------
    {db}
    {since_until}
        Stretches overlapping this window, clipped to it.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``start``, ``end`` (UTC) and ``duration_s`` (float), in time order. The stretch
        before the first listening period starts at the window's start, or at the
        store's first event for a whole-history read.

    Examples
    --------
    >>> import qanalytics as qa
    >>> db = qa.connect(":memory:")
    >>> qa.liveness.unobserved(db).empty
    True
    """
    lo, hi, at = resolve_window(db, since, until, now)
    gaps = unobserved_intervals(db, since=lo, now=at)
    if gaps and lo is None and math.isinf(gaps[0][0]):
        first = db.query(
            "SELECT min(at) FROM worker_events", action="read the store's first event"
        )
        start0 = first[0][0] if first and first[0][0] is not None else gaps[0][1]
        gaps[0] = (min(float(start0), gaps[0][1]), gaps[0][1])
    kept = [(a, min(b, hi)) for a, b in gaps if a < hi and min(b, hi) > a]
    start = np.array([a for a, _ in kept], dtype="float64")
    end = np.array([b for _, b in kept], dtype="float64")
    return pd.DataFrame(
        {"start": as_utc(start), "end": as_utc(end), "duration_s": end - start}
    )


def _beat_tasks(db: Store, task: np.ndarray) -> np.ndarray:
    """Resolve the ``-2 - rowid`` entries of a beats' `task` array to task ids (-1: none)."""
    task = task.copy()
    pending = np.flatnonzero(task <= -2)
    for i in range(0, len(pending), _KEYS_PER_QUERY):
        part = pending[i : i + _KEYS_PER_QUERY]
        rowids = (-2 - task[part]).tolist()
        clause, params = in_list_sql("rowid", rowids)
        found = dict(
            db.query(
                f"SELECT rowid, IFNULL(task_id, -1) FROM heartbeats WHERE {clause}",
                params,
                action="read the tasks of the beats that start outages",
            )
        )
        task[part] = [found.get(r, -1) for r in rowids]
    return task


#: Beats per query of :func:`_beat_tasks` (bound parameters stay few).
_KEYS_PER_QUERY = 500
#: Attempts per batch of :func:`tasks_held_at`.
_ATTEMPTS_PER_BATCH = 1_000_000

_ATTEMPT_COLUMNS = {
    "worker_key": "int64",
    "task_id": "int64",
    "claimed_at": "float64",
    "finished_at": "float64",
}


# -- recorder coverage (see .coverage) -----------------------------------------------------
# A store written by a recorder of another queue knows when it was listening. A silence is
# evidence that a worker was down only for the part of it someone listened to: when that
# part is not itself longer than the worker's threshold, outages() says "not observed"
# (a recorder restart, say), and uptime() leaves unobserved time out of each bucket (NaN
# when nothing of a bucket was observed). Stores without coverage rows are unaffected.
def _unobserved_silences(
    db: Store,
    now: float,
    beats: _Beats,
    thr: np.ndarray,
    outage_before: np.ndarray,
    tail_end: np.ndarray,
    tail_outage: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Which outage silences (before a beat, after a life's last beat) were not observed."""
    blind_before = np.zeros(len(beats.at), dtype=bool)
    blind_tail = np.zeros(len(beats.at), dtype=bool)
    gaps = unobserved_intervals(db, now=now)
    if not gaps or len(beats.at) == 0:
        return blind_before, blind_tail
    for mask, out, lo, hi in (
        (outage_before, blind_before, beats.at - np.nan_to_num(beats.gap), beats.at),
        (tail_outage, blind_tail, beats.at, tail_end),
    ):
        idx = np.flatnonzero(mask)
        unheard = overlap_s(lo[idx], hi[idx], gaps)
        with np.errstate(invalid="ignore"):
            out[idx] = (unheard > 0) & ~((hi[idx] - lo[idx] - unheard) > thr[idx])
    return blind_before, blind_tail


def _minus_unobserved(
    db: Store, now: float, key: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[list[tuple[float, float]], np.ndarray, np.ndarray, np.ndarray]:
    """The unobserved intervals, and the alive intervals with those parts cut out."""
    gaps = unobserved_intervals(db, now=now)
    if not gaps or len(start) == 0:
        return gaps, key, start, end
    keys, starts, ends = [key], [start], [end]
    for a, b in gaps:
        cur_k, cur_s, cur_e = keys[-1], starts[-1], ends[-1]
        left = cur_s < a  # the part before the gap
        right = cur_e > b  # the part after it
        keys.append(np.concatenate([cur_k[left], cur_k[right]]))
        starts.append(np.concatenate([cur_s[left], np.maximum(cur_s[right], b)]))
        ends.append(np.concatenate([np.minimum(cur_e[left], a), cur_e[right]]))
    return gaps, keys[-1], starts[-1], ends[-1]


def tasks_held_at(
    db: Store, key: np.ndarray, start: np.ndarray, beat_task: np.ndarray
) -> list[list[int]]:
    """Per outage, the ids of tasks its worker held at the outage's start.

    Attempts still open are read once. Finished ones are found in one of two ways,
    whichever reads fewer rows: when outages are few against the history, one probe
    per outage of its worker's attempts claimed in the longest attempt's duration
    before its start (the ``attempts_duration`` index gives that duration); otherwise
    one range join, the attempts claimed by the latest start and open after the
    earliest read in finish-time order from the covering ``attempts_finished`` index,
    in batches of :data:`_ATTEMPTS_PER_BATCH`, each matched to the starts of its
    worker it spans by binary search in that worker's sorted starts.
    """
    # Sets only for the outages that hold something (most hold nothing).
    held: dict[int, set[int]] = {
        int(i): {int(beat_task[i])} for i in np.flatnonzero(beat_task >= 0).tolist()
    }
    if len(key) == 0:
        return []
    first, last = float(start.min()), float(start.max())
    order = np.lexsort((start, key))
    s_key, s_start = key[order], start[order]

    def match(cols: dict[str, np.ndarray], still_open: bool = False) -> None:
        a_key, a_task = cols["worker_key"], cols["task_id"]
        claimed, finished = cols["claimed_at"], cols["finished_at"]
        if still_open:
            finished = np.full(len(claimed), np.inf)
        # Each attempt spans the starts s of its worker with claimed <= s < finished:
        # positions [a, b) in the (worker, start) order.
        w_lo = np.searchsorted(s_key, a_key, side="left")
        w_hi = np.searchsorted(s_key, a_key, side="right")
        mine = np.flatnonzero(w_hi > w_lo)
        a = np.zeros(len(a_key), dtype="int64")
        b = np.zeros(len(a_key), dtype="int64")
        by_worker = mine[np.argsort(a_key[mine], kind="stable")]
        bounds = np.flatnonzero(np.diff(a_key[by_worker])) + 1
        for idx in np.split(by_worker, bounds) if len(by_worker) else []:
            lo_w, hi_w = int(w_lo[idx[0]]), int(w_hi[idx[0]])
            starts = s_start[lo_w:hi_w]
            a[idx] = lo_w + np.searchsorted(starts, claimed[idx], side="left")
            b[idx] = lo_w + np.searchsorted(starts, finished[idx], side="left")
        spans = np.flatnonzero(b > a)
        counts = (b - a)[spans]
        pair_task = np.repeat(a_task[spans], counts)
        pair_pos = np.repeat(a[spans], counts) + (
            np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        for pos, task in zip(order[pair_pos].tolist(), pair_task.tolist(), strict=True):
            held.setdefault(pos, set()).add(task)

    select = "SELECT worker_key, task_id, claimed_at, finished_at FROM attempts"
    action = "read attempts held at outages"
    match(
        db.read_columns(
            "SELECT worker_key, task_id, claimed_at, claimed_at FROM attempts"
            " WHERE finished_at IS NULL AND claimed_at <= ?",
            [last],
            columns=_ATTEMPT_COLUMNS,
            action=action,
        ),
        still_open=True,
    )
    longest = _probe_span(db, first, len(key))
    if longest is not None:
        for pos, task in _probe_attempts(db, key, start, longest):
            held.setdefault(pos, set()).add(task)
        return _held_lists(held, len(key))
    # Keyset batches in finish order; an attempt read twice at a batch edge adds the same
    # task to the same sets again.
    bound, op = first, ">"
    while True:
        cols = db.read_columns(
            select + f" WHERE finished_at {op} ? AND claimed_at <= ?"
            " ORDER BY finished_at LIMIT ?",
            [bound, last, _ATTEMPTS_PER_BATCH],
            columns=_ATTEMPT_COLUMNS,
            action=action,
        )
        match(cols)
        if len(cols["finished_at"]) < _ATTEMPTS_PER_BATCH:
            break
        top = float(cols["finished_at"].max())
        if op == ">=" and top == bound:
            # A whole batch finished at one moment: take that moment whole, move past it.
            match(
                db.read_columns(
                    select + " WHERE finished_at = ? AND claimed_at <= ?",
                    [bound, last],
                    columns=_ATTEMPT_COLUMNS,
                    action=action,
                )
            )
            op = ">"
        else:
            bound, op = top, ">="
    return _held_lists(held, len(key))


def _held_lists(held: dict[int, set[int]], n: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for pos, tasks in held.items():
        out[pos] = sorted(tasks)
    return out


#: Outages per probe query of :func:`_probe_attempts`.
_PROBES_PER_QUERY = 300


def _probe_span(db: Store, first: float, n_outages: int) -> float | None:
    """The longest finished attempt's duration, when probing beats the range join.

    Probes read about ``outages x longest x claims per worker and second`` rows; the
    range join reads every attempt finished after the earliest start. None when the
    store has no duration index or the join reads less.
    """
    if db.schema_version < TIERS_VERSION or n_outages == 0:
        return None
    rows = db.query(
        "SELECT max(finished_at - claimed_at) FROM attempts WHERE finished_at IS NOT NULL",
        action="read the longest attempt",
    )
    longest = rows[0][0] if rows else None
    if longest is None:
        return 0.0
    stats = db.query(
        "SELECT count(*), IFNULL(sum(tasks_completed + tasks_failed), 0), min(registered_at),"
        " max(last_heartbeat_at) FROM workers",
        action="read the workers' counters",
    )[0]
    workers, attempts, born, latest = stats
    if not workers or not attempts or born is None or latest is None or latest <= born:
        return None
    span = float(latest) - float(born)
    per_worker_s = float(attempts) / float(workers) / span
    probe_rows = n_outages * (float(longest) + 1.0) * per_worker_s
    scan_rows = float(attempts) * max(0.0, float(latest) - first) / span
    return float(longest) if 4 * probe_rows < scan_rows else None


def _probe_attempts(
    db: Store, key: np.ndarray, start: np.ndarray, longest: float
) -> list[tuple[int, int]]:
    """(outage position, task) for each finished attempt open at an outage's start."""
    found: list[tuple[int, int]] = []
    for lo in range(0, len(key), _PROBES_PER_QUERY):
        part = range(lo, min(lo + _PROBES_PER_QUERY, len(key)))
        values = ", ".join("(?, ?, ?)" for _ in part)
        params: list[Any] = []
        for i in part:
            params.extend((i, int(key[i]), float(start[i])))
        # The (worker_key, claimed_at) index bounds each probe to `longest` seconds.
        found.extend(
            (int(i), int(t))
            for i, t in db.query(
                f"WITH o (i, k, s) AS (VALUES {values})"
                " SELECT o.i, a.task_id FROM o JOIN attempts a ON a.worker_key = o.k"
                " AND a.claimed_at >= o.s - ? AND a.claimed_at <= o.s WHERE a.finished_at > o.s",
                [*params, longest],
                action="read attempts held at outages",
            )
        )
    return found


def _check_buckets(count: int, freq: Any) -> None:
    """Refuse a question that would build more than ``MAX_BUCKETS`` (worker, bucket) rows."""
    if count > MAX_BUCKETS:
        raise ValueError(
            f"freq={freq!r} gives {count:,} worker buckets over the window (at most "
            f"{MAX_BUCKETS:,}); use a coarser freq or a shorter window"
        )


@share_docs
def uptime(
    db: Store,
    *,
    freq: Any = "1h",
    since: Any = None,
    until: Any = None,
    now: Any = None,
    min_gap: Any = None,
) -> pd.DataFrame:
    """The fraction of each time bucket that each worker was alive.

    Alive time comes from :func:`alive_intervals` (a beat covers up to the next beat
    unless the gap is an outage; a life's last beat covers up to its removal or `now`
    unless that silence is an outage). Buckets are aligned to multiples of `freq` since
    the epoch. The fraction's denominator is the part of the bucket inside the window
    (``since`` to ``until``) during which the worker was registered (from its first beat
    to its removal), so a partial current bucket, a worker added mid-bucket and a worker
    removed on purpose are not shown as partly dead; a crashed worker's silence counts,
    including a silence that started before the window (see the module docstring).
    A worker has a row for every bucket from the one holding its first beat in the window
    (or ``since``) through the window's end, or through its removal if it is removed as of
    `now` (not the bucket that starts at the removal).

    Parameters
    ----------
    {db}
    freq : float or str, default "1h"
        Bucket width: seconds or a duration string (``"15min"``, ``"1h"``, ``"1d"``).
    {since_until}
        The window. Without `since`, the window starts at the first beat.
    {now}
    min_gap : float, str or None
        A fixed outage threshold instead of three of the worker's expected intervals.

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``bucket`` (UTC, bucket start), ``alive_fraction``
        (float in [0, 1]), sorted by worker and bucket. In a store written by a recorder
        (:mod:`qanalytics.record`), time no recorder listened is left out of the bucket,
        and a bucket with nothing observed has NaN (not observed). Before the store's raw history
        starts, a rolled-up minute counts as alive from its first to its last beat (see
        :func:`alive_intervals`); ``attrs["raw_history_starts_at"]`` then says where raw
        history starts.

    Raises
    ------
    ValueError
        If `freq` is not a width from 1 ms to about 292 years, or the answer would hold more
        than ``MAX_BUCKETS`` (5,000,000) worker buckets (as
        :func:`qanalytics.metrics.depth_timeline` refuses).
    """
    db.require("heartbeat_history", "uptime()")
    width = parse_freq(freq, name="freq")
    lo, hi, at = resolve_window(db, since, until, now)
    wk = worker_keys(db, at)
    dtypes = {"worker_id": wk.dtype, "bucket": UTC_DTYPE, "alive_fraction": "float64"}

    def spans(live: _Liveness) -> tuple[Any, ...]:
        # Alive intervals, and each worker's first and last beat read.
        beat_at = pd.Series(live.beats.at).groupby(live.beats.key)
        return (*_alive_arrays(live), beat_at.min(), beat_at.max())

    parts, horizon_at = _map_liveness(db, lo, at, min_gap, spans)
    key, start, end = (np.concatenate([p[i] for p in parts]) for i in range(3))
    if len(key) == 0:
        return mark_horizon(empty_frame(dtypes), horizon_at)
    unobserved, key, start, end = _minus_unobserved(db, at, key, start, end)
    first_beat = pd.concat([p[3] for p in parts]).sort_index()
    window_lo = float(first_beat.min()) if lo is None else lo
    # Each worker's span of rows: from its first beat (or the window start) to the window
    # end, or to its last removal when it is removed as of now.
    last_removal = {k: float(v[-1]) for k, v in removal_times(db, at).items()}
    revived = pd.concat([p[4] for p in parts]).sort_index()
    workers_k = first_beat.index.to_numpy(dtype="int64")
    span_lo = np.maximum(first_beat.to_numpy(dtype="float64"), window_lo)
    span_hi = np.full(len(workers_k), hi)
    for i, k in enumerate(workers_k):
        removed_at = last_removal.get(int(k))
        if removed_at is not None and removed_at >= revived.loc[k]:
            span_hi[i] = min(hi, removed_at)
    b0 = np.floor(span_lo / width)
    b1 = np.floor(span_hi / width)
    valid = span_hi >= span_lo
    workers_k, b0, b1 = workers_k[valid], b0[valid], b1[valid]
    span_lo, span_hi = span_lo[valid], span_hi[valid]
    counts = (b1 - b0 + 1).astype("int64")
    _check_buckets(int(counts.sum()), freq)
    row_key = np.repeat(workers_k, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    row_bucket = (np.repeat(b0, counts) + offsets) * width
    rows = pd.DataFrame(
        {
            "key": row_key,
            "bucket": row_bucket,
            "life_lo": np.repeat(span_lo, counts),
            "life_hi": np.repeat(span_hi, counts),
        }
    )
    # Clip the alive intervals to the window, then split them at bucket edges.
    s = np.maximum(start, window_lo)
    e = np.minimum(end, hi)
    ok = e > s
    key, s, e = key[ok], s[ok], e[ok]
    k0 = np.floor(s / width)
    k1 = np.floor(np.nextafter(e, -np.inf) / width)
    n = (k1 - k0 + 1).astype("int64")
    _check_buckets(int(n.sum()), freq)
    piece_key = np.repeat(key, n)
    piece_off = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    piece_bucket = (np.repeat(k0, n) + piece_off) * width
    piece_s = np.maximum(np.repeat(s, n), piece_bucket)
    piece_e = np.minimum(np.repeat(e, n), piece_bucket + width)
    covered = (
        pd.DataFrame({"key": piece_key, "bucket": piece_bucket, "alive": piece_e - piece_s})
        .groupby(["key", "bucket"], sort=False)["alive"]
        .sum()
    )
    rows = rows.join(covered, on=["key", "bucket"])
    # The denominator is the part of the bucket the worker was registered for, inside the
    # window: a worker added or removed mid-bucket is not shown as partly dead.
    observed = np.minimum(rows["bucket"] + width, rows["life_hi"]) - np.maximum(
        rows["bucket"], rows["life_lo"]
    )
    alive = rows["alive"].fillna(0.0).to_numpy(dtype="float64")
    # A bucket that starts exactly at the window's end has nothing observed.
    has = np.asarray(observed > 0, dtype=bool)
    if unobserved:
        seen = np.asarray(observed, dtype="float64")
        lo_b = np.maximum(rows["bucket"].to_numpy(), rows["life_lo"].to_numpy())
        seen = seen - overlap_s(lo_b, lo_b + np.maximum(seen, 0.0), unobserved)
        observed = np.where(has & (seen <= 1e-9), np.nan, seen)  # nothing of it observed
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(observed > 0, alive / observed, np.where(has, np.nan, 0.0))
    frame = pd.DataFrame(
        {
            "worker_id": wk.categorical(rows["key"].to_numpy()[has]),
            "bucket": as_utc(rows["bucket"].to_numpy()[has]),
            "alive_fraction": np.clip(fraction[has], 0.0, 1.0),
        },
        columns=list(dtypes),
    )
    frame = frame.sort_values(["worker_id", "bucket"], kind="stable").reset_index(drop=True)
    return mark_horizon(frame, horizon_at)
