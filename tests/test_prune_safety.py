"""prune() interrupted, killed or read concurrently, and check() on stores that break the schema.

Readers must see every heartbeat exactly once at every commit point of a prune, and
after a prune that died part way; the answers are compared with the same store's answers
before anything was pruned. The integrity check must report broken CHECK constraints and
text timestamps even on a read-only connection, which skips CHECK constraints.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import qanalytics as qa
from qanalytics import maintenance as mt
from qanalytics.cli import main
from qanalytics.frames import heartbeats, workers
from qanalytics.liveness import outages
from qanalytics.upkeep import retention, tiers

T0 = 1_700_000_000.0  # 20 s past a whole minute
END = T0 + 2 * 3600 + 5  # the history's `now`
KEEP = "30min"
MIN_GAP = "2min"  # every outage below is longer, every gap inside a minute shorter
OUTAGE_COLUMNS = ["worker_id", "start", "end", "duration_s", "ended_by", "tasks_in_flight"]


def _history(db: qa.Store, clock: qa.FakeClock) -> None:
    """Four workers beating together every 10 s for two hours (many beats share a moment).

    w1 holds a task throughout; w2 is silent from 20 to 35 min and from 100 to 104 min;
    w3 beats 2 minutes in every 5; w4 stops for good at 50 min.
    """
    for name in ("w1", "w2", "w3", "w4"):
        qa.register_worker(db, name)
    task = qa.enqueue(db, "email")
    assert qa.claim(db, "w1", lease="3h") is not None
    for step in range(1, 721):
        clock.advance(10.0)
        t = step * 10.0
        assert qa.heartbeat(db, "w1", task_id=task)
        if not (1200 <= t < 2100 or 6000 <= t < 6240):
            assert qa.heartbeat(db, "w2")
        if (t // 60) % 5 < 2:
            assert qa.heartbeat(db, "w3")
        if t < 3000:
            assert qa.heartbeat(db, "w4")
    clock.advance(5.0)
    assert clock() == END


def _raw_counts(db: qa.Store) -> dict[str, int]:
    """Beats per worker straight from the raw table (the store is not pruned yet)."""
    rows = db.query(
        "SELECT w.worker_id, count(*) FROM heartbeats h JOIN workers w"
        " ON w.worker_key = h.worker_key GROUP BY w.worker_id"
    )
    return {str(name): int(n) for name, n in rows}


def _answers(db: qa.Store) -> dict[str, Any]:
    """What the readers say about the whole history, as of its end."""
    beats = heartbeats(db, now=END)
    per_worker = beats.groupby("worker_id", observed=True)["beats"].sum()
    fleet = workers(db, now=END)
    found = outages(db, now=END, min_gap=MIN_GAP)
    window = outages(db, since=END - 600, now=END, min_gap=MIN_GAP)
    return {
        "heartbeats": {str(k): int(v) for k, v in per_worker.items()},
        "workers": dict(
            zip(fleet["worker_id"].astype(str), fleet["heartbeats"].tolist(), strict=True)
        ),
        "last_beat": dict(
            zip(fleet["worker_id"].astype(str), fleet["last_heartbeat_at"], strict=True)
        ),
        "outages": found[OUTAGE_COLUMNS].reset_index(drop=True),
        "window_outages": window[OUTAGE_COLUMNS].reset_index(drop=True),
    }


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["heartbeats"] == expected["heartbeats"]
    assert got["workers"] == expected["workers"]
    assert got["last_beat"] == expected["last_beat"]
    pd.testing.assert_frame_equal(got["outages"], expected["outages"])
    pd.testing.assert_frame_equal(got["window_outages"], expected["window_outages"])


@pytest.fixture
def unpruned(db: qa.Store, clock: qa.FakeClock) -> dict[str, Any]:
    _history(db, clock)
    expected = _answers(db)
    # The readers agree with a plain count of the raw rows, and the fixture means something:
    # w2 and w4 have outages, one of them running into the last ten minutes.
    assert expected["heartbeats"] == _raw_counts(db) == expected["workers"]
    assert set(expected["outages"]["worker_id"].astype(str)) >= {"w2", "w3", "w4"}
    assert "w4" in set(expected["window_outages"]["worker_id"].astype(str))
    return expected


class _Stop(Exception):
    pass


def _stop_after(batches: int) -> Any:
    seen = []

    def hook(rolled: int, horizon: float) -> None:
        seen.append((rolled, horizon))
        if len(seen) == batches:
            raise _Stop

    return hook


# -- an interrupted prune -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("batch", "stop_after"),
    [(500, 1), (500, 3), (7, 40), (2, 5), (1, 11)],
    ids=["large-1", "large-3", "odd-40", "ties-5", "one-11"],
)
def test_interrupted_prune_loses_and_repeats_no_beat(
    db: qa.Store, unpruned: dict[str, Any], batch: int, stop_after: int
) -> None:
    # batch=2 and 1 cut through four workers' beats at the same moment.
    with pytest.raises(_Stop):
        mt.prune(db, keep=KEEP, now=END, batch=batch, on_batch=_stop_after(stop_after))
    horizon = mt.history_horizon(db)
    assert horizon is not None and horizon < END - 1800  # part of the way only
    rolled = db.query("SELECT count(*), IFNULL(sum(beats), 0) FROM heartbeat_rollups")[0]
    assert rolled[0] > 0
    # Every rolled-up beat is before the horizon, every raw one before it is gone.
    assert db.query("SELECT count(*) FROM heartbeat_rollups WHERE last_at >= ?", (horizon,)) == [
        (0,)
    ]
    assert db.query("SELECT count(*) FROM heartbeats WHERE at < ?", (horizon,)) == [(0,)]
    _assert_same(_answers(db), unpruned)
    assert mt.integrity_check(db) == []

    # Running it again finishes the job, with the same answers.
    result = mt.prune(db, keep=KEEP, now=END, batch=batch)
    assert mt.history_horizon(db) == result.cutoff
    raw = db.query("SELECT count(*) FROM heartbeats")[0][0]
    total = sum(unpruned["heartbeats"].values())
    assert int(rolled[1]) + result.heartbeats_rolled_up + raw == total
    _assert_same(_answers(db), unpruned)
    assert mt.integrity_check(db) == []


def test_interrupted_prune_rolls_up_like_one_prune(
    db: qa.Store, clock: qa.FakeClock, unpruned: dict[str, Any]
) -> None:
    # The rollups after a stopped and resumed prune are the plain per-minute summary.
    beats = db.query("SELECT worker_key, at, task_id FROM heartbeats ORDER BY at")
    cutoff = ((END - 1800) // 60) * 60
    expected: dict[tuple[int, int], list[Any]] = {}
    for key, at, task in beats:
        if at >= cutoff:
            continue
        minute = int(at // 60) * 60
        entry = expected.setdefault((key, minute), [0, at, at, task])
        entry[0] += 1
        entry[2], entry[3] = at, task
    with pytest.raises(_Stop):
        mt.prune(db, keep=KEEP, now=END, batch=3, on_batch=_stop_after(100))
    mt.prune(db, keep=KEEP, now=END, batch=1000)
    got = {
        (k, m): [b, f, la, t]
        for k, m, b, f, la, t in db.query(
            "SELECT worker_key, minute, beats, first_at, last_at, last_task_id"
            " FROM heartbeat_rollups"
        )
    }
    assert got == expected


def test_batches_report_a_rising_horizon(db: qa.Store, unpruned: dict[str, Any]) -> None:
    seen: list[tuple[int, float]] = []
    result = mt.prune(db, keep=KEEP, now=END, batch=50, on_batch=lambda n, h: seen.append((n, h)))
    assert len(seen) == result.transactions
    assert [n for n, _h in seen] == sorted(n for n, _h in seen)
    horizons = [h for _n, h in seen]
    assert horizons == sorted(set(horizons))  # strictly rising
    assert horizons[-1] == result.cutoff
    assert seen[-1][0] == result.heartbeats_rolled_up
    with pytest.raises(TypeError, match="on_batch"):
        mt.prune(db, on_batch=3)  # type: ignore[arg-type]


# -- readers during a prune -------------------------------------------------------------------
def test_a_reader_sees_every_beat_at_every_commit(store_target: str, clock: qa.FakeClock) -> None:
    with qa.connect(store_target, clock=clock) as writer:
        _history(writer, clock)
        with qa.connect(store_target, readonly=True) as reader:
            expected = _answers(reader)
            commits = []

            def check(rolled: int, horizon: float) -> None:
                commits.append(horizon)
                _assert_same(_answers(reader), expected)

            mt.prune(writer, keep=KEEP, now=END, batch=150, on_batch=check)
            assert len(commits) > 5
            _assert_same(_answers(reader), expected)


@pytest.mark.parametrize("every_read", [False, True], ids=["once", "every-read"])
def test_a_batch_committed_during_a_read_is_counted_once(
    store_target: str, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch, every_read: bool
) -> None:
    """A prune batch commits between a reader's raw read and its rollup read.

    Once: the reader notices and reads again. On every read: the reader gives up on
    optimism and reads in one snapshot transaction.
    """
    cutoff = ((END - 1800) // 60) * 60
    with qa.connect(store_target, clock=clock) as writer:
        _history(writer, clock)
        with qa.connect(store_target, readonly=True) as reader:
            expected = _answers(reader)
            mt.prune(writer, keep=KEEP, now=END - 3600, batch=1000)  # rollups exist
            _assert_same(_answers(reader), expected)

            state = {"armed": True, "batches": 0, "snapshot_reads": 0}

            def interfere(sql: str) -> None:
                # After a read of raw heartbeats, outside a snapshot, a batch commits.
                if "FROM heartbeats" not in sql:
                    return
                if reader.conn.in_transaction:
                    state["snapshot_reads"] += 1
                elif state["armed"]:
                    state["armed"] = every_read
                    # As prune does: the tiers first (each hour a batch), then the rollup.
                    tiers.summarize_heartbeats(writer, until=cutoff)
                    n, _rows, _horizon = retention._rollup_batch(writer, cutoff, 10)
                    state["batches"] += n > 0

            for name in ("query", "read_columns"):
                original = getattr(reader, name)

                def wrapped(sql: str, *args: Any, _original: Any = original, **kw: Any) -> Any:
                    out = _original(sql, *args, **kw)
                    interfere(sql)
                    return out

                monkeypatch.setattr(reader, name, wrapped)
            for _ in range(3):
                state["armed"] = True
                _assert_same(_answers(reader), expected)
            if every_read:  # three tries per reader, then one snapshot read
                assert state["batches"] > 20 and state["snapshot_reads"] > 5
            else:
                assert state["batches"] == 3 and state["snapshot_reads"] == 0
            # Part of the way or all of it (the reads that learn intervals read beats too).
            assert mt.history_horizon(writer) <= cutoff


@pytest.mark.sqlite_only
def test_a_killed_prune_loses_no_beat(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "queue.db"
    with qa.connect(path, clock=clock) as db:
        _history(db, clock)
        expected = _answers(db)
        total = db.query("SELECT count(*) FROM heartbeats")[0][0]
    script = textwrap.dedent(
        f"""
        import os, signal
        import qanalytics as qa
        from qanalytics import maintenance as mt

        def die(rolled, horizon):
            if rolled >= 1000:
                print(rolled, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        with qa.connect({str(path)!r}) as db:
            mt.prune(db, keep={KEEP!r}, now={END!r}, batch=250, on_batch=die)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(qa.__file__).parent.parent))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    committed = int(done.stdout)
    assert 1000 <= committed < 1250
    with qa.connect(path, readonly=True) as db:
        assert db.query("SELECT sum(beats) FROM heartbeat_rollups")[0][0] == committed
        assert db.query("SELECT count(*) FROM heartbeats")[0][0] == total - committed
        _assert_same(_answers(db), expected)
        assert mt.integrity_check(db) == []


def test_an_outage_before_the_horizon_runs_into_a_later_window(
    db: qa.Store, unpruned: dict[str, Any]
) -> None:
    # w4's last beat is rolled up; a window after the horizon still sees it go silent.
    mt.prune(db, keep=KEEP, now=END)
    assert mt.history_horizon(db) < END - 600
    window = outages(db, since=END - 600, now=END, min_gap=MIN_GAP)
    pd.testing.assert_frame_equal(
        window[OUTAGE_COLUMNS].reset_index(drop=True), unpruned["window_outages"]
    )
    w4 = window[window["worker_id"] == "w4"]
    assert list(w4["resolution"].astype(str)) == ["summary"]


# -- check() on stores that break the schema ---------------------------------------------------
def _store(path: Path, clock: qa.FakeClock) -> None:
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "w1")
        task = qa.enqueue(db, "email")
        assert qa.claim(db, "w1") is not None
        clock.advance(30)
        qa.complete(db, task)
        for _ in range(3):
            clock.advance(10)
            qa.heartbeat(db, "w1")


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _check(path: Path) -> list[str]:
    with qa.connect(path, readonly=True) as db:
        return mt.integrity_check(db)


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        (
            ["UPDATE tasks SET status = 'bogus'"],
            [
                "tasks: 1 row with status outside queued, processing, completed, failed,"
                " cancelled (for example 'bogus')"
            ],
        ),
        (
            ["UPDATE attempts SET outcome = 'exploded'"],
            [
                "attempts: 1 row with outcome outside completed, failed, abandoned, cancelled"
                " (for example 'exploded')",
                # The completed attempt is no longer one: the worker's counter disagrees.
                "worker 'w1': counters say 4 beats, 1 completed, 0 failed;"
                " the rows hold 4, 0, 0",
            ],
        ),
        (
            ["UPDATE worker_events SET event = 'zapped'"],
            [
                "worker_events: 1 row with event outside registered, updated, removed"
                " (for example 'zapped')"
            ],
        ),
        (
            ["UPDATE heartbeats SET at = '2023-11-14 22:14:00' WHERE rowid <= 2"],
            [
                "heartbeats: 2 rows with at not a number of epoch seconds"
                " (for example '2023-11-14 22:14:00')"
            ],
        ),
        (
            [
                "UPDATE tasks SET finished_at = 'yesterday'",
                "UPDATE workers SET last_heartbeat_at = x'00'",
            ],
            [
                "workers: 1 row with last_heartbeat_at not a number of epoch seconds"
                " (for example X'00')",
                "tasks: 1 row with finished_at not a number of epoch seconds"
                " (for example 'yesterday')",
            ],
        ),
        (
            ["UPDATE tasks SET max_attempts = 0", "UPDATE attempts SET attempt = 0"],
            [
                "tasks: 1 row failing max_attempts >= 1",
                "attempts: 1 row failing attempt >= 1",
            ],
        ),
    ],
    ids=["status", "outcome", "event", "text-time", "two-tables", "bounds"],
)
def test_check_reports_schema_violations_read_only(
    tmp_path: Path, clock: qa.FakeClock, statements: list[str], expected: list[str]
) -> None:
    path = tmp_path / "queue.db"
    _store(path, clock)
    assert _check(path) == []
    _tamper(path, *statements)
    assert _check(path) == expected
    # The writable connection finds the same rows (SQLite adds its own CHECK summary).
    with qa.connect(path) as db:
        problems = mt.integrity_check(db, invariants=False)
    schema_rules = [p for p in expected if not p.startswith("worker ")]  # counters: invariants
    assert [p for p in problems if not p.startswith("CHECK constraint failed")] == schema_rules


def test_cli_check_fails_on_a_bad_status(tmp_path: Path, clock: qa.FakeClock) -> None:
    from click.testing import CliRunner

    path = tmp_path / "queue.db"
    _store(path, clock)
    _tamper(path, "UPDATE tasks SET status = 'bogus'", "UPDATE heartbeats SET at = 'noon'")
    result = CliRunner().invoke(main, ["check", "--db", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "ok" not in lines
    assert any(line.startswith("tasks: 1 row with status outside") for line in lines)
    assert any(line.startswith("heartbeats: 4 rows with at not a number") for line in lines)


def _pruned_store(path: Path, clock: qa.FakeClock) -> None:
    _store(path, clock)
    clock.advance("2h")
    with qa.connect(path, clock=clock) as db:
        qa.heartbeat(db, "w1")
        # The registration's beat and three more, in two minutes.
        assert mt.prune(db, keep="1h").heartbeats_rolled_up == 4
        assert mt.integrity_check(db) == []


def test_check_reports_rollups_readers_cannot_see(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "queue.db"
    _pruned_store(path, clock)
    with qa.connect(path, readonly=True) as db:
        beats = int(heartbeats(db)["beats"].sum())
    # What a prune that wrote its horizon only at the end left behind when it was killed.
    _tamper(path, "DELETE FROM meta WHERE key = 'heartbeats_pruned_before'")
    with qa.connect(path, readonly=True) as db:
        assert int(heartbeats(db)["beats"].sum()) == beats - 4  # the readers' blind spot
    assert _check(path) == [
        "heartbeat_rollups: 2 rows but no horizon (heartbeats_pruned_before in meta), so"
        " readers do not see those beats; run prune again to record it"
    ]
    assert _check(path) == _check(path)  # nothing was written
    with qa.connect(path, clock=clock) as db:
        mt.prune(db, keep="1h")
        assert mt.integrity_check(db) == []
        assert int(heartbeats(db)["beats"].sum()) == beats


def test_check_reports_rollups_past_the_horizon(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "queue.db"
    _pruned_store(path, clock)
    with qa.connect(path, readonly=True) as db:
        horizon = mt.history_horizon(db)
    assert horizon is not None
    stamp = pd.Timestamp(horizon - 3600, unit="s", tz="UTC").isoformat()
    _tamper(
        path, f"UPDATE meta SET value = {horizon - 3600!r} WHERE key = 'heartbeats_pruned_before'"
    )
    assert _check(path) == [
        f"heartbeat_rollups: 1 row with beats at or after the horizon {stamp}, where readers"
        " count raw beats only"
    ]


def test_check_reports_rollups_outside_their_minute(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "queue.db"
    _pruned_store(path, clock)
    _tamper(path, "UPDATE heartbeat_rollups SET minute = minute - 120")
    assert _check(path) == ["heartbeat_rollups: 2 rows with beats outside their minute"]
    _tamper(path, "UPDATE heartbeat_rollups SET minute = minute + 120, beats = 1")
    assert _check(path) == [
        "heartbeat_rollups: 1 row with beats outside their minute",
        # Two beats fewer counted in the rollups than the worker's counter says.
        "worker 'w1': counters say 5 beats, 1 completed, 0 failed; the rows hold 3, 1, 0",
    ]


def test_check_reports_a_text_horizon(tmp_path: Path, clock: qa.FakeClock) -> None:
    path = tmp_path / "queue.db"
    _pruned_store(path, clock)
    _tamper(path, "UPDATE meta SET value = 'soon' WHERE key = 'heartbeats_pruned_before'")
    assert _check(path) == ["meta: heartbeats_pruned_before is 'soon', not a number"]


def test_check_counts_per_table(tmp_path: Path, clock: qa.FakeClock) -> None:
    # Counts are per table and column, not one line per row.
    path = tmp_path / "queue.db"
    _store(path, clock)
    with qa.connect(path, clock=clock) as db:
        for _ in range(50):
            qa.enqueue(db, "email")
    _tamper(path, "UPDATE tasks SET status = 'x' || (id % 3) WHERE id > 1")
    problems = _check(path)
    assert problems == [
        "tasks: 50 rows with status outside queued, processing, completed, failed, cancelled"
        " (for example 'x0')"
    ]
    assert Counter(p.split(":")[0] for p in problems) == {"tasks": 1}
