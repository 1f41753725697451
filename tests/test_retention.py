"""The read side across the retention boundary: the same answers before and after prune()."""

from __future__ import annotations

import pandas as pd
import pytest

import qanalytics as qa
from qanalytics import maintenance as mt
from qanalytics.frames import heartbeats, workers
from qanalytics.liveness import alive_intervals, heartbeat_gaps, outages, uptime

T0 = 1_700_000_000.0  # 20 s past a whole minute
STEP = 10.0
STEPS = 720  # two hours of beats every 10 s


def _history(db: qa.Store, clock: qa.FakeClock) -> None:
    """Three workers over two hours, pruned later to keep the last hour raw.

    w1 beats steadily while holding a task; w2 has a 10-minute outage in the first hour
    and a 5-minute one in the second; w3 flaps (2 minutes on, 3 off) throughout; w4 is
    removed and revived in the first hour.
    """
    for name in ("w1", "w2", "w3", "w4"):
        qa.register_worker(db, name)
    task = qa.enqueue(db, "email")
    claimed = qa.claim(db, "w1", lease="1h")
    assert claimed is not None and claimed.id == task
    for step in range(1, STEPS + 1):
        clock.advance(STEP)
        t = step * STEP
        assert qa.heartbeat(db, "w1", task_id=task)
        if not (1800 <= t < 2400 or 6000 <= t < 6300):
            assert qa.heartbeat(db, "w2")
        if (t // 60) % 5 < 2:
            assert qa.heartbeat(db, "w3")
        if t == 1500:
            assert qa.remove_worker(db, "w4")
        elif t == 1800:
            qa.register_worker(db, "w4")
        elif not 1500 < t < 1800:
            assert qa.heartbeat(db, "w4")


@pytest.fixture
def pruned(db: qa.Store, clock: qa.FakeClock) -> dict[str, object]:
    """Frames computed on the full history, then the store pruned to its last hour."""
    _history(db, clock)
    before = {
        "heartbeats": heartbeats(db),
        "workers": workers(db),
        "outages": outages(db),
        "uptime": uptime(db, freq="15min"),
        "alive": alive_intervals(db),
        "past_workers": workers(db, now=T0 + 2979),
        "window_outages": outages(db, since=T0 + 2100, until=T0 + 3000),
    }
    result = mt.prune(db, keep="1h")
    assert result.heartbeats_rolled_up > 0
    return before


def _long(frame: pd.DataFrame) -> pd.DataFrame:
    long = frame[frame["duration_s"] > 120]
    return long.sort_values(["worker_id", "start"]).reset_index(drop=True)


def test_heartbeat_counts_survive_prune(db: qa.Store, pruned: dict[str, pd.DataFrame]) -> None:
    before = pruned["heartbeats"]
    after = heartbeats(db)
    per_before = before.groupby("worker_id", observed=True)["beats"].sum()
    per_after = after.groupby("worker_id", observed=True)["beats"].sum()
    pd.testing.assert_series_equal(per_before, per_after)
    assert set(before["resolution"]) == {"raw"}
    assert set(after["resolution"]) == {"raw", "minute"}
    assert str(after["beats"].dtype) == "Int64" and after["resolution"].dtype == "category"
    assert after["at"].is_monotonic_increasing
    horizon = mt.raw_history_starts_at(db)
    assert horizon is not None
    assert after.attrs["raw_history_starts_at"] == horizon
    assert "raw_history_starts_at" not in before.attrs
    minute_rows = after[after["resolution"] == "minute"]
    assert (minute_rows["at"] < horizon).all()
    assert (after.loc[after["resolution"] == "raw", "at"] >= horizon).all()
    # The last beat of each w1 minute carried the task it held.
    w1 = minute_rows[minute_rows["worker_id"] == "w1"]
    assert w1["task_id"].notna().all() and (w1["beats"] == 6).sum() > 50


def test_heartbeats_window_after_horizon_reads_raw_only(db: qa.Store, clock: qa.FakeClock) -> None:
    _history(db, clock)
    mt.prune(db, keep="1h")
    recent = heartbeats(db, since="30min")
    assert set(recent["resolution"]) == {"raw"}
    assert (recent["beats"] == 1).all()
    assert "raw_history_starts_at" in recent.attrs
    early = heartbeats(db, since=T0, until=T0 + 1200, workers="w2")
    assert set(early["resolution"]) == {"minute"}
    # Beats at T0, T0 + 10 s, ...: the minute holding `until` ends after it, so it is
    # left out whole, and the window holds the beats up to T0 + 1170 s.
    assert early["beats"].sum() == 118
    assert early["at"].max() == pd.Timestamp(T0 + 1170, unit="s", tz="UTC")


def test_workers_unchanged_by_prune(db: qa.Store, pruned: dict[str, pd.DataFrame]) -> None:
    after = workers(db)
    pd.testing.assert_frame_equal(pruned["workers"], after)
    assert "raw_history_starts_at" in after.attrs
    # As of a moment inside the pruned history, the last beat comes from the rollups.
    # (T0 + 2979 s is just before a minute starts, so every minute before it is whole.)
    pd.testing.assert_frame_equal(pruned["past_workers"], workers(db, now=T0 + 2979))
    # Inside a minute the count stops at the last whole minute, the last beat does not.
    mid = workers(db, now=T0 + 2999).set_index("worker_id")
    assert mid.loc["w1", "last_heartbeat_at"] == pd.Timestamp(T0 + 2980, unit="s", tz="UTC")


def test_outages_found_on_both_sides(db: qa.Store, pruned: dict[str, pd.DataFrame]) -> None:
    before, after = _long(pruned["outages"]), _long(outages(db))
    assert len(before) > 10
    assert list(before["worker_id"]) == list(after["worker_id"])
    for column in ("start", "end"):
        drift = (before[column] - after[column]).abs()
        assert (drift <= pd.Timedelta(minutes=1)).all()
    horizon = mt.raw_history_starts_at(db)
    # Before the horizon, outages come from the summary tiers prune filled first.
    assert set(after["resolution"]) == {"raw", "summary"}
    assert (after.loc[after["resolution"] == "summary", "start"] < horizon).all()
    w2 = after[after["worker_id"] == "w2"]
    assert list(w2["duration_s"]) == [610.0, 310.0]
    assert w2["resolution"].tolist() == ["summary", "raw"]
    assert after["tasks_in_flight"][after["worker_id"] == "w1"].empty
    assert "raw_history_starts_at" in after.attrs


def test_outages_in_a_window_before_the_horizon(
    db: qa.Store, pruned: dict[str, pd.DataFrame]
) -> None:
    # The window starts inside w2's first outage: its start is found in an earlier minute.
    before = _long(pruned["window_outages"])
    after = _long(outages(db, since=T0 + 2100, until=T0 + 3000))
    pd.testing.assert_frame_equal(
        before[["worker_id", "start", "end"]], after[["worker_id", "start", "end"]]
    )
    assert (after["resolution"] == "summary").all()


def test_uptime_close_to_unpruned(db: qa.Store, pruned: dict[str, pd.DataFrame]) -> None:
    before = pruned["uptime"]
    after = uptime(db, freq="15min")
    assert list(before[["worker_id", "bucket"]].itertuples(index=False)) == list(
        after[["worker_id", "bucket"]].itertuples(index=False)
    )
    diff = (before["alive_fraction"] - after["alive_fraction"]).abs()
    assert diff.max() <= 0.02
    assert after["alive_fraction"].mean() > 0.5  # the pruned fleet is not dead
    spans_before, spans_after = pruned["alive"], alive_intervals(db)
    total_before = (spans_before["end"] - spans_before["start"]).sum()
    total_after = (spans_after["end"] - spans_after["start"]).sum()
    assert total_after == pytest.approx(total_before, rel=0.01)


def test_gaps_mark_minute_rows(db: qa.Store, clock: qa.FakeClock) -> None:
    _history(db, clock)
    unpruned = heartbeat_gaps(db, workers="w2")
    mt.prune(db, keep="1h")
    horizon = mt.raw_history_starts_at(db)
    gaps = heartbeat_gaps(db, workers="w2")
    assert gaps["resolution"].dtype == "category"
    minute = gaps[gaps["resolution"] == "minute"]
    raw = gaps[gaps["resolution"] == "raw"].reset_index(drop=True)
    # One row per minute with beats: 60 minutes before the horizon, 9 of them silent.
    assert len(minute) == 51
    assert (minute["at"] < horizon).all()
    # After the horizon nothing changed, the first gap included.
    recent = unpruned[unpruned["at"] >= horizon].reset_index(drop=True)
    pd.testing.assert_frame_equal(recent, raw)
    # Between consecutive minutes of steady beats the gap is the beat interval; the
    # outage shows as one long gap.
    assert minute["gap_s"].max() == 610.0
    assert (minute["gap_s"].dropna().drop(minute["gap_s"].idxmax()) == STEP).all()
    assert gaps["at"].is_monotonic_increasing


def test_minute_only_history_uses_in_minute_interval(db: qa.Store, clock: qa.FakeClock) -> None:
    # Everything pruned: no raw gaps, so thresholds come from the days' usual intervals.
    _history(db, clock)
    clock.advance("2h")
    qa.heartbeat(db, "w1")
    mt.prune(db, keep="1h")
    w2 = outages(db, until=T0 + STEPS * STEP)
    w2 = w2[(w2["worker_id"] == "w2") & (w2["ended_by"] == "resumed")]
    assert list(w2["duration_s"]) == [610.0, 310.0]
    assert (w2["resolution"] == "summary").all()


def test_unpruned_and_empty_stores_unchanged(db: qa.Store, clock: qa.FakeClock) -> None:
    frame = heartbeats(db)
    assert list(frame.columns) == ["worker_id", "at", "task_id", "resolution", "beats"]
    assert [str(t) for t in frame.dtypes] == [
        "category",
        "datetime64[us, UTC]",
        "Int64",
        "category",
        "Int64",
    ]
    assert list(frame["resolution"].cat.categories) == ["raw", "minute"]
    assert frame.attrs == {}
    assert list(heartbeat_gaps(db).columns) == ["worker_id", "at", "gap_s", "resolution"]
    assert outages(db)["resolution"].dtype == "category"
    qa.register_worker(db, "w1")
    clock.advance(10)
    qa.heartbeat(db, "w1", task_id=None)
    frame = heartbeats(db)
    assert frame["beats"].tolist() == [1, 1]
    assert frame["resolution"].tolist() == ["raw", "raw"]
    assert frame.attrs == {} and outages(db).attrs == {} and workers(db).attrs == {}
    # A prune that rolls nothing up still sets the horizon, and the columns stay the same.
    mt.prune(db, keep="7d")
    again = heartbeats(db)
    assert [str(t) for t in again.dtypes] == [str(t) for t in frame.dtypes]
    assert again["resolution"].tolist() == ["raw", "raw"]
    assert "raw_history_starts_at" in again.attrs
