"""Summary tiers: liveness read from heartbeat_days and heartbeat_silences.

The reference for every answer is the same store read from its raw beats alone, before
anything was summarized: with a fixed threshold of a minute or more, the tiers keep
every silence an outage can be made of, so outages, alive intervals and uptime must be
identical (only ``resolution`` says where each outage came from).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import T0

import qanalytics as qa
from qanalytics import maintenance as mt
from qanalytics.cli import main
from qanalytics.errors import ReadOnlyError, UnsupportedError
from qanalytics.upkeep import tiers

WORKERS = ("w1", "w2", "w3", "w4")
DAY = 86400.0


def _fleet(db: qa.Store, clock: qa.FakeClock, seed: int, days: float = 1.2) -> float:
    """Four workers beating every ~30 s for `days`, with silences of every length
    (seconds to hours), a removal with a revival, a worker that dies for good, and
    tasks held across silences. Returns the end of the history."""
    rng = random.Random(seed)
    events: list[tuple[float, str, str]] = []
    end = T0 + days * DAY
    removal = T0 + 0.45 * days * DAY
    for i, wid in enumerate(WORKERS):
        t = T0 + i
        stop = end - (0.3 * DAY if wid == "w4" else 0.0)  # w4 dies for good
        while t < stop:
            # w2 falls silent ten minutes before its removal, and is back 30 min after.
            if not (wid == "w2" and removal - 600 <= t < removal + 1800):
                events.append((t, "beat", wid))
            gap = rng.gauss(30, 2)
            r = rng.random()
            if r < 0.02:
                gap = rng.uniform(40, 900)  # silences of a minute or more
            elif r < 0.023:
                gap = rng.uniform(3600, 4 * 3600)  # hours, across hour and day edges
            t += max(1.0, gap)
    events.append((removal, "remove", "w2"))
    events.append((removal + 1800, "register", "w2"))
    events.sort()
    for wid in WORKERS:
        qa.register_worker(db, wid)
    held: dict[str, int | None] = dict.fromkeys(WORKERS)
    removed: set[str] = set()
    for at, kind, wid in events:
        if at > clock():
            clock.advance(at - clock())
        if kind == "remove":
            qa.remove_worker(db, wid)
            removed.add(wid)
        elif kind == "register":
            qa.register_worker(db, wid)
            removed.discard(wid)
        elif wid not in removed:
            if held[wid] is None and rng.random() < 0.05:
                qa.enqueue(db, "job")
                got = qa.claim(db, wid, lease="1d")
                held[wid] = None if got is None else got.id
            elif held[wid] is not None and rng.random() < 0.1:
                qa.complete(db, held[wid])
                held[wid] = None
            qa.heartbeat(db, wid, task_id=held[wid])
    clock.advance(end + 60 - clock())
    return clock()


def _answers(db: qa.Store, end: float, min_gap: Any) -> dict[str, pd.DataFrame]:
    span = end - T0
    return {
        "outages": qa.outages(db, min_gap=min_gap),
        "outages_window": qa.outages(db, since=T0 + span * 0.4, until=T0 + span * 0.6,
                                     min_gap=min_gap),
        "outages_recent": qa.outages(db, since=end - 3 * 3600, min_gap=min_gap),
        "outages_past": qa.outages(db, now=T0 + span * 0.3, min_gap=min_gap),
        "alive": qa.alive_intervals(db, min_gap=min_gap),
        "alive_window": qa.alive_intervals(db, since=T0 + span * 0.5, min_gap=min_gap),
        "uptime": qa.uptime(db, freq="6h", min_gap=min_gap),
        "uptime_window": qa.uptime(db, freq="1h", since=end - DAY, min_gap=min_gap),
    }


def _same(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for name, frame in expected.items():
        left = got[name].drop(columns=["resolution"], errors="ignore")
        right = frame.drop(columns=["resolution"], errors="ignore")
        pd.testing.assert_frame_equal(left, right, obj=name)


@pytest.mark.parametrize("min_gap", [60, "5min"])
@pytest.mark.parametrize("seed", [1, 2])
def test_tiers_answer_as_the_raw_beats(
    db: qa.Store, clock: qa.FakeClock, seed: int, min_gap: Any
) -> None:
    end = _fleet(db, clock, seed)
    expected = _answers(db, end, min_gap)
    assert len(expected["outages"]) > 20
    assert (expected["outages"]["ended_by"] == "removed").any()
    assert expected["outages"]["tasks_in_flight"].map(len).sum() > 0
    # Marks inside an hour, at a day edge and at the end: each read mixes tiers and raw.
    for mark in (T0 + 0.37 * DAY, T0 + 2 * DAY - T0 % DAY, end - 7200.5, end):
        result = tiers.summarize_heartbeats(db, until=mark)
        assert result.until == mark
        got = _answers(db, end, min_gap)
        _same(got, expected)
        resolution = got["outages"]["resolution"].astype(str)
        starts = got["outages"]["start"].map(pd.Timestamp.timestamp)
        assert (resolution[starts < mark] == "summary").all()
        assert (resolution[starts >= mark] == "raw").all()
    assert set(got["outages"]["resolution"].astype(str)) == {"summary"}


def test_steady_fleet_keeps_its_default_thresholds(db: qa.Store, clock: qa.FakeClock) -> None:
    # Without min_gap, thresholds come from the days' usual intervals; for steady beats
    # they are those of the raw gaps, and the answers do not change.
    end = _fleet(db, clock, 3)
    expected = _answers(db, end, None)
    tiers.summarize_heartbeats(db, until=end - 3600)
    _same(_answers(db, end, None), expected)


def test_tiers_read_in_groups_of_workers(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qanalytics.read.liveness as liveness

    end = _fleet(db, clock, 4, days=1.5)
    tiers.summarize_heartbeats(db, until=end - 5000)
    whole = _answers(db, end, 90)
    monkeypatch.setattr(liveness, "GROUP_BEATS", 50)
    assert len(liveness._key_groups(db, end) or []) > 2
    _same(_answers(db, end, 90), whole)


def test_prune_summarizes_before_it_deletes(db: qa.Store, clock: qa.FakeClock) -> None:
    end = _fleet(db, clock, 5, days=1.5)
    expected = _answers(db, end, 120)
    result = mt.prune(db, keep="6h")
    assert result.heartbeats_rolled_up > 0
    mark = db.query("SELECT value FROM meta WHERE key = 'heartbeats_summarized_until'")
    assert float(mark[0][0]) == result.cutoff
    # Questions about the past before the horizon fall back to the minutes.
    expected.pop("outages_past")
    got = _answers(db, end, 120)
    got.pop("outages_past")
    _same(got, expected)
    beats = db.query("SELECT sum(beats) FROM heartbeat_days")[0][0]
    rolled = db.query("SELECT sum(beats) FROM heartbeat_rollups")[0][0]
    assert beats == rolled


def test_a_store_pruned_before_it_had_tiers_is_summarized_from_its_minutes(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    end = _fleet(db, clock, 6, days=1.5)
    expected = _answers(db, end, 180)
    mt.prune(db, keep="8h")
    # As a store pruned by an older version: minutes, a horizon, no tiers.
    with db.transaction() as conn:
        conn.execute("DELETE FROM heartbeat_days")
        conn.execute("DELETE FROM heartbeat_silences")
        conn.execute("DELETE FROM meta WHERE key = 'heartbeats_summarized_until'")
    from_minutes = _answers(db, end, 180)
    result = mt.summarize(db, lag="2h")
    assert result.until == end - 7200 and result.beats > 0
    got = _answers(db, end, 180)
    for answers in (from_minutes, got):
        answers.pop("outages_past")
    expected.pop("outages_past")
    # Silences of three minutes and more span minutes: the minutes see them all.
    _same(from_minutes, expected)
    _same(got, expected)
    minutes = db.query("SELECT sum(beats) FROM heartbeat_rollups")[0][0]
    days = db.query("SELECT sum(beats) FROM heartbeat_days WHERE day * 86400 < ?", (end,))[0][0]
    raw = db.query("SELECT count(*) FROM heartbeats WHERE at < ?", (end - 7200,))[0][0]
    assert days == minutes + raw


def test_summarize_is_crash_safe_and_idempotent(clock: qa.FakeClock) -> None:
    tables = ("heartbeat_days", "heartbeat_silences")

    def dump(db: qa.Store) -> dict[str, list[Any]]:
        return {t: sorted(db.query(f"SELECT * FROM {t}")) for t in tables}

    with qa.connect(":memory:", clock=clock) as one:
        end = _fleet(one, clock, 7, days=1.0)
        tiers.summarize_heartbeats(one, until=end)
        whole = dump(one)
    clock2 = qa.FakeClock(T0)
    with qa.connect(":memory:", clock=clock2) as two:
        _fleet(two, clock2, 7, days=1.0)

        class Stop(Exception):
            pass

        def stop(mark: float) -> None:
            if mark >= T0 + 5 * 3600:
                raise Stop

        with pytest.raises(Stop):
            tiers.summarize_heartbeats(two, until=end, on_batch=stop)
        assert dump(two) != whole
        tiers.summarize_heartbeats(two, until=end)
        assert dump(two) == whole
        again = tiers.summarize_heartbeats(two, until=end)
        assert again.beats == 0 and again.transactions == 0
        earlier = tiers.summarize_heartbeats(two, until=end - DAY)
        assert earlier.until == end and dump(two) == whole


def test_silences_kept_are_the_long_gaps(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "a")
    # Beats every 10 s; gaps of 15 s (under 2x), 25 s (over 2x) and 70 s (over a minute).
    for step in [10] * 20 + [15] + [10] * 5 + [25] + [10] * 5 + [70] + [10] * 3:
        clock.advance(step)
        qa.heartbeat(db, "a")
    tiers.summarize_heartbeats(db, until=clock() + 1)
    gaps = [round(e - s) for s, e in db.query("SELECT start_at, end_at FROM heartbeat_silences")]
    assert gaps == [25, 70]
    ((beats, median),) = db.query("SELECT beats, median_gap_s FROM heartbeat_days")
    assert beats == 37 and median == 10.0  # the registration beat and 36 more


def test_summarize_refuses_what_it_cannot_do(tmp_path: Any, clock: qa.FakeClock) -> None:
    path = tmp_path / "s.db"
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "a")
        with pytest.raises(ValueError, match="lag"):
            mt.summarize(db, lag="-1h")
        with pytest.raises(TypeError, match="progress"):
            mt.summarize(db, progress="yes")  # type: ignore[arg-type]
    with qa.connect(path, readonly=True) as ro, pytest.raises(ReadOnlyError):
        mt.summarize(ro)
    with qa.connect(path, clock=clock) as db:
        db.conn.execute("PRAGMA user_version = 4")
        db.__dict__.pop("schema_version", None)
        if db.schema_version == 4:
            with pytest.raises(UnsupportedError, match="schema version 4"):
                mt.summarize(db)


def test_cli_summarize(tmp_path: Any, clock: qa.FakeClock) -> None:
    path = tmp_path / "s.db"
    with qa.connect(path, clock=clock) as db:
        end = _fleet(db, clock, 8, days=0.5)
    runner = CliRunner()
    now = str(end)
    out = runner.invoke(main, ["summarize", "--db", str(path), "--now", now, "--lag", "1h"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("Summarized ")
    again = runner.invoke(
        main, ["summarize", "--db", str(path), "--now", now, "--format", "json"]
    )
    assert again.exit_code == 0, again.output
    assert '"beats": 0' in again.output
    with qa.connect(path, readonly=True) as db:
        mark = db.query("SELECT value FROM meta WHERE key = 'heartbeats_summarized_until'")
        assert float(mark[0][0]) == end - 3600
    stats = runner.invoke(main, ["stats", "--db", str(path), "--format", "json"])
    tiers_stats = json.loads(stats.output)["tiers"]
    assert pd.Timestamp(tiers_stats["heartbeats_summarized_until"]).timestamp() == end - 3600
    assert tiers_stats["tasks_summarized_until"] is not None


def test_check_finds_tiers_that_readers_would_misread(db: qa.Store, clock: qa.FakeClock) -> None:
    end = _fleet(db, clock, 9, days=0.5)
    mt.prune(db, keep="3h")
    assert mt.integrity_check(db) == []
    with db.transaction() as conn:
        # Raw beats deleted past the mark; a day row and a silence after it.
        conn.execute(
            "UPDATE meta SET value = value - 3600 WHERE key = 'heartbeats_summarized_until'"
        )
    problems = mt.integrity_check(db)
    assert any("raw beats were deleted" in p for p in problems)
    assert any(p.startswith("heartbeat_days: ") and "after the mark" in p for p in problems)
    assert any(p.startswith("heartbeat_silences: ") for p in problems), problems
    assert end > 0


@pytest.mark.parametrize("seed", [10, 11])
def test_tasks_held_by_probes_equal_the_range_join(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    import qanalytics.read.liveness as liveness

    end = _fleet(db, clock, seed, days=0.6)
    # Edges: claimed exactly at an outage's start, finished exactly at it.
    qa.register_worker(db, "edge")
    first = qa.enqueue(db, "job")
    assert qa.claim(db, "edge", lease="1d") is not None
    clock.advance(600)  # w/o beats: an outage starting at the claim's moment
    qa.heartbeat(db, "edge")
    qa.complete(db, first)
    clock.advance(end + 7200 - clock())
    longest = db.query("SELECT max(finished_at - claimed_at) FROM attempts")[0][0]
    assert longest > 0
    monkeypatch.setattr(liveness, "_probe_span", lambda *a: None)
    joined = qa.outages(db, min_gap=90)
    monkeypatch.setattr(liveness, "_probe_span", lambda *a: float(longest))
    probed = qa.outages(db, min_gap=90)
    pd.testing.assert_frame_equal(probed, joined)
    held = joined["tasks_in_flight"].map(len)
    assert held.sum() > 5 and (held == 0).any()
    edge = joined[joined["worker_id"] == "edge"]
    assert [list(t) for t in edge["tasks_in_flight"]][:1] == [[first]]


def test_busy_hours_are_summarized_in_shorter_batches(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = _fleet(db, clock, 12, days=0.4)
    expected = _answers(db, end, 60)
    monkeypatch.setattr(tiers, "BATCH_BEATS", 100)  # an hour holds ~480 beats
    result = tiers.summarize_heartbeats(db, until=end - 1000)
    hours = (end - 1000 - T0) / 3600
    assert result.transactions > 1.5 * hours  # an hour a batch would take ten
    _same(_answers(db, end, 60), expected)
    beats = db.query("SELECT sum(beats) FROM heartbeat_days")[0][0]
    assert beats == db.query("SELECT count(*) FROM heartbeats WHERE at < ?", (end - 1000,))[0][0]


def test_check_finds_counters_that_disagree_with_the_rows(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _fleet(db, clock, 13, days=0.2)
    mt.prune(db, keep="1h", finished_keep="2h")
    assert mt.integrity_check(db) == []  # prune keeps the counters with the rows
    with db.transaction() as conn:
        conn.execute("UPDATE workers SET heartbeats = heartbeats + 2 WHERE worker_id = 'w3'")
    problems = mt.integrity_check(db)
    assert len(problems) == 1 and problems[0].startswith("worker 'w3': counters say ")
