"""Tests for qanalytics.liveness: gaps, outages, alive intervals and uptime."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import qanalytics as qa
from qanalytics.frames import heartbeats, workers
from qanalytics.liveness import alive_intervals, heartbeat_gaps, outages, uptime

T0 = 1_700_000_000.0  # the fake clock fixture starts here



def _utc(t: float) -> pd.Timestamp:
    return pd.Timestamp(t, unit="s", tz="UTC")

def _build(db: qa.Store, clock: qa.FakeClock) -> int:
    """Worker a beats every 10s with one 100s silence; b is removed; c goes silent."""
    qa.register_worker(db, "a")
    for _ in range(5):
        clock.advance(10)
        qa.heartbeat(db, "a")
    task = qa.enqueue(db, "email")
    qa.claim(db, "a")
    qa.heartbeat(db, "a", task_id=task)
    clock.advance(100)
    qa.heartbeat(db, "a")
    clock.advance(10)
    qa.heartbeat(db, "a")
    qa.register_worker(db, "b")
    for _ in range(3):
        clock.advance(10)
        qa.heartbeat(db, "b")
    clock.advance(60)
    qa.remove_worker(db, "b")
    qa.register_worker(db, "c")
    clock.advance(10)
    qa.heartbeat(db, "c")
    clock.advance(200)
    return task


def _raw_beats(db: qa.Store, now: float) -> dict[str, list[float]]:
    rows = db.query(
        "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
        " WHERE h.at <= ? ORDER BY w.worker_id, h.at",
        (now,),
    )
    out: dict[str, list[float]] = {}
    for wid, at in rows:
        out.setdefault(wid, []).append(at)
    return out


def test_empty_store_has_columns_and_dtypes(db: qa.Store) -> None:
    gaps = heartbeat_gaps(db)
    assert list(gaps.columns) == ["worker_id", "at", "gap_s", "resolution"]
    assert str(gaps["at"].dtype) == "datetime64[us, UTC]"
    out = outages(db)
    assert list(out.columns) == [
        "worker_id",
        "start",
        "end",
        "duration_s",
        "ongoing",
        "tasks_in_flight",
        "ended_by",
        "resolution",
    ]
    assert out["ongoing"].dtype == bool
    assert out["ended_by"].dtype == "category"
    up = uptime(db)
    assert list(up.columns) == ["worker_id", "bucket", "alive_fraction"]
    assert str(up["bucket"].dtype) == "datetime64[us, UTC]"
    spans = alive_intervals(db)
    assert list(spans.columns) == ["worker_id", "start", "end"]
    assert spans["worker_id"].dtype == "category"


def test_gaps_match_a_plain_loop(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    gaps = heartbeat_gaps(db)
    expected = []
    for wid, times in _raw_beats(db, clock()).items():
        prev = None
        for at in times:
            expected.append((wid, at, np.nan if prev is None else at - prev))
            prev = at
    assert len(gaps) == len(expected)
    for row, (wid, at, gap) in zip(gaps.itertuples(), expected, strict=True):
        assert row.worker_id == wid
        assert row.at.timestamp() == pytest.approx(at)
        assert (np.isnan(gap) and np.isnan(row.gap_s)) or row.gap_s == pytest.approx(gap)


def test_gaps_filter_by_worker_and_window(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    gaps = heartbeat_gaps(db, workers="a", since=T0 + 25, until=T0 + 150)
    assert set(gaps["worker_id"]) == {"a"}
    # The first beat in the window is measured from the one before it.
    assert gaps["gap_s"].iloc[0] == pytest.approx(10.0)
    assert gaps["at"].min().timestamp() >= T0 + 25
    assert heartbeat_gaps(db, workers="nobody").empty


def test_outages_resumed_removed_and_still_silent(db: qa.Store, clock: qa.FakeClock) -> None:
    task = _build(db, clock)
    out = outages(db)
    by = {(r.worker_id, r.ended_by): r for r in out.itertuples()}
    a = by[("a", "resumed")]
    assert a.start.timestamp() == T0 + 50
    assert a.end.timestamp() == T0 + 150
    assert a.duration_s == 100
    assert not a.ongoing
    assert a.tasks_in_flight == [task]
    b = by[("b", "removed")]
    assert b.start.timestamp() == T0 + 190
    assert b.end.timestamp() == T0 + 250
    # c registered at T0+250, beat at T0+260; silent for 200s > 3 x 10s.
    c = by[("c", "still silent")]
    assert c.ongoing and c.end.timestamp() == clock()
    # a's last beat at T0+160 is silent for 300s as of now: ongoing too.
    assert ("a", "still silent") in by
    assert len(out) == 4


def test_outages_as_of_and_min_gap(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    # As of T0+145, a's silence has not been ended by a beat yet and b does not exist.
    # a has only four gaps after its registration gap then, too few to learn its own
    # interval, so it is held to the 30 s default: late after 90 s, so silent since T0+50
    # it is not in an outage at T0+120 and is at T0+145.
    assert outages(db, now=T0 + 120).empty
    out = outages(db, now=T0 + 145)
    assert list(out["worker_id"]) == ["a"]
    assert out["ended_by"].iloc[0] == "still silent"
    assert out["end"].iloc[0].timestamp() == T0 + 145
    assert outages(db, min_gap="1h").empty
    with pytest.raises(ValueError, match="min_gap"):
        outages(db, min_gap=-1)


def test_alive_intervals_complement_outages(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    spans = alive_intervals(db)
    out = outages(db)
    for wid in ["a", "b", "c"]:
        s = spans[spans["worker_id"] == wid]
        o = out[out["worker_id"] == wid]
        alive = (s["end"] - s["start"]).sum().total_seconds()
        silent = float(o["duration_s"].sum())
        first = _raw_beats(db, clock())[wid][0]
        end = T0 + 250 if wid == "b" else clock()
        assert alive + silent == pytest.approx(end - first)
    a = spans[spans["worker_id"] == "a"]
    assert list(zip(a["start"], a["end"], strict=True)) == [
        (_utc(T0), _utc(T0 + 50)), (_utc(T0 + 150), _utc(T0 + 160))
    ]
    assert str(spans["start"].dtype) == str(out["start"].dtype)


def test_alive_intervals_window_as_duration_and_iso(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    iso = pd.Timestamp(T0 + 30, unit="s", tz="UTC").isoformat()
    by_iso = alive_intervals(db, since=iso, until=T0 + 155)
    assert by_iso["start"].min() >= _utc(T0 + 30) and by_iso["end"].max() <= _utc(T0 + 155)
    back = clock() - (T0 + 30)
    by_duration = alive_intervals(db, since=f"{back}s", until=T0 + 155)
    pd.testing.assert_frame_equal(by_iso, by_duration)


def test_revived_worker_starts_a_new_life(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w")
    clock.advance(10)
    qa.heartbeat(db, "w")
    qa.remove_worker(db, "w")
    clock.advance(1000)
    qa.register_worker(db, "w")
    clock.advance(10)
    qa.heartbeat(db, "w")
    gaps = heartbeat_gaps(db)
    assert gaps["gap_s"].isna().sum() == 2
    assert outages(db).empty
    spans = alive_intervals(db)
    assert len(spans) == 2


def test_uptime_matches_interval_overlap(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    spans = alive_intervals(db)
    for column in ("start", "end"):  # epoch seconds for the arithmetic below
        spans[column] = spans[column].map(pd.Timestamp.timestamp)
    up = uptime(db, freq="1min", since=T0, until=clock())
    assert up["alive_fraction"].between(0, 1).all()
    beats = heartbeats(db)
    first = beats.groupby("worker_id", observed=True)["at"].min()
    fleet = workers(db, include_removed=True).set_index("worker_id")
    for row in up.itertuples():
        lo = row.bucket.timestamp()
        hi = lo + 60
        w = spans[spans["worker_id"] == row.worker_id]
        covered = sum(
            max(0.0, min(e, hi) - max(s, lo)) for s, e in zip(w["start"], w["end"], strict=True)
        )
        # The denominator is the registered part of the bucket: first beat to removal.
        life_lo = first[row.worker_id].timestamp()
        removed = fleet.loc[row.worker_id, "removed_at"]
        life_hi = removed.timestamp() if fleet.loc[row.worker_id, "state"] == "removed" else clock()
        observed = min(hi, clock(), life_hi) - max(lo, T0, life_lo)
        assert row.alive_fraction == pytest.approx(covered / observed)
    # c was registered mid-window: no rows before its first beat's bucket.
    c = up[up["worker_id"] == "c"]
    assert c["bucket"].min().timestamp() == (T0 + 250) // 60 * 60
    with pytest.raises(ValueError, match="freq"):
        uptime(db, freq="0s")


def test_single_worker_uptime_is_full(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "solo")
    for _ in range(12):
        clock.advance(30)
        qa.heartbeat(db, "solo")
    up = uptime(db, freq="2min")
    assert (up["alive_fraction"] == 1.0).all()


def test_file_store_matches_memory(db: qa.Store, file_db: qa.Store, clock: qa.FakeClock) -> None:
    start = clock()
    _build(db, clock)
    clock.set(start)
    _build(file_db, clock)
    for fn in (heartbeat_gaps, outages, alive_intervals, uptime):
        pd.testing.assert_frame_equal(fn(db), fn(file_db))
