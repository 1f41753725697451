"""Durations, clocks and epoch conversions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qanalytics as qa
from qanalytics._time import (
    _UNITS,
    epoch_to_series,
    parse_duration,
    parse_freq,
    resolve_time,
    system_clock,
    to_datetime,
    to_epoch,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (90, 90.0),
        (1.5, 1.5),
        (np.int64(7), 7.0),
        (np.float32(0.5), 0.5),
        ("90s", 90.0),
        ("90", 90.0),
        ("5min", 300.0),
        ("5 min", 300.0),
        (" 5MIN ", 300.0),
        ("1.5h", 5400.0),
        (".5h", 1800.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("2w", 1209600.0),
        ("250ms", 0.25),
        ("3 minutes", 180.0),
        (timedelta(minutes=2), 120.0),
        (pd.Timedelta("1h"), 3600.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert qa.parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("", ValueError, "not a duration"),
        ("abc", ValueError, "not a duration"),
        ("5 lightyears", ValueError, "not a duration"),
        ("-5s", ValueError, "not a duration"),
        ("5s 3m", ValueError, "not a duration"),
        ("1e", ValueError, "not a duration"),
        ("1e999", ValueError, "finite"),
        ("9" * 400, ValueError, "finite"),
        (-1, ValueError, "negative"),
        (-0.001, ValueError, "negative"),
        (timedelta(seconds=-1), ValueError, "negative"),
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (np.float64("nan"), ValueError, "finite"),
        (True, TypeError, "bool"),
        (None, TypeError, "NoneType"),
        ([5], TypeError, "list"),
        (b"5s", TypeError, "bytes"),
    ],
)
def test_parse_duration_rejects(value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        qa.parse_duration(value, name="lease")
    assert "lease" in str(info.value)


def test_parse_duration_zero_can_be_refused() -> None:
    assert qa.parse_duration(0) == 0.0
    with pytest.raises(ValueError, match="lease=0 must be greater than zero"):
        qa.parse_duration(0, name="lease", allow_zero=False)
    with pytest.raises(ValueError, match="greater than zero"):
        qa.parse_duration("0s", name="lease", allow_zero=False)


@given(
    amount=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(sorted(_UNITS)),
    space=st.sampled_from(["", " "]),
)
def test_parse_duration_round_trips_integers(amount: int, unit: str, space: str) -> None:
    assert qa.parse_duration(f"{amount}{space}{unit}") == pytest.approx(amount * _UNITS[unit])
    if unit != "m":  # "M" alone is refused as ambiguous (see below)
        assert qa.parse_duration(f"{amount}{unit.upper()}") == pytest.approx(
            amount * _UNITS[unit]
        )


@given(seconds=st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_parse_duration_round_trips_seconds(seconds: float) -> None:
    assert qa.parse_duration(seconds) == seconds
    assert qa.parse_duration(repr(seconds) + "s") == seconds
    assert qa.parse_duration(timedelta(seconds=seconds)) == pytest.approx(seconds, abs=1e-6)


@given(text=st.text(max_size=12))
def test_parse_duration_never_raises_anything_but_value_error(text: str) -> None:
    try:
        result = qa.parse_duration(text)
    except ValueError as exc:
        assert "duration" in str(exc)
    else:
        assert math.isfinite(result) and result >= 0


def test_fake_clock_advances_and_sets() -> None:
    clock = qa.FakeClock(100.0)
    assert clock() == 100.0
    clock.advance("90s")
    assert clock() == 190.0
    clock.advance(timedelta(minutes=1))
    assert clock() == 250.0
    clock.set(5)
    assert clock() == 5.0 and isinstance(clock(), float)
    with pytest.raises(ValueError, match="by=-1 must not be negative"):
        clock.advance(-1)
    assert clock() == 5.0


@pytest.mark.parametrize(
    "start",
    [
        1_704_067_200,
        1_704_067_200.0,
        np.float64(1_704_067_200.0),
        "2024-01-01T00:00:00Z",
        "2024-01-01 01:00:00+01:00",
        "2024-01-01",
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 1),  # naive: UTC, as the reads take it
        pd.Timestamp("2024-01-01", tz="UTC"),
        np.datetime64("2024-01-01T00:00:00"),
    ],
)
def test_fake_clock_takes_the_times_the_reads_take(start: object) -> None:
    clock = qa.FakeClock(start)  # type: ignore[arg-type]
    assert clock() == 1_704_067_200.0 and isinstance(clock(), float)
    assert clock() == resolve_time(start, now=0.0)
    other = qa.FakeClock()
    other.set(start)  # type: ignore[arg-type]
    assert other() == clock()
    clock.advance(pd.Timedelta("1h"))
    clock.advance("30min")
    assert clock() == 1_704_067_200.0 + 5400


@pytest.mark.parametrize(
    ("start", "error"),
    [
        ("soon", ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("3000-01-01", ValueError),
        (True, TypeError),
        (timedelta(hours=1), TypeError),  # a duration is not a moment
        (None, TypeError),
    ],
)
def test_fake_clock_refuses_what_is_not_a_time(start: object, error: type) -> None:
    with pytest.raises(error, match="start"):
        qa.FakeClock(start)  # type: ignore[arg-type]
    clock = qa.FakeClock(5.0)
    with pytest.raises(error, match="when"):
        clock.set(start)  # type: ignore[arg-type]
    assert clock() == 5.0


def test_fake_clock_does_not_advance_past_the_supported_range() -> None:
    clock = qa.FakeClock("2262-04-10")
    with pytest.raises(ValueError, match="supported time range"):
        clock.advance("7d")
    assert clock() == to_epoch("2262-04-10")
    assert repr(clock) == f"FakeClock({clock()!r})"


def test_fake_clock_default_start_and_system_clock() -> None:
    assert qa.FakeClock()() == 1_700_000_000.0
    before = datetime.now(UTC).timestamp()
    assert before - 1 <= system_clock() <= before + 60


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000.0),
        (1.5, 1.5),
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14 22:13:20", 1_700_000_000.0),  # no offset: UTC
        ("2023-11-15T00:13:20+02:00", 1_700_000_000.0),
        (datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), 1_700_000_000.0),
        (datetime(2023, 11, 14, 22, 13, 20), 1_700_000_000.0),
        (pd.Timestamp("2023-11-14 22:13:20", tz="UTC"), 1_700_000_000.0),
        (np.datetime64("2023-11-14T22:13:20"), 1_700_000_000.0),
    ],
)
def test_to_epoch(value: object, expected: float) -> None:
    assert to_epoch(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("yesterday-ish", ValueError),
        ("NaT", ValueError),
        (math.nan, ValueError),
        (True, TypeError),
        (None, TypeError),
        (timedelta(1), TypeError),
    ],
)
def test_to_epoch_rejects(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="since"):
        to_epoch(value, name="since")


def test_resolve_time() -> None:
    now = 1_700_000_000.0
    assert resolve_time("24h", now=now) == now - 86400
    assert resolve_time(timedelta(hours=1), now=now) == now - 3600
    assert resolve_time("2023-11-14T22:13:20Z", now=now) == now
    assert resolve_time(5, now=now) == 5.0  # a bare number is absolute
    with pytest.raises(ValueError, match="since"):  # a bare number in text is ambiguous
        resolve_time("5", now=now, name="since")
    with pytest.raises(ValueError, match="until"):
        resolve_time("garbage", now=now, name="until")


def test_to_datetime_is_utc() -> None:
    assert to_datetime(None) is None
    when = to_datetime(1_700_000_000.0)
    assert when == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert when is not None and when.utcoffset() == timedelta(0)


def test_epoch_to_series() -> None:
    series = epoch_to_series([1_700_000_000.123456, math.nan], name="at")
    assert str(series.dtype) == "datetime64[us, UTC]"
    assert series.name == "at"
    assert series.iloc[0] == pd.Timestamp("2023-11-14 22:13:20.123456", tz="UTC")
    assert series.isna().tolist() == [False, True]
    empty = epoch_to_series([])
    assert len(empty) == 0 and str(empty.dtype) == "datetime64[us, UTC]"


def test_parse_duration_accepts_exponents() -> None:
    assert qa.parse_duration("1e-05s") == 1e-05
    assert qa.parse_duration("1.5E3") == 1500.0
    assert qa.parse_duration("2e1min") == 1200.0


def test_epoch_to_series_leaves_its_input_alone_across_chunks() -> None:
    from qanalytics._time import _CHUNK

    values = np.linspace(-1e9, 2e9, 3 * _CHUNK + 5) + 0.1234565
    values[[0, _CHUNK, -1]] = np.nan
    before = values.copy()
    series = epoch_to_series(values, name="at")
    np.testing.assert_array_equal(values, before)
    expected = np.round(before * 1e6)
    ints = series.array.asi8
    finite = ~np.isnan(before)
    np.testing.assert_array_equal(ints[finite], expected[finite].astype("int64"))
    assert series.isna().to_numpy().tolist() == (~finite).tolist()
    assert series.dtype == pd.DatetimeTZDtype(unit="us", tz="UTC") and series.name == "at"


def test_epoch_to_series_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match="1-dimensional"):
        epoch_to_series(np.zeros((2, 2)))


@pytest.mark.parametrize("value", ["1M", " 3M ", "1.5M"])
def test_capital_m_is_refused_as_ambiguous(value: str) -> None:
    # pandas reads "M" as a month, others as a minute: neither guess is safe.
    with pytest.raises(ValueError, match="ambiguous"):
        parse_duration(value, name="keep")
    with pytest.raises(ValueError, match="ambiguous"):
        parse_freq(value)
    assert parse_duration(value.lower()) == 60 * float(value.strip()[:-1])
