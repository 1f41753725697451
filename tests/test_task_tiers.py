"""Hourly task tiers: summarize_tasks, the writes that keep them true, and the reads.

The tiers are checked against a plain-Python recount of the raw rows (every finish
before the watermark, by hour, type and status or outcome), after summaries, after
every kind of write that can date a finish before the watermark, and after a summary
that failed part way. The reads are checked against the reference recomputation of
``test_trends_chunked`` (all rows loaded at once and grouped with pandas) over many
windows, widths, ``by`` values and levels.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_metrics import run_workload
from test_trends_chunked import reference_success_rate, reference_throughput

import qanalytics as qa
from qanalytics.errors import ReadOnlyError, UnsupportedError
from qanalytics.read import trends
from qanalytics.upkeep import TaskSummary, prune, summarize_tasks
from qanalytics.upkeep import task_tiers as tiers_module
from qanalytics.write.events import EventWriter, RecordedEvent
from qanalytics.write.task_hours import META_TASKS_SUMMARIZED_UNTIL, hour_of

H = 3600.0
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.db"


# -- the independent recount ------------------------------------------------------------
def recount(db: qa.Store, until: float) -> tuple[Counter[Any], Counter[Any]]:
    """Finishes before `until` from the raw rows: (hour, type, status) and attempts."""
    tasks: Counter[Any] = Counter()
    for at, type_, status in db.query("SELECT finished_at, type, status FROM tasks"):
        if at is not None and at < until and status in ("completed", "failed", "cancelled"):
            tasks[(math.floor(at / H), type_, status)] += 1
    attempts: Counter[Any] = Counter()
    for at, type_, outcome in db.query(
        "SELECT a.finished_at, t.type, a.outcome FROM attempts a JOIN tasks t ON t.id = a.task_id"
    ):
        if at is not None and at < until and outcome is not None:
            attempts[(math.floor(at / H), type_, outcome)] += 1
    return tasks, attempts


def stored(db: qa.Store) -> tuple[Counter[Any], Counter[Any]]:
    tasks = Counter(
        {(int(h), t, s): int(n) for h, t, s, n in db.query("SELECT * FROM task_hours")}
    )
    attempts = Counter(
        {(int(h), t, o): int(n) for h, t, o, n in db.query("SELECT * FROM attempt_hours")}
    )
    assert all(n > 0 for n in tasks.values()) and all(n > 0 for n in attempts.values())
    return tasks, attempts


def _pd(freq: str) -> str:
    return "24h" if freq == "1d" else freq  # the reference parses with pandas


def watermark(db: qa.Store) -> float | None:
    rows = db.query("SELECT value FROM meta WHERE key = ?", (META_TASKS_SUMMARIZED_UNTIL,))
    return float(rows[0][0]) if rows else None


def assert_tiers_true(db: qa.Store) -> None:
    mark = watermark(db)
    assert mark is not None and mark % H == 0
    assert stored(db) == recount(db, mark)


# -- summarize_tasks ----------------------------------------------------------------------
def test_hour_of_decides_by_the_bounds() -> None:
    assert hour_of(7200.0) == 2
    assert hour_of(math.nextafter(7200.0, 0.0)) == 1
    assert hour_of(-0.5) == -1
    edge = math.nextafter(1_700_002_800.0, 0.0)  # a hair before a whole hour
    assert hour_of(edge) * H <= edge < (hour_of(edge) + 1) * H


def test_summarize_counts_whole_hours_and_is_idempotent(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    start = clock.now
    run_workload(db, clock, seed=3, steps=300)
    mid = start + 0.5 * (clock.now - start)
    result = summarize_tasks(db, until=mid)
    assert isinstance(result, TaskSummary)
    assert result.previous is None
    assert result.summarized_until == math.floor(mid / H) * H
    assert_tiers_true(db)
    tasks, attempts = stored(db)
    assert result.tasks == sum(tasks.values()) > 10
    assert result.attempts == sum(attempts.values()) > 10
    assert result.hours == len({h for h, _t, _s in tasks} | {h for h, _t, _o in attempts})

    again = summarize_tasks(db, until=mid)
    assert (again.hours, again.tasks, again.previous) == (0, 0, result.summarized_until)
    assert stored(db) == (tasks, attempts)
    # An earlier `until` never moves the watermark back.
    summarize_tasks(db, until=start)
    assert watermark(db) == result.summarized_until

    later = summarize_tasks(db, until="1h")  # a duration back from the store clock
    assert later.previous == result.summarized_until
    assert later.summarized_until == math.floor((clock.now - H) / H) * H
    assert_tiers_true(db)


def test_summarize_in_many_small_transactions(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_workload(db, clock, seed=4, steps=200)
    monkeypatch.setattr(tiers_module, "ROWS_PER_TRANSACTION", 1)
    result = summarize_tasks(db, until=clock.now)
    assert result.transactions >= result.hours > 3
    assert_tiers_true(db)


def test_a_summary_that_fails_part_way_leaves_every_finish_counted_once(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_workload(db, clock, seed=5, steps=250)
    monkeypatch.setattr(tiers_module, "ROWS_PER_TRANSACTION", 1)
    real = tiers_module._fold_hour
    calls = {"n": 0}

    def flaky(*args: Any) -> tuple[int, int]:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("killed")
        return real(*args)

    monkeypatch.setattr(tiers_module, "_fold_hour", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        summarize_tasks(db, until=clock.now)
    first = watermark(db)
    assert first is not None and first < math.floor(clock.now / H) * H
    assert_tiers_true(db)  # three hours in, the fourth rolled back with its watermark
    summarize_tasks(db, until=clock.now)
    assert watermark(db) == math.floor(clock.now / H) * H
    assert_tiers_true(db)


def test_an_empty_store_and_bad_arguments(db: qa.Store, clock: qa.FakeClock) -> None:
    result = summarize_tasks(db, until=clock.now)
    assert result.summarized_until == math.floor(clock.now / H) * H
    assert (result.hours, result.tasks, result.attempts) == (0, 0, 0)
    with pytest.raises(TypeError, match="progress"):
        summarize_tasks(db, until=clock.now, progress="yes")  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="until"):
        summarize_tasks(db, until="soon")


def test_summarize_refuses_read_only_and_old_stores(tmp_path: Path) -> None:
    with qa.connect(SAMPLE, readonly=True) as old, pytest.raises(ReadOnlyError):
        summarize_tasks(old, until=0)
    copy = tmp_path / "old.db"
    copy.write_bytes(SAMPLE.read_bytes())
    with qa.connect(copy, readonly=True) as old:
        assert old.schema_version < 5
        old.readonly = False  # as a writer that skipped the migration would be
        with pytest.raises(UnsupportedError, match="schema version"):
            summarize_tasks(old, until=0)


# -- writes before the watermark ------------------------------------------------------------
def test_task_writes_dated_before_the_watermark_adjust_the_tiers(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    run_workload(db, clock, seed=6, steps=120)
    # The summary runs ahead of the store clock, so every later write is dated before it.
    summarize_tasks(db, until=clock.now + 10 * H)
    assert_tiers_true(db)
    counted = sum(stored(db)[0].values())
    qa.register_worker(db, "late")
    rng = random.Random(6)
    for step in range(80):
        clock.advance(rng.choice([1.0, 30.0, 400.0]))
        qa.heartbeat(db, "late")
        roll = rng.random()
        if roll < 0.3:
            qa.enqueue(db, "new-type", max_attempts=2)
        elif roll < 0.5:
            qa.claim(db, "late", lease="60s", types=["new-type"])
        else:
            held = db.query("SELECT id FROM tasks WHERE status = 'processing' ORDER BY id")
            if held:
                task_id = held[step % len(held)][0]
                pick = rng.random()
                if pick < 0.4:
                    qa.complete(db, task_id)
                elif pick < 0.75:
                    qa.fail(db, task_id, "boom", delay=0)
                else:
                    qa.cancel(db, task_id)
            elif rng.random() < 0.5:
                queued = db.query("SELECT id FROM tasks WHERE status = 'queued' ORDER BY id")
                if queued:
                    qa.cancel(db, queued[0][0])
        if step % 20 == 19:
            clock.advance("2min")
            qa.requeue_orphans(db, stale_after="10min")
        assert_tiers_true(db)
    tasks, attempts = stored(db)
    assert sum(tasks.values()) > counted + 10
    assert any(t == "new-type" for _h, t, _s in tasks)
    assert {o for _h, _t, o in attempts} >= {"completed", "failed", "abandoned"}
    assert {s for _h, _t, s in tasks} == {"completed", "failed", "cancelled"}


def test_requeue_with_a_past_now_counts_into_summarized_hours(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    qa.register_worker(db, "w")
    task_id = qa.enqueue(db, "email", max_attempts=1)
    qa.claim(db, "w", lease="60s")
    clock.advance("3h")
    summarize_tasks(db, until=clock.now)
    assert stored(db) == (Counter(), Counter())
    # Taken back as of a moment the summary already covers: counted there.
    qa.requeue_orphans(db, now=clock.now - 2 * H)
    assert qa.get_task(db, task_id).status == "failed"
    assert_tiers_true(db)
    assert sum(stored(db)[0].values()) == 1


def _event_stream(seed: int, start: float) -> list[RecordedEvent]:
    """Several tasks' lives over a few hours, with retries, rejections and revocations."""
    rng = random.Random(seed)
    events: list[RecordedEvent] = []
    for i in range(25):
        uid = f"u{i}"
        t = start + rng.uniform(0, 5 * H)
        name = rng.choice(["app.a", "app.b", "app.c"])
        worker = rng.choice(["celery@w1", "celery@w2"])
        events.append(RecordedEvent("task-received", t, worker=worker, task=uid, name=name))
        for retry in range(rng.randint(0, 2)):
            t += rng.uniform(1, 900)
            events.append(RecordedEvent("task-started", t, worker=worker, task=uid))
            t += rng.uniform(1, 900)
            events.append(
                RecordedEvent("task-retried", t, worker=worker, task=uid, error=f"e{retry}")
            )
        t += rng.uniform(1, 900)
        events.append(RecordedEvent("task-started", t, worker=worker, task=uid))
        t += rng.uniform(1, 900)
        end = rng.random()
        if end < 0.5:
            events.append(RecordedEvent("task-succeeded", t, worker=worker, task=uid, runtime=3))
        elif end < 0.7:
            events.append(RecordedEvent("task-failed", t, worker=worker, task=uid, error="x"))
        elif end < 0.85:
            events.append(RecordedEvent("task-revoked", t, task=uid))
        else:
            events.append(RecordedEvent("task-rejected", t, worker=worker, task=uid))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recorded_events_arriving_late_keep_the_tiers_true(
    db: qa.Store, clock: qa.FakeClock, seed: int
) -> None:
    start = clock.now
    events = _event_stream(seed, start)
    rng = random.Random(seed)
    rng.shuffle(events)
    writer = EventWriter(db)
    head, tail = events[: len(events) // 3], events[len(events) // 3 :]
    writer.apply(head)
    # Summarize past every event: everything that arrives from now on is late.
    summarize_tasks(db, until=start + 12 * H)
    assert_tiers_true(db)
    while tail:
        batch, tail = tail[:5], tail[5:]
        writer.apply(batch)
        assert_tiers_true(db)
    # A task first seen mid-flight is "unknown" until a late receipt names it.
    writer.apply([RecordedEvent("task-succeeded", start + 30, worker="celery@w1", task="mid")])
    assert_tiers_true(db)
    assert any(t == "unknown" for _h, t, _s in stored(db)[0])
    writer.apply([RecordedEvent("task-received", start + 20, task="mid", name="app.named")])
    assert_tiers_true(db)
    assert not any(t == "unknown" for _h, t, _s in stored(db)[0])
    # A start after the summarized finish reopens the task: the tier gives it back.
    writer.apply([RecordedEvent("task-started", start + 13 * H, worker="celery@w2", task="mid")])
    assert db.query("SELECT status FROM tasks WHERE external_id = 'mid'") == [("processing",)]
    assert_tiers_true(db)


def test_deleting_old_finished_tasks_keeps_the_tiers(db: qa.Store, clock: qa.FakeClock) -> None:
    start = clock.now
    run_workload(db, clock, seed=8, steps=250)
    summarize_tasks(db, until=clock.now - 2 * H)
    before = stored(db)
    rates = qa.success_rate(db, freq="1h", by="type", until=clock.now - 3 * H)
    flow = qa.throughput(db, freq="1d", since=start, until=clock.now - 3 * H)
    result = prune(db, keep="30d", finished_keep="3h")
    assert result.tasks_deleted > 10
    assert stored(db) == before  # metrics keep the deleted tasks
    pd.testing.assert_frame_equal(
        qa.success_rate(db, freq="1h", by="type", until=clock.now - 3 * H), rates
    )
    pd.testing.assert_frame_equal(
        qa.throughput(db, freq="1d", since=start, until=clock.now - 3 * H), flow
    )


# -- reads ------------------------------------------------------------------------------
@pytest.fixture
def summarized(file_db: qa.Store, clock: qa.FakeClock) -> tuple[qa.Store, list[dict[str, Any]]]:
    start = clock.now
    run_workload(file_db, clock, seed=11, steps=400)
    end = clock.now
    span = end - start
    mark = summarize_tasks(file_db, until=start + 0.6 * span).summarized_until
    assert mark is not None
    windows: list[dict[str, Any]] = [
        {},
        {"since": start + 0.25 * span},  # cuts an hour, watermark inside the window
        {"since": start + 0.2 * span, "until": start + 0.4 * span},  # before the watermark
        {"since": mark - 5 * H, "until": mark + 2 * H},  # whole hours on both sides
        {"since": mark + 600, "until": end},  # after the watermark
        {"now": start + 0.5 * span},
        {"since": start + 0.1 * span, "until": end + 3600, "now": start + 0.7 * span},
    ]
    return file_db, windows


BYS: list[Any] = [None, "type", "worker_id", ["type", "worker_id"]]
FREQS = ["1h", "2h", "1d", "90min", "1s"]


@pytest.mark.parametrize("level", ["task", "attempt"])
@pytest.mark.parametrize("by", BYS)
def test_success_rate_from_tiers_equals_the_scan(
    summarized: tuple[qa.Store, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    level: str,
    by: Any,
) -> None:
    db, windows = summarized
    used: list[Any] = []
    real = trends._tier_counts
    monkeypatch.setattr(trends, "_tier_counts", lambda *a, **k: used.append(1) or real(*a, **k))
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", 5)
    seen = 0
    for window in windows:
        for freq in FREQS:
            got = qa.success_rate(db, freq=freq, by=by, level=level, **window)
            want = reference_success_rate(db, _pd(freq), by, level, **window)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            seen += len(got)
    assert seen > 100
    # The tiers served the whole-hour widths split by nothing or by type, and only those.
    assert bool(used) == (by in (None, "type"))


@pytest.mark.parametrize("by", BYS)
def test_throughput_from_tiers_equals_the_scan(
    summarized: tuple[qa.Store, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    by: Any,
) -> None:
    db, windows = summarized
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", 3)
    monkeypatch.setattr(trends, "_COUNT_QUERIES_PER_PAIR", 4)  # also read finish times
    seen = 0
    for window in windows:
        for freq in FREQS:
            got = qa.throughput(db, freq=freq, by=by, **window)
            want = reference_throughput(db, _pd(freq), by, **window)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            seen += len(got)
    assert seen > 100


def test_90min_and_worker_buckets_do_not_use_the_tiers(
    summarized: tuple[qa.Store, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, _windows = summarized

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the tiers were read")

    monkeypatch.setattr(trends, "_tier_counts", refuse)
    qa.success_rate(db, freq="90min", by="type")
    qa.throughput(db, freq="30min")
    qa.success_rate(db, freq="1h", by="worker_id")
    qa.throughput(db, freq="1d", by=["type", "worker_id"])


def test_finishes_at_the_edge_of_an_hour(db: qa.Store, clock: qa.FakeClock) -> None:
    # Finishes a hair before and exactly at whole hours, on both sides of the watermark.
    qa.register_worker(db, "w")
    base = math.floor(clock.now / H) * H + 2 * H
    moments = []
    for k in range(6):
        edge = base + k * H
        moments += [math.nextafter(edge, 0.0), edge]
    for i, at in enumerate(moments):
        clock.set(at - 1)
        task_id = qa.enqueue(db, "edge")
        qa.claim(db, "w")
        clock.set(at)
        if i % 3:
            qa.complete(db, task_id)
        else:
            qa.fail(db, task_id, "x", retry=False)
    clock.set(base + 8 * H)
    summarize_tasks(db, until=base + 3 * H)
    assert_tiers_true(db)
    for freq in ("1h", "2h", "1d"):
        for level in ("task", "attempt"):
            got = qa.success_rate(db, freq=freq, level=level)
            pd.testing.assert_frame_equal(
                got, reference_success_rate(db, _pd(freq), None, level), check_exact=True
            )
        got = qa.throughput(db, freq=freq, by="type")
        pd.testing.assert_frame_equal(got, reference_throughput(db, _pd(freq), "type"))
    assert qa.throughput(db, freq="1h")["count"].sum() == len(moments)


@pytest.mark.sqlite_only
def test_old_stores_read_as_before(tmp_path: Path) -> None:
    with qa.connect(SAMPLE, readonly=True) as old:
        assert old.schema_version < 5
        for freq, by in (("1h", "type"), ("1d", None), ("2h", "worker_id")):
            pd.testing.assert_frame_equal(
                qa.success_rate(old, freq=freq, by=by),
                reference_success_rate(old, _pd(freq), by, "task"),
                check_exact=True,
            )
            pd.testing.assert_frame_equal(
                qa.throughput(old, freq=freq, by=by),
                reference_throughput(old, _pd(freq), by),
                check_exact=True,
            )


@pytest.mark.sqlite_only
def test_the_scan_reads_the_index_in_status_type_order(file_db: qa.Store) -> None:
    plan = file_db.query(
        "EXPLAIN QUERY PLAN SELECT count(*) FROM tasks WHERE status = ? AND type = ?"
        " AND finished_at >= ? AND finished_at < ?",
        ("completed", "email", 0.0, 1.0),
    )
    assert "COVERING INDEX tasks_finished" in " ".join(str(r[-1]) for r in plan)
    assert isinstance(file_db.conn, sqlite3.Connection)
