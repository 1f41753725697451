"""Windows that start before, end after or miss the data: state carried into a window.

Each read is checked against a plain-Python recomputation from the raw beats (or against
a hand-worked answer), on small stores built on a fake clock and on ``data/sample.db``
read long after its last event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import liveness_reference as reference
import pandas as pd
import pytest
from click.testing import CliRunner

import qanalytics as qa
from qanalytics import capacity
from qanalytics.cli import main
from qanalytics.liveness import alive_intervals, outages, uptime
from qanalytics.maintenance import prune

T0 = 1_700_000_000.0  # the fake clock fixture starts here; a multiple of 500 s
END = T0 + 1000
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.db"
#: Long after the sample's last event (2026-01-07): every worker there is stale.
AFTER = "2026-03-01T00:00:00Z"


def _fleet(db: qa.Store, clock: qa.FakeClock) -> None:
    """Four workers beating every 10 s up to END, with silences:

    steady beats throughout; dead stops after T0+100; back is silent from T0+100 to
    T0+600; late registers at T0+700.
    """
    for name in ("steady", "dead", "back"):
        qa.register_worker(db, name)
    while clock() < END:
        clock.advance(10)
        t = clock() - T0
        if t == 700:
            qa.register_worker(db, "late")
        elif t > 700:
            qa.heartbeat(db, "late")
        qa.heartbeat(db, "steady")
        if t <= 100:
            qa.heartbeat(db, "dead")
        if t <= 100 or t >= 600:
            qa.heartbeat(db, "back")


def _beats(db: qa.Store) -> dict[str, list[float]]:
    rows = db.query(
        "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
        " ORDER BY w.worker_id, h.at"
    )
    out: dict[str, list[float]] = {}
    for wid, at in rows:
        out.setdefault(wid, []).append(float(at))
    return out


def _reference(
    beats: dict[str, list[float]], now: float, min_gap: float | None = None
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]]:
    """(outages, alive stretches) per worker from the whole history, no removals."""
    silent: dict[str, list[tuple[float, float]]] = {}
    alive: dict[str, list[tuple[float, float]]] = {}
    expected = reference.intervals(beats, now=now)
    for wid, times in beats.items():
        thr = min_gap if min_gap is not None else reference.LATE * expected[wid]
        silent[wid], alive[wid] = [], []
        run_start = times[0]
        for a, b in zip(times, [*times[1:], now], strict=True):
            if b - a > thr:
                silent[wid].append((a, b))
                alive[wid].append((run_start, a))
                run_start = b
        if run_start <= now and (not silent[wid] or silent[wid][-1][1] != now):
            alive[wid].append((run_start, now))
    return silent, alive


def _overlapping(
    spans: dict[str, list[tuple[float, float]]], lo: float, hi: float
) -> set[tuple[str, float, float]]:
    return {(w, s, e) for w, items in spans.items() for s, e in items if e >= lo and s <= hi}


def _seconds_in(spans: list[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in spans)


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, pd.Timestamp) else float(value)


def _rows(frame: pd.DataFrame) -> set[tuple[str, float, float]]:
    """(worker, start, end) of outages (UTC columns) or alive intervals (epoch seconds)."""
    return {
        (str(w), _seconds(s), _seconds(e))
        for w, s, e in zip(frame["worker_id"], frame["start"], frame["end"], strict=True)
    }


# -- outages ----------------------------------------------------------------------------------


def test_outage_started_before_the_window_is_reported_whole(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _fleet(db, clock)
    out = outages(db, since=T0 + 500).set_index("worker_id")
    assert sorted(out.index.astype(str)) == ["back", "dead"]
    dead = out.loc["dead"]
    assert dead["start"].timestamp() == T0 + 100  # the true start, before the window
    assert dead["end"].timestamp() == END
    assert bool(dead["ongoing"]) and dead["ended_by"] == "still silent"
    back = out.loc["back"]
    assert (back["start"].timestamp(), back["end"].timestamp()) == (T0 + 100, T0 + 600)
    assert back["ended_by"] == "resumed"
    # A window inside both silences still sees them, with their true ends.
    inside = outages(db, since=T0 + 200, until=T0 + 300)
    assert _rows(inside) == {("back", T0 + 100, T0 + 600), ("dead", T0 + 100, END)}


@pytest.mark.parametrize(
    ("lo", "hi"), [(T0 + 500, END), (T0 + 150, T0 + 400), (T0 - 500, T0 + 50), (T0 + 990, END)]
)
def test_windowed_outages_match_a_plain_loop(
    db: qa.Store, clock: qa.FakeClock, lo: float, hi: float
) -> None:
    _fleet(db, clock)
    silent, _alive = _reference(_beats(db), END)
    assert _rows(outages(db, since=lo, until=hi)) == _overlapping(silent, lo, hi)


def test_window_after_every_beat_reports_every_silent_worker(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _fleet(db, clock)
    now = END + 4000
    out = outages(db, since=END + 3000, now=now)
    last = {w: times[-1] for w, times in _beats(db).items()}
    assert _rows(out) == {(w, at, now) for w, at in last.items()}
    assert out["ongoing"].all()
    stale = qa.workers(db, now=now)
    assert set(stale.loc[stale["state"] == "stale", "worker_id"].astype(str)) == set(last)


def test_single_beat_worker_is_not_alive_for_ever(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "solo")  # the registration is its only beat
    # Within the fallback threshold it is alive; past it, silent from its one beat on.
    fresh = alive_intervals(db, now=T0 + 60)
    assert _rows(fresh) == {("solo", T0, T0 + 60)}
    assert outages(db, now=T0 + 60).empty
    out = outages(db, now=T0 + 3600)
    assert _rows(out) == {("solo", T0, T0 + 3600)}
    spans = alive_intervals(db, now=T0 + 3600)
    assert (spans["end"] - spans["start"]).sum() == pd.Timedelta(0)
    up = uptime(db, freq="400s", now=T0 + 3600)  # T0 is a multiple of 400 s
    assert len(up) == 9 and (up["alive_fraction"] == 0.0).all()


# -- alive time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lo", "now"), [(T0 + 500, END), (T0 - 1000, END), (END + 500, END + 2000)]
)
def test_alive_intervals_and_uptime_match_a_plain_loop(
    db: qa.Store, clock: qa.FakeClock, lo: float, now: float
) -> None:
    _fleet(db, clock)
    _silent, alive = _reference(_beats(db), now)
    spans = alive_intervals(db, since=lo, now=now)
    expected = {
        (w, max(s, lo), min(e, now))
        for w, items in alive.items()
        for s, e in items
        if e >= lo and s <= now
    }
    assert _rows(spans) == expected
    width = 100.0
    up = uptime(db, freq=width, since=lo, now=now)
    first = {w: times[0] for w, times in _beats(db).items()}
    for row in up.itertuples():
        b = row.bucket.timestamp()
        seen_lo, seen_hi = max(b, lo, first[row.worker_id]), min(b + width, now)
        covered = _seconds_in(alive[row.worker_id], seen_lo, seen_hi)
        assert row.alive_fraction == pytest.approx(covered / (seen_hi - seen_lo))
    # A row for every bucket from the worker's first beat (or the window start) to `now`.
    for w, at in first.items():
        start = max(at, lo)
        n = math.ceil(now / width) - math.floor(start / width)
        assert (up["worker_id"] == w).sum() == n


def test_window_after_the_last_beat_is_all_dead(db: qa.Store, clock: qa.FakeClock) -> None:
    _fleet(db, clock)
    now = END + 5000
    up = uptime(db, freq="500s", since=END + 4000, now=now)
    assert len(up) == 4 * 2 and (up["alive_fraction"] == 0.0).all()
    assert alive_intervals(db, since=END + 4000, now=now).empty
    util = qa.utilization(db, freq="500s", since=END + 4000, now=now)
    assert util.empty or (util["alive_s"] == 0.0).all()
    assert qa.heartbeat_gaps(db, since=END + 4000, now=now).empty


def test_no_alive_time_before_the_first_beat(db: qa.Store, clock: qa.FakeClock) -> None:
    _fleet(db, clock)
    late = alive_intervals(db, since=T0 - 1000)
    late = late[late["worker_id"] == "late"]
    assert late["start"].min().timestamp() == T0 + 700
    up = uptime(db, freq="100s", since=T0 - 1000)
    assert up.loc[up["worker_id"] == "late", "bucket"].min().timestamp() == T0 + 700
    assert qa.heartbeat_gaps(db, until=T0 - 1).empty


# -- capacity ---------------------------------------------------------------------------------


def test_fleet_counts_workers_alive_only_where_they_beat(db: qa.Store, clock: qa.FakeClock) -> None:
    _fleet(db, clock)
    lo, now = T0, END + 500
    _silent, alive = _reference(_beats(db), now)
    frame = capacity.fleet(db, freq="100s", since=lo, now=now)
    assert len(frame) == 15
    for row in frame.itertuples():
        b = row.bucket.timestamp()
        seen_lo, seen_hi = max(b, lo), min(b + 100, now)
        expected = sum(_seconds_in(items, seen_lo, seen_hi) for items in alive.values())
        assert row.workers_alive == pytest.approx(expected / (seen_hi - seen_lo))
    # Everyone stopped at END: nobody is alive in the buckets after it.
    after = frame["bucket"] >= pd.Timestamp(END + 100, unit="s", tz="UTC")
    assert after.sum() == 4 and (frame.loc[after, "workers_alive"] == 0).all()
    # A window after every beat (and with no task) observes nothing: no rows.
    assert capacity.fleet(db, freq="100s", since=END + 100, now=END + 1000).empty


def test_plan_of_an_empty_window_says_nothing_was_observed(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _fleet(db, clock)
    plan = capacity.plan(db, since=END + 3600, now=END + 7200)
    assert plan["note"].str.startswith("nothing observed in the window").all()
    assert not plan["stable"].any()
    assert plan["recommended_workers"].isna().all()
    assert (plan.loc[plan["arrivals"] == 0, "workers_alive"].fillna(0) == 0).all()
    # A window with heartbeats in it is observed, even without tasks.
    seen = capacity.plan(db, since=T0, now=END)
    assert not seen["note"].str.startswith("nothing observed").any()


# -- depth carried into a window --------------------------------------------------------------


def test_depth_timeline_carries_tasks_queued_before_the_window(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    qa.register_worker(db, "w")
    qa.enqueue(db, "email")
    qa.enqueue(db, "email")
    clock.advance(10)
    qa.claim(db, "w")
    depth = qa.depth_timeline(db, freq="100s", since=T0 + 500, now=T0 + 1000)
    assert len(depth) == 6  # buckets T0+500 to T0+1000, the last one at `until`
    assert (depth["queued"] == 1).all() and (depth["processing"] == 1).all()
    # No finished task in the window: no success-rate rows rather than invented ones.
    assert qa.success_rate(db, freq="100s", since=T0 + 500, now=T0 + 1000).empty


# -- a pruned store ---------------------------------------------------------------------------


def test_silence_from_before_the_retention_horizon_is_seen(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    qa.register_worker(db, "gone")
    qa.register_worker(db, "live")
    for _ in range(20):
        clock.advance(30)
        qa.heartbeat(db, "gone")
        qa.heartbeat(db, "live")
    last_gone = clock()
    for _ in range(200):
        clock.advance(30)
        qa.heartbeat(db, "live")
    prune(db, keep="30min")
    out = outages(db, since="10min")
    assert list(out["worker_id"].astype(str)) == ["gone"]
    assert out["start"].iloc[0].timestamp() == last_gone
    assert out["resolution"].iloc[0] == "summary" and bool(out["ongoing"].iloc[0])
    up = uptime(db, freq="10min", since="20min").set_index("worker_id")
    assert (up.loc["gone", "alive_fraction"] == 0.0).all()
    assert (up.loc["live", "alive_fraction"] == 1.0).all()


# -- the command line -------------------------------------------------------------------------


def test_cli_outages_lists_silences_that_started_earlier(
    store_target: str, clock: qa.FakeClock
) -> None:
    with qa.connect(store_target, clock=clock) as db:
        _fleet(db, clock)
    base = ["--db", store_target]
    args = ["outages", *base, "--now", str(END + 4000), "--since", "10min"]
    table = CliRunner().invoke(main, args, catch_exceptions=False)
    assert table.exit_code == 0, table.output
    assert "4 outage(s)" in table.stdout and "4 started before the window" in table.stdout
    records = json.loads(
        CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False).stdout
    )
    assert {r["worker_id"] for r in records} == {"steady", "dead", "back", "late"}
    empty = CliRunner().invoke(
        main, ["outages", *base, "--now", str(T0 + 50), "--since", "40s"], catch_exceptions=False
    )
    assert empty.stdout.startswith("No outages between ")


# -- data/sample.db read long after its last event --------------------------------------------


@pytest.fixture(scope="module")
def sample() -> Iterator[qa.Store]:
    with qa.connect(SAMPLE, readonly=True) as db:
        yield db


def test_sample_outages_report_every_stale_worker(sample: qa.Store) -> None:
    fleet = qa.workers(sample, now=AFTER)
    stale = fleet[fleet["state"] == "stale"]
    assert len(stale) == 29
    out = outages(sample, since="24h", now=AFTER)
    assert out["ongoing"].all()
    got = dict(zip(out["worker_id"].astype(str), out["start"], strict=True))
    want = dict(zip(stale["worker_id"].astype(str), stale["last_heartbeat_at"], strict=True))
    assert got.keys() == want.keys()
    for w, at in want.items():
        assert abs((got[w] - at).total_seconds()) < 1e-3


def test_sample_uptime_and_utilization_after_the_last_beat(sample: qa.Store) -> None:
    up = uptime(sample, since="3d", now=AFTER)
    assert len(up) and (up["alive_fraction"] == 0.0).all()
    assert up["worker_id"].nunique() == 29
    assert alive_intervals(sample, since="3d", now=AFTER).empty
    util = qa.utilization(sample, since="3d", now=AFTER)
    assert (util["alive_s"] == 0.0).all()


def test_sample_plan_after_the_last_event_observes_nothing(sample: qa.Store) -> None:
    plan = capacity.plan(sample, now=AFTER)
    assert (plan["workers_alive"] == 0.0).all()
    assert plan["note"].str.startswith("nothing observed in the window").all()
    assert plan["recommended_workers"].isna().all()


def test_sample_windowed_reads_match_the_whole_history(sample: qa.Store) -> None:
    # With a fixed threshold, a window only chooses what is reported.
    lo, hi = "2026-01-05T19:30:00Z", "2026-01-06T02:00:00Z"
    whole = outages(sample, min_gap="90s", now="latest")
    part = outages(sample, min_gap="90s", since=lo, until=hi, now="latest")
    lo_s, hi_s = pd.Timestamp(lo).timestamp(), pd.Timestamp(hi).timestamp()
    keep = (whole["end"] >= pd.Timestamp(lo)) & (whole["start"] <= pd.Timestamp(hi))
    assert len(part) == int(keep.sum()) > 0
    assert _rows(part) == _rows(whole[keep])
    spans = alive_intervals(sample, min_gap="90s", now="latest")
    clipped = {
        (str(w), max(s.timestamp(), lo_s), min(e.timestamp(), hi_s))
        for w, s, e in zip(spans["worker_id"], spans["start"], spans["end"], strict=True)
        if e.timestamp() >= lo_s and s.timestamp() <= hi_s
    }
    assert _rows(alive_intervals(sample, min_gap="90s", since=lo, until=hi, now="latest")) == (
        clipped
    )
