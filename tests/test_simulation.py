"""simulate(): determinism, the workload's shape, and the scripted incidents' ground truth."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import qanalytics as qa
from qanalytics.simulation import (
    DEFAULT_START,
    FLAP_SILENCES_MIN,
    INCIDENT_ERROR,
    TASK_PROFILES,
    SimulationResult,
    simulate,
)

# A small run in busy hours: 6 workers from 10:00 to 16:00 UTC on a Monday.
SMALL: dict[str, Any] = {
    "workers": 6,
    "duration": "6h",
    "start": "2026-01-05T10:00:00Z",
    "progress": False,
}
TABLES = ("workers", "worker_events", "heartbeats", "tasks", "attempts")


def dump(path: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulationResult, Path]:
    path = tmp_path_factory.mktemp("sim") / "small.db"
    return simulate(path, seed=0, **SMALL), path


@pytest.fixture
def conn(small: tuple[SimulationResult, Path]) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{small[1]}?mode=ro", uri=True)
    yield connection
    connection.close()


def epoch(when: datetime | None) -> float:
    assert when is not None
    return when.timestamp()


def beats(conn: sqlite3.Connection, worker_id: str) -> list[tuple[float, int | None]]:
    return conn.execute(
        "SELECT h.at, h.task_id FROM heartbeats h JOIN workers w USING (worker_key)"
        " WHERE w.worker_id = ? ORDER BY h.at",
        (worker_id,),
    ).fetchall()


def attempts_of(conn: sqlite3.Connection, task_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT a.attempt, w.worker_id, a.claimed_at, a.finished_at, a.outcome"
        " FROM attempts a JOIN workers w USING (worker_key) WHERE a.task_id = ?"
        " ORDER BY a.attempt",
        (task_id,),
    ).fetchall()


# -- determinism ------------------------------------------------------------------------
def test_same_seed_gives_identical_database(
    small: tuple[SimulationResult, Path], tmp_path: Path
) -> None:
    result, path = small
    again = simulate(tmp_path / "again.db", seed=0, **SMALL)
    assert dump(path) == dump(tmp_path / "again.db")
    assert (again.counts, again.ground_truth) == (result.counts, result.ground_truth)


def test_different_seed_gives_different_database(
    small: tuple[SimulationResult, Path], tmp_path: Path
) -> None:
    other = simulate(tmp_path / "other.db", seed=1, **SMALL)
    first, second = dump(small[1]), dump(tmp_path / "other.db")
    for table in ("heartbeats", "tasks", "attempts"):
        assert first[table] != second[table]
    assert other.ground_truth != small[0].ground_truth


def test_default_start_is_a_fixed_monday(tmp_path: Path) -> None:
    with qa.connect(":memory:") as db:
        result = simulate(db, workers=4, duration="2h", progress=False)
    assert result.start == datetime(2026, 1, 5, tzinfo=UTC)
    assert result.start.timestamp() == DEFAULT_START
    assert result.end == datetime(2026, 1, 5, 2, tzinfo=UTC)


# -- what was written -------------------------------------------------------------------
def test_counts_match_the_tables(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    counts = small[0].counts

    def count(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    assert counts["workers"] == count("SELECT count(*) FROM workers") == 6 + 2
    assert counts["tasks"] == count("SELECT count(*) FROM tasks") > 1000
    assert counts["attempts"] == count("SELECT count(*) FROM attempts")
    assert counts["heartbeats"] == count("SELECT count(*) FROM heartbeats")
    for status in ("completed", "failed", "queued", "processing"):
        assert counts[status] == count(f"SELECT count(*) FROM tasks WHERE status = '{status}'")
    assert counts["retries"] > 0 and counts["requeued"] >= 1
    assert {row[0] for row in conn.execute("SELECT DISTINCT type FROM tasks")} == {
        p.name for p in TASK_PROFILES
    }


def test_store_clock_and_timestamps_stay_inside_the_run(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    result = small[0]
    lo, hi = epoch(result.start), epoch(result.end)
    for sql in (
        "SELECT min(at), max(at) FROM heartbeats",
        "SELECT min(created_at), max(created_at) FROM tasks",
        "SELECT min(claimed_at), max(claimed_at) FROM attempts",
    ):
        first, last = conn.execute(sql).fetchone()
        assert lo <= first and last <= hi


def test_heartbeats_every_30s_with_jitter_naming_the_task_in_hand(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    gt = small[0].ground_truth
    special = {gt.crash.worker_id, gt.flapping.worker_id, gt.decommission.worker_id}
    healthy = next(
        row[0]
        for row in conn.execute("SELECT worker_id FROM workers ORDER BY worker_id")
        if row[0] not in special
    )
    times = [at for at, _ in beats(conn, healthy)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) > 600
    assert all(26.9 < gap < 90.0 for gap in gaps)
    assert sum(27.0 <= gap <= 33.0 for gap in gaps) / len(gaps) > 0.98
    # Each beat's task_id is a task this worker held at that moment.
    held = conn.execute(
        "SELECT a.task_id, a.claimed_at, ifnull(a.finished_at, 1e18) FROM attempts a"
        " JOIN workers w USING (worker_key) WHERE w.worker_id = ?",
        (healthy,),
    ).fetchall()
    spans: dict[int, list[tuple[float, float]]] = {}
    for task, start, end in held:  # a retry may come back to the same worker
        spans.setdefault(task, []).append((start, end))
    named = [(at, task) for at, task in beats(conn, healthy) if task is not None]
    assert len(named) > 100
    for at, task in named:
        assert any(start <= at <= end for start, end in spans[task])


def test_arrivals_follow_the_daily_cycle() -> None:
    with qa.connect(":memory:") as db:
        result = simulate(db, workers=4, duration="24h", seed=3, progress=False)
        created = [row[0] for row in db.query("SELECT created_at FROM tasks")]
    base = epoch(result.start)
    hours = [int((t - base) // 3600) for t in created]
    night = sum(2 <= h < 6 for h in hours)
    afternoon = sum(13 <= h < 17 for h in hours)
    assert afternoon > 4 * night > 0


def test_failed_attempts_retry_after_a_backoff(conn: sqlite3.Connection) -> None:
    rows = conn.execute(
        "SELECT a.attempt, a.finished_at, b.claimed_at FROM attempts a JOIN attempts b"
        " ON b.task_id = a.task_id AND b.attempt = a.attempt + 1 WHERE a.outcome = 'failed'"
    ).fetchall()
    assert len(rows) > 20
    for attempt, failed_at, next_claim in rows:
        assert next_claim - failed_at >= 0.5 * 15.0 * 2 ** (attempt - 1)


# -- the scripted incidents -------------------------------------------------------------
def test_crashed_worker_goes_silent_holding_a_task_that_is_requeued_and_completed(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    crash = small[0].ground_truth.crash
    assert crash.task_id is not None
    history = beats(conn, crash.worker_id)
    last_at, last_task = history[-1]
    assert last_at == pytest.approx(epoch(crash.at), abs=1e-6)
    assert last_task == crash.task_id
    # Silent until the end, never removed.
    assert epoch(small[0].end) - last_at > 3600
    removed = conn.execute(
        "SELECT removed_at FROM workers WHERE worker_id = ?", (crash.worker_id,)
    ).fetchone()[0]
    assert removed is None
    # Orphaned until requeue_orphans took it back, then completed by another worker.
    tries = attempts_of(conn, crash.task_id)
    assert tries[0][1] == crash.worker_id and tries[0][4] == "abandoned"
    assert tries[0][3] == pytest.approx(epoch(crash.requeued_at), abs=1e-6)
    assert 300 < epoch(crash.requeued_at) - epoch(crash.at) <= 360 + 1e-6
    assert tries[-1][1] == crash.completed_by != crash.worker_id
    assert tries[-1][4] == "completed"
    assert tries[-1][3] == pytest.approx(epoch(crash.completed_at), abs=1e-6)
    status, task_type = conn.execute(
        "SELECT status, type FROM tasks WHERE id = ?", (crash.task_id,)
    ).fetchone()
    assert status == "completed" and task_type == crash.task_type


def test_crash_is_placed_relative_to_the_duration(small: tuple[SimulationResult, Path]) -> None:
    result = small[0]
    scripted = epoch(result.start) + round(15.5 / 48 * 6 * 60) * 60
    assert scripted <= epoch(result.ground_truth.crash.at) < scripted + 1800


def test_flapping_worker_has_gaps_of_the_scripted_lengths(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    flapping = small[0].ground_truth.flapping
    assert [s.duration_s / 60 for s in flapping.silences] == pytest.approx(list(FLAP_SILENCES_MIN))
    times = [at for at, _ in beats(conn, flapping.worker_id)]
    long_gaps = [(a, b) for a, b in itertools.pairwise(times) if b - a > 90]
    assert len(long_gaps) == len(FLAP_SILENCES_MIN)
    for (a, b), silence in zip(long_gaps, flapping.silences, strict=True):
        assert a == pytest.approx(epoch(silence.start), abs=1e-6)
        assert b == pytest.approx(epoch(silence.end), abs=1e-6)
    # It resumed after the last silence and is still registered.
    assert times[-1] > epoch(flapping.silences[-1].end)
    # A task held through a silence longer than the stale threshold was taken back.
    for silence in flapping.silences:
        if silence.requeued:
            assert silence.task_id is not None
            outcomes = [(w, o) for _, w, _, _, o in attempts_of(conn, silence.task_id)]
            assert (flapping.worker_id, "abandoned") in outcomes


def test_failure_incident_raises_the_failure_rate_in_its_window(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    incident = small[0].ground_truth.failure_incident
    lo, hi = epoch(incident.start), epoch(incident.end)
    assert hi - lo == pytest.approx(0.15 * 6 * 3600)
    rows = conn.execute(
        "SELECT a.claimed_at, a.outcome, a.error FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " WHERE t.type = ? AND a.outcome IN ('completed', 'failed')",
        (incident.task_type,),
    ).fetchall()
    inside = [outcome for at, outcome, _ in rows if lo <= at < hi]
    outside = [outcome for at, outcome, _ in rows if not lo <= at < hi]
    assert len(inside) > 30 and len(outside) > 100
    rate_in = inside.count("failed") / len(inside)
    rate_out = outside.count("failed") / len(outside)
    assert rate_in > 0.5 and rate_out < 0.08
    assert {e for at, o, e in rows if o == "failed" and lo <= at < hi} >= {INCIDENT_ERROR}
    assert all(e != INCIDENT_ERROR for at, _, e in rows if not lo <= at < hi)


def test_scale_up_workers_register_at_the_scripted_time(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    result = small[0]
    scale_up = result.ground_truth.scale_up
    scripted = epoch(result.start) + 0.75 * 6 * 3600
    assert epoch(scale_up.at) == scripted
    assert scale_up.worker_ids == ("worker-07", "worker-08")
    for i, (worker_id, at) in enumerate(scale_up.workers):
        assert epoch(at) == scripted + 20 * i
        registered, removed = conn.execute(
            "SELECT registered_at, removed_at FROM workers WHERE worker_id = ?", (worker_id,)
        ).fetchone()
        assert registered == pytest.approx(epoch(at), abs=1e-6) and removed is None
        assert beats(conn, worker_id)[0][0] == pytest.approx(epoch(at), abs=1e-6)
        claimed = conn.execute(
            "SELECT count(*) FROM attempts JOIN workers USING (worker_key) WHERE worker_id = ?",
            (worker_id,),
        ).fetchone()[0]
        assert claimed > 10


def test_decommissioned_worker_drains_and_is_removed(
    small: tuple[SimulationResult, Path], conn: sqlite3.Connection
) -> None:
    decom = small[0].ground_truth.decommission
    assert decom.removed_at is not None and decom.removed_at >= decom.drain_at
    removed_at = conn.execute(
        "SELECT removed_at FROM workers WHERE worker_id = ?", (decom.worker_id,)
    ).fetchone()[0]
    assert removed_at == pytest.approx(epoch(decom.removed_at), abs=1e-6)
    events = conn.execute(
        "SELECT e.event, e.at FROM worker_events e JOIN workers USING (worker_key)"
        " WHERE worker_id = ? ORDER BY e.id",
        (decom.worker_id,),
    ).fetchall()
    assert events[-1] == ("removed", pytest.approx(removed_at))
    assert beats(conn, decom.worker_id)[-1][0] <= removed_at
    last_claim = conn.execute(
        "SELECT max(claimed_at) FROM attempts JOIN workers USING (worker_key) WHERE worker_id = ?",
        (decom.worker_id,),
    ).fetchone()[0]
    assert last_claim < epoch(decom.drain_at)


def test_incident_workers_are_distinct(small: tuple[SimulationResult, Path]) -> None:
    gt = small[0].ground_truth
    roles = {gt.crash.worker_id, gt.flapping.worker_id, gt.decommission.worker_id}
    assert len(roles) == 3 and not roles & set(gt.scale_up.worker_ids)


def test_markdown_lists_the_ground_truth(small: tuple[SimulationResult, Path]) -> None:
    gt = small[0].ground_truth
    text = small[0].to_markdown()
    assert f"`{gt.crash.worker_id}`" in text and f"task {gt.crash.task_id}" in text
    assert gt.failure_incident.start.strftime("%Y-%m-%dT%H:%M:%S") in text
    assert text.count("min,") + text.count("min)") >= len(FLAP_SILENCES_MIN)


# -- targets ----------------------------------------------------------------------------
def test_file_is_left_compact_and_standalone(small: tuple[SimulationResult, Path]) -> None:
    result, path = small
    assert result.path == str(path)
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    with qa.connect(path, readonly=True) as db:
        assert qa.get_worker(db, result.ground_truth.crash.worker_id).worker_id
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def test_refuses_a_non_empty_file_unless_overwrite(
    small: tuple[SimulationResult, Path], tmp_path: Path
) -> None:
    path = tmp_path / "copy.db"
    shutil.copy(small[1], path)
    with pytest.raises(ValueError, match="overwrite=True"):
        simulate(path, seed=5, **SMALL)
    assert dump(path) == dump(small[1])
    result = simulate(path, seed=0, overwrite=True, **SMALL)
    assert dump(path) == dump(small[1])
    assert result.ground_truth == small[0].ground_truth


def test_refuses_a_non_empty_open_store_unless_overwrite() -> None:
    args: dict[str, Any] = {"workers": 4, "duration": "2h", "progress": False}
    with qa.connect(":memory:") as fresh:
        expected = simulate(fresh, seed=2, **args)
    with qa.connect(":memory:") as db:
        qa.register_worker(db, "someone")
        with pytest.raises(ValueError, match="overwrite=True"):
            simulate(db, seed=2, **args)
        assert [w.worker_id for w in qa.list_workers(db)] == ["someone"]
        assert simulate(db, seed=2, overwrite=True, **args) == expected
        assert "someone" not in {w.worker_id for w in qa.list_workers(db, include_removed=True)}


def test_never_replaces_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, " * 100)
    with pytest.raises(qa.SchemaError):
        simulate(path, overwrite=True, **SMALL)
    assert path.read_text() == "not a database, " * 100


def test_open_store_clocks() -> None:
    args: dict[str, Any] = {"workers": 4, "duration": "2h", "progress": False}
    clock = qa.FakeClock()
    with qa.connect(":memory:", clock=clock) as db:
        result = simulate(db, **args)
        assert db.clock is clock and clock() == epoch(result.end)
    with qa.connect(":memory:") as db:
        before = db.clock
        simulate(db, **args)
        assert db.clock is before


def test_read_only_store_is_refused(small: tuple[SimulationResult, Path]) -> None:
    with qa.connect(small[1], readonly=True) as db, pytest.raises(qa.ReadOnlyError):
        simulate(db, overwrite=True, **SMALL)


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with qa.connect(":memory:") as db:
        simulate(db, workers=4, duration="2h", progress=True)
    captured = capsys.readouterr()
    assert "simulating" in captured.err and captured.out == ""


# -- bad arguments ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"workers": 0}, ValueError, "workers=0"),
        ({"workers": -3}, ValueError, "workers=-3"),
        ({"workers": 3}, ValueError, "workers=3"),
        ({"workers": 2.5}, TypeError, "workers must be an int"),
        ({"workers": True}, TypeError, "workers must be an int"),
        ({"workers": "24"}, TypeError, "workers must be an int"),
        ({"duration": -3600}, ValueError, "duration"),
        ({"duration": "-6h"}, ValueError, "duration"),
        ({"duration": 0}, ValueError, "duration"),
        ({"duration": "30min"}, ValueError, "duration='30min' is too short"),
        ({"duration": "soon"}, ValueError, "duration"),
        ({"duration": [6]}, TypeError, "duration"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": None}, TypeError, "seed must be an int"),
        ({"start": "not a time"}, ValueError, "start"),
        ({"start": [1]}, TypeError, "start"),
        ({"progress": "yes"}, TypeError, "progress must be a bool"),
        ({"overwrite": 1}, TypeError, "overwrite must be a bool"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], error: type, match: str) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(error, match=match):
        simulate(path, **{"progress": False, **kwargs})
    assert not path.exists()


@pytest.mark.parametrize(
    ("target", "error"), [(":memory:", ValueError), ("sqlite://", ValueError), (42, TypeError)]
)
def test_bad_targets(target: Any, error: type) -> None:
    with pytest.raises(error, match="target"):
        simulate(target, workers=4, duration="2h", progress=False)
