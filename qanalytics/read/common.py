"""Helpers shared by the read-side modules: windows, dtypes, empty-safe frames, and the
column readers (integer codes for statuses, outcomes and types; fixed-width buckets)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from .._time import epoch_to_series, parse_freq, resolve_time
from ..store import Store
from ..store.schema import OUTCOMES, TASK_STATUSES

__all__ = [
    "MAX_BUCKETS",
    "OUTCOME_DTYPE",
    "STATE_DTYPE",
    "STATUS_DTYPE",
    "UTC_DTYPE",
    "as_category",
    "as_utc",
    "empty_frame",
    "resolve_now",
    "resolve_window",
    "window_where",
]

#: The dtype of every timestamp column in a frame.
UTC_DTYPE = pd.DatetimeTZDtype(unit="us", tz="UTC")
STATUS_DTYPE = pd.CategoricalDtype(list(TASK_STATUSES))
OUTCOME_DTYPE = pd.CategoricalDtype(list(OUTCOMES))
STATE_DTYPE = pd.CategoricalDtype(["active", "late", "stale", "removed"])


def resolve_now(db: Store, now: Any) -> float:
    """``now`` as epoch seconds: the store clock when None.

    Parameters
    ----------
    db : Store
    now : time-like, "latest" or None

    Returns
    -------
    float
    """
    return db.resolve_now(now)


def resolve_window(
    db: Store, since: Any = None, until: Any = None, now: Any = None
) -> tuple[float | None, float, float]:
    """Resolve ``since``/``until``/``now`` into epoch seconds.

    ``until`` never exceeds ``now``: a question asked as of ``now`` ignores later events.

    Parameters
    ----------
    db : Store
    since, until : time-like, duration or None
        Absolute times, or durations back from `now` (``"24h"``).
    now : time-like or None
        Defaults to the store clock.

    Returns
    -------
    (since, until, now) : tuple
        ``since`` is None when unbounded.

    Raises
    ------
    ValueError
        If `since` is after `until`.
    """
    at = resolve_now(db, now)
    lo = None if since is None else resolve_time(since, now=at, name="since")
    hi = at if until is None else min(at, resolve_time(until, now=at, name="until"))
    if lo is not None and lo > hi:
        raise ValueError(f"since={since!r} is after until={until!r} (or after now)")
    return lo, hi, at


def as_utc(values: Any, index: Any = None) -> pd.Series:
    """Epoch seconds (NaN for missing) to a ``datetime64[us, UTC]`` Series.

    Parameters
    ----------
    values : array-like of float
    index : Index, optional

    Returns
    -------
    pandas.Series
    """
    return epoch_to_series(values, index=index)


def as_category(values: Any, dtype: pd.CategoricalDtype | None = None) -> pd.Categorical:
    """Values as a categorical (fixed categories when `dtype` is given).

    Parameters
    ----------
    values : array-like
    dtype : CategoricalDtype, optional

    Returns
    -------
    pandas.Categorical
    """
    if dtype is not None:
        return pd.Categorical(values, dtype=dtype)
    return pd.Categorical(np.asarray(values, dtype=object))


def empty_frame(dtypes: dict[str, Any]) -> pd.DataFrame:
    """An empty frame with exactly these columns and dtypes.

    Parameters
    ----------
    dtypes : dict of str to dtype

    Returns
    -------
    pandas.DataFrame
    """
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})


def in_list_sql(column: str, values: Iterable[Any]) -> tuple[str, list[Any]]:
    """A ``column IN (?, ?, ...)`` clause with bound parameters.

    Only the number of placeholders is formatted into the SQL; the values are bound.

    Parameters
    ----------
    column : str
        A column name chosen by the library, never by the user.
    values : iterable

    Returns
    -------
    (sql, params) : tuple
        No values give a clause that is always false (``IN ()`` is SQLite's alone).
    """
    params = list(values)
    if not params:
        return "0 = 1", params
    return f"{column} IN ({', '.join('?' * len(params))})", params


def window_where(column: str, lo: float | None, hi: float) -> tuple[list[str], list[Any]]:
    """``column <= hi`` (and ``column >= lo``) as WHERE terms with bound parameters.

    Parameters
    ----------
    column : str
        A column name chosen by the library, never by the user.
    lo : float or None
        The window's start, epoch seconds; None for unbounded.
    hi : float
        The window's end, epoch seconds.

    Returns
    -------
    (terms, params) : tuple
        Terms to join with ``AND`` and their parameters, in order; callers may append more.
    """
    terms = [f"{column} <= ?"]
    params: list[Any] = [hi]
    if lo is not None:
        terms.append(f"{column} >= ?")
        params.append(lo)
    return terms, params


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
