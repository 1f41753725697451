"""Reads that must not grow with the history: workers() from counters, checked against
plain recounts of the raw history on small hand-built stores."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import T0

import qanalytics as qa
from qanalytics.maintenance import prune
from qanalytics.store.schema import APPLICATION_ID, COUNTERS_VERSION, MIGRATIONS

WORKERS = ("w1", "w2", "w3")


def _random_history(db: qa.Store, clock: qa.FakeClock, seed: int, steps: int = 160) -> None:
    """Registrations, beats (with and without tasks), claims, completions, failures,
    cancellations, orphans, removals and revivals, in a seeded random order."""
    rng = random.Random(seed)
    for wid in WORKERS:
        qa.register_worker(db, wid, {"n": wid})
    held: dict[str, list[int]] = {wid: [] for wid in WORKERS}
    removed: set[str] = set()
    for _ in range(steps):
        clock.advance(rng.choice([1, 5, 20, 45]))
        wid = rng.choice(WORKERS)
        op = rng.random()
        if wid in removed:
            if op < 0.3:
                qa.register_worker(db, wid, {"n": wid, "back": True})
                removed.discard(wid)
            continue
        if op < 0.35:
            task = held[wid][-1] if held[wid] and rng.random() < 0.7 else None
            qa.heartbeat(db, wid, task_id=task)
        elif op < 0.5:
            qa.enqueue(db, rng.choice(["a", "b"]), max_attempts=2)
        elif op < 0.62:
            got = qa.claim(db, wid, lease="10min")
            if got is not None:
                held[wid].append(got.id)
        elif op < 0.74 and held[wid]:
            qa.complete(db, held[wid].pop(rng.randrange(len(held[wid]))))
        elif op < 0.84 and held[wid]:
            qa.fail(db, held[wid].pop(), "boom", delay=0)
        elif op < 0.88 and held[wid]:
            qa.cancel(db, held[wid].pop())
        elif op < 0.92:
            # Workers silent for long have their tasks taken back (abandoned attempts).
            qa.requeue_orphans(db, stale_after=60)
            open_ids = {
                int(r[0]) for r in db.query("SELECT id FROM tasks WHERE status = 'processing'")
            }
            for w in WORKERS:
                held[w] = [t for t in held[w] if t in open_ids]
        elif op < 0.95:
            qa.remove_worker(db, wid)
            removed.add(wid)
            qa.requeue_orphans(db, stale_after=60)
            open_ids = {
                int(r[0]) for r in db.query("SELECT id FROM tasks WHERE status = 'processing'")
            }
            for w in WORKERS:
                held[w] = [t for t in held[w] if t in open_ids]
    clock.advance(5)


def _counters(db: qa.Store) -> dict[str, tuple[int, int, int]]:
    rows = db.query("SELECT worker_id, heartbeats, tasks_completed, tasks_failed FROM workers")
    return {str(w): (int(b), int(c), int(f)) for w, b, c, f in rows}


def _recounted(db: qa.Store) -> dict[str, tuple[int, int, int]]:
    # count(*) over the stored rows: raw beats plus rolled-up minutes, finished attempts.
    rows = db.query(
        "SELECT w.worker_id,"
        " (SELECT count(*) FROM heartbeats h WHERE h.worker_key = w.worker_key),"
        " (SELECT IFNULL(sum(r.beats), 0) FROM heartbeat_rollups r"
        "   WHERE r.worker_key = w.worker_key),"
        " (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "   AND a.outcome = 'completed'),"
        " (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "   AND a.outcome = 'failed')"
        " FROM workers w"
    )
    return {str(w): (int(h) + int(r), int(c), int(f)) for w, h, r, c, f in rows}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counters_equal_count_through_writes_and_prune(
    db: qa.Store, clock: qa.FakeClock, seed: int
) -> None:
    _random_history(db, clock, seed)
    assert _counters(db) == _recounted(db)
    assert sum(b for b, _, _ in _counters(db).values()) > 20  # the history is not trivial
    prune(db, keep=(clock.now - T0) / 2, now=clock.now, batch=7)
    assert _counters(db) == _recounted(db)
    before = _counters(db)
    result = prune(db, keep="1h", finished_keep=60, now=clock.now + 3600, batch=3)
    assert result.attempts_deleted > 0
    after = _counters(db)
    assert after == _recounted(db)
    # Only the task counters dropped, by the finished attempts deleted with their tasks.
    assert all(after[w][0] == before[w][0] for w in WORKERS)
    assert sum(before[w][1] + before[w][2] for w in WORKERS) > sum(
        after[w][1] + after[w][2] for w in WORKERS
    )


def _expected_as_of(
    beats: list[Any], attempts: list[Any], at: float, horizon: float | None = None
) -> dict[str, Any]:
    """workers()' counts as of `at`, recounted in plain Python from the raw rows.

    Beats before a prune's `horizon` are known by the minute: a minute counts once its
    last beat is at or before `at`, and only its first and last beat are kept.
    """
    out: dict[str, Any] = {}
    for wid in WORKERS:
        mine = [b_at for w, b_at in beats if w == wid and b_at <= at]
        if horizon is not None and at < horizon:
            minutes: dict[float, list[float]] = {}
            for w, b_at in beats:
                if w == wid and b_at < horizon:
                    minutes.setdefault(b_at // 60, []).append(b_at)
            rolled = [m for m in minutes.values() if max(m) <= at]
            kept = [t for m in minutes.values() for t in (min(m), max(m)) if t <= at]
            mine = [t for m in rolled for t in m] + [
                b_at for w, b_at in beats if w == wid and horizon <= b_at <= at
            ]
            raw_last = [b for w, b in beats if w == wid and horizon <= b <= at]
            last = max(kept + raw_last, default=None)
        else:
            last = max(mine) if mine else None
        own = [a for a in attempts if a[0] == wid]
        open_now = [
            (claimed, task) for _, task, claimed, fin, _ in own
            if claimed <= at and (fin is None or fin > at)
        ]
        out[wid] = {
            "heartbeats": len(mine),
            "last": last,
            "completed": sum(1 for a in own if a[4] == "completed" and a[3] <= at),
            "failed": sum(1 for a in own if a[4] == "failed" and a[3] <= at),
            "current": max(open_now)[1] if open_now else None,
        }
    return out


@pytest.mark.parametrize("seed", [4, 5])
def test_workers_as_of_any_now_matches_a_plain_recount(
    db: qa.Store, clock: qa.FakeClock, seed: int
) -> None:
    _random_history(db, clock, seed)
    beats = [
        (str(w), float(a))
        for w, a in db.query(
            "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
        )
    ]
    attempts = [
        (str(w), int(t), float(c), None if f is None else float(f), o)
        for w, t, c, f, o in db.query(
            "SELECT w.worker_id, a.task_id, a.claimed_at, a.finished_at, a.outcome"
            " FROM attempts a JOIN workers w USING (worker_key)"
        )
    ]
    end = clock.now
    moments = [T0 + (end - T0) * k / 9 for k in range(10)] + [end + 100]
    moments += [a for _, a in beats[:: max(1, len(beats) // 5)]]  # exactly at a beat

    def check(horizon: float | None) -> None:
        for at in moments:
            frame = qa.workers(db, now=at, include_removed=True).set_index("worker_id")
            expected = _expected_as_of(beats, attempts, at, horizon)
            for wid in frame.index:
                row, want = frame.loc[wid], expected[wid]
                assert row["heartbeats"] == want["heartbeats"], (wid, at)
                assert row["tasks_completed"] == want["completed"], (wid, at)
                assert row["tasks_failed"] == want["failed"], (wid, at)
                got = row["current_task_id"]
                assert (None if pd.isna(got) else int(got)) == want["current"], (wid, at)
                last = row["last_heartbeat_at"]
                assert (None if pd.isna(last) else last.timestamp()) == want["last"], (wid, at)

    check(None)
    # After a prune: the counters path (now after the horizon) still answers exactly,
    # the counting path (now before it) by the minute.
    result = prune(db, keep=(end - T0) / 2, now=end, batch=11)
    assert result.heartbeats_rolled_up > 0
    check(result.cutoff)


def _version2_store(path: Path) -> None:
    """A store written by code before the counters: schema version 2, rows put in directly."""
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[: COUNTERS_VERSION - 1]:
        conn.executescript(script)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
    conn.execute(f"PRAGMA user_version = {COUNTERS_VERSION - 1:d}")
    conn.executemany(
        "INSERT INTO workers (worker_key, worker_id, registered_at, last_heartbeat_at)"
        " VALUES (?, ?, ?, ?)",
        [(1, "a", T0, T0 + 90), (2, "b", T0, T0 + 50)],
    )
    conn.executemany(
        "INSERT INTO worker_events (worker_key, at, event, capabilities) VALUES (?, ?, ?, '{}')",
        [(1, T0, "registered"), (2, T0, "registered")],
    )
    conn.executemany(
        "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, NULL)",
        [(1, T0 + s) for s in (70, 80, 90)] + [(2, T0 + 50)],
    )
    # Worker 1's first beats were pruned into a minute already.
    conn.execute(
        "INSERT INTO heartbeat_rollups VALUES (1, ?, 4, ?, ?, NULL)", (T0 - 20, T0, T0 + 30)
    )
    conn.execute("INSERT INTO meta VALUES ('heartbeats_pruned_before', ?)", (T0 + 60,))
    conn.executemany(
        "INSERT INTO tasks (id, type, status, created_at, run_after, attempts, worker_key)"
        " VALUES (?, 't', ?, ?, ?, ?, ?)",
        [
            (1, "completed", T0, T0, 1, 1),
            (2, "failed", T0, T0, 2, 2),
            (3, "processing", T0, T0, 1, 1),
        ],
    )
    conn.executemany(
        "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at, finished_at, outcome)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, 1, 1, T0 + 1, T0 + 2, "completed"),
            (2, 1, 2, T0 + 3, T0 + 4, "abandoned"),
            (2, 2, 1, T0 + 5, T0 + 6, "failed"),
            (3, 1, 1, T0 + 7, None, None),
        ],
    )
    conn.close()


@pytest.mark.sqlite_only
def test_migration_backfills_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _version2_store(path)
    clock = qa.FakeClock(T0 + 100)
    with qa.connect(path, readonly=True, clock=clock) as old:
        assert old.schema_version == COUNTERS_VERSION - 1  # read as it is, by counting
        before = qa.workers(old).set_index("worker_id")
    with qa.connect(path, clock=clock) as db:
        db.prepare_writes()  # migrated on the first write, or on demand
        assert db.schema_version >= COUNTERS_VERSION
        # a: 3 raw beats + 4 rolled up; one completed, one failed; b: the abandoned
        # attempt counts as neither.
        assert _counters(db) == {"a": (7, 1, 1), "b": (1, 0, 0)} == _recounted(db)
        after = qa.workers(db).set_index("worker_id")
        qa.heartbeat(db, "a")
        assert _counters(db)["a"] == (8, 1, 1)
    pd.testing.assert_frame_equal(before, after)
    assert after.loc["a", "current_task_id"] == 3
    assert list(after["heartbeats"]) == [7, 1]


def _liveness_answers(db: qa.Store, end: float) -> dict[str, pd.DataFrame]:
    span = end - T0
    return {
        "outages": qa.outages(db),
        # A minute or more: the tiers keep every silence over a minute, so after prune too.
        "outages_min_gap": qa.outages(db, min_gap=60),
        "outages_window": qa.outages(db, since=T0 + span / 3, until=T0 + span / 2),
        "outages_past": qa.outages(db, now=T0 + span * 0.7),
        "uptime": qa.uptime(db, freq="10min"),
        "uptime_window": qa.uptime(db, freq="7min", since=T0 + span / 4),
        "alive": qa.alive_intervals(db, since=T0 + span / 5),
    }


@pytest.mark.parametrize("seed", [6, 7])
def test_liveness_read_in_groups_of_workers_equals_one_read(
    db: qa.Store, clock: qa.FakeClock, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qanalytics.read.liveness as liveness

    _random_history(db, clock, seed, steps=220)
    # A worker with one beat has no interval of its own: the fleet's is used, which
    # a grouped read can only know after reading every group.
    qa.register_worker(db, "lone")
    clock.advance(900)
    end = clock.now

    def compare() -> None:
        whole = _liveness_answers(db, end)
        assert len(whole["outages"]) > 3
        monkeypatch.setattr(liveness, "GROUP_BEATS", 5)
        assert len(liveness._key_groups(db, db.now()) or []) > 2
        grouped = _liveness_answers(db, end)
        monkeypatch.undo()
        for name, frame in whole.items():
            pd.testing.assert_frame_equal(grouped[name], frame, obj=name)
            assert grouped[name].attrs == frame.attrs, name

    compare()
    prune(db, keep=(end - T0) / 2, now=end, batch=13)
    compare()


@pytest.mark.parametrize("batch", [1_000_000, 3, 1])
def test_tasks_in_flight_match_a_plain_recount(
    file_db: qa.Store, clock: qa.FakeClock, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qanalytics.read.liveness as liveness

    db = file_db  # a file: attempts and beats come through the Arrow reader
    _random_history(db, clock, 8, steps=260)
    clock.advance(600)
    # Attempts are read in keyset batches of finish time; tiny batches cross many edges,
    # and several attempts abandoned at one moment fill whole batches.
    monkeypatch.setattr(liveness, "_ATTEMPTS_PER_BATCH", batch)
    found = qa.outages(db, min_gap=25)
    attempts = db.query(
        "SELECT w.worker_id, a.task_id, a.claimed_at, a.finished_at"
        " FROM attempts a JOIN workers w USING (worker_key)"
    )
    beat_task = {
        (str(w), float(at)): t
        for w, at, t in db.query(
            "SELECT w.worker_id, h.at, h.task_id"
            " FROM heartbeats h JOIN workers w USING (worker_key)"
        )
    }
    with_tasks = 0
    for row in found.itertuples():
        s = row.start.timestamp()
        want = {
            int(t) for w, t, c, f in attempts
            if w == row.worker_id and c <= s and (f is None or f > s)
        }
        if beat_task.get((row.worker_id, s)) is not None:
            want.add(int(beat_task[(row.worker_id, s)]))
        assert row.tasks_in_flight == sorted(want), row
        with_tasks += bool(want)
    assert with_tasks >= 3  # the history holds outages with tasks in flight


def test_grouped_edges_fleet_interval_and_claims_at_the_start(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qanalytics.read.liveness as liveness

    for wid in ("a", "b", "c"):
        qa.register_worker(db, wid)
    t_done = qa.enqueue(db, "x")
    t_held = qa.enqueue(db, "x")
    for step in range(1, 13):
        clock.advance(10)
        for wid in ("a", "b"):
            qa.heartbeat(db, wid)
        if step == 5:
            assert qa.claim(db, "c") is not None  # t_done, claimed at c's last beat
            qa.heartbeat(db, "c")
        if step == 9:
            qa.complete(db, t_done)  # finished exactly when c's next silence starts
            assert qa.claim(db, "c") is not None  # t_held
            qa.heartbeat(db, "c")
        elif step < 5:
            qa.heartbeat(db, "c")
    qa.register_worker(db, "lone")  # one beat: no interval of its own
    clock.advance(100)  # > 3 x the fleet's 10 s, < the 300 s used when nothing is measured
    whole = qa.outages(db)
    monkeypatch.setattr(liveness, "GROUP_BEATS", 4)
    assert len(liveness._key_groups(db, db.now()) or []) >= 3
    grouped = qa.outages(db)
    pd.testing.assert_frame_equal(grouped, whole)
    by_worker = {w: list(f["tasks_in_flight"]) for w, f in grouped.groupby("worker_id")}
    assert by_worker["lone"] == [[]]  # the fleet's threshold applies to it
    # c beats every 10 s to step 5, then at step 9: outages start at step 5 (holding
    # t_done, claimed at that moment) and step 9 (t_done finished at that moment, so
    # only t_held, claimed then).
    assert by_worker["c"] == [[t_done], [t_held]]
