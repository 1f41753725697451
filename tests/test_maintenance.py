"""Retention (rollups and pruning), checkpoints, vacuum, integrity checks and stats."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import qanalytics as qa
from qanalytics import maintenance as mt

T0 = 1_700_000_000.0  # a whole minute: 2023-11-14 22:13:20 UTC is 20 s past one
MINUTE0 = (T0 // 60) * 60


def _beats(db: qa.Store, clock: qa.FakeClock, worker: str, n: int, every: float) -> None:
    for _ in range(n):
        clock.advance(every)
        assert qa.heartbeat(db, worker)


def _raw(db: qa.Store) -> list[Any]:
    return db.query("SELECT worker_key, at FROM heartbeats ORDER BY worker_key, at")


def _rollups(db: qa.Store) -> list[Any]:
    return db.query(
        "SELECT worker_key, minute, beats, first_at, last_at, last_task_id"
        " FROM heartbeat_rollups ORDER BY worker_key, minute"
    )


def _model_rollup(beats: list[Any]) -> dict[tuple[int, int], list[Any]]:
    out: dict[tuple[int, int], list] = {}
    for key, at, task in sorted(beats, key=lambda b: b[1]):
        minute = int((at // 60) * 60)
        if (key, minute) in out:
            entry = out[(key, minute)]
            entry[0] += 1
            entry[2] = at
            entry[3] = task
        else:
            out[(key, minute)] = [1, at, at, task]
    return out


# -- prune --------------------------------------------------------------------------------
def test_prune_rolls_up_and_deletes_old_beats(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    qa.register_worker(db, "w2")
    task = qa.enqueue(db, "email")
    _beats(db, clock, "w1", 30, 7.0)  # 210 s of beats
    qa.heartbeat(db, "w2", task_id=task)
    clock.advance("2h")
    qa.heartbeat(db, "w1")
    everything = db.query("SELECT worker_key, at, task_id FROM heartbeats")
    expected = _model_rollup([b for b in everything if b[1] < clock() - 3600])

    result = mt.prune(db, keep="1h", batch=7)
    cutoff = ((clock() - 3600) // 60) * 60
    assert result.cutoff == cutoff
    assert result.heartbeats_rolled_up == len(everything) - 1
    assert result.transactions > 4  # small batches
    assert _raw(db) == [(1, clock())]
    got = {(k, m): [b, f, la, t] for k, m, b, f, la, t in _rollups(db)}
    assert got == expected
    assert sum(v[0] for v in got.values()) == len(everything) - 1
    # The worker's last beat is untouched, so liveness now is unaffected.
    last = qa.get_worker(db, "w1").last_heartbeat_at
    assert last is not None and last.timestamp() == clock()
    assert mt.history_horizon(db) == cutoff
    assert mt.raw_history_starts_at(db) == pd.Timestamp(cutoff, unit="s", tz="UTC")
    assert mt.integrity_check(db) == []


def test_prune_is_idempotent_and_merges(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    _beats(db, clock, "w1", 50, 5.0)
    now = clock()
    first = mt.prune(db, keep=100, now=now)
    snapshot = (_raw(db), _rollups(db), mt.history_horizon(db))
    again = mt.prune(db, keep=100, now=now)
    assert again.heartbeats_rolled_up == 0 and again.rollup_rows == 0
    assert (_raw(db), _rollups(db), mt.history_horizon(db)) == snapshot
    # Later, more beats age out, some into a minute that is already rolled up.
    all_before = first.heartbeats_rolled_up + len(_raw(db))
    _beats(db, clock, "w1", 40, 5.0)
    mt.prune(db, keep=100)
    rows = _rollups(db)
    assert sum(r[2] for r in rows) + len(_raw(db)) == all_before + 40
    minutes = [r[1] for r in rows]
    assert len(minutes) == len(set(minutes))
    for _key, minute, beats, first_at, last_at, _task in rows:
        assert minute <= first_at <= last_at < minute + 60
        assert 1 <= beats <= 12
    # A shorter prune horizon never moves the recorded horizon back.
    horizon = mt.history_horizon(db)
    mt.prune(db, keep="30d")
    assert mt.history_horizon(db) == horizon


def test_merge_takes_last_task_from_latest_beat(db: qa.Store, clock: qa.FakeClock) -> None:
    clock.set(MINUTE0)
    qa.register_worker(db, "w1")
    t1, t2 = qa.enqueue(db, "a"), qa.enqueue(db, "b")
    clock.set(MINUTE0 + 10)
    qa.heartbeat(db, "w1", task_id=t1)
    mt.prune(db, keep=0, now=MINUTE0 + 30)  # cutoff MINUTE0: nothing yet
    assert _rollups(db) == []
    mt.prune(db, keep=0, now=MINUTE0 + 61)  # cutoff MINUTE0 + 60
    clock.set(MINUTE0 + 20)  # a late writer lands a beat in the rolled-up minute
    qa.heartbeat(db, "w1", task_id=t2)
    mt.prune(db, keep=0, now=MINUTE0 + 61)
    assert _rollups(db) == [(1, int(MINUTE0), 3, MINUTE0, MINUTE0 + 20, t2)]


def test_prune_finished_tasks(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    done = qa.enqueue(db, "a")
    qa.claim(db, "w1")
    qa.complete(db, done)
    queued = qa.enqueue(db, "a", run_after="30d")
    clock.advance("10d")
    qa.heartbeat(db, "w1")
    held = qa.enqueue(db, "b")
    claimed = qa.claim(db, "w1", types="b")
    assert claimed is not None and claimed.id == held
    result = mt.prune(db, keep="7d", finished_keep="7d", batch=1)
    assert (result.tasks_deleted, result.attempts_deleted) == (1, 1)
    ids = [r[0] for r in db.query("SELECT id FROM tasks ORDER BY id")]
    assert ids == [queued, held]
    assert mt.integrity_check(db) == []
    assert mt.prune(db, keep="7d", finished_keep="7d").tasks_deleted == 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"keep": "soon"}, ValueError),
        ({"keep": -5}, ValueError),
        ({"keep": float("nan")}, ValueError),
        ({"batch": 0}, ValueError),
        ({"batch": 2.5}, TypeError),
        ({"finished_keep": []}, TypeError),
        ({"progress": "yes"}, TypeError),
    ],
)
def test_prune_rejects_bad_arguments(
    db: qa.Store, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        mt.prune(db, **kwargs)


def test_prune_read_only_and_old_schema(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "q.db"
    qa.connect(path, clock=clock).close()
    with qa.connect(path, readonly=True) as ro, pytest.raises(qa.ReadOnlyError):
        mt.prune(ro)
    old = tmp_path / "v1.db"
    conn = sqlite3.connect(old, isolation_level=None)
    from qanalytics.schema import APPLICATION_ID, MIGRATIONS
    from qanalytics.store.sqlite import _split_sql

    for statement in _split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with qa.connect(old, readonly=True) as ro:
        assert mt.raw_history_starts_at(ro) is None
        assert mt.heartbeat_rollups(ro).empty
        assert mt.stats(ro)["rollups"]["rows"] == 0


def test_prune_with_progress(
    db: qa.Store, clock: qa.FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    qa.register_worker(db, "w1")
    _beats(db, clock, "w1", 5, 60.0)
    # The last beat (20 s into its minute) stays raw: the cutoff is aligned to a minute.
    assert mt.prune(db, keep=0, progress=True, batch=2).heartbeats_rolled_up == 5
    assert "rolling up heartbeats" in capsys.readouterr().err


# -- reading rollups ----------------------------------------------------------------------
def test_heartbeat_rollups_frame(db: qa.Store, clock: qa.FakeClock) -> None:
    empty = mt.heartbeat_rollups(db)
    assert list(empty.columns) == [
        "worker_id",
        "minute",
        "beats",
        "first_at",
        "last_at",
        "last_task_id",
    ]
    clock.set(MINUTE0)
    qa.register_worker(db, "w1")
    qa.register_worker(db, "w2")
    task = qa.enqueue(db, "x")
    clock.advance(30)
    qa.heartbeat(db, "w1", task_id=task)
    clock.advance(60)
    qa.heartbeat(db, "w2")
    mt.prune(db, keep=0, now=MINUTE0 + 120)
    frame = mt.heartbeat_rollups(db)
    assert frame.dtypes.astype(str).tolist() == list(empty.dtypes.astype(str))
    assert str(frame["minute"].dtype) == "datetime64[us, UTC]"
    assert frame["worker_id"].tolist() == ["w1", "w2", "w2"]
    assert frame["beats"].tolist() == [2, 1, 1]
    assert frame["last_task_id"].tolist()[0] == task
    assert pd.isna(frame["last_task_id"].tolist()[1])
    only = mt.heartbeat_rollups(db, workers="w2", since=MINUTE0 + 60)
    assert only["minute"].tolist() == [pd.Timestamp(MINUTE0 + 60, unit="s", tz="UTC")]
    assert mt.heartbeat_rollups(db, workers=[]).empty
    with pytest.raises(TypeError):
        mt.heartbeat_rollups(db, workers=[1])


def test_file_store_reads_rollups_through_the_fast_path(
    file_db: qa.Store, clock: qa.FakeClock
) -> None:
    qa.register_worker(file_db, "w1")
    _beats(file_db, clock, "w1", 10, 20.0)
    mt.prune(file_db, keep=0, now=clock() + 60)
    with qa.connect(file_db.path, readonly=True) as ro:
        frame = mt.heartbeat_rollups(ro)
    assert frame["beats"].sum() == 11
    assert frame["last_task_id"].isna().all()


# -- checkpoint, vacuum, integrity, stats -------------------------------------------------
@pytest.mark.sqlite_only
def test_checkpoint(file_db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(file_db, "w1")
    result = mt.checkpoint(file_db, "truncate")
    assert result.mode == "TRUNCATE" and not result.busy
    assert Path(file_db.path + "-wal").stat().st_size == 0
    assert mt.checkpoint(file_db).mode == "PASSIVE"
    with pytest.raises(ValueError, match="mode"):
        mt.checkpoint(file_db, "ALL; DROP TABLE workers")
    with pytest.raises(TypeError):
        mt.checkpoint(file_db, 3)  # type: ignore[arg-type]
    with qa.connect(file_db.path, readonly=True) as ro, pytest.raises(qa.ReadOnlyError):
        mt.checkpoint(ro)


def _without_auto_vacuum(db: qa.Store) -> None:
    # Stores made before auto_vacuum was set at creation have none; recreate that state.
    db.conn.execute("PRAGMA auto_vacuum = NONE")
    db.conn.execute("VACUUM")
    assert db.query("PRAGMA auto_vacuum")[0][0] == 0


@pytest.mark.sqlite_only
def test_new_stores_vacuum_incrementally(file_db: qa.Store, clock: qa.FakeClock) -> None:
    assert file_db.query("PRAGMA auto_vacuum")[0][0] == 2
    qa.register_worker(file_db, "w1")
    for _ in range(2000):
        clock.advance(1)
        qa.heartbeat(file_db, "w1", task_id=12345)
    mt.prune(file_db, keep=0, batch=1000)
    mt.checkpoint(file_db, "TRUNCATE")
    inc = mt.vacuum(file_db)
    assert inc.mode == "incremental" and inc.free_pages_after == 0
    assert inc.pages_after < inc.pages_before


@pytest.mark.sqlite_only
def test_vacuum_full_then_incremental(file_db: qa.Store, clock: qa.FakeClock) -> None:
    _without_auto_vacuum(file_db)
    qa.register_worker(file_db, "w1")
    for _ in range(3000):
        clock.advance(1)
        qa.heartbeat(file_db, "w1", task_id=12345)
    mt.prune(file_db, keep=0, batch=1000)
    skipped = mt.vacuum(file_db)
    assert skipped.mode == "none" and "auto_vacuum" in skipped.note
    assert skipped.free_pages_before > 0
    full = mt.vacuum(file_db, incremental=False)
    assert full.mode == "full" and full.free_pages_after == 0 and full.bytes_freed > 0
    assert file_db.query("PRAGMA auto_vacuum")[0][0] == 2
    qa.register_worker(file_db, "w2")
    for _ in range(2000):
        clock.advance(1)
        qa.heartbeat(file_db, "w2")
    mt.prune(file_db, keep=0)
    mt.checkpoint(file_db, "TRUNCATE")
    inc = mt.vacuum(file_db)
    assert inc.mode == "incremental" and inc.free_pages_after == 0
    assert inc.pages_after < inc.pages_before
    assert mt.integrity_check(file_db) == []


@pytest.mark.sqlite_only
def test_vacuum_fallback(file_db: qa.Store) -> None:
    _without_auto_vacuum(file_db)
    assert mt.vacuum(file_db, full_if_needed=True).mode == "full"
    with pytest.raises(TypeError):
        mt.vacuum(file_db, incremental="yes")  # type: ignore[arg-type]


@pytest.mark.sqlite_only
def test_integrity_check_reports_broken_invariants(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    task = qa.enqueue(db, "x")
    qa.claim(db, "w1")
    assert mt.integrity_check(db) == []
    db.conn.execute("UPDATE tasks SET status = 'completed' WHERE id = ?", (task,))
    db.conn.execute("PRAGMA foreign_keys = OFF")
    db.conn.execute("INSERT INTO heartbeats (worker_key, at) VALUES (99, 1.0)")
    problems = mt.integrity_check(db)
    assert any("foreign key" in p and "heartbeats" in p for p in problems)
    db.conn.execute("DELETE FROM heartbeats WHERE worker_key = 99")
    assert mt.integrity_check(db) == [f"task {task} is completed but attempt 1 is still open"]


def test_integrity_check_on_a_corrupt_file(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "q.db"
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "w1")
        for _ in range(500):
            clock.advance(1)
            qa.heartbeat(db, "w1")
        mt.checkpoint(db, "TRUNCATE")
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(5 * page, 5 * page + 64):  # scribble over the heartbeats table's root
        data[i] = 0xA5
    path.write_bytes(bytes(data))
    with qa.connect(path, readonly=True) as ro:
        try:
            problems = mt.integrity_check(ro)
        except qa.StoreError:
            return  # too damaged to check: also an acceptable, clear answer
    assert problems


@pytest.mark.sqlite_only
def test_stats(file_db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(file_db, "w1")
    _beats(file_db, clock, "w1", 100, 10.0)
    mt.prune(file_db, keep="5min")
    s = mt.stats(file_db)
    assert s["file_bytes"] > 0 and s["wal_bytes"] is not None
    assert s["journal_mode"] == "wal" and s["schema_version"] >= 2
    assert s["tables"]["workers"]["rows"] == 1
    hb = s["tables"]["heartbeats"]
    assert hb["rows"] == s["heartbeats"]["rows"] == len(_raw(file_db))
    assert hb["bytes"] > 0 and hb["indexes_bytes"] > 0
    assert s["rollups"]["beats"] + hb["rows"] == 101
    assert s["heartbeats"]["oldest"] >= s["rollups"]["raw_history_starts_at"]
    assert s["heartbeats"]["newest"] == pd.Timestamp(clock(), unit="s", tz="UTC")
    assert s["rollups"]["last_minute"] < s["rollups"]["raw_history_starts_at"]
    with qa.connect(file_db.path, readonly=True) as ro:
        assert mt.stats(ro)["tables"]["heartbeats"]["rows"] == hb["rows"]


@pytest.mark.sqlite_only
def test_stats_in_memory(db: qa.Store) -> None:
    s = mt.stats(db)
    assert s["file_bytes"] is None and s["heartbeats"]["oldest"] is None
    assert s["rollups"]["raw_history_starts_at"] is None


# -- times and durations: what the reads take ------------------------------------------------
def _aged_store(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    for ok in (True, False, True):
        task = qa.enqueue(db, "email")
        assert qa.claim(db, "w1") is not None
        _beats(db, clock, "w1", 5, 30.0)
        if ok:
            qa.complete(db, task)
        else:
            qa.fail(db, task, "boom", retry=False)
    clock.advance("3h")
    qa.heartbeat(db, "w1")


NOW_SPELLINGS = [
    lambda at: at,
    lambda at: int(at),
    lambda at: pd.Timestamp(at, unit="s", tz="UTC").isoformat(),
    lambda at: pd.Timestamp(at, unit="s", tz="UTC"),
    lambda at: pd.Timestamp(at, unit="s", tz="UTC").to_pydatetime(),
    lambda at: pd.Timestamp(at, unit="s").to_pydatetime(),  # naive: UTC
]
KEEP_SPELLINGS = [3600, 3600.0, "1h", "60min", pd.Timedelta("1h"), timedelta(hours=1)]


@pytest.mark.parametrize("spell_now", NOW_SPELLINGS)
@pytest.mark.parametrize("keep", KEEP_SPELLINGS)
def test_prune_takes_the_times_and_durations_the_reads_take(
    db: qa.Store, clock: qa.FakeClock, spell_now: Any, keep: Any
) -> None:
    _aged_store(db, clock)
    at = (clock() // 3600) * 3600  # whole hours: the task tiers keep what prune deletes
    before = qa.throughput(db, freq=None, now=spell_now(at))
    result = mt.prune(db, keep=keep, now=spell_now(at), finished_keep=keep)
    assert result.cutoff == ((at - 3600) // 60) * 60
    assert result.finished_cutoff == at - 3600
    assert result.heartbeats_rolled_up > 0 and result.tasks_deleted == 3
    after = qa.throughput(db, freq=None, now=spell_now(at))
    assert after["count"].tolist() == before["count"].tolist()


@pytest.mark.parametrize("spell", NOW_SPELLINGS)
def test_summaries_take_the_times_the_reads_take(
    db: qa.Store, clock: qa.FakeClock, spell: Any
) -> None:
    _aged_store(db, clock)
    at = (clock() // 3600) * 3600
    tasks = mt.summarize_tasks(db, until=spell(at))
    assert tasks.summarized_until == at
    summary = mt.summarize(db, lag=pd.Timedelta(0), now=spell(at))
    assert summary.tasks_until == at


def test_summarize_tasks_takes_a_duration_back_from_the_clock(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    _aged_store(db, clock)
    for until in ("2h", pd.Timedelta("2h"), pd.Timedelta("2h").to_pytimedelta()):
        assert mt.summarize_tasks(db, until=until).summarized_until == (
            (clock() - 7200) // 3600
        ) * 3600


def test_rollup_readers_take_the_times_the_reads_take(db: qa.Store, clock: qa.FakeClock) -> None:
    _aged_store(db, clock)
    mt.prune(db, keep="1h")
    hi = clock()
    lo = hi - 4 * 3600
    want_cols = mt.rollup_columns(db, since=lo, until=hi)
    want_totals = mt.rollup_totals(db, until=hi)
    assert want_totals and len(want_cols["minute"])
    for spell in NOW_SPELLINGS:
        cols = mt.rollup_columns(db, since=spell(lo), until=spell(hi))
        for name, values in want_cols.items():
            assert sorted(cols[name].tolist()) == sorted(values.tolist()), name
        assert mt.rollup_totals(db, until=spell(hi)) == want_totals
    # A duration back from the store clock, as `since` reads it.
    got = mt.rollup_columns(db, since="4h", until=hi)
    assert sorted(got["minute"].tolist()) == sorted(want_cols["minute"].tolist())
    with pytest.raises(ValueError, match="until"):
        mt.rollup_totals(db, until="soon")
    with pytest.raises(TypeError, match="since"):
        mt.rollup_columns(db, since=object(), until=hi)


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"now": "soon"}, ValueError, "now"),
        ({"now": object()}, TypeError, "now"),
        ({"keep": "-1h"}, ValueError, "keep"),
        ({"keep": "2024-01-01"}, ValueError, "keep"),  # a moment is not a duration
        ({"finished_keep": True}, TypeError, "finished_keep"),
    ],
)
def test_prune_names_a_bad_time(
    db: qa.Store, kwargs: dict[str, Any], error: type, word: str
) -> None:
    with pytest.raises(error, match=word):
        mt.prune(db, **kwargs)
