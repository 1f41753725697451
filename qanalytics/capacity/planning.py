"""Capacity plans from observed rates.

Observed inputs come from the read side (:func:`qanalytics.tasks`,
:func:`qanalytics.attempts`, :func:`qanalytics.alive_intervals`): :func:`arrival_rates`,
:func:`service_times`, :func:`fleet`; :func:`plan` turns them into a recommended number
of workers per hour of day or per task type, :func:`what_if` gives the wait against the
number of workers, and :func:`littles_law` checks the data against L = lambda W.

The queue's "customers" are queue entries: a new task, or a retry of a failed or
abandoned attempt (each needs one more claim). A task's service time is the run time of
one finished (completed or failed) attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._docstrings import share_docs
from .._time import parse_duration, parse_freq
from ..read.common import UTC_DTYPE, as_utc, empty_frame, resolve_window
from ..read.frames import attempts as _read_attempts
from ..read.frames import tasks as _read_tasks
from ..read.liveness import alive_spans
from ..store import Store
from .queueing import (
    _cv2,
    _number,
    _percentile,
    _waits,
    servers_needed,
)

__all__ = ["arrival_rates", "fleet", "littles_law", "plan", "service_times", "understaffed"]

HOUR_S = 3600.0
DAY_S = 86400.0
#: Fewer inter-arrival gaps than this in a group and ``ca2`` is taken as 1 (Poisson).
MIN_GAPS_FOR_CA2 = 30

# -- observations -------------------------------------------------------------------------
def _epoch(series: pd.Series) -> np.ndarray:
    seconds = (series - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(seconds.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")


@dataclass
class _Observed:
    lo: float
    hi: float
    types: list[str]
    # queue entries (new tasks and retries): entry, exit (NaN while queued), type, retry
    entry: np.ndarray
    exit: np.ndarray
    entry_type: np.ndarray
    retry: np.ndarray
    # finished (completed or failed) attempts claimed in the window
    run_type: np.ndarray
    run_s: np.ndarray
    # busy intervals (every attempt, open ones up to hi), clipped to the window
    busy_start: np.ndarray
    busy_end: np.ndarray
    busy_type: np.ndarray
    # alive intervals, clipped to the window
    alive_start: np.ndarray
    alive_end: np.ndarray


def _observe(db: Store, since: Any, until: Any, now: Any) -> _Observed:
    # Retries, run times and alive workers come from attempts and the heartbeat history.
    db.require("attempt_history", "capacity planning (arrival_rates, service_times, fleet, plan)")
    db.require("heartbeat_history", "capacity planning (arrival_rates, service_times, fleet, plan)")
    lo, hi, at = resolve_window(db, since, until, now)
    # Tasks created before the window can still be queued in it: every task not finished
    # before the window opens (a task finished earlier adds nothing to it).
    t = _read_tasks(db, until=hi, now=at, open_since=lo)
    a = _read_attempts(db, until=hi, now=at, open_since=lo)
    types = sorted(
        set(map(str, t["type"].cat.categories)) | set(map(str, a["type"].cat.categories))
    )
    code = {name: i for i, name in enumerate(types)}

    def codes(col: pd.Series) -> np.ndarray:
        return np.array([code.get(str(v), -1) for v in col.astype(object)], dtype="int64")

    t_type = codes(t["type"])
    created = _epoch(t["created_at"])
    first_claim = _epoch(t["first_claimed_at"])
    t_fin = _epoch(t["finished_at"])
    status = t["status"].astype(object).to_numpy()
    cancelled = status == "cancelled"
    first_exit = np.where(~np.isnan(first_claim), first_claim, np.where(cancelled, t_fin, np.nan))

    a = a.sort_values(["task_id", "attempt"], kind="stable")
    a_task = a["task_id"].to_numpy(dtype="int64")
    a_num = a["attempt"].to_numpy(dtype="int64")
    claimed = _epoch(a["claimed_at"])
    a_fin = _epoch(a["finished_at"])
    outcome = a["outcome"].astype(object).to_numpy()
    a_type = codes(a["type"])
    same_next = np.zeros(len(a), dtype=bool)
    same_next[:-1] = a_task[1:] == a_task[:-1]
    next_claim = np.full(len(a), np.nan)
    next_claim[:-1] = np.where(same_next[:-1], claimed[1:], np.nan)
    by_id = pd.DataFrame(
        {"claims": t["attempts"].to_numpy(dtype="int64"), "status": status, "fin": t_fin},
        index=t["id"].to_numpy(dtype="int64"),
    ).reindex(a_task)
    task_claims = by_id["claims"].to_numpy(dtype="float64")
    task_status = by_id["status"].to_numpy(dtype=object)
    task_fin = by_id["fin"].to_numpy(dtype="float64")
    setback = np.isin(outcome, ["failed", "abandoned"])
    final = (a_num == task_claims) & np.isin(task_status, ["failed", "completed"])
    requeued = setback & ~final & ~np.isnan(a_fin)
    retry_exit = np.where(
        ~np.isnan(next_claim),
        next_claim,
        np.where((task_status == "cancelled") & (task_fin >= a_fin), task_fin, np.nan),
    )

    entry = np.concatenate([created, a_fin[requeued]])
    exit_ = np.concatenate([first_exit, retry_exit[requeued]])
    exit_ = np.where(exit_ > hi, np.nan, exit_)
    entry_type = np.concatenate([t_type, a_type[requeued]])
    retry = np.concatenate([np.zeros(len(created), dtype=bool), np.ones(int(requeued.sum()), bool)])
    keep = entry <= hi
    entry, exit_, entry_type, retry = entry[keep], exit_[keep], entry_type[keep], retry[keep]

    # The window starts no earlier than the store's first entry or heartbeat, so a
    # "7d" window over two days of history does not dilute the rates with empty days.
    alive = alive_spans(db, since=lo, until=hi, now=at)
    first = min(
        float(entry.min()) if len(entry) else math.inf,
        float(alive["start"].min()) if len(alive) else math.inf,
    )
    if lo is None or lo < first:
        lo = min(first, hi)
    in_window = claimed >= lo
    done = in_window & np.isin(outcome, ["completed", "failed"]) & (a_fin <= hi)
    busy_end = np.where(np.isnan(a_fin) | (a_fin > hi), hi, a_fin)
    busy_start = np.maximum(claimed, lo)
    busy = busy_end > busy_start
    return _Observed(
        lo=float(lo),
        hi=float(hi),
        types=types,
        entry=entry,
        exit=exit_,
        entry_type=entry_type,
        retry=retry,
        run_type=a_type[done],
        run_s=(a_fin - claimed)[done],
        busy_start=busy_start[busy],
        busy_end=busy_end[busy],
        busy_type=a_type[busy],
        alive_start=alive["start"].to_numpy(dtype="float64"),
        alive_end=alive["end"].to_numpy(dtype="float64"),
    )


def _split(
    start: np.ndarray, end: np.ndarray, width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut intervals at bucket edges: (interval index, bucket start, seconds inside)."""
    start = np.asarray(start, dtype="float64")
    end = np.asarray(end, dtype="float64")
    first = np.floor(start / width)
    last = np.maximum(np.ceil(end / width) - 1, first)
    n = (last - first + 1).astype("int64")
    rep = np.repeat(np.arange(len(start)), n)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    bucket = (first[rep] + offset) * width
    seconds = np.minimum(end[rep], bucket + width) - np.maximum(start[rep], bucket)
    return rep, bucket, np.maximum(seconds, 0.0)


def _hour(bucket: np.ndarray) -> np.ndarray:
    return (np.floor(np.mod(bucket, DAY_S) / HOUR_S)).astype("int64")


@dataclass
class _Grid:
    """The time groups of a question: buckets of `width`, or the 24 hours of the day."""

    width: float
    hourly: bool
    keys: np.ndarray  # bucket starts (float) or hours 0..23
    observed_s: np.ndarray

    def key_of(self, times: np.ndarray) -> np.ndarray:
        bucket = np.floor(np.asarray(times, dtype="float64") / self.width) * self.width
        return _hour(bucket) if self.hourly else bucket

    def index_of(self, keys: np.ndarray) -> np.ndarray:
        if self.hourly:
            return np.asarray(keys, dtype="int64")
        # A point exactly at the window's end opens a bucket with nothing observed.
        return np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))

    def sum_points(self, times: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        idx = self.index_of(self.key_of(times))
        return np.bincount(idx, weights=weights, minlength=len(self.keys)).astype("float64")

    def sum_intervals(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        _rep, bucket, seconds = _split(start, end, self.width)
        idx = self.index_of(_hour(bucket) if self.hourly else bucket)
        return np.bincount(idx, weights=seconds, minlength=len(self.keys)).astype("float64")

    def key_column(self) -> tuple[str, Any]:
        if self.hourly:
            return "hour_of_day", self.keys.astype("int64")
        return "bucket", as_utc(self.keys)


def _grid(lo: float, hi: float, width: float, hourly: bool) -> _Grid:
    if hourly:
        keys = np.arange(24, dtype="int64")
        if hi <= lo:
            return _Grid(HOUR_S, True, keys, np.zeros(24))
        _rep, bucket, seconds = _split(np.array([lo]), np.array([hi]), HOUR_S)
        obs = np.bincount(_hour(bucket), weights=seconds, minlength=24).astype("float64")
        return _Grid(HOUR_S, True, keys, obs)
    if hi <= lo:
        empty = np.array([], dtype="float64")
        return _Grid(width, False, empty, empty)
    _rep, bucket, seconds = _split(np.array([lo]), np.array([hi]), width)
    return _Grid(width, False, bucket, seconds)


def _time_grouping(by: Any, freq: Any, allowed: tuple[str, ...]) -> tuple[bool, bool, float]:
    """(hourly, by_type, bucket width) from the `by` and `freq` arguments."""
    items = [] if by is None else [by] if isinstance(by, str) else list(by)
    for item in items:
        if item not in allowed:
            raise ValueError(f"by={by!r}: each entry must be one of {list(allowed)}")
    hourly = "hour_of_day" in items
    if hourly and freq is not None:
        raise ValueError(f"freq={freq!r} cannot be combined with by='hour_of_day' (hourly)")
    width = HOUR_S if freq is None else parse_freq(freq, name="freq")
    return hourly, "type" in items, width


def _in_window(obs: _Observed, times: np.ndarray) -> np.ndarray:
    return (times >= obs.lo) & (times <= obs.hi)


@share_docs
def arrival_rates(
    db: Store,
    *,
    freq: Any = None,
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Queue entries per second, per time bucket or per hour of day.

    A queue entry is a new task or a retry (a failed or abandoned attempt that goes back
    to the queue): each needs one claim, so both count towards the load.

    Parameters
    ----------
    {db}
    freq : str or float, optional
        Bucket width (default one hour). Not allowed with ``by="hour_of_day"``.
    by : None, "type", "hour_of_day" or a list of them
        ``"hour_of_day"`` (UTC) pools every day of the window into 24 rows, 0 to 23;
        ``"type"`` splits each row by task type (every type seen gets a row in every
        group, zero included).
    {since_until}
        The window; it starts no earlier than the first queue entry or heartbeat.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC bucket start) or ``hour_of_day`` (int64), ``type`` (category;
        only with ``by="type"``), ``arrivals`` (int64: entries), ``retries`` (int64: the
        entries that were retries), ``observed_s`` (float: seconds of the window in the
        group), ``arrival_rate`` (float, per second; NaN when nothing was observed).
    """
    hourly, by_type, width = _time_grouping(by, freq, ("type", "hour_of_day"))
    obs = _observe(db, since, until, now)
    grid = _grid(obs.lo, obs.hi, width, hourly)
    key_name, key_values = grid.key_column()
    if len(grid.keys) == 0:
        columns = {key_name: "int64" if hourly else UTC_DTYPE}
        if by_type:
            columns["type"] = "category"
        columns.update(
            {
                "arrivals": "int64",
                "retries": "int64",
                "observed_s": "float64",
                "arrival_rate": "float64",
            }
        )
        return empty_frame(columns)
    ok = _in_window(obs, obs.entry)
    groups = (
        [(None, ok)]
        if not by_type
        else [(i, ok & (obs.entry_type == i)) for i in range(len(obs.types))]
    )
    parts = []
    for type_code, mask in groups:
        n = grid.sum_points(obs.entry[mask])
        r = grid.sum_points(obs.entry[mask & obs.retry])
        part = pd.DataFrame({key_name: key_values})
        if type_code is not None:
            part["type"] = obs.types[type_code]
        part["arrivals"] = np.rint(n).astype("int64")
        part["retries"] = np.rint(r).astype("int64")
        part["observed_s"] = grid.observed_s
        with np.errstate(invalid="ignore", divide="ignore"):
            part["arrival_rate"] = np.where(grid.observed_s > 0, n / grid.observed_s, np.nan)
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    if by_type:
        frame["type"] = pd.Categorical(frame["type"], categories=obs.types)
        frame = frame.sort_values([key_name, "type"], kind="stable").reset_index(drop=True)
    return frame


def _service_stats(obs: _Observed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per type: finished attempts, mean run time and mean squared run time."""
    n_types = len(obs.types)
    count = np.bincount(obs.run_type, minlength=n_types).astype("float64")
    total = np.bincount(obs.run_type, weights=obs.run_s, minlength=n_types)
    square = np.bincount(obs.run_type, weights=obs.run_s**2, minlength=n_types)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, total / count, square / count


@share_docs
def service_times(
    db: Store,
    *,
    by: Any = "type",
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Mean and variability of run times: the service side of the queueing models.

    The sample is every attempt claimed in the window that finished (completed or
    failed) by its end; abandoned attempts are left out (their length measures an
    outage, not work) and so are cancelled ones.

    Parameters
    ----------
    {db}
    by : "type" or None, default "type"
        One row per task type, or one row for all.
    {since_until}
        The window of claims; it starts no earlier than the first entry or heartbeat.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``type`` (category; only with ``by="type"``), ``attempts`` (int64),
        ``service_time_s`` (float: mean run time), ``service_std_s`` (float: population
        standard deviation), ``cs2`` (float: squared coefficient of variation, the
        ``cs2`` of :func:`mean_wait_gg`; 1 means exponential-like). NaN without
        finished attempts.
    """
    if by not in (None, "type"):
        raise ValueError(f"by={by!r} must be 'type' or None")
    obs = _observe(db, since, until, now)
    names: list[str] = []
    if by is None:
        n = np.array([float(len(obs.run_s))])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.array([obs.run_s.sum() / n[0]])
            second = np.array([(obs.run_s**2).sum() / n[0]])
    else:
        names = obs.types
        n, mean, second = _service_stats(obs)
    var = np.maximum(second - mean**2, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cs2 = np.where(mean > 0, var / mean**2, np.nan)
    frame = pd.DataFrame(
        {
            "attempts": n.astype("int64"),
            "service_time_s": mean.astype("float64"),
            "service_std_s": np.sqrt(var).astype("float64"),
            "cs2": cs2.astype("float64"),
        }
    )
    if by == "type":
        frame.insert(0, "type", pd.Series(pd.Categorical(names, categories=names)))
    return frame


@share_docs
def fleet(
    db: Store,
    *,
    freq: Any = None,
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Workers alive and how busy they were, per time bucket or per hour of day.

    Alive time comes from :func:`qanalytics.alive_intervals`; busy time is every attempt
    from claim to finish (or to the window's end while open).

    Parameters
    ----------
    {db}
    freq : str or float, optional
        Bucket width (default one hour). Not allowed with ``by="hour_of_day"``.
    by : None or "hour_of_day"
        Pool every day of the window into 24 rows (UTC hours 0 to 23).
    {since_until}
        The window; it starts no earlier than the first queue entry or heartbeat.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC) or ``hour_of_day`` (int64), ``observed_s`` (float),
        ``workers_alive`` (float: time-averaged number of workers alive),
        ``workers_busy`` (float: time-averaged number of tasks in progress),
        ``utilization`` (float: busy over alive; NaN when none was alive).
    """
    hourly, _by_type, width = _time_grouping(by, freq, ("hour_of_day",))
    obs = _observe(db, since, until, now)
    grid = _grid(obs.lo, obs.hi, width, hourly)
    key_name, key_values = grid.key_column()
    alive = grid.sum_intervals(obs.alive_start, obs.alive_end)
    busy = grid.sum_intervals(obs.busy_start, obs.busy_end)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame = pd.DataFrame(
            {
                key_name: key_values,
                "observed_s": grid.observed_s,
                "workers_alive": np.where(grid.observed_s > 0, alive / grid.observed_s, np.nan),
                "workers_busy": np.where(grid.observed_s > 0, busy / grid.observed_s, np.nan),
                "utilization": np.where(alive > 0, busy / alive, np.nan),
            }
        )
    if len(frame) == 0:
        frame[key_name] = frame[key_name].astype("int64" if hourly else UTC_DTYPE)
    return frame


def _ca2(times: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Squared CV of inter-arrival gaps per group, with the hour-to-hour swing removed.

    Gaps are taken between consecutive entries of a group inside one clock hour and
    divided by that hour's mean gap, so a rate that changes over the day does not pass
    for burstiness; the result pools those normalised gaps (within-hour variance,
    ``n - 1`` per hour). Groups with fewer than ``MIN_GAPS_FOR_CA2`` usable gaps get 1.0
    (Poisson).
    """
    out = np.ones(n_groups, dtype="float64")
    if len(times) < 2:
        return out
    order = np.lexsort((times, groups))
    t, g = times[order], groups[order]
    hour = np.floor(t / HOUR_S)
    same = (g[1:] == g[:-1]) & (hour[1:] == hour[:-1])
    gaps = np.diff(t)[same]
    cell_group = g[1:][same]
    _cells, cell = np.unique(
        np.stack([cell_group.astype("float64"), hour[1:][same]]), axis=1, return_inverse=True
    )
    cell = np.asarray(cell).reshape(-1)
    size = np.bincount(cell).astype("float64")
    mean = np.bincount(cell, weights=gaps) / np.maximum(size, 1.0)
    usable = (size[cell] >= 5) & (mean[cell] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        squares = ((gaps - mean[cell]) / mean[cell]) ** 2
    for k in range(n_groups):
        mine = usable & (cell_group == k)
        dof = float(np.sum(size[np.unique(cell[mine])] - 1.0))
        if np.count_nonzero(mine) >= MIN_GAPS_FOR_CA2 and dof > 0:
            out[k] = float(squares[mine].sum() / dof)
    return out


_PLAN_COLUMNS = {
    "arrivals": "int64",
    "arrival_rate": "float64",
    "service_time_s": "float64",
    "ca2": "float64",
    "cs2": "float64",
    "offered_load": "float64",
    "workers_alive": "float64",
    "utilization": "float64",
    "stable": "boolean",
    "current_wait_s": "float64",
    "recommended_workers": "Int64",
    "expected_wait_s": "float64",
    "percentile_wait_s": "float64",
    "prob_wait": "float64",
    "note": "object",
}


@share_docs
def plan(
    db: Store,
    *,
    target_wait: Any = "30s",
    percentile: float | None = 0.95,
    growth: float = 1.0,
    by: str = "hour_of_day",
    since: Any = "7d",
    until: Any = None,
    now: Any = None,
    ca2: float | None = None,
) -> pd.DataFrame:
    """How many workers each hour of the day (or each task type) needs to meet a target.

    For each group the observed load is measured over the window: the arrival rate of
    queue entries (new tasks and retries), the mean run time, and their variability
    (``ca2`` from inter-arrival gaps, ``cs2`` from run times). The run time of an hour
    is the mix of the per-type run times weighted by that hour's arrivals, so a quiet
    hour with few finished tasks still gets a well-measured service time. The
    recommended number of workers is the smallest meeting the target at `growth` times
    the observed arrival rate, by the Allen-Cunneen G/G/c approximation (see
    :func:`servers_needed`); hours or types with no arrivals need 0.

    Parameters
    ----------
    {db}
    target_wait : float or str, default "30s"
        The wait to meet (seconds or a duration string).
    percentile : float or None, default 0.95
        The share of tasks that must wait at most `target_wait`; None targets the mean
        wait instead.
    growth : float, default 1.0
        Multiply the observed arrival rates by this (1.5 for 50 % more load).
    by : {"hour_of_day", "type"}, default "hour_of_day"
        ``"hour_of_day"``: 24 rows (UTC hours, every day of the window pooled), for a
        pool of workers shared by all types. ``"type"``: one row per task type, each as
        if served by its own dedicated pool (the sum over types is then an upper bound
        for one shared pool, which needs fewer thanks to pooling).
    since, until : time-like, duration or None, default since="7d"
        The window observed. It starts no earlier than the store's first queue entry
        or heartbeat, so a short history is not diluted by days with no data. Workers
        count as alive only where their heartbeats say so (see
        :func:`qanalytics.alive_intervals`): none after a silence that started before
        the window. A window with no queue entry, finished attempt or heartbeat (for
        instance one after the store's last event) plans nothing: every row has
        ``stable`` NA (unknown), no recommendation and a note saying nothing was observed.
    {now}
    ca2 : float, optional
        Squared coefficient of variation of inter-arrival times. Default: estimated per
        group from gaps between entries within the same clock hour, each divided by
        that hour's mean gap so the daily swing in the rate does not count as
        burstiness (1.0, i.e. Poisson, when there are fewer than 30 such gaps).

    Returns
    -------
    pandas.DataFrame
        ``hour_of_day`` (int64, 0 to 23) or ``type`` (category), then ``arrivals``
        (int64), ``arrival_rate`` (per second, as observed), ``service_time_s``,
        ``ca2``, ``cs2``, ``offered_load`` (arrival_rate x service_time_s: busy workers
        needed on average, as observed), ``workers_alive`` (time-averaged; for
        ``by="type"`` the whole shared fleet), ``utilization`` (busy over alive; for
        ``by="type"`` the share of the fleet's alive time spent on the type),
        ``stable`` (nullable boolean: the workers alive could carry `growth` times the
        observed load; for ``by="type"`` the fleet carrying all types; NA, unknown rather
        than overloaded, for an hour with no observations or no known run time),
        ``current_wait_s``
        (the mean wait with ``floor(workers_alive)`` workers at `growth` times the load,
        ``inf`` when unstable; NaN for ``by="type"``), ``recommended_workers`` (Int64;
        NA when the run time is unknown), ``expected_wait_s`` (mean wait with the
        recommended workers), ``percentile_wait_s`` (the wait at `percentile`, NaN when
        `percentile` is None), ``prob_wait``, ``note`` (str: why a row is unstable or
        empty, else ""). ``attrs`` holds ``target_wait_s``, ``percentile``, ``growth``,
        ``by``, ``since`` and ``until`` (epoch seconds).

    Raises
    ------
    ValueError
        For a negative `target_wait`, `percentile` outside (0, 1), a negative or NaN
        `growth` or `ca2`, or an unknown `by`.
    """
    if by not in ("hour_of_day", "type"):
        raise ValueError(f"by={by!r} must be 'hour_of_day' or 'type'")
    target = parse_duration(target_wait, name="target_wait", allow_zero=percentile is not None)
    p = None if percentile is None else _percentile(percentile)
    g = _number(growth, "growth")
    if not math.isfinite(g) or g < 0:
        raise ValueError(f"growth={growth!r} must be a finite non-negative factor")
    fixed_ca2 = None if ca2 is None else _cv2(ca2, "ca2")
    obs = _observe(db, since, until, now)
    n_types = len(obs.types)
    run_n, run_mean, run_sq = _service_stats(obs)
    known = run_n > 0
    all_mean = float(obs.run_s.mean()) if len(obs.run_s) else math.nan
    all_sq = float((obs.run_s**2).mean()) if len(obs.run_s) else math.nan
    # Types without finished attempts fall back to the all-type run time.
    run_mean = np.where(known, run_mean, all_mean)
    run_sq = np.where(known, run_sq, all_sq)
    ok = _in_window(obs, obs.entry)
    e_time, e_type = obs.entry[ok], obs.entry_type[ok]
    span = obs.hi - obs.lo
    total_alive = float(np.sum(obs.alive_end - obs.alive_start))
    if by == "hour_of_day":
        grid = _grid(obs.lo, obs.hi, HOUR_S, True)
        keys = grid.key_of(e_time)
        counts = np.zeros((24, max(n_types, 1)))
        np.add.at(counts, (keys, e_type), 1.0)
        observed = grid.observed_s
        alive = grid.sum_intervals(obs.alive_start, obs.alive_end)
        busy = grid.sum_intervals(obs.busy_start, obs.busy_end)
        group_of_entry = keys
        n_groups = 24
        with np.errstate(invalid="ignore", divide="ignore"):
            workers_alive = np.where(observed > 0, alive / observed, np.nan)
            utilization = np.where(alive > 0, busy / alive, np.nan)
    else:
        n_groups = n_types
        counts = np.zeros((n_types, max(n_types, 1)))
        np.add.at(counts, (e_type, e_type), 1.0)
        observed = np.full(n_types, span)
        busy_by_type = np.bincount(
            obs.busy_type, weights=obs.busy_end - obs.busy_start, minlength=n_types
        )
        group_of_entry = e_type
        with np.errstate(invalid="ignore", divide="ignore"):
            workers_alive = np.full(n_types, total_alive / span if span > 0 else np.nan)
            utilization = (
                np.full(n_types, np.nan) if total_alive <= 0 else busy_by_type / total_alive
            )
    arrivals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        weights = counts / arrivals[:, None]
        mix_mean = (
            np.where(arrivals > 0, (weights * run_mean[None, :n_types]).sum(axis=1), all_mean)
            if n_types
            else np.full(n_groups, np.nan)
        )
        mix_sq = (
            np.where(arrivals > 0, (weights * run_sq[None, :n_types]).sum(axis=1), all_sq)
            if n_types
            else np.full(n_groups, np.nan)
        )
        rate = np.where(observed > 0, arrivals / observed, np.nan)
        cs2 = np.where(mix_mean > 0, np.maximum(mix_sq - mix_mean**2, 0.0) / mix_mean**2, np.nan)
    if fixed_ca2 is None:
        ca2_values = _ca2(e_time, group_of_entry, n_groups)
    else:
        ca2_values = np.full(n_groups, fixed_ca2)
    load = rate * mix_mean
    fleet_load = float(np.nansum(load)) * g
    # A window after the store's last event (or before its first) holds no queue entry, no
    # finished attempt and no heartbeat: every row says so rather than planning from nothing.
    nothing_observed = not ok.any() and not len(obs.run_s) and total_alive <= 0

    rows = []
    for i in range(n_groups):
        lam, mean_s = float(rate[i]), float(mix_mean[i])
        alive_i = float(workers_alive[i])
        note = ""
        current = math.nan
        recommended: Any = pd.NA
        expected = pct_wait = prob = math.nan
        if nothing_observed:
            note = (
                "nothing observed in the window: no queue entries, finished attempts or heartbeats"
            )
            stable: Any = pd.NA  # unknown, not overloaded
        elif not observed[i] > 0:
            note = "not observed in the window"
            stable = pd.NA
        elif not (mean_s > 0):
            note = "no finished attempts in the window: run time unknown"
            stable = True if lam == 0.0 else pd.NA
        else:
            lam_g, mu = lam * g, 1.0 / mean_s
            ca, cs = float(ca2_values[i]), float(cs2[i])
            carried = fleet_load if by == "type" else lam_g * mean_s
            stable = bool(carried < alive_i) or carried == 0.0
            if by == "hour_of_day":
                servers = math.floor(alive_i + 1e-9) if math.isfinite(alive_i) else 0
                if lam_g == 0.0:
                    current = 0.0
                elif servers < 1:
                    current = math.inf
                else:
                    current = _waits(lam_g, mu, servers, ca, cs).mean
            if not stable:
                note = (
                    f"unstable: offered load {carried:.2f} needs more than the "
                    f"{alive_i:.2f} workers alive"
                )
            if lam_g == 0.0:
                recommended, expected, pct_wait, prob = 0, 0.0, 0.0, 0.0
                note = note or "no arrivals"
            else:
                c = servers_needed(lam_g, mu, target_wait=target, percentile=p, ca2=ca, cs2=cs)
                w = _waits(lam_g, mu, c, ca, cs)
                recommended, expected, prob = c, w.mean, w.prob_wait
                pct_wait = math.nan if p is None else w.percentile(p)
        rows.append(
            (
                int(arrivals[i]),
                lam,
                mean_s,
                float(ca2_values[i]),
                float(cs2[i]),
                float(load[i]),
                alive_i,
                float(utilization[i]),
                stable,
                current,
                recommended,
                expected,
                pct_wait,
                prob,
                note,
            )
        )
    frame = pd.DataFrame(rows, columns=list(_PLAN_COLUMNS))
    frame = frame.astype(_PLAN_COLUMNS) if len(frame) else empty_frame(_PLAN_COLUMNS)
    if by == "hour_of_day":
        frame.insert(0, "hour_of_day", np.arange(24, dtype="int64"))
    else:
        frame.insert(0, "type", pd.Series(pd.Categorical(obs.types, categories=obs.types)))
    frame.attrs.update(
        {
            "target_wait_s": target,
            "percentile": p,
            "growth": g,
            "by": by,
            "since": obs.lo,
            "until": obs.hi,
        }
    )
    return frame


def understaffed(plan: pd.DataFrame) -> pd.Series:
    """Which rows of a capacity plan had fewer workers alive than recommended.

    The one definition of "short of workers", used by notebooks and the report alike: the
    time-averaged workers alive below the recommendation, unrounded (25.96 alive against
    26 recommended is short). Show the mean alive with enough decimals to match
    (``25.96``, not ``26.0``).

    Parameters
    ----------
    plan : pandas.DataFrame
        From :func:`plan`: ``recommended_workers`` and ``workers_alive``.

    Returns
    -------
    pandas.Series of bool
        True where ``workers_alive < recommended_workers``; False where either is
        missing (an hour with no observations is unknown, not short).

    Raises
    ------
    ValueError
        If `plan` lacks one of the two columns.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect("data/sample.db", readonly=True, clock="latest") as db:
    ...     short = qa.capacity.understaffed(qa.capacity.plan(db))  # doctest: +SKIP
    """
    missing = [c for c in ("recommended_workers", "workers_alive") if c not in plan.columns]
    if missing:
        raise ValueError(f"understaffed(): plan is missing column(s) {', '.join(missing)}")
    recommended = pd.to_numeric(plan["recommended_workers"], errors="coerce").astype("float64")
    alive = pd.to_numeric(plan["workers_alive"], errors="coerce").astype("float64")
    short = (recommended > alive) & recommended.notna() & alive.notna()
    return short.astype(bool).rename("understaffed")


@share_docs
def littles_law(
    db: Store,
    *,
    freq: Any = "1h",
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Check the data against Little's law, L = lambda W, per time bucket.

    The queue is the ``queued`` state: a task enters it when created and again when a
    failed or abandoned attempt sends it back (backoff time included), and leaves it
    when claimed or cancelled. ``mean_backlog`` is the exact time average of the number
    of queued tasks over the bucket (tasks created before the window count while still
    queued in it); ``arrival_rate`` and ``mean_wait_s`` describe the entries in the
    bucket (a wait still going on at the window's end counts up to that end).
    For a steady workload and buckets much longer than the waits, ``predicted_backlog``
    should match ``mean_backlog`` within a few percent; larger differences point at
    a changing load (waits spilling over bucket edges) or inconsistent timestamps.

    Parameters
    ----------
    {db}
    freq : str or float, default "1h"
        Bucket width.
    {since_until}
        The window; it starts no earlier than the first queue entry or heartbeat.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC), ``arrivals`` (int64), ``mean_backlog``, ``arrival_rate``
        (per second), ``mean_wait_s``, ``predicted_backlog`` (arrival_rate x
        mean_wait_s; 0 without arrivals), ``relative_difference`` ((predicted -
        observed) / observed; NaN when the observed backlog is 0) (float).
    """
    width = parse_freq(freq, name="freq")
    obs = _observe(db, since, until, now)
    grid = _grid(obs.lo, obs.hi, width, False)
    columns: dict[str, Any] = {
        "bucket": UTC_DTYPE,
        "arrivals": "int64",
        "mean_backlog": "float64",
        "arrival_rate": "float64",
        "mean_wait_s": "float64",
        "predicted_backlog": "float64",
        "relative_difference": "float64",
    }
    if len(grid.keys) == 0:
        return empty_frame(columns)
    end = np.where(np.isnan(obs.exit), obs.hi, obs.exit)
    start = np.maximum(obs.entry, obs.lo)
    inside = end > start
    queued = grid.sum_intervals(start[inside], end[inside])
    ok = _in_window(obs, obs.entry)
    n = grid.sum_points(obs.entry[ok])
    waits = grid.sum_points(obs.entry[ok], weights=end[ok] - obs.entry[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        backlog = queued / grid.observed_s
        rate = n / grid.observed_s
        mean_w = np.where(n > 0, waits / n, np.nan)
        predicted = np.where(n > 0, rate * mean_w, 0.0)
        rel = np.where(backlog > 0, (predicted - backlog) / backlog, np.nan)
    frame = pd.DataFrame(
        {
            "bucket": as_utc(grid.keys),
            "arrivals": np.rint(n).astype("int64"),
            "mean_backlog": backlog,
            "arrival_rate": rate,
            "mean_wait_s": mean_w,
            "predicted_backlog": predicted,
            "relative_difference": rel,
        }
    )
    keep = grid.observed_s > 0
    return frame[keep].reset_index(drop=True).astype(columns)
