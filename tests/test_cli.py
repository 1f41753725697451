"""The ``qanalytics`` command: every command and format, exit codes, errors, subprocesses."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

import qanalytics as qa
from qanalytics.cli import main, prometheus_text

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = T0 + 900  # the moment the fixture store is asked about
NOW_ARG = str(NOW)
WEIRD_TYPE = 'we"ird\\type\nline'


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    """A store written through the write API with a fake clock.

    At ``NOW``: ``w-active`` beats every 30 s; ``w-late`` last beat 120 s ago; ``w-stale``
    went silent at T0+10 holding ``held``; ``w-gone`` was removed at T0+100. One task
    completed, one failed for good, and queued tasks of three types (one oddly named).
    """
    path = tmp_path / "queue.db"
    clock = qa.FakeClock(T0)
    ids: dict[str, Any] = {"path": path}
    with qa.connect(path, clock=clock) as db:
        for worker, caps in [
            ("w-active", {"gpu": True}),
            ("w-late", {"gpu": False}),
            ("w-stale", {"gpu": False}),
            ("w-gone", {}),
        ]:
            qa.register_worker(db, worker, caps)
        ids["done"] = qa.enqueue(db, "email", {"to": "a"})
        ids["bad"] = qa.enqueue(db, "report", max_attempts=1)
        ids["held"] = qa.enqueue(db, "email", {"to": "b"})
        clock.advance(5)
        assert qa.claim(db, "w-active") is not None
        assert qa.claim(db, "w-active") is not None
        clock.advance(5)
        assert qa.claim(db, "w-stale") is not None
        qa.heartbeat(db, "w-stale", task_id=ids["held"])
        qa.heartbeat(db, "w-gone")
        clock.advance(20)
        qa.complete(db, ids["done"])
        qa.fail(db, ids["bad"], "boom")
        ids["queued"] = [
            qa.enqueue(db, "email"),
            qa.enqueue(db, "resize"),
            qa.enqueue(db, WEIRD_TYPE),
        ]
        while clock() < NOW:
            clock.advance(30)
            qa.heartbeat(db, "w-active")
            if clock() <= NOW - 120:
                qa.heartbeat(db, "w-late")
            if clock() == T0 + 90:
                qa.remove_worker(db, "w-gone")
        assert clock() == NOW
    return ids


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def db_args(store: dict[str, Any]) -> list[str]:
    return ["--db", str(store["path"]), "--now", NOW_ARG]


def assert_user_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


# -- group ----------------------------------------------------------------------------------


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert qa.__version__ in result.stdout


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ["workers", "stale", "outages", "metrics", "success-rate", "requeue-orphans"]:
        assert name in result.stdout
    assert "simulate" in result.stdout
    assert "latest" in run("workers", "--help").stdout  # --now is documented


# -- workers --------------------------------------------------------------------------------


def test_workers_table(store: dict[str, Any]) -> None:
    result = run("workers", *db_args(store))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "worker_id" in lines[0] and "state" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"w-active", "w-late", "w-stale"}
    assert "stale" in rows["w-stale"] and "active" in rows["w-active"]
    # Timestamps are 'YYYY-MM-DD HH:MM:SS' (UTC): the last beat of w-active is NOW.
    assert "2023-11-14 22:28:20" in rows["w-active"]
    assert "+00:00" not in result.stdout


def test_workers_json(store: dict[str, Any]) -> None:
    result = run("workers", *db_args(store), "--format", "json", "--include-removed")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    by_id = {r["worker_id"]: r for r in records}
    assert set(by_id) == {"w-active", "w-late", "w-stale", "w-gone"}
    assert by_id["w-gone"]["state"] == "removed"
    assert by_id["w-stale"]["current_task_id"] == store["held"]
    assert by_id["w-active"]["current_task_id"] is None
    assert by_id["w-active"]["capabilities"] == {"gpu": True}
    assert by_id["w-active"]["last_heartbeat_at"] == "2023-11-14T22:28:20.000Z"
    assert by_id["w-active"]["tasks_completed"] == 1
    assert by_id["w-stale"]["removed_at"] is None


def test_workers_csv_and_state_filter(store: dict[str, Any]) -> None:
    result = run("workers", *db_args(store), "--format", "csv", "--state", "late")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["worker_id"] for r in rows] == ["w-late"]
    assert rows[0]["last_heartbeat_at"] == "2023-11-14T22:26:20.000Z"
    assert json.loads(rows[0]["capabilities"]) == {"gpu": False}


def test_workers_state_removed_includes_removed(store: dict[str, Any]) -> None:
    result = run("workers", *db_args(store), "--state", "removed", "--format", "json")
    assert [r["worker_id"] for r in json.loads(result.stdout)] == ["w-gone"]


def test_workers_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    qa.connect(path).close()
    result = run("workers", "--db", str(path))
    assert result.exit_code == 0
    assert result.stdout.strip() == "No workers."
    assert json.loads(run("workers", "--db", str(path), "--format", "json").stdout) == []


def test_db_from_environment(store: dict[str, Any]) -> None:
    env = {"QANALYTICS_DB": str(store["path"])}
    result = run("workers", "--now", NOW_ARG, "--format", "json", env=env)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3


def test_now_accepts_iso(store: dict[str, Any]) -> None:
    result = run(
        "workers", "--db", str(store["path"]), "--now", "2023-11-14T22:28:20Z", "--format", "json"
    )
    states = {r["worker_id"]: r["state"] for r in json.loads(result.stdout)}
    assert states == {"w-active": "active", "w-late": "late", "w-stale": "stale"}


# -- stale ----------------------------------------------------------------------------------


def test_stale_exits_1_and_lists_held_task(store: dict[str, Any]) -> None:
    result = run("stale", *db_args(store))
    assert result.exit_code == 1, result.output
    assert "w-stale" in result.stdout
    assert str(store["held"]) in result.stdout
    assert "w-late" not in result.stdout


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_stale_formats(store: dict[str, Any], fmt: str) -> None:
    result = run("stale", *db_args(store), "--format", fmt)
    assert result.exit_code == 1
    if fmt == "json":
        records = json.loads(result.stdout)
    else:
        records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["worker_id"] for r in records] == ["w-stale"]
    assert str(records[0]["held_task_id"]) == str(store["held"])
    assert float(records[0]["since_heartbeat_s"]) == pytest.approx(890.0)


def test_stale_exits_0_when_none(store: dict[str, Any]) -> None:
    result = run("stale", *db_args(store), "--threshold", "1h")
    assert result.exit_code == 0, result.output
    assert "No stale workers" in result.stdout
    early = run("stale", "--db", str(store["path"]), "--now", str(T0 + 60), "--format", "json")
    assert early.exit_code == 0
    assert json.loads(early.stdout) == []


def test_stale_threshold_below_active_window(store: dict[str, Any]) -> None:
    result = run("stale", *db_args(store), "--threshold", "100s", "--format", "json")
    assert result.exit_code == 1
    assert {r["worker_id"] for r in json.loads(result.stdout)} == {"w-late", "w-stale"}
    short = run("stale", *db_args(store), "--threshold", "10s", "--format", "json")
    assert short.exit_code == 1, short.output


# -- outages --------------------------------------------------------------------------------


def test_outages_formats(store: dict[str, Any]) -> None:
    args = ["outages", *db_args(store), "--min-gap", "2min"]
    records = json.loads(run(*args, "--format", "json").stdout)
    stale = [r for r in records if r["worker_id"] == "w-stale"]
    assert len(stale) == 1
    assert stale[0]["ongoing"] is True
    assert stale[0]["tasks_in_flight"] == [store["held"]]
    assert stale[0]["ended_by"] == "still silent"
    assert stale[0]["duration_s"] == pytest.approx(890.0)

    table = run(*args)
    assert table.exit_code == 0, table.output
    assert "w-stale" in table.stdout and "still silent" in table.stdout

    rows = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv").stdout)))
    row = next(r for r in rows if r["worker_id"] == "w-stale")
    # CSV joins a list of ids with ";" and writes booleans as true/false.
    assert row["tasks_in_flight"] == str(store["held"])
    assert row["ongoing"] == "true"


def test_outages_since_window(store: dict[str, Any]) -> None:
    args = ["outages", *db_args(store), "--min-gap", "2min", "--since", "1min"]
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    # Only silences still ongoing reach into the last minute.
    assert records
    assert all(r["ongoing"] for r in records)
    empty = run("outages", *db_args(store), "--min-gap", "1h")
    assert empty.exit_code == 0
    assert empty.stdout.startswith("No outages between ")


# -- metrics --------------------------------------------------------------------------------


def test_metrics_prometheus_matches_queue_metrics(store: dict[str, Any]) -> None:
    result = run("metrics", *db_args(store), "--format", "prometheus")
    assert result.exit_code == 0, result.output
    with qa.connect(store["path"], readonly=True) as db:
        expected = qa.queue_metrics(db, now=NOW)
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    for family in families.values():
        assert family.type == "gauge"
        assert family.name.startswith("qanalytics_")
        assert family.documentation
    depth = {s.labels["status"]: s.value for s in families["qanalytics_queue_depth"].samples}
    assert depth == {k: float(v) for k, v in expected["queue_depth_by_status"].items()}
    by_type = {s.labels["type"]: s.value for s in families["qanalytics_queued_tasks"].samples}
    assert by_type == {k: float(v) for k, v in expected["queue_depth_by_type"].items()}
    assert WEIRD_TYPE in by_type  # quote, backslash and newline survive the escaping
    (oldest,) = families["qanalytics_oldest_queued_task_age_seconds"].samples
    assert oldest.value == pytest.approx(expected["oldest_queued_task_age_seconds"])
    (rate,) = families["qanalytics_success_rate"].samples
    assert rate.value == pytest.approx(expected["success_rate"]) == pytest.approx(0.5)
    states = {s.labels["state"]: s.value for s in families["qanalytics_workers"].samples}
    assert states["active"] == expected["active_workers"] == 1
    assert states["stale"] == expected["stale_workers"] == 1
    assert states["total"] == expected["total_workers"] == 3
    assert states["late"] == 1
    (runnable,) = families["qanalytics_runnable_tasks"].samples
    assert runnable.value == expected["task_statistics"]["runnable"]


def test_prometheus_text_empty_values() -> None:
    with qa.connect(":memory:", clock=qa.FakeClock(T0)) as db:
        text = prometheus_text(qa.queue_metrics(db))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert math.isnan(families["qanalytics_success_rate"].samples[0].value)
    # Nothing queued has no age: the family is there, its sample is left out.
    assert families["qanalytics_oldest_queued_task_age_seconds"].samples == []
    assert families["qanalytics_queued_tasks"].samples == []
    assert "# TYPE qanalytics_queued_tasks gauge" in text


def test_prometheus_label_escaping() -> None:
    metrics = {
        "queue_depth_by_status": {"queued": 1},
        "queue_depth_by_type": {'a"b\\c\nd': 1},
        "oldest_queued_task_age_seconds": 2.5,
        "task_statistics": {"runnable": 1, "delayed": 0},
        "success_rate": None,
        "failure_rate": None,
        "total_workers": 0,
        "active_workers": 0,
        "stale_workers": 0,
    }
    text = prometheus_text(metrics)
    assert 'qanalytics_queued_tasks{type="a\\"b\\\\c\\nd"} 1\n' in text
    assert text.endswith("\n")


def test_metrics_json_and_table(store: dict[str, Any]) -> None:
    with qa.connect(store["path"], readonly=True) as db:
        expected = qa.queue_metrics(db, now=NOW)
    result = run("metrics", *db_args(store), "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == expected
    table = run("metrics", *db_args(store))
    assert table.exit_code == 0
    assert "queue_depth_by_status.queued" in table.stdout
    assert "success_rate" in table.stdout


def test_metrics_rejects_csv(store: dict[str, Any]) -> None:
    assert_user_error(run("metrics", *db_args(store), "--format", "csv"), "--format")


# -- success-rate ---------------------------------------------------------------------------


def test_success_rate_formats(store: dict[str, Any]) -> None:
    args = ["success-rate", *db_args(store), "--freq", "1h"]
    records = json.loads(run(*args, "--format", "json").stdout)
    assert sum(r["completed"] for r in records) == 1
    assert sum(r["failed"] for r in records) == 1
    finished = [r for r in records if r["total"]]
    assert finished and all(0.0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] for r in finished)

    by_type = json.loads(run(*args, "--by", "type", "--format", "json").stdout)
    rates = {r["type"]: r["rate"] for r in by_type if r["total"]}
    assert rates == {"email": 1.0, "report": 0.0}

    table = run(*args, "--by", "type")
    assert table.exit_code == 0, table.output
    assert "email" in table.stdout and "ci_low" in table.stdout

    rows = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv").stdout)))
    assert sum(int(r["completed"]) for r in rows) == 1


def test_success_rate_bad_freq(store: dict[str, Any]) -> None:
    assert_user_error(run("success-rate", *db_args(store), "--freq", "banana"))


# -- requeue-orphans ------------------------------------------------------------------------


def test_requeue_orphans_dry_run_changes_nothing(store: dict[str, Any]) -> None:
    path = store["path"]
    before = Path(path).read_bytes()
    result = run("requeue-orphans", *db_args(store), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"Would take back 1 orphaned task(s): {store['held']}" in result.stdout
    assert "worker stale" in result.stdout
    assert Path(path).read_bytes() == before
    with qa.connect(path, readonly=True) as db:
        assert qa.get_task(db, store["held"]).status == "processing"
    records = json.loads(
        run("requeue-orphans", *db_args(store), "--dry-run", "--format", "json").stdout
    )
    assert records == [
        {
            "task_id": store["held"],
            "type": "email",
            "worker_id": "w-stale",
            "attempts": 1,
            "max_attempts": 3,
            "reason": "worker stale",
            "status": "queued",
        }
    ]


def test_requeue_orphans_writes_and_reports(store: dict[str, Any]) -> None:
    result = run("requeue-orphans", *db_args(store))
    assert result.exit_code == 0, result.output
    assert f"Took back 1 orphaned task(s): {store['held']}" in result.stdout
    with qa.connect(store["path"], readonly=True) as db:
        task = qa.get_task(db, store["held"])
    assert task.status == "queued"
    again = run("requeue-orphans", *db_args(store), "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout) == []
    assert run("requeue-orphans", *db_args(store)).stdout.strip() == "No orphaned tasks."


def test_requeue_orphans_dry_run_matches_real_run(tmp_path: Path) -> None:
    """Removed workers, expired leases and exhausted attempts, dry run against the real thing."""
    path = tmp_path / "orphans.db"
    clock = qa.FakeClock(T0)
    with qa.connect(path, clock=clock) as db:
        for worker in ["a", "b", "c"]:
            qa.register_worker(db, worker)
        removed = qa.enqueue(db, "x")
        leased = qa.enqueue(db, "x")
        last = qa.enqueue(db, "y", max_attempts=1)
        qa.enqueue(db, "z")
        claimed = [qa.claim(db, "a"), qa.claim(db, "b", lease="10s"), qa.claim(db, "c")]
        assert [t.id if t else None for t in claimed] == [removed, leased, last]
        qa.remove_worker(db, "a")
        clock.advance(60)
        qa.heartbeat(db, "b")
        now = str(clock())
    common = ["--db", str(path), "--now", now, "--stale-after", "30s", "--format", "json"]
    planned = json.loads(run("requeue-orphans", *common, "--dry-run").stdout)
    assert {r["task_id"]: (r["reason"], r["status"]) for r in planned} == {
        removed: ("worker removed", "queued"),
        leased: ("lease expired", "queued"),
        last: ("worker stale", "failed"),
    }
    done = json.loads(run("requeue-orphans", *common).stdout)
    assert done == planned


# -- simulate -------------------------------------------------------------------------------


def test_simulate_writes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "sim.db"
    args = ["simulate", str(path), "--workers", "4", "--duration", "2h"]
    result = run(*args, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert str(path) in result.stdout
    with qa.connect(path, readonly=True) as db:
        assert qa.queue_metrics(db)["total_workers"] >= 4
    # An existing store is kept unless --overwrite.
    assert_user_error(run(*args), "overwrite")
    again = run(*args, "--overwrite")
    assert again.exit_code == 0, again.output


def test_simulate_refuses_to_overwrite_a_stranger(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("precious\n")
    assert_user_error(run("simulate", str(path), "--overwrite", "--duration", "2h"))
    assert path.read_text() == "precious\n"


def test_simulate_needs_a_path() -> None:
    assert_user_error(run("simulate", env={"QANALYTICS_DB": ""}), "QANALYTICS_DB")


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["workers", "stale", "outages", "metrics", "success-rate", "requeue-orphans"]
)
def test_missing_file(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "nope.db"
    assert_user_error(run(command, "--db", str(missing)), "nope.db")
    assert not missing.exists()


def test_missing_db_option() -> None:
    assert_user_error(run("workers", env={"QANALYTICS_DB": ""}), "--db", "QANALYTICS_DB")


def test_directory(tmp_path: Path) -> None:
    assert_user_error(run("workers", "--db", str(tmp_path)), "directory")
    assert_user_error(run("requeue-orphans", "--db", str(tmp_path)), "directory")


def test_not_a_store(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    assert_user_error(run("metrics", "--db", str(text)), "not a SQLite database")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    assert_user_error(run("workers", "--db", str(other)), "not a qanalytics store")
    assert_user_error(run("requeue-orphans", "--db", str(other)), "qanalytics")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["stale", "--threshold", "5 parsecs"], "--threshold"),
        (["stale", "--threshold", "-5s"], "-5s"),
        (["outages", "--min-gap", "soon"], "--min-gap"),
        (["outages", "--since", "yesterday-ish"], "since"),
        (["workers", "--state", "sleepy"], "--state"),
        (["workers", "--now", "not a time"], "now"),
        (["success-rate", "--confidence", "2"], "confidence"),
        (["requeue-orphans", "--stale-after", "x"], "--stale-after"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_bad_arguments(store: dict[str, Any], args: list[str], needle: str) -> None:
    result = run(*args, "--db", str(store["path"]))
    assert_user_error(result, needle)


# -- real processes -------------------------------------------------------------------------


def qanalytics(*args: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("QANALYTICS_DB", None)
    if db is not None:
        env["QANALYTICS_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "qanalytics", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_subprocess_version() -> None:
    proc = qanalytics("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"qanalytics, version {qa.__version__}"


def test_subprocess_stale_and_prometheus(store: dict[str, Any]) -> None:
    stale = qanalytics("stale", "--now", NOW_ARG, db=store["path"])
    assert stale.returncode == 1, stale.stderr
    assert "w-stale" in stale.stdout
    metrics = qanalytics("metrics", "--format", "prometheus", "--now", NOW_ARG, db=store["path"])
    assert metrics.returncode == 0, metrics.stderr
    names = {f.name for f in text_string_to_metric_families(metrics.stdout)}
    assert {"qanalytics_queue_depth", "qanalytics_workers"} <= names


def test_subprocess_user_error_is_one_line(tmp_path: Path) -> None:
    proc = qanalytics("workers", "--db", str(tmp_path / "missing.db"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    bad = qanalytics("stale", "--threshold", "forever", db=tmp_path / "missing.db")
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1


def test_now_latest_reads_a_historical_store_as_of_its_last_event(tmp_path: Path) -> None:
    clock = qa.FakeClock(1_000_000.0)
    path = tmp_path / "old.db"
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "a")
        qa.register_worker(db, "b")
        clock.advance(600)
        qa.heartbeat(db, "a")
    # Today every worker of a months-old file is stale; as of its last event only "b" is.
    result = CliRunner().invoke(main, ["stale", "--db", str(path), "--now", "latest"])
    assert result.exit_code == 1
    assert "b" in result.output.split("held_task_id", 1)[1]
    assert " a " not in result.output


# -- maintenance ----------------------------------------------------------------------------


def _digest(path: Path) -> bytes:
    import hashlib

    return hashlib.sha256(path.read_bytes()).digest()


def test_prune_reports_and_is_idempotent(store: dict[str, Any]) -> None:
    path = str(store["path"])
    first = run("prune", "--db", path, "--keep", "5min", "--batch", "7", "--now", NOW_ARG)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("Rolled up ")
    assert "minute row(s)" in first.output and "Deleted" not in first.output
    again = run("prune", "--db", path, "--keep", "5min", "--now", NOW_ARG, "--format", "json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["heartbeats_rolled_up"] == 0
    assert data["cutoff"] == ((NOW - 300) // 60) * 60
    # The read side still sees the pruned beats, through the summary tiers.
    beats = run("outages", "--db", path, "--now", NOW_ARG, "--since", str(T0), "--format", "json")
    assert beats.exit_code == 0, beats.output
    assert {row["resolution"] for row in json.loads(beats.output)} <= {"raw", "summary"}
    stats = json.loads(run("stats", "--db", path, "--format", "json").output)
    assert stats["rollups"]["rows"] > 0
    assert stats["rollups"]["raw_history_starts_at"].startswith("2023-11-14T22:")


def test_prune_finished_tasks(store: dict[str, Any]) -> None:
    result = run("prune", "--db", str(store["path"]), "--finished-keep", "1min", "--now", NOW_ARG)
    assert result.exit_code == 0, result.output
    assert "Deleted 2 task(s) and 2 attempt(s)" in result.output
    with qa.connect(store["path"], readonly=True) as db:
        assert qa.tasks(db, now=NOW)["id"].tolist() == [store["held"], *store["queued"]]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["prune", "--keep", "forever"], "--keep"),
        (["prune", "--batch", "0"], "batch"),
        (["checkpoint", "--mode", "SOMETIMES"], "SOMETIMES"),
    ],
)
def test_maintenance_user_errors(store: dict[str, Any], args: list[str], needle: str) -> None:
    assert_user_error(run(*args, "--db", str(store["path"])), needle)


def test_maintenance_on_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    for command in ("prune", "vacuum", "checkpoint", "check", "stats"):
        assert_user_error(run(command, "--db", str(tmp_path / "missing.db")))
    assert list(tmp_path.iterdir()) == []


def test_vacuum_and_checkpoint(store: dict[str, Any]) -> None:
    path = str(store["path"])
    assert run("prune", "--db", path, "--keep", "1min", "--now", NOW_ARG).exit_code == 0
    incremental = run("vacuum", "--db", path)
    assert incremental.exit_code == 0, incremental.output
    assert incremental.output.startswith("Incremental vacuum freed ")
    full = run("vacuum", "--db", path, "--full")
    assert full.exit_code == 0, full.output
    assert full.output.startswith("Full vacuum freed ")
    done = run("checkpoint", "--db", path, "--mode", "truncate")
    assert done.exit_code == 0, done.output
    assert done.output.startswith("TRUNCATE checkpoint: ")
    assert run("checkpoint", "--db", path).output.startswith("PASSIVE checkpoint: ")


def test_vacuum_without_incremental_support(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with qa.connect(path, clock=qa.FakeClock(T0)) as db:
        qa.register_worker(db, "w")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
    assert run("vacuum", "--db", str(path)).output.startswith("Nothing done: ")
    fallback = run("vacuum", "--db", str(path), "--full-if-needed")
    assert fallback.output.startswith("Full vacuum freed ")


def test_check_and_stats_are_read_only(store: dict[str, Any]) -> None:
    path = store["path"]
    before = _digest(path)
    ok = run("check", "--db", str(path))
    assert (ok.exit_code, ok.output) == (0, "ok\n")
    table = run("stats", "--db", str(path))
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["name", "value"]
    assert any(line.startswith("tables.heartbeats.rows") for line in lines)
    assert any(line.startswith("rollups.raw_history_starts_at") for line in lines)
    data = json.loads(run("stats", "--db", str(path), "--format", "json").output)
    assert data["heartbeats"]["oldest"] == "2023-11-14T22:13:20.000Z"
    assert data["tables"]["tasks"]["rows"] == 6
    assert _digest(path) == before


def test_check_reports_problems_with_exit_1(store: dict[str, Any]) -> None:
    with sqlite3.connect(store["path"]) as conn:
        conn.execute("UPDATE tasks SET attempts = 5 WHERE id = ?", (store["done"],))
    bad = run("check", "--db", str(store["path"]))
    assert bad.exit_code == 1
    assert bad.output == f"task {store['done']}: attempts column is 5 but 1 attempt rows exist\n"
    skipped = run("check", "--db", str(store["path"]), "--no-invariants")
    assert (skipped.exit_code, skipped.output) == (0, "ok\n")


def test_subprocess_prune_then_check(store: dict[str, Any]) -> None:
    pruned = qanalytics("prune", "--keep", "5min", "--now", NOW_ARG, db=store["path"])
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("Rolled up ")
    check = qanalytics("check", db=store["path"])
    assert (check.returncode, check.stdout) == (0, "ok\n"), check.stderr
