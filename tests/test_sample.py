"""The committed sample database: the read side finds the incidents its README documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import qanalytics as qa

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.db"
UTC = "UTC"


@pytest.fixture(scope="module")
def sample() -> Iterator[qa.Store]:
    with qa.connect(SAMPLE, readonly=True, clock="latest") as db:
        yield db


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert(UTC)


def test_outages_find_the_crash_and_the_flapping(sample: qa.Store) -> None:
    out = qa.outages(sample)
    crash = out[out["worker_id"] == "worker-13"]
    assert len(crash) == 1
    row = crash.iloc[0]
    assert abs(row["start"] - _ts("2026-01-05T15:34:12.361Z")) < pd.Timedelta("1ms")
    assert bool(row["ongoing"]) and row["ended_by"] == "still silent"
    assert list(row["tasks_in_flight"]) == [10770]

    flaps = out[out["worker_id"] == "worker-14"].sort_values("start")
    expected = [
        ("2026-01-05T19:00:01.009Z", 3),
        ("2026-01-05T19:48:15.351Z", 6),
        ("2026-01-05T20:39:12.025Z", 4),
        ("2026-01-05T21:28:18.989Z", 8),
    ]
    assert len(flaps) == len(expected)
    for (_, got), (start, minutes) in zip(flaps.iterrows(), expected, strict=True):
        assert abs(got["start"] - _ts(start)) < pd.Timedelta("1ms")
        assert got["duration_s"] == pytest.approx(minutes * 60, abs=0.01)
        assert got["ended_by"] == "resumed"
    # Nobody else went silent: jitter never reaches three beat intervals.
    assert set(out["worker_id"].astype(str)) == {"worker-13", "worker-14"}


def test_success_rate_shows_the_incident_in_its_hours(sample: qa.Store) -> None:
    rates = qa.success_rate(sample, freq="1h", by="type", since=None)
    thumb = rates[rates["type"] == "thumbnail"].set_index("bucket")
    start, end = _ts("2026-01-06T14:00Z"), _ts("2026-01-06T16:00Z")
    inside = thumb[(thumb.index >= start) & (thumb.index < end + pd.Timedelta("1h"))]
    outside = thumb[(thumb.index < start) | (thumb.index >= end + pd.Timedelta("1h"))]
    # Every low hour of the thumbnail type falls in (or just after, for retries) the window.
    assert inside["rate"].min() < 0.8
    assert outside["rate"].min() > 0.95
    assert (inside["ci_high"] < outside["ci_low"].min()).any()
    # Other types are unaffected in the same hours.
    others = rates[(rates["type"] != "thumbnail") & rates["bucket"].between(start, end)]
    assert others["rate"].min() > 0.9


def test_workers_now_match_the_ground_truth(sample: qa.Store) -> None:
    fleet = qa.workers(sample, include_removed=True).set_index("worker_id")
    assert fleet.loc["worker-13", "state"] == "stale"
    assert fleet.loc["worker-02", "state"] == "removed"
    assert fleet.loc["worker-02", "removed_at"] == _ts("2026-01-06T05:00:00Z")
    added = fleet[fleet["registered_at"] >= _ts("2026-01-06T12:00Z")].index
    assert sorted(added) == [f"worker-{n}" for n in range(25, 31)]
    assert (fleet.drop(index=["worker-13", "worker-02"])["state"] == "active").all()
