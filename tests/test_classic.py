"""Reading classic queue databases (task_queue, workers, text timestamps) read-only."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import qanalytics as qa
from qanalytics.cli import main

CLASSIC_DDL = """
CREATE TABLE task_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 100,
    payload TEXT NOT NULL DEFAULT '{}',
    compatibility TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 5,
    run_after_utc DATETIME NOT NULL DEFAULT (datetime('now')),
    lease_until_utc DATETIME,
    reserved_at_utc DATETIME,
    processing_started_utc DATETIME,
    finished_at_utc DATETIME,
    locked_by TEXT,
    error_message TEXT,
    idempotency_key TEXT UNIQUE,
    created_at_utc DATETIME NOT NULL DEFAULT (datetime('now')),
    updated_at_utc DATETIME NOT NULL DEFAULT (datetime('now'))
);
ALTER TABLE task_queue ADD COLUMN region TEXT
    GENERATED ALWAYS AS (json_extract(compatibility, '$.region')) VIRTUAL;
CREATE INDEX ix_task_queue_status ON task_queue (status, priority, run_after_utc);
CREATE TABLE workers (
    worker_id TEXT PRIMARY KEY,
    capabilities TEXT NOT NULL DEFAULT '{}',
    heartbeat_utc DATETIME NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE task_logs (
    log_id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id INTEGER NOT NULL,
    at_utc DATETIME NOT NULL DEFAULT (datetime('now')),
    level TEXT NOT NULL DEFAULT 'INFO',
    message TEXT,
    details TEXT
);
CREATE VIEW v_queue_status_summary AS
    SELECT status, type, count(*) AS n FROM task_queue GROUP BY status, type;
CREATE VIEW v_worker_status AS
    SELECT worker_id, heartbeat_utc,
           (julianday('now') - julianday(heartbeat_utc)) * 86400.0 AS age_s
    FROM workers;
"""

T0 = datetime(2024, 3, 1, 10, 0, 0, tzinfo=UTC).timestamp()
NOW = T0 + 1800.0


def plain(offset: float) -> str:
    """``datetime('now')`` style: ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.fromtimestamp(T0 + offset, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(offset: float, suffix: str = "+00:00") -> str:
    """ISO 8601 with ``T``, milliseconds and an explicit UTC offset."""
    moment = datetime.fromtimestamp(T0 + offset, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}{suffix}"


# id, type, status, attempts, max_attempts, created, run_after, reserved, started, finished,
# locked_by, error. Times are offsets from T0 in mixed text formats.
TASKS: list[tuple[Any, ...]] = [
    (
        1,
        "email",
        "completed",
        0,
        3,
        plain(0),
        plain(0),
        iso(10),
        iso(11, "Z"),
        plain(70),
        "w1",
        None,
    ),
    (2, "email", "completed", 1, 3, plain(0), plain(0), iso(300, "Z"), None, iso(330), "w2", None),
    (
        3,
        "email",
        "failed",
        3,
        3,
        iso(60),
        iso(60),
        plain(600),
        None,
        iso(620.25),
        "w1",
        "smtp down",
    ),
    (
        4,
        "report",
        "failed",
        0,
        3,
        plain(120),
        plain(120),
        None,
        None,
        plain(180),
        None,
        "Cancelled by user",
    ),
    (
        5,
        "report",
        "dead_letter",
        5,
        5,
        plain(120),
        plain(120),
        plain(900),
        plain(901),
        plain(960),
        "w2",
        "bad input",
    ),
    (6, "report", "leased", 0, 3, plain(1200), plain(1200), iso(1210), None, None, "w3", None),
    (
        7,
        "email",
        "processing",
        1,
        3,
        iso(1300, "Z"),
        iso(1300),
        plain(1400),
        plain(1401),
        None,
        "w1",
        "timeout",
    ),
    (8, "email", "queued", 0, 3, plain(1500), plain(1500), None, None, None, None, None),
    (
        9,
        "email",
        "queued",
        2,
        3,
        plain(1000),
        plain(2000),
        plain(1100),
        None,
        None,
        "w2",
        "timeout",
    ),
    (
        10,
        "report",
        "completed",
        0,
        3,
        iso(1600),
        iso(1600),
        iso(1650),
        None,
        plain(1700),
        "w-gone",
        None,
    ),
]
WORKERS = [
    ("w1", '{"gpu": true, "region": "eu"}', iso(1790.5, "Z")),
    ("w2", '{"gpu": false}', plain(1400)),
    ("w3", "{}", iso(1700)),
]


def build_classic(path: Path, *, tasks: list[tuple[Any, ...]] = TASKS, wal: bool = True) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(CLASSIC_DDL)
    conn.executemany(
        "INSERT INTO task_queue (id, type, status, attempts, max_attempts, created_at_utc,"
        " run_after_utc, reserved_at_utc, processing_started_utc, finished_at_utc, locked_by,"
        " error_message, updated_at_utc, compatibility)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, datetime('now'), '{\"region\": \"eu\"}')",
        tasks,
    )
    conn.executemany(
        "INSERT INTO workers (worker_id, capabilities, heartbeat_utc) VALUES (?, ?, ?)", WORKERS
    )
    conn.executemany(
        "INSERT INTO task_logs (task_id, at_utc, level, message) VALUES (?, ?, 'INFO', ?)",
        [(t[0], t[5], "enqueued") for t in tasks],
    )
    conn.commit()
    conn.close()
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def classic_path(tmp_path: Path) -> Path:
    return build_classic(tmp_path / "classic.db")


@pytest.fixture
def cdb(classic_path: Path) -> Iterator[qa.Store]:
    with qa.connect(classic_path, readonly=True, clock=lambda: NOW) as store:
        yield store


def at(offset: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + offset, unit="s", tz="UTC")


# -- opening ---------------------------------------------------------------------------------
def test_detects_the_classic_layout(cdb: qa.Store) -> None:
    assert cdb.layout == "classic"
    assert "heartbeat_history" not in cdb.capabilities
    assert "attempt_history" not in cdb.capabilities
    assert "classic layout" in repr(cdb)
    assert cdb.latest_event_at() == pytest.approx(T0 + 1790.5)


def test_layout_argument(classic_path: Path, tmp_path: Path) -> None:
    with qa.connect(classic_path, readonly=True, layout="classic") as db:
        assert db.layout == "classic"
    with pytest.raises(qa.SchemaError, match="classic queue database"):
        qa.connect(classic_path, readonly=True, layout="native")
    with pytest.raises(qa.SchemaError, match=r"readonly=True"):
        qa.connect(classic_path)
    with pytest.raises(ValueError, match="read-only"):
        qa.connect(classic_path, layout="classic")
    with pytest.raises(ValueError, match="layout="):
        qa.connect(classic_path, readonly=True, layout="other")  # type: ignore[arg-type]
    native = tmp_path / "native.db"
    qa.connect(native).close()
    with qa.connect(native, readonly=True) as db:
        assert db.layout == "native"
    with pytest.raises(qa.SchemaError, match="does not have the classic"):
        qa.connect(native, readonly=True, layout="classic")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE workers (worker_id TEXT)")
    with pytest.raises(qa.SchemaError, match="not a qanalytics store"):
        qa.connect(other, readonly=True)
    conn.close()


def test_never_writes_to_the_file(classic_path: Path) -> None:
    before = sha256(classic_path)
    header = classic_path.read_bytes()[18:20]
    assert header == b"\x02\x02"  # WAL mode
    with qa.connect(classic_path, readonly=True) as db:
        qa.workers(db)
        qa.tasks(db)
        qa.depth_timeline(db, freq="10min")
        with pytest.raises(qa.ReadOnlyError):
            qa.enqueue(db, "email")
    assert sha256(classic_path) == before
    assert classic_path.read_bytes()[18:20] == header
    assert sorted(p.name for p in classic_path.parent.iterdir()) == ["classic.db"]
    # The views are the connection's own: a fresh connection sees only the classic schema.
    with sqlite3.connect(f"file:{classic_path}?mode=ro&immutable=1", uri=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert "tasks" not in names and "task_queue" in names


def test_reads_while_a_writer_holds_the_file(classic_path: Path) -> None:
    writer = sqlite3.connect(classic_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO task_queue (type, status, created_at_utc) VALUES ('email', 'queued', ?)",
            (plain(1790),),
        )
        with qa.connect(classic_path, readonly=True, clock=lambda: NOW) as db:
            assert qa.queue_metrics(db)["task_statistics"]["total"] == 10  # uncommitted unseen
            assert len(qa.tasks(db)) == 10
        writer.execute("COMMIT")
        with qa.connect(classic_path, readonly=True, clock=lambda: NOW) as db:
            assert qa.queue_metrics(db)["task_statistics"]["total"] == 11
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        writer.close()


def test_rollback_journal_file_stays_as_it_is(tmp_path: Path) -> None:
    path = build_classic(tmp_path / "delete.db", wal=False)
    before = sha256(path)
    with qa.connect(path, readonly=True, clock=lambda: NOW) as db:
        assert db.layout == "classic"
        assert len(qa.workers(db)) == 3
    assert sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["delete.db"]


# -- what works, against hand computations ---------------------------------------------------
def test_timestamps_in_mixed_formats(classic_path: Path) -> None:
    with qa.connect(classic_path, readonly=True) as db:
        rows = dict(db.query("SELECT id, finished_at FROM tasks WHERE finished_at IS NOT NULL"))
        created = dict(db.query("SELECT id, created_at FROM tasks"))
        beats = dict(db.query("SELECT worker_id, last_heartbeat_at FROM workers"))
    assert rows[3] == T0 + 620.25  # ISO with T, milliseconds and +00:00
    assert rows[1] == T0 + 70  # datetime('now') style
    assert created[7] == T0 + 1300  # ISO with Z
    assert beats["w1"] == T0 + 1790.5


def test_workers(cdb: qa.Store) -> None:
    frame = qa.workers(cdb, include_removed=True)
    assert frame["worker_id"].astype(str).tolist() == ["w-gone", "w1", "w2", "w3"]
    assert frame["state"].astype(str).tolist() == ["removed", "active", "stale", "late"]
    assert frame["since_heartbeat_s"].tolist()[1:] == [9.5, 400.0, 100.0]
    assert frame["last_heartbeat_at"].iloc[1] == at(1790.5)
    assert frame["heartbeats"].isna().all()
    assert frame["registered_at"].isna().all()
    assert frame["current_task_id"].tolist() == [pd.NA, 7, pd.NA, 6]
    assert frame["tasks_completed"].tolist() == [1, 1, 1, 0]
    assert frame["tasks_failed"].tolist() == [0, 1, 1, 0]
    assert frame["cap_gpu"].tolist() == [None, True, False, None]
    assert qa.workers(cdb)["worker_id"].astype(str).tolist() == ["w1", "w2", "w3"]
    # Before a worker's last heartbeat its state then is unknown (no history).
    past = qa.workers(cdb, now=T0 + 1500).set_index("worker_id")
    assert past.loc["w2", "state"] == "late"
    assert pd.isna(past.loc["w1", "state"]) and pd.isna(past.loc["w1", "last_heartbeat_at"])


def test_tasks(cdb: qa.Store) -> None:
    frame = qa.tasks(cdb).set_index("id")
    assert frame["status"].astype(str).tolist() == [
        "completed", "completed", "failed", "cancelled", "failed",
        "processing", "processing", "queued", "queued", "completed",
    ]  # fmt: skip
    assert frame["attempts"].tolist() == [1, 2, 3, 0, 5, 1, 2, 0, 2, 1]
    assert frame.loc[1, "wait_s"] == 10.0 and frame.loc[1, "run_s"] == 60.0
    assert math.isnan(frame.loc[2, "wait_s"])  # retried: first claim unknown
    assert frame.loc[2, "run_s"] == 30.0
    assert frame.loc[3, "run_s"] == pytest.approx(20.25)
    assert frame.loc[10, "wait_s"] == 50.0
    assert frame.loc[6, "wait_s"] == 10.0 and math.isnan(frame.loc[6, "run_s"])
    assert frame["worker_id"].astype(object).fillna("-").tolist() == [
        "w1", "w2", "w1", "-", "w2", "w3", "w1", "-", "-", "w-gone",
    ]  # fmt: skip
    assert frame.loc[4, "error"] == "Cancelled by user"
    assert frame.loc[9, "error"] == "timeout"
    assert frame.loc[9, "run_after"] == at(2000)
    assert qa.tasks(cdb, status="failed")["id"].tolist() == [3, 5]
    assert qa.tasks(cdb, types="report")["id"].tolist() == [4, 5, 6, 10]
    # As of a past moment: task 1 was processing, task 2 (retried) has an unknown state.
    past = qa.tasks(cdb, now=T0 + 30).set_index("id")
    assert past.loc[1, "status"] == "processing"
    assert pd.isna(past.loc[2, "status"]) and pd.isna(past.loc[2, "attempts"])


def test_queue_metrics_and_depth(cdb: qa.Store) -> None:
    metrics = qa.queue_metrics(cdb)
    assert metrics["queue_depth_by_status"] == {
        "queued": 2, "processing": 2, "completed": 3, "failed": 2, "cancelled": 1,
    }  # fmt: skip
    assert metrics["queue_depth_by_type"] == {"email": 2}
    assert metrics["oldest_queued_task_age_seconds"] == 800.0
    assert metrics["task_statistics"] == {"total": 10, "finished": 6, "runnable": 1, "delayed": 1}
    assert metrics["success_rate"] == 0.6
    assert (metrics["total_workers"], metrics["active_workers"], metrics["stale_workers"]) == (
        3, 1, 1,
    )  # fmt: skip
    depth = qa.queue_depth(cdb)
    pairs = zip(depth["status"].astype(str), depth["type"].astype(str), depth["count"], strict=True)
    assert list(pairs) == [
        ("queued", "email", 2), ("processing", "email", 1), ("processing", "report", 1),
        ("completed", "email", 2), ("completed", "report", 1), ("failed", "email", 1),
        ("failed", "report", 1), ("cancelled", "report", 1),
    ]  # fmt: skip
    with pytest.raises(qa.UnsupportedError, match="heartbeat history"):
        qa.queue_metrics(cdb, now=T0 + 600)


def test_success_rate_throughput_latency(cdb: qa.Store) -> None:
    rate = qa.success_rate(cdb, by="type")
    assert rate["type"].astype(str).tolist() == ["email", "report"]
    assert rate["completed"].tolist() == [2, 1] and rate["failed"].tolist() == [1, 1]
    overall = qa.success_rate(cdb)
    assert overall["total"].tolist() == [5] and overall["rate"].tolist() == [0.6]
    tp = qa.throughput(cdb)
    assert dict(zip(tp["outcome"].astype(str), tp["count"], strict=True)) == {
        "completed": 3, "failed": 2, "cancelled": 1,
    }  # fmt: skip
    by_worker = qa.throughput(cdb, by="worker_id")
    w1 = by_worker[by_worker["worker_id"] == "w1"]
    assert dict(zip(w1["outcome"].astype(str), w1["count"], strict=True)) == {
        "completed": 1,
        "failed": 1,
    }
    lat = qa.latency(cdb, by=None, quantiles=(0.5,))
    # Waits known for tasks 1 and 10 only (10 s, 50 s); runs 60, 30, 20.25, 60, 50.
    assert lat["wait_s"].tolist() == [30.0]
    assert lat["run_s"].tolist() == [50.0]
    assert lat["count"].tolist() == [5]


def test_depth_timeline(cdb: qa.Store) -> None:
    depth = qa.depth_timeline(cdb, freq="10min", since=T0)
    assert depth["bucket"].tolist() == [at(0), at(600), at(1200), at(1800)]
    assert depth["queued"].tolist() == [2, 1, 2, 2]
    assert depth["processing"].tolist() == [0, 0, 2, 2]
    by_type = qa.depth_timeline(cdb, freq="30min", since=T0, by="type")
    last = by_type[by_type["bucket"] == at(1800)].set_index("type")
    assert last.loc["email", "queued"] == 2 and last.loc["report", "processing"] == 1


@pytest.mark.parametrize(
    ("call", "missing"),
    [
        (lambda db: qa.heartbeats(db), "heartbeat history"),
        (lambda db: qa.heartbeat_gaps(db), "heartbeat history"),
        (lambda db: qa.outages(db), "heartbeat history"),
        (lambda db: qa.uptime(db), "heartbeat history"),
        (lambda db: qa.alive_intervals(db), "heartbeat history"),
        (lambda db: qa.utilization(db), "heartbeat history"),
        (lambda db: qa.attempts(db), "per-attempt rows"),
        (lambda db: qa.retry_outcomes(db), "per-attempt rows"),
        (lambda db: qa.success_rate(db, level="attempt"), "per-attempt rows"),
        (lambda db: qa.capacity.plan(db, target_wait="30s"), "per-attempt rows"),
        (lambda db: qa.capacity.fleet(db), "per-attempt rows"),
    ],
)
def test_unsupported_questions_say_why(cdb: qa.Store, call: Any, missing: str) -> None:
    with pytest.raises(qa.UnsupportedError, match=missing) as info:
        call(cdb)
    assert "classic" in str(info.value) and "; " in str(info.value)  # says what works instead


def test_empty_classic_database(tmp_path: Path) -> None:
    path = build_classic(tmp_path / "empty.db", tasks=[])
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM workers")
    conn.close()
    with qa.connect(path, readonly=True) as db:
        assert db.layout == "classic"
        assert qa.workers(db).empty and qa.tasks(db).empty
        assert qa.queue_metrics(db)["task_statistics"]["total"] == 0
        assert qa.queue_depth(db).empty and qa.success_rate(db).empty
        assert qa.throughput(db).empty and qa.latency(db).empty
        assert qa.depth_timeline(db).empty
        assert db.latest_event_at() is None


# -- CLI and report --------------------------------------------------------------------------
def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_on_a_classic_database(classic_path: Path) -> None:
    db = str(classic_path)
    result = run("workers", "--db", db, "--now", "latest", "--format", "json")
    assert result.exit_code == 0 and '"w1"' in result.output
    result = run("stale", "--db", db, "--now", "latest")
    assert result.exit_code == 1 and "w2" in result.output
    result = run("metrics", "--db", db, "--now", "latest", "--format", "prometheus")
    assert result.exit_code == 0 and 'qanalytics_queue_depth{status="cancelled"} 1' in result.output
    result = run("success-rate", "--db", db, "--now", "latest", "--format", "csv")
    assert result.exit_code == 0 and "0.6" in result.output
    result = run("outages", "--db", db, "--now", "latest")
    assert result.exit_code == 2 and "heartbeat history" in result.output


def test_report_on_a_classic_database(classic_path: Path, tmp_path: Path) -> None:
    before = sha256(classic_path)
    out = qa.write_report(classic_path, tmp_path / "r.html", now="latest", progress=False)
    text = out.read_text(encoding="utf-8")
    assert "classic queue database" in text
    assert "Not available" in text and "heartbeat history" in text
    assert "Traceback" not in text
    assert sha256(classic_path) == before
