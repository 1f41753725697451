"""Clocks, durations and conversions between epoch seconds and pandas timestamps.

Timestamps are stored as REAL unix epoch seconds (UTC). Durations are accepted as a number
of seconds or a string such as ``"90s"``, ``"5min"``, ``"24h"`` or ``"7d"``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

__all__ = [
    "MAX_EPOCH",
    "MAX_FREQ_S",
    "MIN_EPOCH",
    "MIN_FREQ_S",
    "Clock",
    "Duration",
    "FakeClock",
    "TimeLike",
    "check_epoch",
    "epoch_to_series",
    "parse_duration",
    "parse_freq",
    "resolve_time",
    "system_clock",
    "to_datetime",
]

Clock: TypeAlias = Callable[[], float]
Duration: TypeAlias = "float | int | str | timedelta | pd.Timedelta"
TimeLike: TypeAlias = "float | int | str | datetime | pd.Timestamp | np.datetime64 | timedelta"

#: Rows converted per step by :func:`epoch_to_series` (bounds its temporary buffer).
_CHUNK = 1 << 16

_UTC_US = pd.DatetimeTZDtype(unit="us", tz="UTC")

#: The earliest and latest times qanalytics accepts, epoch seconds: the range of a
#: nanosecond pandas Timestamp (1677-09-21 to 2262-04-11), whole seconds inside it.
MIN_EPOCH = float(math.ceil(pd.Timestamp.min.value / 1e9))
MAX_EPOCH = float(math.floor(pd.Timestamp.max.value / 1e9))

#: The narrowest and widest time buckets (``freq``) accepted: one millisecond, and about
#: 292 years, so that every bucket (aligned to the epoch) starts at a representable time.
MIN_FREQ_S = 0.001
MAX_FREQ_S = MAX_EPOCH

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
# The exponent lets the text of any Python float ("1e-05") round-trip through a string.
_DURATION_RE = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Z]*)\s*")


def system_clock() -> float:
    """Return the current UTC time as unix epoch seconds.

    Returns
    -------
    float
        ``time.time()``.
    """
    return time.time()


class FakeClock:
    """A settable clock for tests and simulations.

    Times are what the reads take for times (:func:`to_epoch`): epoch seconds, an ISO 8601
    string, a datetime or a pandas Timestamp (naive ones are taken as UTC); steps are
    durations (:func:`parse_duration`): seconds, ``"90s"``, ``"5min"``, a timedelta.

    Parameters
    ----------
    start : time-like, default 1_700_000_000.0
        The initial time (2023-11-14 22:13:20 UTC).

    Examples
    --------
    >>> clock = FakeClock(100.0)
    >>> clock.advance("90s")
    >>> clock()
    190.0
    >>> FakeClock("2024-01-01T00:00:00Z")()
    1704067200.0
    >>> clock.set("2024-01-01 00:01:00")
    >>> clock()
    1704067260.0
    """

    def __init__(self, start: TimeLike = 1_700_000_000.0) -> None:
        self.now = to_epoch(start, name="start")

    def __call__(self) -> float:
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"

    def advance(self, by: Duration) -> None:
        """Move the clock forward.

        Parameters
        ----------
        by : float, int, str or timedelta
            How far, as seconds, a duration string or a timedelta (not negative).
        """
        self.now = check_epoch(self.now + parse_duration(by, name="by"), by, name="by")

    def set(self, when: TimeLike) -> None:
        """Set the clock to an absolute time.

        Parameters
        ----------
        when : time-like
            Epoch seconds, an ISO 8601 string, a datetime or a pandas Timestamp.
        """
        self.now = to_epoch(when, name="when")


def parse_duration(value: Any, *, name: str = "duration", allow_zero: bool = True) -> float:
    """Turn a duration into float seconds.

    Parameters
    ----------
    value : float, int, str, timedelta or pandas.Timedelta
        Seconds as a number, or a string like ``"90s"``, ``"5min"``, ``"1.5h"``, ``"7d"``
        (a bare number in a string means seconds).
    name : str, default "duration"
        The argument's name, used in error messages.
    allow_zero : bool, default True
        Whether zero is accepted.

    Returns
    -------
    float
        The duration in seconds, finite and not negative.

    Raises
    ------
    TypeError
        If `value` is not a number, string or timedelta.
    ValueError
        If the string cannot be parsed, or the value is negative, NaN or infinite.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be seconds or a duration string, not a bool")
    if isinstance(value, (timedelta, pd.Timedelta)):
        seconds = float(value.total_seconds())
    elif isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match is not None and match.group(2) == "M":
            raise ValueError(
                f"{name}={value!r} is ambiguous (a month to pandas, a minute to some tools);"
                f" write '{match.group(1)}min' for minutes or days such as '30d'"
            )
        unit = match.group(2).lower() if match else ""
        if match is None or (unit not in _UNITS and unit != ""):
            raise ValueError(
                f"{name}={value!r} is not a duration; use seconds or a string such as "
                "'90s', '5min', '24h' or '7d'"
            )
        seconds = float(match.group(1)) * (_UNITS[unit] if unit else 1.0)
    else:
        raise TypeError(f"{name} must be seconds or a duration string, not {type(value).__name__}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name}={value!r} must be a finite duration")
    if seconds < 0:
        raise ValueError(f"{name}={value!r} must not be negative")
    if seconds == 0 and not allow_zero:
        raise ValueError(f"{name}={value!r} must be greater than zero")
    return seconds


def to_epoch(value: Any, *, name: str = "time") -> float:
    """Turn an absolute time into unix epoch seconds.

    Parameters
    ----------
    value : float, int, str, datetime, pandas.Timestamp or numpy.datetime64
        Epoch seconds, an ISO 8601 string, or a datetime. Naive datetimes and strings
        without an offset are taken as UTC.
    name : str, default "time"
        The argument's name, used in error messages.

    Returns
    -------
    float
        Unix epoch seconds.

    Raises
    ------
    TypeError, ValueError
        If the value is not a time.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a time, not a bool")
    if isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
        if not math.isfinite(seconds):
            raise ValueError(f"{name}={value!r} must be a finite time")
        return check_epoch(seconds, value, name=name)
    if isinstance(value, (str, datetime, np.datetime64, pd.Timestamp)):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"{name}={value!r} is not a timestamp: {exc}") from None
        if ts is pd.NaT or pd.isna(ts):
            raise ValueError(f"{name}={value!r} is not a timestamp")
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        try:
            seconds = float(ts.value) / 1e9
        except OverflowError:  # outside the nanosecond range; timestamp() still works
            seconds = float(ts.timestamp())
        return check_epoch(seconds, value, name=name)
    raise TypeError(f"{name} must be a time, not {type(value).__name__}")


def resolve_time(value: Any, *, now: float, name: str = "time") -> float:
    """Resolve ``since``/``until`` style arguments against ``now``.

    Parameters
    ----------
    value : time-like or duration
        An absolute time (epoch seconds, ISO string, datetime) or a duration back from
        `now` (a string such as ``"24h"`` or a timedelta).
    now : float
        The reference time, epoch seconds.
    name : str
        The argument's name, used in error messages.

    Returns
    -------
    float
        Unix epoch seconds.
    """
    if isinstance(value, (timedelta, pd.Timedelta)):
        return check_epoch(now - parse_duration(value, name=name), value, name=name)
    if isinstance(value, str) and _DURATION_RE.fullmatch(value):
        match = _DURATION_RE.fullmatch(value)
        assert match is not None
        if match.group(2):  # a unit makes it a duration; a bare number is ambiguous
            return check_epoch(now - parse_duration(value, name=name), value, name=name)
    return to_epoch(value, name=name)


def check_epoch(seconds: float, value: Any = None, *, name: str = "time") -> float:
    """Refuse a time outside the range pandas timestamps can hold.

    Parameters
    ----------
    seconds : float
        The time, epoch seconds.
    value : Any, optional
        What the caller was given, for the message (defaults to `seconds`).
    name : str, default "time"
        The argument's name, used in error messages.

    Returns
    -------
    float
        `seconds`, when it lies between :data:`MIN_EPOCH` (1677-09-22) and
        :data:`MAX_EPOCH` (2262-04-11).

    Raises
    ------
    ValueError
        If `seconds` is NaN or outside that range.
    """
    if not MIN_EPOCH <= seconds <= MAX_EPOCH:  # NaN fails both comparisons
        shown = seconds if value is None else value
        raise ValueError(
            f"{name}={shown!r} is outside the supported time range (1677-09-22 to 2262-04-11 UTC)"
        )
    return seconds


def parse_freq(value: Any, *, name: str = "freq") -> float:
    """Turn a time-bucket width into float seconds, refusing absurd widths.

    Parameters
    ----------
    value : float, int, str, timedelta or pandas.Timedelta
        Seconds, a duration string (``"15min"``, ``"1h"``, ``"1d"``) or a fixed-width
        pandas frequency alias (``"1D"``).
    name : str, default "freq"
        The argument's name, used in error messages.

    Returns
    -------
    float
        The width in seconds, from :data:`MIN_FREQ_S` (1 ms) to :data:`MAX_FREQ_S`
        (about 292 years: a wider bucket would start before 1677).

    Raises
    ------
    TypeError
        If `value` is not a number, string or timedelta.
    ValueError
        If it is not a duration or fixed-width frequency, or is zero, negative or outside
        that range.
    """
    try:
        seconds = parse_duration(value, name=name, allow_zero=False)
    except ValueError:
        if not isinstance(value, str):
            raise
        match = _DURATION_RE.fullmatch(value)
        if match is not None and (match.group(2).lower() in _UNITS or not match.group(2)):
            raise  # a well-formed duration of zero: say so, not "not a bucket size"
        try:
            offset = pd.tseries.frequencies.to_offset(value)
        except (ValueError, TypeError):
            offset = None
        nanos = getattr(offset, "nanos", None) if isinstance(offset, pd.offsets.Tick) else None
        if not nanos or nanos <= 0:
            raise ValueError(
                f"{name}={value!r} is not a positive fixed-width bucket size; use a duration "
                "such as '1min', '15min', '1h' or '1d'"
            ) from None
        seconds = nanos / 1e9
    if not MIN_FREQ_S <= seconds <= MAX_FREQ_S:
        raise ValueError(
            f"{name}={value!r} is {seconds:g}s wide; a bucket must be from 1ms to "
            f"{MAX_FREQ_S:g}s (about 292 years)"
        )
    return seconds


def to_datetime(seconds: float | None) -> datetime | None:
    """Convert epoch seconds to a timezone-aware UTC datetime.

    Parameters
    ----------
    seconds : float or None

    Returns
    -------
    datetime or None
    """
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def epoch_to_series(values: Any, name: str | None = None, index: Any = None) -> pd.Series:
    """Convert float epoch seconds to a ``datetime64[us, UTC]`` Series.

    Rounds to whole microseconds first: converting floats directly lands up to ~65 ns off.

    Parameters
    ----------
    values : array-like of float
        Epoch seconds; NaN becomes NaT.
    name : str, optional
    index : Index, optional

    Returns
    -------
    pandas.Series
    """
    arr = np.asarray(values, dtype="float64")
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-dimensional, got an array of shape {arr.shape}")
    # Work through a small reused buffer so that the result is the only full-length
    # allocation: a frame of millions of beats must not pay for several temporaries.
    ints = np.empty(len(arr), dtype="int64")
    buffer = np.empty(min(len(arr), _CHUNK), dtype="float64")
    with np.errstate(invalid="ignore"):  # NaN casts to garbage; it is replaced below
        for start in range(0, len(arr), _CHUNK):
            chunk = arr[start : start + _CHUNK]
            scaled = np.multiply(chunk, 1e6, out=buffer[: len(chunk)])
            np.rint(scaled, out=ints[start : start + len(chunk)], casting="unsafe")
    # min() propagates NaN, so one pass without a mask tells whether a mask is needed.
    if len(arr) and np.isnan(arr.min()):
        ints[np.isnan(arr)] = np.iinfo("int64").min  # the NaT sentinel
    # Integers with a tz-aware dtype are read as UTC epoch microseconds, without a copy
    # (localizing a naive Series would copy the whole column again).
    return pd.Series(ints, dtype=_UTC_US, name=name, index=index, copy=False)

