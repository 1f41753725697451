"""Read side: queue metrics and trends.

Point-in-time questions (depth now, oldest queued task, workers by state) are answered
from indexes and stay near-instant however long the history is. Questions over history
(success rate, throughput, depth over time, latency, utilisation, retries) read only the
columns they need in one fast load and aggregate with vectorised pandas/numpy.

Buckets are fixed-width (``freq`` is a duration such as ``"1min"``, ``"1h"``, ``"1d"``)
and aligned to the unix epoch, so hour and day buckets start on UTC hour and day
boundaries. A bucket covers ``[bucket, bucket + freq)``. Windows (``since``/``until``)
include both ends, and ``until`` never passes ``now``: events after ``now`` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ._frame import OUTCOME_DTYPE, STATUS_DTYPE, UTC_DTYPE, as_utc, empty_frame, resolve_window
from ._time import parse_duration, parse_freq
from .schema import OUTCOMES, TASK_STATUSES
from .store import Store

__all__ = [
    "depth_timeline",
    "latency",
    "queue_depth",
    "queue_metrics",
    "retry_outcomes",
    "success_rate",
    "throughput",
    "utilization",
]

#: Above this many buckets a question is refused: ask with a coarser ``freq``.
MAX_BUCKETS = 5_000_000
#: Up to this many task types are mapped to integer codes inside SQL (faster to read).
_MAX_CASE_TYPES = 256

# Integer codes that SQL hands back instead of text (much faster to read in bulk).
_STATUS_CODE = (
    "CASE {col} "
    + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(TASK_STATUSES))
    + " ELSE -1 END"
)
_OUTCOME_CODE = (
    "CASE {col} "
    + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(OUTCOMES))
    + " ELSE -1 END"
)
_QUEUED, _PROCESSING, _COMPLETED, _FAILED, _CANCELLED = range(5)
_O_COMPLETED, _O_FAILED, _O_ABANDONED, _O_CANCELLED = range(4)
_OUTCOME_OF_STATUS = {_COMPLETED: "completed", _FAILED: "failed", _CANCELLED: "cancelled"}


# -- arguments ----------------------------------------------------------------------------


def _attempt_times(db: Store, until: float | None = None) -> pd.DataFrame:
    """Every attempt's task, number, claim and finish times and outcome code."""
    where, params = ("", ()) if until is None else (" WHERE claimed_at <= ?", (until,))
    return db.read_frame(
        "SELECT task_id, attempt, claimed_at, IFNULL(finished_at, -1.0),"
        f" {_OUTCOME_CODE.format(col='outcome')} FROM attempts{where}",
        params,
        columns={
            "task_id": "int64",
            "attempt": "int64",
            "claimed_at": "float64",
            "finished_at": "time?",
            "outcome": "int64",
        },
        action="read attempts",
    )


def _freq_seconds(freq: Any) -> float:
    return parse_freq(freq, name="freq")


def _by_list(by: Any, allowed: Sequence[str], *, name: str = "by") -> list[str]:
    if by is None:
        return []
    items = [by] if isinstance(by, str) else by
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be None, a column name or a list of names, not {by!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or item not in allowed:
            raise ValueError(f"{name}={by!r}: each entry must be one of {list(allowed)}")
        if item not in out:
            out.append(item)
    return out


def _z_score(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)):
        raise TypeError(f"confidence must be a float in (0, 1), not {type(confidence).__name__}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(1.0 - (1.0 - float(confidence)) / 2.0)


def _check_quantiles(quantiles: Any) -> list[float]:
    if isinstance(quantiles, (int, float)) and not isinstance(quantiles, bool):
        quantiles = [quantiles]
    try:
        values = [float(q) for q in quantiles]
    except TypeError:
        raise TypeError(f"quantiles must be a sequence of floats, not {quantiles!r}") from None
    if not values or any(not (0.0 <= q <= 1.0) or math.isnan(q) for q in values):
        raise ValueError(f"quantiles={quantiles!r} must be one or more numbers in [0, 1]")
    return sorted(set(values))


def _window_sql(column: str, lo: float | None, hi: float) -> tuple[str, list[Any]]:
    if lo is None:
        return f"{column} <= ?", [hi]
    return f"{column} BETWEEN ? AND ?", [lo, hi]


# -- codes ----------------------------------------------------------------------------------
@dataclass
class _TypeExpr:
    """How to read a task type: as an integer code (``cats[code]``) or as text."""

    sql: str
    params: list[Any]
    cats: list[str] | None

    @property
    def kind(self) -> str:
        return "int64" if self.cats is not None else "str"


def _distinct_types(db: Store) -> list[str]:
    # A loose index scan over (status, type): one seek per distinct type, not per task.
    if db.layout != "native":  # views over another layout have no (status, type) index
        rows = db.query("SELECT DISTINCT type FROM tasks", action="list task types")
        return sorted(str(row[0]) for row in rows if row[0] is not None)
    found: set[str] = set()
    for status in TASK_STATUSES:
        rows = db.query(
            "WITH RECURSIVE d(t) AS (SELECT min(type) FROM tasks WHERE status = ?1"
            " UNION ALL SELECT (SELECT min(type) FROM tasks WHERE status = ?1 AND type > d.t)"
            " FROM d WHERE d.t IS NOT NULL) SELECT t FROM d WHERE t IS NOT NULL",
            (status,),
            action="list task types",
        )
        found.update(row[0] for row in rows)
    return sorted(found)


def _type_expr(db: Store, column: str) -> _TypeExpr:
    types = _distinct_types(db)
    if len(types) > _MAX_CASE_TYPES:
        return _TypeExpr(column, [], None)
    if not types:
        return _TypeExpr("-1", [], [])
    whens = " ".join(f"WHEN ? THEN {i}" for i in range(len(types)))
    return _TypeExpr(f"CASE {column} {whens} ELSE -1 END", list(types), types)


def _type_codes(values: Any, expr: _TypeExpr) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 for missing) and their names, from a column read via `expr`."""
    if expr.cats is not None and not (np.asarray(values) < 0).any():
        return np.asarray(values, dtype="int64"), expr.cats
    if expr.cats is not None:  # a type written after the types were listed
        raise _Retry
    codes, uniques = pd.factorize(np.asarray(values, dtype=object), sort=True)
    return codes.astype("int64"), [str(u) for u in uniques]


class _Retry(Exception):
    """A concurrent writer added a task type mid-read; read again as text."""


def _read_with_types(
    db: Store, build: Any, column: str
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Run ``build(type_expr) -> (sql, params, columns)`` and decode its ``type`` column."""
    expr = _type_expr(db, column)
    for attempt in range(2):
        sql, params, columns = build(expr)
        frame = db.read_frame(sql, params, columns=columns, action="read tasks")
        try:
            codes, cats = _type_codes(frame["type"].to_numpy(), expr)
        except _Retry:
            if attempt:
                raise
            expr = _TypeExpr(column, [], None)
            continue
        return frame, codes, cats
    raise AssertionError("unreachable")  # pragma: no cover


def _worker_lookup(db: Store) -> tuple[np.ndarray, list[str]]:
    """A key -> code lookup array and the worker ids sorted (codes index into them)."""
    rows = db.query("SELECT worker_key, worker_id FROM workers", action="read worker ids")
    if not rows:
        return np.full(1, -1, dtype="int64"), []
    rows.sort(key=lambda r: r[1])
    keys = np.array([r[0] for r in rows], dtype="int64")
    lut = np.full(int(keys.max()) + 2, -1, dtype="int64")
    lut[keys] = np.arange(len(rows))
    return lut, [r[1] for r in rows]


def _worker_codes(keys: np.ndarray, lut: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys, dtype="int64")
    ok = (keys >= 0) & (keys < len(lut))
    out = np.full(len(keys), -1, dtype="int64")
    out[ok] = lut[keys[ok]]
    return out


def _categorical(codes: Any, names: Sequence[str]) -> pd.Categorical:
    """Codes (-1 = missing) to a categorical holding only the names that occur, sorted."""
    codes = np.asarray(codes, dtype="int64")
    used = np.unique(codes[codes >= 0])
    cats = [names[i] for i in used]
    remap = np.full(len(names) + 1, -1, dtype="int64")
    remap[used] = np.arange(len(used))
    new = np.where(codes >= 0, remap[np.where(codes >= 0, codes, len(names))], -1)
    cat = pd.Categorical.from_codes(new, categories=pd.Index(cats, dtype=object))
    return cat.reorder_categories(sorted(cats)) if cats else cat


# -- buckets --------------------------------------------------------------------------------
def _floor(values: Any, width: float) -> np.ndarray:
    return np.floor(np.asarray(values, dtype="float64") / width) * width


def _bucket_range(first: float, last: float, width: float, freq: Any) -> tuple[float, int]:
    b0 = math.floor(first / width) * width
    count = math.floor(last / width) - math.floor(first / width) + 1
    if count > MAX_BUCKETS:
        raise ValueError(
            f"freq={freq!r} gives {count:,} buckets over the window (at most "
            f"{MAX_BUCKETS:,}); use a coarser freq or a shorter window"
        )
    return b0, int(count)


def _by_dtypes(keys: list[str]) -> dict[str, Any]:
    return {key: "category" for key in keys}


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


def _workers_at(db: Store, at: float, active_s: float, stale_s: float) -> tuple[int, int, int]:
    rows = db.query(
        "SELECT w.worker_key,"
        " (SELECT e.event FROM worker_events e WHERE e.worker_key = w.worker_key AND e.at <= ?1"
        "  ORDER BY e.at DESC, e.id DESC LIMIT 1),"
        " (SELECT max(h.at) FROM heartbeats h WHERE h.worker_key = w.worker_key AND h.at <= ?1)"
        " FROM workers w",
        (at,),
        action="read worker states as of now",
    )
    total = active = stale = 0
    for _key, event, last in rows:
        if event is None or event == "removed":
            continue
        total += 1
        if last is not None and last >= at - active_s:
            active += 1
        if last is None or last < at - stale_s:
            stale += 1
    return total, active, stale


def queue_metrics(
    db: Store,
    *,
    now: Any = None,
    active_within: Any = 60,
    stale_after: Any = 300,
) -> dict[str, Any]:
    """The queue's health at a glance, as a dict with the classic keys.

    Without `now` (or with a `now` at or after the store's latest event) the answer
    comes from indexes and the denormalised worker columns and is near-instant. With an
    earlier `now` the store is replayed: task states are rebuilt from created, claimed
    and finished times, and worker states from the registration events and heartbeat
    history, so events after `now` are ignored.

    Parameters
    ----------
    db : Store
    now : time-like, optional
        The moment ages and worker states are judged at; defaults to the store clock.
    active_within : float or str, default 60
        A worker that beat at most this long ago is active.
    stale_after : float or str, default 300
        A worker silent for longer than this is stale.

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
    active_s = parse_duration(active_within, name="active_within")
    stale_s = parse_duration(stale_after, name="stale_after")
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
    total_workers, active, stale = db.query(
        "SELECT count(*), ifnull(sum(last_heartbeat_at >= ?), 0),"
        " ifnull(sum(last_heartbeat_at IS NULL OR last_heartbeat_at < ?), 0)"
        " FROM workers WHERE removed_at IS NULL",
        (at - active_s, at - stale_s),
        action="count workers by state",
    )[0]
    return _metrics_dict(
        by_status, by_type, oldest, int(runnable), at, (total_workers, active, stale)
    )


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


def _queue_metrics_as_of(db: Store, at: float, active_s: float, stale_s: float) -> dict[str, Any]:
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
def queue_depth(db: Store, *, now: Any = None) -> pd.DataFrame:
    """How many tasks are in each status, by type.

    Parameters
    ----------
    db : Store
    now : time-like, optional
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


# -- success_rate and throughput ------------------------------------------------------------
def _wilson(completed: np.ndarray, total: np.ndarray, z: float) -> tuple[np.ndarray, ...]:
    n = total.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = completed / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p; clamping only removes rounding at p = 0 or 1.
    low = np.minimum(np.clip(centre - half, 0.0, 1.0), p)
    high = np.maximum(np.clip(centre + half, 0.0, 1.0), p)
    return p, low, high


def _finished_frame(
    db: Store,
    *,
    level: str,
    keys: list[str],
    lo: float | None,
    hi: float,
    outcomes: tuple[str, ...],
) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, list[str]]]]:
    """Finishes in the window: ``at`` (float), ``outcome`` (code) and by-codes."""
    if level == "task":
        table, status_col, code = "tasks", "status", _STATUS_CODE.format(col="status")
        worker_col, type_col, join = "IFNULL(worker_key, -1)", "type", ""
        fin_col = "finished_at"
    else:
        table, status_col, code = "attempts a", "a.outcome", _OUTCOME_CODE.format(col="a.outcome")
        worker_col, type_col, fin_col = "a.worker_key", "t.type", "a.finished_at"
        join = " JOIN tasks t ON t.id = a.task_id" if "type" in keys else ""
    where, wparams = _window_sql(fin_col, lo, hi)
    in_sql = ", ".join("?" * len(outcomes))

    def build(expr: _TypeExpr | None) -> tuple[str, list[Any], dict[str, str]]:
        select = [f"{fin_col}", code]
        cols = {"at": "float64", "outcome": "int64"}
        params: list[Any] = []
        if expr is not None:
            select.append(f"{expr.sql} AS type")
            cols["type"] = expr.kind
            params.extend(expr.params)
        if "worker_id" in keys:
            select.append(worker_col)
            cols["worker"] = "int64"
        # The unary + keeps SQLite on a table scan rather than one index probe per row.
        sql = (
            f"SELECT {', '.join(select)} FROM {table}{join}"
            f" WHERE +{status_col} IN ({in_sql}) AND {where}"
        )
        return sql, [*params, *outcomes, *wparams], cols

    decoded: dict[str, tuple[np.ndarray, list[str]]] = {}
    if "type" in keys:
        frame, codes, cats = _read_with_types(db, build, type_col)
        decoded["type"] = (codes, cats)
    else:
        sql, params, cols = build(None)
        frame = db.read_frame(sql, params, columns=cols, action=f"read finished {table}")
    if "worker_id" in keys:
        lut, names = _worker_lookup(db)
        decoded["worker_id"] = (_worker_codes(frame["worker"].to_numpy(), lut), names)
    return frame, decoded


def _group_codes(
    bucket: np.ndarray, keys: list[str], decoded: dict[str, tuple[np.ndarray, list[str]]]
) -> pd.DataFrame:
    data: dict[str, Any] = {"bucket": bucket}
    for key in keys:
        data[key] = decoded[key][0]
    return pd.DataFrame(data)


def _finish_by(
    frame: pd.DataFrame, keys: list[str], decoded: dict[str, tuple[np.ndarray, list[str]]]
) -> pd.DataFrame:
    """Turn integer ``bucket`` seconds and by-codes into UTC timestamps and categories."""
    out = frame.copy()
    out["bucket"] = as_utc(out["bucket"].to_numpy(), index=out.index)
    for key in keys:
        out[key] = _categorical(out[key].to_numpy(), decoded[key][1])
    return out


def success_rate(
    db: Store,
    *,
    freq: Any = "1h",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    level: str = "task",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Share of finishes that succeeded, per time bucket, with a Wilson score interval.

    Parameters
    ----------
    db : Store
    freq : str or float, default "1h"
        Bucket width (a duration such as ``"5min"``, ``"1h"``, ``"1d"``).
    by : None, "type", "worker_id" or a list of them
        Split each bucket by task type and/or by worker (the worker of the final
        attempt at ``level="task"``, the attempt's worker at ``level="attempt"``).
    since, until : time-like, duration or None
        Only finishes in ``[since, until]`` count (durations reach back from `now`).
    now : time-like, optional
        Answer as of this moment; later finishes are ignored.
    level : {"task", "attempt"}, default "task"
        ``"task"`` counts the final outcome of each task finished in the bucket;
        ``"attempt"`` counts every finished attempt, an abandoned attempt counting as
        failed. Cancelled tasks and attempts are left out of the rate.
    confidence : float, default 0.95
        Coverage of the interval.

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC, bucket start), the `by` columns (category), ``completed``,
        ``failed``, ``total`` (int64), ``rate``, ``ci_low``, ``ci_high`` (float). Buckets
        with no finishes are omitted, so ``total`` is always positive.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.success_rate(db, freq="1d", by="type").empty
    True
    """
    width = _freq_seconds(freq)
    keys = _by_list(by, ("type", "worker_id"))
    if level not in ("task", "attempt"):
        raise ValueError(f"level={level!r} must be 'task' or 'attempt'")
    if level == "attempt":
        db.require("attempt_history", "success_rate(level='attempt')")
    z = _z_score(confidence)
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update(dict.fromkeys(("completed", "failed", "total"), "int64"))
    columns.update(dict.fromkeys(("rate", "ci_low", "ci_high"), "float64"))
    outcomes = ("completed", "failed") if level == "task" else ("completed", "failed", "abandoned")
    frame, decoded = _finished_frame(db, level=level, keys=keys, lo=lo, hi=hi, outcomes=outcomes)
    if frame.empty:
        return empty_frame(columns)
    groups = _group_codes(_floor(frame["at"].to_numpy(), width), keys, decoded)
    done = _COMPLETED if level == "task" else _O_COMPLETED
    groups["ok"] = (frame["outcome"].to_numpy() == done).astype("int64")
    agg = groups.groupby(["bucket", *keys], sort=True)["ok"].agg(["sum", "size"]).reset_index()
    completed = agg["sum"].to_numpy().astype("int64")
    total = agg["size"].to_numpy().astype("int64")
    rate, low, high = _wilson(completed, total, z)
    result = agg[["bucket", *keys]].copy()
    result["completed"] = completed
    result["failed"] = total - completed
    result["total"] = total
    result["rate"], result["ci_low"], result["ci_high"] = rate, low, high
    return _finish_by(result, keys, decoded)[list(columns)]


def throughput(
    db: Store,
    *,
    freq: Any = "1h",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Tasks finished per time bucket, by final outcome.

    Parameters
    ----------
    db : Store
    freq : str or float, default "1h"
        Bucket width.
    by : None, "type", "worker_id" or a list of them
        Also split by task type and/or by the worker of the final attempt (missing for
        a task cancelled before any claim or after a retry was queued).
    since, until : time-like, duration or None
        Only tasks finished in ``[since, until]`` count.
    now : time-like, optional
        Answer as of this moment.

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC), the `by` columns, ``outcome`` (category: completed, failed,
        cancelled), ``count`` (int64); only combinations with at least one finish.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.throughput(db).columns.tolist()
    ['bucket', 'outcome', 'count']
    """
    width = _freq_seconds(freq)
    keys = _by_list(by, ("type", "worker_id"))
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update({"outcome": OUTCOME_DTYPE, "count": "int64"})
    frame, decoded = _finished_frame(
        db, level="task", keys=keys, lo=lo, hi=hi, outcomes=("completed", "failed", "cancelled")
    )
    if frame.empty:
        return empty_frame(columns)
    groups = _group_codes(_floor(frame["at"].to_numpy(), width), keys, decoded)
    groups["outcome"] = frame["outcome"].to_numpy()
    agg = groups.groupby(["bucket", *keys, "outcome"], sort=True, dropna=False).size()
    result = agg.rename("count").reset_index()
    result["count"] = result["count"].astype("int64")
    names = [_OUTCOME_OF_STATUS[int(c)] for c in result["outcome"].to_numpy()]
    result["outcome"] = pd.Categorical(names, dtype=OUTCOME_DTYPE)
    return _finish_by(result, keys, decoded)[list(columns)]


# -- depth_timeline -------------------------------------------------------------------------
def _attempt_positions(ids: np.ndarray, task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `task_ids` in the sorted `ids`, and which were found."""
    pos = np.searchsorted(ids, task_ids)
    found = pos < len(ids)
    found[found] = ids[pos[found]] == task_ids[found]
    return pos, found


def depth_timeline(
    db: Store,
    *,
    freq: Any = "1min",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Queued and processing tasks at the end of each time bucket, replayed from history.

    A task is queued from its creation until its first claim, processing during each
    attempt, queued again between a failed or abandoned attempt and the next claim, and
    done once it completes, finally fails or is cancelled.

    Parameters
    ----------
    db : Store
    freq : str or float, default "1min"
        Bucket width.
    by : None or "type"
        Also split by task type (every type seen so far gets a row in every bucket).
    since, until : time-like, duration or None
        The buckets cover ``[since, until]``; `since` defaults to the first task's
        creation. Earlier events still count towards the depth.
    now : time-like, optional
        Answer as of this moment; later events are ignored.

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC, bucket start), the `by` column, ``queued``, ``processing``
        (int64): the depth just before the bucket ends (at `until` for the last one).
        One row per bucket (and type), with no gaps.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.depth_timeline(db, freq="5min").columns.tolist()
    ['bucket', 'queued', 'processing']
    """
    width = _freq_seconds(freq)
    keys = _by_list(by, ("type",))
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update({"queued": "int64", "processing": "int64"})

    def build(expr: _TypeExpr | None) -> tuple[str, list[Any], dict[str, str]]:
        cols = {
            "id": "int64",
            "created_at": "float64",
            "finished_at": "time?",
            "status": "int64",
            "attempts": "int64",
        }
        extra, params = "", []
        if expr is not None:
            extra, params = f", {expr.sql} AS type", list(expr.params)
            cols["type"] = expr.kind
        sql = (
            "SELECT id, created_at, IFNULL(finished_at, -1.0),"
            f" {_STATUS_CODE.format(col='status')}, attempts{extra}"
            " FROM tasks WHERE created_at <= ? ORDER BY id"
        )
        return sql, [*params, hi], cols

    if keys:
        tasks, type_codes, types = _read_with_types(db, build, "type")
    else:
        sql, params, cols = build(None)
        tasks = db.read_frame(sql, params, columns=cols, action="read tasks")
        type_codes, types = np.zeros(len(tasks), dtype="int64"), [""]
    if tasks.empty:
        return empty_frame(columns)
    att = _attempt_times(db, until=hi)
    ids = tasks["id"].to_numpy()
    t_fin = tasks["finished_at"].to_numpy()
    t_status = tasks["status"].to_numpy()
    t_attempts = tasks["attempts"].to_numpy()
    pos, found = _attempt_positions(ids, att["task_id"].to_numpy())
    pos = pos[found]
    a_num = att["attempt"].to_numpy()[found]
    a_claim = att["claimed_at"].to_numpy()[found]
    a_fin = att["finished_at"].to_numpy()[found]
    a_out = att["outcome"].to_numpy()[found]
    a_closed = ~np.isnan(a_fin) & (a_fin <= hi)
    last = a_num == t_attempts[pos]
    requeued = (
        a_closed & np.isin(a_out, (_O_FAILED, _O_ABANDONED)) & ~(last & (t_status[pos] == _FAILED))
    )
    # A cancel that closed an attempt left processing; any other cancel left the queue.
    cancelled_running = np.zeros(len(ids), dtype=bool)
    cancelled_running[pos[last & (a_out == _O_CANCELLED)]] = True
    cancel_queued = (t_status == _CANCELLED) & ~np.isnan(t_fin) & (t_fin <= hi) & ~cancelled_running
    closed_fin = a_fin[a_closed]
    times = np.concatenate(
        [tasks["created_at"].to_numpy(), a_claim, closed_fin, a_fin[requeued], t_fin[cancel_queued]]
    )
    n_claim, n_close, n_req = len(a_claim), len(closed_fin), int(requeued.sum())
    d_queued = np.concatenate(
        [
            np.ones(len(ids)),
            -np.ones(n_claim),
            np.zeros(n_close),
            np.ones(n_req),
            -np.ones(int(cancel_queued.sum())),
        ]
    )
    d_proc = np.concatenate(
        [
            np.zeros(len(ids)),
            np.ones(n_claim),
            -np.ones(n_close),
            np.zeros(n_req + int(cancel_queued.sum())),
        ]
    )
    group = np.concatenate(
        [
            type_codes,
            type_codes[pos],
            type_codes[pos[a_closed]],
            type_codes[pos[requeued]],
            type_codes[cancel_queued],
        ]
    )
    first = float(tasks["created_at"].min()) if lo is None else lo
    b0, nb = _bucket_range(first, hi, width, freq)
    # An event at t shows in the depth at the end of every bucket ending after t.
    k = np.clip(np.floor((times - b0) / width), 0, nb - 1).astype("int64")
    n_groups = len(types)
    flat = group * nb + k
    size = n_groups * nb
    queued = np.rint(np.bincount(flat, weights=d_queued, minlength=size)).astype("int64")
    processing = np.rint(np.bincount(flat, weights=d_proc, minlength=size)).astype("int64")
    queued = queued.reshape(n_groups, nb).cumsum(axis=1)
    processing = processing.reshape(n_groups, nb).cumsum(axis=1)
    buckets = b0 + width * np.arange(nb, dtype="float64")
    if keys:
        # Bucket-major order: every type within a bucket, types sorted.
        order = np.argsort(np.asarray(types, dtype=object), kind="stable")
        out = pd.DataFrame(
            {
                "bucket": as_utc(np.repeat(buckets, n_groups)),
                "type": _categorical(np.tile(order, nb), types),
                "queued": queued[order].T.reshape(-1),
                "processing": processing[order].T.reshape(-1),
            }
        )
    else:
        out = pd.DataFrame(
            {"bucket": as_utc(buckets), "queued": queued[0], "processing": processing[0]}
        )
    return out[list(columns)]


# -- latency --------------------------------------------------------------------------------
def latency(
    db: Store,
    *,
    by: Any = "type",
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    freq: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Quantiles of waiting and running time of finished tasks.

    The sample is the tasks that completed or finally failed in ``[since, until]``
    (cancelled tasks are left out). ``wait_s`` is from creation to the first claim;
    ``run_s`` is the final attempt, from its claim to the finish.

    Parameters
    ----------
    db : Store
    by : None, "type", "worker_id" or a list of them, default "type"
        Group by task type and/or the worker of the final attempt.
    quantiles : sequence of float, default (0.5, 0.9, 0.99)
        Each in [0, 1].
    freq : str or float, optional
        Also split by time bucket of the finish.
    since, until : time-like, duration or None
    now : time-like, optional
        Answer as of this moment.

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC; only with `freq`), the `by` columns, ``quantile`` (float),
        ``wait_s``, ``run_s`` (float seconds), ``count`` (int64: tasks in the group).

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.latency(db).columns.tolist()
    ['type', 'quantile', 'wait_s', 'run_s', 'count']
    """
    keys = _by_list(by, ("type", "worker_id"))
    qs = _check_quantiles(quantiles)
    width = None if freq is None else _freq_seconds(freq)
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {} if width is None else {"bucket": UTC_DTYPE}
    columns.update(_by_dtypes(keys))
    columns.update({"quantile": "float64", "wait_s": "float64", "run_s": "float64"})
    columns["count"] = "int64"
    where, wparams = _window_sql("t.finished_at", lo, hi)

    # Without per-attempt rows only a task claimed once has a known first claim: the
    # others keep their run time and get no wait (NaN, left out of the wait quantiles).
    history = "attempt_history" in db.capabilities
    first_sql = "a.claimed_at" if history else "IFNULL(a.claimed_at, -1.0)"
    join = "JOIN" if history else "LEFT JOIN"

    def build(expr: _TypeExpr | None) -> tuple[str, list[Any], dict[str, str]]:
        started = "t.started_at" if history else "IFNULL(t.started_at, -1.0)"
        select = f"t.finished_at, t.created_at, {started}, {first_sql}"
        cols = {
            "at": "float64",
            "created": "float64",
            "started": "float64" if history else "time?",
            "first": "float64" if history else "time?",
        }
        params: list[Any] = []
        if expr is not None:
            select += f", {expr.sql} AS type"
            cols["type"] = expr.kind
            params = list(expr.params)
        if "worker_id" in keys:
            select += ", IFNULL(t.worker_key, -1)"
            cols["worker"] = "int64"
        sql = (
            f"SELECT {select} FROM tasks t {join} attempts a ON a.task_id = t.id"
            " AND a.attempt = 1"
            f" WHERE +t.status IN ('completed', 'failed') AND {where}"
        )
        return sql, [*params, *wparams], cols

    decoded: dict[str, tuple[np.ndarray, list[str]]] = {}
    if "type" in keys:
        frame, codes, cats = _read_with_types(db, build, "t.type")
        decoded["type"] = (codes, cats)
    else:
        sql, params, cols = build(None)
        frame = db.read_frame(sql, params, columns=cols, action="read finished tasks")
    if frame.empty:
        return empty_frame(columns)
    if "worker_id" in keys:
        lut, names = _worker_lookup(db)
        decoded["worker_id"] = (_worker_codes(frame["worker"].to_numpy(), lut), names)
    bucket = np.zeros(len(frame)) if width is None else _floor(frame["at"].to_numpy(), width)
    groups = _group_codes(bucket, keys, decoded)
    groups["wait_s"] = frame["first"].to_numpy() - frame["created"].to_numpy()
    groups["run_s"] = frame["at"].to_numpy() - frame["started"].to_numpy()
    grouped = groups.groupby(["bucket", *keys], sort=True)
    quant = grouped[["wait_s", "run_s"]].quantile(np.asarray(qs))
    quant.index = quant.index.set_names([*quant.index.names[:-1], "quantile"])
    quant = quant.reset_index()
    sizes = grouped.size().rename("count").reset_index()
    result = quant.merge(sizes, on=["bucket", *keys], how="left")
    result["count"] = result["count"].astype("int64")
    result["quantile"] = result["quantile"].astype("float64")
    result = _finish_by(result, keys, decoded)
    return result[list(columns)].reset_index(drop=True)


# -- utilization ----------------------------------------------------------------------------
def _split_intervals(
    key: np.ndarray, start: np.ndarray, end: np.ndarray, width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut intervals at bucket edges: (key, bucket start, seconds inside) per piece."""
    first = np.floor(start / width)
    last = np.maximum(np.ceil(end / width) - 1, first)
    n = (last - first + 1).astype("int64")
    if int(n.sum()) > 10 * MAX_BUCKETS:
        raise ValueError(
            f"freq of {width:g}s cuts the intervals into {int(n.sum()):,} pieces; use a "
            "coarser freq or a shorter window"
        )
    rep = np.repeat(np.arange(len(start)), n)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    bucket = (first[rep] + offset) * width
    seconds = np.minimum(end[rep], bucket + width) - np.maximum(start[rep], bucket)
    return key[rep], bucket, np.maximum(seconds, 0.0)


def utilization(
    db: Store,
    *,
    freq: Any = "1h",
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Per worker and time bucket: seconds busy, seconds alive, and their ratio.

    Busy time is the overlap of the worker's attempts (from claim to finish, or to
    `now` while still open) with the bucket. Alive time comes from
    :func:`qanalytics.alive_intervals` (the heartbeat history with outages removed).

    Parameters
    ----------
    db : Store
    freq : str or float, default "1h"
        Bucket width.
    since, until : time-like, duration or None
        Clip everything to ``[since, until]``.
    now : time-like, optional
        Answer as of this moment.

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``bucket`` (UTC), ``busy_s``, ``alive_s`` (float
        seconds), ``utilization`` (``busy_s / alive_s``; NaN when not alive at all in
        the bucket, and above 1 when a worker held a task through an outage). One row
        per worker and bucket in which it was busy or alive.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.utilization(db).columns.tolist()
    ['worker_id', 'bucket', 'busy_s', 'alive_s', 'utilization']
    """
    db.require("heartbeat_history", "utilization()")
    db.require("attempt_history", "utilization()")
    from .liveness import alive_intervals

    width = _freq_seconds(freq)
    lo, hi, at = resolve_window(db, since, until, now)
    columns = {
        "worker_id": "category",
        "bucket": UTC_DTYPE,
        "busy_s": "float64",
        "alive_s": "float64",
        "utilization": "float64",
    }
    lut, names = _worker_lookup(db)
    low = -np.inf if lo is None else lo
    where = "claimed_at <= ? AND (finished_at IS NULL OR finished_at >= ?)"
    att = db.read_frame(
        f"SELECT worker_key, claimed_at, IFNULL(finished_at, -1.0) FROM attempts WHERE {where}",
        (hi, -1e300 if lo is None else lo),
        columns={"worker": "int64", "start": "float64", "end": "time?"},
        action="read attempts",
    )
    a_end = att["end"].to_numpy()
    a_end = np.where(np.isnan(a_end) | (a_end > hi), hi, a_end)
    a_start = np.maximum(att["start"].to_numpy(), low)
    keep = a_end > a_start
    busy = _split_intervals(
        _worker_codes(att["worker"].to_numpy(), lut)[keep], a_start[keep], a_end[keep], width
    )
    alive = alive_intervals(db, since=lo, until=hi, now=at)
    name_index = {name: i for i, name in enumerate(names)}
    alive_codes = np.array(
        [name_index.get(w, -1) for w in alive["worker_id"].astype(object)], dtype="int64"
    )
    a_s = alive["start"].to_numpy(dtype="float64")
    a_e = alive["end"].to_numpy(dtype="float64")
    keep = a_e > a_s
    up = _split_intervals(alive_codes[keep], a_s[keep], a_e[keep], width)
    pieces = pd.DataFrame(
        {
            "worker": np.concatenate([busy[0], up[0]]),
            "bucket": np.concatenate([busy[1], up[1]]),
            "busy_s": np.concatenate([busy[2], np.zeros(len(up[2]))]),
            "alive_s": np.concatenate([np.zeros(len(busy[2])), up[2]]),
        }
    )
    pieces = pieces[(pieces["busy_s"] > 0) | (pieces["alive_s"] > 0)]
    if pieces.empty:
        return empty_frame(columns)
    agg = pieces.groupby(["worker", "bucket"], sort=True)[["busy_s", "alive_s"]].sum()
    agg = agg.reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(agg["alive_s"] > 0, agg["busy_s"] / agg["alive_s"], np.nan)
    out = pd.DataFrame(
        {
            "worker_id": _categorical(agg["worker"].to_numpy(), names),
            "bucket": as_utc(agg["bucket"].to_numpy()),
            "busy_s": agg["busy_s"].to_numpy(dtype="float64"),
            "alive_s": agg["alive_s"].to_numpy(dtype="float64"),
            "utilization": ratio.astype("float64"),
        }
    )
    return out.sort_values(["worker_id", "bucket"], kind="stable").reset_index(drop=True)


# -- retry_outcomes -------------------------------------------------------------------------
def retry_outcomes(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """What happens at each attempt number, and whether retrying pays off.

    The sample is the tasks created in ``[since, until]``, with their attempts as they
    stood at `until`.

    Parameters
    ----------
    db : Store
    since, until : time-like, duration or None
    now : time-like, optional
        Answer as of this moment; later claims and finishes are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per attempt number ``attempt`` (int64) with ``reached`` (tasks claimed
        at least this many times), ``succeeded``, ``failed``, ``abandoned`` (int64:
        outcomes of that attempt; cancelled and still-open attempts are in none),
        ``success_rate_at_attempt`` (succeeded over succeeded + failed + abandoned) and
        ``eventual_success``: among tasks whose attempt k failed or was abandoned and
        whose fate is known (completed or finally failed), the share that completed
        later. Rates are NaN when their denominator is zero.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.retry_outcomes(db).empty
    True
    """
    db.require("attempt_history", "retry_outcomes()")
    lo, hi, _at = resolve_window(db, since, until, now)
    columns = dict.fromkeys(("attempt", "reached", "succeeded", "failed", "abandoned"), "int64")
    columns.update({"success_rate_at_attempt": "float64", "eventual_success": "float64"})
    where, wparams = _window_sql("t.created_at", lo, hi)
    att = db.read_frame(
        "SELECT a.attempt, IFNULL(a.finished_at, -1.0),"
        f" {_OUTCOME_CODE.format(col='a.outcome')}, {_STATUS_CODE.format(col='t.status')},"
        " IFNULL(t.finished_at, -1.0) FROM attempts a JOIN tasks t ON t.id = a.task_id"
        f" WHERE {where} AND a.claimed_at <= ?",
        [*wparams, hi],
        columns={
            "attempt": "int64",
            "finished_at": "time?",
            "outcome": "int64",
            "status": "int64",
            "task_finished_at": "time?",
        },
        action="read attempts",
    )
    if att.empty:
        return empty_frame(columns)
    number = att["attempt"].to_numpy()
    fin = att["finished_at"].to_numpy()
    outcome = np.where(~np.isnan(fin) & (fin <= hi), att["outcome"].to_numpy(), -1)
    t_fin = att["task_finished_at"].to_numpy()
    fate = np.where(~np.isnan(t_fin) & (t_fin <= hi), att["status"].to_numpy(), -1)
    size = int(number.max()) + 1

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(number[mask], minlength=size)[1:].astype("int64")

    reached = count(np.ones(len(number), dtype=bool))
    succeeded = count(outcome == _O_COMPLETED)
    failed = count(outcome == _O_FAILED)
    abandoned = count(outcome == _O_ABANDONED)
    setback = (outcome == _O_FAILED) | (outcome == _O_ABANDONED)
    known = setback & ((fate == _COMPLETED) | (fate == _FAILED))
    recovered = count(known & (fate == _COMPLETED))
    known_n = count(known)
    decided = succeeded + failed + abandoned
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_at = np.where(decided > 0, succeeded / decided, np.nan)
        eventual = np.where(known_n > 0, recovered / known_n, np.nan)
    out = pd.DataFrame(
        {
            "attempt": np.arange(1, size, dtype="int64"),
            "reached": reached,
            "succeeded": succeeded,
            "failed": failed,
            "abandoned": abandoned,
            "success_rate_at_attempt": rate_at.astype("float64"),
            "eventual_success": eventual.astype("float64"),
        }
    )
    return out[reached > 0].reset_index(drop=True)
