"""Tests for qanalytics.frames: workers, heartbeats, tasks and attempts."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qanalytics as qa
from qanalytics.frames import attempts, heartbeats, tasks, workers

T0 = 1_700_000_000.0  # the fake clock fixture starts here


def _build(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "a", {"gpu": True, "zone": "eu"})
    qa.register_worker(db, "b", {"zone": "us"})
    t1 = qa.enqueue(db, "email")
    t2 = qa.enqueue(db, "sms", max_attempts=2)
    clock.advance(10)
    qa.claim(db, "a")
    qa.heartbeat(db, "a", task_id=t1)
    qa.claim(db, "b")
    clock.advance(10)
    qa.complete(db, t1)
    qa.fail(db, t2, "boom", delay=5)
    clock.advance(10)
    qa.claim(db, "b")
    qa.heartbeat(db, "b", task_id=t2)
    qa.enqueue(db, "email")
    clock.advance(100)
    qa.remove_worker(db, "b")
    qa.register_worker(db, "c")
    clock.advance(10)
    qa.heartbeat(db, "c")
    clock.advance(20)


def test_empty_store(db: qa.Store) -> None:
    w = workers(db)
    assert list(w.columns) == [
        "worker_id",
        "state",
        "registered_at",
        "last_heartbeat_at",
        "removed_at",
        "since_heartbeat_s",
        "heartbeats",
        "current_task_id",
        "tasks_completed",
        "tasks_failed",
        "interval_s",
        "interval_source",
        "held_task_id",
        "held_task_status",
        "capabilities",
    ]
    assert str(w["current_task_id"].dtype) == "Int64"
    assert str(w["held_task_id"].dtype) == "Int64"
    assert w["interval_source"].dtype == "category" and w["held_task_status"].dtype == "category"
    assert str(w["registered_at"].dtype) == "datetime64[us, UTC]"
    h = heartbeats(db)
    assert list(h.columns) == ["worker_id", "at", "task_id", "resolution", "beats"]
    t = tasks(db)
    assert t["status"].dtype == "category" and t["id"].dtype == "int64"
    a = attempts(db)
    assert a["outcome"].dtype == "category" and str(a["claimed_at"].dtype).endswith("UTC]")


def test_workers_now(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    w = workers(db, include_removed=True).set_index("worker_id")
    assert w.loc["b", "state"] == "removed"
    assert w.loc["a", "state"] == "late"  # last beat at T0+10, now T0+160
    assert w.loc["c", "state"] == "active"
    assert w.loc["a", "tasks_completed"] == 1
    assert w.loc["b", "tasks_failed"] == 1
    assert w.loc["a", "cap_gpu"] is True and w.loc["b", "cap_zone"] == "us"
    assert w.loc["c", "cap_zone"] is None
    assert w.loc["a", "capabilities"] == {"gpu": True, "zone": "eu"}
    rows = db.query(
        "SELECT w.worker_id, count(*), max(h.at) FROM heartbeats h"
        " JOIN workers w USING (worker_key) GROUP BY w.worker_id"
    )
    for wid, n, last in rows:
        assert w.loc[wid, "heartbeats"] == n
        assert w.loc[wid, "last_heartbeat_at"].timestamp() == last
    assert "b" not in set(workers(db)["worker_id"])


def test_workers_as_of(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    past = workers(db, now=T0 + 35).set_index("worker_id")
    assert set(past.index) == {"a", "b"}  # c not yet registered, b not yet removed
    assert past.loc["b", "state"] == "active"
    assert past.loc["b", "last_heartbeat_at"].timestamp() == T0 + 30
    assert past.loc["b", "current_task_id"] == 2
    assert past.loc["b", "heartbeats"] == 2
    iso = workers(db, now=pd.Timestamp(T0 + 35, unit="s", tz="UTC").isoformat())
    pd.testing.assert_frame_equal(iso, workers(db, now=T0 + 35))
    with pytest.raises(ValueError, match="active_within"):
        workers(db, active_within="10min", stale_after="1min")


def test_heartbeats_windows(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    h = heartbeats(db)
    raw = db.query("SELECT at, task_id FROM heartbeats ORDER BY at")
    assert [x.timestamp() for x in h["at"]] == [r[0] for r in raw]
    assert h["task_id"].isna().sum() == sum(r[1] is None for r in raw)
    recent = heartbeats(db, since="30s")
    assert list(recent["worker_id"]) == ["c", "c"]
    iso = pd.Timestamp(T0 + 130, unit="s", tz="UTC").isoformat()
    pd.testing.assert_frame_equal(heartbeats(db, since=iso), recent)
    assert set(heartbeats(db, workers=["a"])["worker_id"]) == {"a"}
    assert heartbeats(db, now=T0 + 5)["at"].max().timestamp() == T0


def test_unknown_workers_select_nothing_on_every_backend(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    # No known worker left in the filter: an empty IN list, which PostgreSQL rejects.
    _build(db, clock)
    assert attempts(db, workers=["nobody"]).empty
    assert heartbeats(db, workers=["nobody"]).empty
    assert len(attempts(db, workers=["nobody", "a"])) == len(
        attempts(db)[attempts(db)["worker_id"] == "a"]
    )


def test_tasks_as_of_reconstructs_status(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    now = tasks(db).set_index("id")
    stored = dict(db.query("SELECT id, status FROM tasks"))
    assert now["status"].astype(str).to_dict() == stored
    assert now.loc[1, "wait_s"] == 10 and now.loc[1, "run_s"] == 10
    assert now.loc[2, "attempts"] == 2
    past = tasks(db, now=T0 + 15).set_index("id")
    assert past.loc[1, "status"] == "processing" and past.loc[2, "status"] == "processing"
    assert 3 not in past.index
    mid = tasks(db, now=T0 + 25).set_index("id")
    assert mid.loc[2, "status"] == "queued" and mid.loc[2, "error"] == "boom"
    assert pd.isna(mid.loc[2, "worker_id"])
    assert list(tasks(db, status="completed")["id"]) == [1]
    assert list(tasks(db, types="email")["id"]) == [1, 3]
    with pytest.raises(ValueError, match="status"):
        tasks(db, status="done")


def test_attempts(db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    a = attempts(db)
    raw = db.query("SELECT task_id, attempt, outcome FROM attempts ORDER BY claimed_at, task_id")
    assert [(r.task_id, r.attempt) for r in a.itertuples()] == [(r[0], r[1]) for r in raw]
    assert a["outcome"].isna().sum() == sum(r[2] is None for r in raw)
    past = attempts(db, now=T0 + 15)
    assert past["outcome"].isna().all() and past["run_s"].isna().all()
    assert list(attempts(db, workers="b", types="sms")["attempt"]) == [1, 2]


def test_open_since_keeps_the_tasks_still_in_the_system(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _build(db, clock)
    whole = tasks(db)
    for at in (T0, T0 + 15, T0 + 25, clock()):
        fin = whole["finished_at"]
        want = whole.loc[fin.isna() | (fin >= pd.Timestamp(at, unit="s", tz="UTC")), "id"]
        got = tasks(db, open_since=at)
        assert list(got["id"]) == list(want), at
        pd.testing.assert_frame_equal(got, whole[whole["id"].isin(want)].reset_index(drop=True))
        a = attempts(db, open_since=at)
        assert set(a["task_id"]) <= set(want) and len(a) == whole.loc[
            whole["id"].isin(want), "attempts"
        ].sum()
    assert list(tasks(db, open_since="1h")["id"]) == list(whole["id"])
    with pytest.raises(ValueError, match="open_since"):
        tasks(db, open_since="soon")


def test_file_store_matches_memory(db: qa.Store, file_db: qa.Store, clock: qa.FakeClock) -> None:
    _build(db, clock)
    clock.set(T0)
    _build(file_db, clock)
    for fn in (heartbeats, tasks, attempts):
        pd.testing.assert_frame_equal(fn(db), fn(file_db))
    pd.testing.assert_frame_equal(
        workers(db, include_removed=True), workers(file_db, include_removed=True)
    )


@settings(max_examples=30, deadline=None)
@given(
    beats=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 600)), max_size=30),
    at=st.integers(0, 1200),
)
def test_states_partition_registered_workers(beats: list[tuple[int, int]], at: int) -> None:
    clock = qa.FakeClock(T0)
    with qa.connect(":memory:", clock=clock) as db:
        for i in range(5):
            qa.register_worker(db, f"w{i}")
        for worker, step in sorted(beats, key=lambda b: b[1]):
            clock.set(T0 + step)
            qa.heartbeat(db, f"w{worker}")
        frame = workers(db, now=T0 + at)
        states = {s: set(frame.loc[frame["state"] == s, "worker_id"]) for s in STATES}
        assert set().union(*states.values()) == {f"w{i}" for i in range(5)}
        assert sum(len(v) for v in states.values()) == 5
        for row in frame.itertuples():
            expected = max(
                T0 + s
                for w, s in [(int(row.worker_id[1:]), 0), *beats]
                if f"w{w}" == row.worker_id and s <= at
            )
            assert row.last_heartbeat_at.timestamp() == expected


STATES = ("active", "late", "stale")


def test_worker_events_tell_the_registry_history(db: qa.Store, clock: qa.FakeClock) -> None:
    empty = qa.worker_events(db)
    assert list(empty.columns) == ["worker_id", "at", "event", "capabilities"]
    assert str(empty["at"].dtype) == "datetime64[us, UTC]"
    start = clock()
    qa.register_worker(db, "w1", {"gpu": True})
    clock.advance(10)
    qa.register_worker(db, "w1", {"gpu": False})  # an update while registered
    qa.register_worker(db, "w2")
    clock.advance(10)
    qa.remove_worker(db, "w1")
    clock.advance(10)
    qa.register_worker(db, "w1", {"gpu": True})  # revived
    frame = qa.worker_events(db)
    got = [
        (str(w), e, round(t.timestamp() - start), c)
        for w, t, e, c in frame[["worker_id", "at", "event", "capabilities"]].itertuples(
            index=False
        )
    ]
    assert got == [
        ("w1", "registered", 0, {"gpu": True}),
        ("w1", "updated", 10, {"gpu": False}),
        ("w2", "registered", 10, {}),
        ("w1", "removed", 20, None),
        ("w1", "registered", 30, {"gpu": True}),
    ]
    # As of an earlier moment, later events do not exist; the filters narrow the rows.
    assert len(qa.worker_events(db, now=start + 15)) == 3
    assert qa.worker_events(db, workers="w2")["event"].tolist() == ["registered"]
    assert len(qa.worker_events(db, since=start + 15)) == 2
    assert qa.worker_events(db, workers="nobody").empty
