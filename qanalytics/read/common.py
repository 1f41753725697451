"""Helpers shared by the read-side modules: windows, dtypes, and empty-safe frames."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .._time import epoch_to_series, resolve_time
from ..store.schema import OUTCOMES, TASK_STATUSES
from ..store.sqlite import Store

__all__ = [
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
    """
    params = list(values)
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
