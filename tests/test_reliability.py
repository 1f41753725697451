"""Reliability: load, crashes, bad input, read-only guarantees, migrations, stateful fuzzing.

Every test here is bounded in wall time (a few seconds each on two cores): the load test
runs for a fixed duration, the crash test for a fixed number of kills, and the fuzzer
for a fixed number of examples.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import multiprocessing
import os
import random
import signal
import sqlite3
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import qanalytics as qa
from qanalytics import maintenance as mt
from qanalytics.cli import main as cli_main
from qanalytics.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from qanalytics.store.sqlite import _split_sql

T0 = 1_700_000_000.0
JOIN_TIMEOUT_S = 60.0


def _context() -> Any:
    # Not a plain fork: a child forked from this test process would inherit SQLite's
    # per-process lock bookkeeping for files earlier tests left open, and a reused inode
    # number can make it share locks with the wrong file. A fork server starts from a
    # clean interpreter (with qanalytics preloaded, so children start quickly).
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["qanalytics"])
        return ctx
    return multiprocessing.get_context("spawn")


def _fork_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dump_digest(path: Path) -> str:
    """A checksum of every row of every table (order-independent of pages)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode("utf-8", "replace")).hexdigest()
    finally:
        conn.close()


# =========================================================================================
# Load: many processes against one file
# =========================================================================================
LOAD_PROCESSES = 16
LOAD_SECONDS = 2.5
LOAD_TASKS = 300


class SharedClock:
    """A fake clock shared by processes: every call returns the next tick.

    Writes read the clock while holding the write lock, so the ticks follow the order
    in which transactions commit, and attempt intervals of different processes compare.
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        self.last = float("nan")

    def __call__(self) -> float:
        with self.value.get_lock():
            self.value.value += 0.001
            self.last = float(self.value.value)
        return self.last


def _load_worker(path: str, index: int, shared: Any, barrier: Any, results: Any) -> None:
    worker_id = f"load-{index}"
    rng = random.Random(index)
    out: dict[str, Any] = {
        "worker_id": worker_id,
        "acked_beats": [],
        "false_beats": 0,
        "claims": [],
        "outcomes": [],
        "reads": 0,
        "errors": [],
    }
    try:
        clock = SharedClock(shared)
        barrier.wait(timeout=JOIN_TIMEOUT_S)
        with qa.connect(path, clock=clock) as db, qa.connect(path, readonly=True) as ro:
            qa.register_worker(db, worker_id, {"index": index})
            deadline = time.monotonic() + LOAD_SECONDS
            held: list[Any] = []
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.35:
                    task_id = held[0].id if held else None
                    # A beat reads the clock once, inside its transaction: that is its stamp.
                    assert qa.heartbeat(db, worker_id, task_id=task_id)
                    out["acked_beats"].append(clock.last)
                    if rng.random() < 0.05:
                        out["false_beats"] += not qa.heartbeat(db, f"ghost-{index}")
                elif roll < 0.6 and not held:
                    task = qa.claim(db, worker_id, lease="1h")
                    if task is not None:
                        held.append(task)
                        out["claims"].append((task.id, task.attempts))
                elif roll < 0.85 and held:
                    task = held.pop()
                    if rng.random() < 0.75:
                        qa.complete(db, task.id, worker_id=worker_id)
                        out["outcomes"].append((task.id, task.attempts, "completed"))
                    else:
                        status = qa.fail(db, task.id, "boom", delay=0, worker_id=worker_id)
                        out["outcomes"].append((task.id, task.attempts, status))
                elif roll < 0.9:
                    qa.enqueue(db, "load", {"by": index}, priority=rng.randint(0, 3))
                else:
                    qa.queue_metrics(ro)
                    qa.get_worker(ro, worker_id)
                    out["reads"] += 1
            for task in held:  # finish what is held so every claim has an outcome
                qa.complete(db, task.id, worker_id=worker_id)
                out["outcomes"].append((task.id, task.attempts, "completed"))
    except BaseException:
        out["errors"].append(traceback.format_exc())
    results.put(out)


def test_load_many_processes(tmp_path: Path) -> None:
    path = tmp_path / "load.db"
    ctx = _context()
    shared = ctx.Value("d", T0)
    with qa.connect(path, clock=SharedClock(shared)) as db:
        for i in range(LOAD_TASKS):
            qa.enqueue(db, "load", {"i": i}, priority=i % 4)
    barrier = ctx.Barrier(LOAD_PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_load_worker, args=(str(path), i, shared, barrier, results))
        for i in range(LOAD_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=JOIN_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join(timeout=JOIN_TIMEOUT_S)
        assert proc.exitcode == 0

    errors = [e for out in outs for e in out["errors"]]
    assert not any("locked" in e for e in errors), errors
    assert errors == [], errors[0] if errors else ""
    assert sum(len(o["claims"]) for o in outs) > 50  # the run did real work
    assert sum(o["reads"] for o in outs) > 0

    with qa.connect(path, readonly=True) as db:
        assert mt.integrity_check(db) == []
        # Every acknowledged beat is in the history (plus one per registration).
        for out in outs:
            kept = Counter(
                at
                for (at,) in db.query(
                    "SELECT h.at FROM heartbeats h JOIN workers w USING (worker_key)"
                    " WHERE w.worker_id = ?",
                    (out["worker_id"],),
                )
            )
            assert not Counter(out["acked_beats"]) - kept, out["worker_id"]
            assert sum(kept.values()) == len(out["acked_beats"]) + 1
        assert db.query("SELECT count(*) FROM workers") == [(LOAD_PROCESSES,)]

        # No (task, attempt) was seen by two processes; the attempt row names the claimer.
        claims = Counter(c for out in outs for c in out["claims"])
        assert max(claims.values()) == 1
        rows = db.query(
            "SELECT a.task_id, a.attempt, w.worker_id, a.claimed_at, a.finished_at, a.outcome"
            " FROM attempts a JOIN workers w USING (worker_key) ORDER BY a.task_id, a.attempt"
        )
        by_claim = {(r[0], r[1]): r for r in rows}
        assert set(by_claim) == set(claims)
        for out in outs:
            for task_id, attempt in out["claims"]:
                assert by_claim[(task_id, attempt)][2] == out["worker_id"]
            for task_id, attempt, result in out["outcomes"]:
                want = "completed" if result == "completed" else "failed"
                assert by_claim[(task_id, attempt)][5] == want

        # No task was held by two workers at once: its attempts follow one another.
        per_task: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
        for row in rows:
            per_task[row[0]].append(row)
        for attempts in per_task.values():
            for earlier, later in itertools.pairwise(attempts):
                assert earlier[4] is not None and earlier[4] <= later[3]

        # Task states agree with their attempts.
        for task_id, status, n, max_attempts in db.query(
            "SELECT id, status, attempts, max_attempts FROM tasks"
        ):
            outcomes = [by_claim[(task_id, a)][5] for a in range(1, n + 1)]
            assert n <= max_attempts
            if status == "completed":
                assert outcomes[-1] == "completed" and set(outcomes[:-1]) <= {"failed"}
            elif status == "failed":
                assert outcomes == ["failed"] * max_attempts
            else:
                assert status == "queued" and set(outcomes) <= {"failed"}


# =========================================================================================
# Crash: SIGKILL a writer at random moments
# =========================================================================================
CRASH_KILLS = 18


def _crash_writer(path: str, round_: int, ack_fd: int) -> None:
    """Write forever, acknowledging each write on the pipe once its commit returned."""
    clock = qa.FakeClock(T0 + round_ * 10_000)
    worker = f"crash-{round_ % 3}"

    def ack(line: str) -> None:
        os.write(ack_fd, (line + "\n").encode())

    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, worker)
        ack(f"hb {worker} {clock()!r}")
        ack("ready")
        while True:
            clock.advance(0.001)
            if qa.heartbeat(db, worker):
                ack(f"hb {worker} {clock()!r}")
            clock.advance(0.001)
            task_id = qa.enqueue(db, "crash", {"round": round_, "pad": "x" * 200})
            ack(f"enq {task_id}")
            clock.advance(0.001)
            task = qa.claim(db, worker, lease="1h")
            if task is not None:
                ack(f"claim {task.id} {task.attempts}")
                clock.advance(0.001)
                qa.complete(db, task.id, worker_id=worker)
                ack(f"done {task.id}")


def _crash_child(path: str, round_: int, ack_fd: int) -> None:
    try:
        _crash_writer(path, round_, ack_fd)
    finally:
        os._exit(3)  # only reached on an error: the parent sees a non-kill exit


def _read_acks(fd: int, until: float, want_ready: bool) -> tuple[list[str], bool]:
    import select

    buffer = b""
    ready = not want_ready
    while time.monotonic() < until:
        readable, _, _ = select.select([fd], [], [], max(0.0, until - time.monotonic()))
        if not readable:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        if not ready and b"ready\n" in buffer:
            ready = True
            break
    return buffer.decode().splitlines(), ready


def _drain(fd: int) -> list[str]:
    buffer = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    return buffer.decode().splitlines()


def test_sigkill_never_loses_an_acknowledged_write(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    qa.connect(path).close()
    ctx = _fork_context()  # the child writes acknowledgements to an inherited pipe
    rng = random.Random(7)
    acked: list[str] = []
    for round_ in range(CRASH_KILLS):
        read_fd, write_fd = os.pipe()
        proc = ctx.Process(target=_crash_child, args=(str(path), round_, write_fd))
        proc.start()
        os.close(write_fd)
        try:
            lines, ready = _read_acks(read_fd, time.monotonic() + 20, want_ready=True)
            assert ready, f"round {round_}: the writer did not start: {lines}"
            more, _ = _read_acks(read_fd, time.monotonic() + rng.uniform(0.005, 0.08), False)
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=JOIN_TIMEOUT_S)
            assert proc.exitcode == -signal.SIGKILL
            acked += lines + more + _drain(read_fd)
        finally:
            os.close(read_fd)
            if proc.is_alive():  # pragma: no cover - only after a failed assertion
                proc.kill()
        with qa.connect(path, readonly=True) as db:
            assert mt.integrity_check(db) == [], f"after kill {round_}"
            _check_acks(db, [a for a in acked if a != "ready"])
    # A new process (this one) continues cleanly on the same file.
    with qa.connect(path, clock=qa.FakeClock(T0 + 10**6)) as db:
        qa.register_worker(db, "after")
        task = qa.enqueue(db, "after")
        qa.requeue_orphans(db, stale_after="1s")
        claimed = qa.claim(db, "after", types="after")
        assert claimed is not None and claimed.id == task
        qa.complete(db, task)
        assert mt.integrity_check(db) == []
    assert sum(a.startswith("done") for a in acked) >= CRASH_KILLS


def _check_acks(db: qa.Store, acked: list[str]) -> None:
    beats: dict[str, set[float]] = defaultdict(set)
    for worker_id, at in db.query(
        "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
    ):
        beats[worker_id].add(at)
    tasks = {tid: status for tid, status in db.query("SELECT id, status FROM tasks")}
    attempts = {(t, a) for t, a in db.query("SELECT task_id, attempt FROM attempts")}
    for line in acked:
        kind, *rest = line.split()
        if kind == "hb":
            assert float(rest[1]) in beats[rest[0]], line
        elif kind == "enq":
            assert int(rest[0]) in tasks, line
        elif kind == "claim":
            assert (int(rest[0]), int(rest[1])) in attempts, line
        elif kind == "done":
            assert tasks[int(rest[0])] == "completed", line
        else:  # pragma: no cover
            pytest.fail(f"unknown acknowledgement {line!r}")


# =========================================================================================
# Bad input: the public API and the CLI
# =========================================================================================
SQL_ID = "w'; DROP TABLE workers; --"


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[qa.Store, Path, dict[str, int]]]:
    """A file store with a worker, and tasks queued, processing, completed and failed."""
    clock = qa.FakeClock(T0)
    path = tmp_path / "seeded.db"
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "w1", {"gpu": True})
        qa.register_worker(db, "w2")
        ids = {"done": qa.enqueue(db, "email", {"n": 1})}
        qa.claim(db, "w1")
        qa.complete(db, ids["done"])
        ids["failed"] = qa.enqueue(db, "email", max_attempts=1)
        qa.claim(db, "w1")
        qa.fail(db, ids["failed"], "nope")
        ids["processing"] = qa.enqueue(db, "email")
        qa.claim(db, "w1")
        ids["queued"] = qa.enqueue(db, "email", run_after="1h")
        clock.advance(5)
        qa.heartbeat(db, "w1", task_id=ids["processing"])
        yield db, path, ids


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    """Files that are not usable stores, made from a real one."""
    data = good.read_bytes()
    files = {
        "truncated": data[:5000],
        "half": data[: len(data) // 2],
        "text": b"this is not a database\n" * 200,
        "header": b"\x00" * 100 + data[100:],
        "empty-header": b"SQLite format 3\x00" + b"\xff" * 84,
    }
    out = {}
    for name, content in files.items():
        out[name] = tmp / f"{name}.db"
        out[name].write_bytes(content)
    return out


# Each case: id, a call taking (db, ids, files), and the exception type it must raise
# (or, for a value, the value it must return).
Case = tuple[str, Callable[[qa.Store, dict[str, int], dict[str, Path]], Any], Any]

API_CASES: list[Case] = [
    ("id-int", lambda db, ids, f: qa.register_worker(db, 123), TypeError),  # type: ignore[arg-type]
    ("id-none", lambda db, ids, f: qa.heartbeat(db, None), TypeError),  # type: ignore[arg-type]
    ("id-empty", lambda db, ids, f: qa.register_worker(db, ""), ValueError),
    ("id-blank", lambda db, ids, f: qa.register_worker(db, "   "), ValueError),
    ("id-huge", lambda db, ids, f: qa.register_worker(db, "w" * 100_000), ValueError),
    ("id-nul", lambda db, ids, f: qa.register_worker(db, "w\x00x"), ValueError),
    ("id-surrogate", lambda db, ids, f: qa.register_worker(db, "w\ud800"), ValueError),
    ("caps-nan", lambda db, ids, f: qa.register_worker(db, "w3", {"x": float("nan")}), TypeError),
    ("caps-list", lambda db, ids, f: qa.register_worker(db, "w3", ["a"]), TypeError),  # type: ignore[arg-type]
    ("caps-key", lambda db, ids, f: qa.register_worker(db, "w3", {1: "a"}), TypeError),  # type: ignore[dict-item]
    (
        "caps-surrogate",
        lambda db, ids, f: qa.register_worker(db, "w3", {"k": "\udcff"}),
        ValueError,
    ),
    ("beat-task-str", lambda db, ids, f: qa.heartbeat(db, "w1", task_id="1"), TypeError),  # type: ignore[arg-type]
    ("beat-task-float", lambda db, ids, f: qa.heartbeat(db, "w1", task_id=1.5), TypeError),  # type: ignore[arg-type]
    ("beat-sql-id", lambda db, ids, f: qa.heartbeat(db, SQL_ID), False),
    ("remove-unknown", lambda db, ids, f: qa.remove_worker(db, "ghost"), False),
    ("get-sql-id", lambda db, ids, f: qa.get_worker(db, SQL_ID), qa.WorkerNotFound),
    ("payload-surrogate", lambda db, ids, f: qa.enqueue(db, "e", {"s": "\udcff"}), ValueError),
    ("payload-nan", lambda db, ids, f: qa.enqueue(db, "e", [float("nan")]), TypeError),
    ("payload-object", lambda db, ids, f: qa.enqueue(db, "e", object()), TypeError),
    ("type-empty", lambda db, ids, f: qa.enqueue(db, ""), ValueError),
    ("type-huge", lambda db, ids, f: qa.enqueue(db, "t" * 5000), ValueError),
    ("priority-nan", lambda db, ids, f: qa.enqueue(db, "e", priority=float("nan")), TypeError),  # type: ignore[arg-type]
    ("priority-huge", lambda db, ids, f: qa.enqueue(db, "e", priority=2**70), ValueError),
    ("attempts-zero", lambda db, ids, f: qa.enqueue(db, "e", max_attempts=0), ValueError),
    ("attempts-negative", lambda db, ids, f: qa.enqueue(db, "e", max_attempts=-3), ValueError),
    ("run-after-text", lambda db, ids, f: qa.enqueue(db, "e", run_after="someday"), ValueError),
    ("run-after-nan", lambda db, ids, f: qa.enqueue(db, "e", run_after=float("nan")), ValueError),
    ("claim-unknown", lambda db, ids, f: qa.claim(db, "ghost"), qa.WorkerNotFound),
    ("claim-sql-id", lambda db, ids, f: qa.claim(db, SQL_ID), qa.WorkerNotFound),
    ("claim-lease-negative", lambda db, ids, f: qa.claim(db, "w2", lease=-5), ValueError),
    ("claim-lease-nan", lambda db, ids, f: qa.claim(db, "w2", lease=float("nan")), ValueError),
    ("claim-types-empty", lambda db, ids, f: qa.claim(db, "w2", types=[]), ValueError),
    ("claim-types-int", lambda db, ids, f: qa.claim(db, "w2", types=5), TypeError),
    ("claim-types-sql", lambda db, ids, f: qa.claim(db, "w2", types=[SQL_ID]), None),
    ("complete-unknown", lambda db, ids, f: qa.complete(db, 10**9), qa.TaskNotFound),
    ("complete-negative", lambda db, ids, f: qa.complete(db, -1), ValueError),
    ("complete-str", lambda db, ids, f: qa.complete(db, "1"), TypeError),  # type: ignore[arg-type]
    ("complete-bool", lambda db, ids, f: qa.complete(db, True), TypeError),
    ("complete-huge", lambda db, ids, f: qa.complete(db, 2**64), ValueError),
    ("complete-queued", lambda db, ids, f: qa.complete(db, ids["queued"]), qa.InvalidTransition),
    ("complete-twice", lambda db, ids, f: qa.complete(db, ids["done"]), qa.InvalidTransition),
    (
        "complete-other-holder",
        lambda db, ids, f: qa.complete(db, ids["processing"], worker_id="w2"),
        qa.InvalidTransition,
    ),
    ("fail-done", lambda db, ids, f: qa.fail(db, ids["done"], "x"), qa.InvalidTransition),
    ("fail-error-int", lambda db, ids, f: qa.fail(db, ids["processing"], 5), TypeError),  # type: ignore[arg-type]
    (
        "fail-error-surrogate",
        lambda db, ids, f: qa.fail(db, ids["processing"], "\ud800"),
        ValueError,
    ),
    (
        "fail-delay-negative",
        lambda db, ids, f: qa.fail(db, ids["processing"], "x", delay=-1),
        ValueError,
    ),
    ("cancel-unknown", lambda db, ids, f: qa.cancel(db, 10**9), qa.TaskNotFound),
    ("cancel-finished", lambda db, ids, f: qa.cancel(db, ids["failed"]), False),
    (
        "requeue-negative",
        lambda db, ids, f: qa.requeue_orphans(db, stale_after="-1min"),
        ValueError,
    ),
    ("read-since-text", lambda db, ids, f: qa.heartbeats(db, since="yesterday"), ValueError),
    ("read-now-text", lambda db, ids, f: qa.queue_metrics(db, now="garbage"), ValueError),
    ("read-freq", lambda db, ids, f: qa.success_rate(db, freq="banana"), ValueError),
    ("read-min-gap-nan", lambda db, ids, f: qa.outages(db, min_gap=float("nan")), ValueError),
    ("read-status", lambda db, ids, f: qa.tasks(db, status="weird"), ValueError),
    ("prune-keep", lambda db, ids, f: mt.prune(db, keep="forever"), ValueError),
    ("prune-batch", lambda db, ids, f: mt.prune(db, batch=-1), ValueError),
    (
        "checkpoint-sql",
        lambda db, ids, f: mt.checkpoint(db, "PASSIVE); DROP TABLE tasks; --"),
        ValueError,
    ),
    ("connect-int", lambda db, ids, f: qa.connect(123), TypeError),  # type: ignore[arg-type]
    ("connect-empty", lambda db, ids, f: qa.connect(""), ValueError),
    ("connect-clock", lambda db, ids, f: qa.connect(":memory:", clock=5), TypeError),  # type: ignore[arg-type]
    ("connect-truncated", lambda db, ids, f: qa.connect(f["truncated"]), qa.SchemaError),
    ("connect-half", lambda db, ids, f: qa.connect(f["half"], readonly=True), qa.SchemaError),
    ("connect-not-a-db", lambda db, ids, f: qa.connect(f["text"]), qa.SchemaError),
    ("connect-bad-header", lambda db, ids, f: qa.connect(f["header"]), qa.SchemaError),
    ("connect-header-only", lambda db, ids, f: qa.connect(f["empty-header"]), qa.SchemaError),
    ("connect-directory", lambda db, ids, f: qa.connect(f["text"].parent), qa.StoreError),
    (
        "connect-missing-folder",
        lambda db, ids, f: qa.connect(f["text"].parent / "no" / "q.db"),
        qa.StoreError,
    ),
    (
        "connect-missing-readonly",
        lambda db, ids, f: qa.connect(f["text"].parent / "none.db", readonly=True),
        qa.StoreNotFound,
    ),
]


@pytest.mark.parametrize(
    ("call", "expected"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES]
)
def test_bad_input_api(
    seeded: tuple[qa.Store, Path, dict[str, int]],
    tmp_path: Path,
    call: Callable[..., Any],
    expected: Any,
) -> None:
    db, path, ids = seeded
    files = _bad_files(tmp_path, path)
    mt.checkpoint(db, "TRUNCATE")
    before = _dump_digest(path)
    file_bytes = {name: _sha256(p) for name, p in files.items()}
    if isinstance(expected, type) and issubclass(expected, BaseException):
        with pytest.raises(expected) as info:
            result = call(db, ids, files)
            if isinstance(result, qa.Store):  # pragma: no cover - a failed expectation
                result.close()
        assert str(info.value)  # a message, never an empty error
        assert not isinstance(info.value, sqlite3.Error)
    else:
        assert call(db, ids, files) == expected
    assert db.query("SELECT count(*) FROM workers WHERE worker_id = ?", (SQL_ID,)) == [(0,)]
    assert _dump_digest(path) == before, "stored rows changed"
    assert {name: _sha256(p) for name, p in files.items()} == file_bytes
    assert mt.integrity_check(db) == []


def test_sql_fragments_are_stored_literally(db: qa.Store) -> None:
    qa.register_worker(db, SQL_ID, {SQL_ID: SQL_ID})
    assert qa.heartbeat(db, SQL_ID)
    task = qa.enqueue(db, SQL_ID, {"q": "'); DELETE FROM tasks; --"})
    claimed = qa.claim(db, SQL_ID, types=SQL_ID)
    assert claimed is not None and claimed.id == task
    qa.fail(db, task, "x'); DROP TABLE attempts; --", retry=False)
    assert qa.get_worker(db, SQL_ID).capabilities == {SQL_ID: SQL_ID}
    assert qa.get_task(db, task).type == SQL_ID
    assert qa.workers(db)["worker_id"].tolist() == [SQL_ID]
    assert {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")} >= {
        "workers",
        "tasks",
        "attempts",
    }


CLI_CASES: list[tuple[str, list[str]]] = [
    ("missing-file", ["workers", "--db", "{tmp}/nope.db"]),
    ("not-a-db", ["workers", "--db", "{text}"]),
    ("truncated", ["metrics", "--db", "{truncated}"]),
    ("corrupt-header", ["stale", "--db", "{header}"]),
    ("directory", ["outages", "--db", "{tmp}"]),
    ("no-db", ["workers"]),
    ("since-text", ["outages", "--db", "{db}", "--since", "banana"]),
    ("threshold-negative", ["stale", "--db", "{db}", "--threshold", "-5"]),
    ("min-gap-nan", ["outages", "--db", "{db}", "--min-gap", "nan"]),
    ("freq-text", ["success-rate", "--db", "{db}", "--freq", "banana"]),
    ("now-nan", ["workers", "--db", "{db}", "--now", "nan"]),
    ("now-sql", ["metrics", "--db", "{db}", "--now", "1; DROP TABLE tasks"]),
    ("requeue-half", ["requeue-orphans", "--db", "{half}"]),
    ("requeue-negative", ["requeue-orphans", "--db", "{db}", "--stale-after", "-1"]),
    ("level-choice", ["success-rate", "--db", "{db}", "--level", "nope"]),
]


@pytest.mark.parametrize("args", [c[1] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_input_cli(
    seeded: tuple[qa.Store, Path, dict[str, int]], tmp_path: Path, args: list[str]
) -> None:
    db, path, _ids = seeded
    files = _bad_files(tmp_path, path)
    mt.checkpoint(db, "TRUNCATE")
    before = _dump_digest(path)
    names = {"tmp": str(tmp_path), "db": str(path), **{k: str(v) for k, v in files.items()}}
    argv = [a.format(**names) for a in args]
    result = CliRunner().invoke(cli_main, argv, env={"QANALYTICS_DB": None})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert _dump_digest(path) == before


def _connect_in_readonly_folder(folder: str) -> str:
    try:
        qa.connect(os.path.join(folder, "new.db")).close()
    except qa.StoreError:
        return "StoreError"
    except BaseException as exc:  # reported to the parent, which asserts on it
        return type(exc).__name__
    return "no error"


def _as_nobody(folder: str, results: Any) -> None:
    os.setgid(65534)
    os.setuid(65534)
    results.put(_connect_in_readonly_folder(folder))


def test_bad_input_read_only_folder() -> None:
    # A read-only location: a folder without write permission. Root ignores permissions,
    # so as root the attempt runs in a child process that drops to an unprivileged user.
    folder = tempfile.mkdtemp(prefix="qa-ro-")
    try:
        os.chmod(folder, 0o555)
        if os.geteuid() != 0:
            outcome = _connect_in_readonly_folder(folder)
        else:
            ctx = _fork_context()
            if ctx.get_start_method() != "fork":
                pytest.skip("running as root and cannot fork to drop privileges")
            results = ctx.Queue()
            proc = ctx.Process(target=_as_nobody, args=(folder, results))
            proc.start()
            outcome = results.get(timeout=JOIN_TIMEOUT_S)
            proc.join(timeout=JOIN_TIMEOUT_S)
        assert outcome == "StoreError"
        assert os.listdir(folder) == []
    finally:
        os.chmod(folder, 0o755)
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def test_writes_to_a_read_only_store_are_refused(
    seeded: tuple[qa.Store, Path, dict[str, int]],
) -> None:
    _db, path, ids = seeded
    before = _sha256(path)
    with qa.connect(path, readonly=True) as ro:
        for call in (
            lambda: qa.register_worker(ro, "w9"),
            lambda: qa.heartbeat(ro, "w1"),
            lambda: qa.enqueue(ro, "e"),
            lambda: qa.complete(ro, ids["processing"]),
            lambda: qa.requeue_orphans(ro),
            lambda: mt.prune(ro),
            lambda: mt.vacuum(ro),
        ):
            with pytest.raises(qa.ReadOnlyError):
                call()
    assert _sha256(path) == before


# =========================================================================================
# Read-only really is read-only
# =========================================================================================
def _read_everything(db: qa.Store, ids: dict[str, int]) -> None:
    for frame_call in (
        qa.workers,
        qa.heartbeats,
        qa.tasks,
        qa.attempts,
        qa.heartbeat_gaps,
        qa.outages,
        qa.uptime,
        qa.alive_intervals,
        qa.queue_depth,
        qa.success_rate,
        qa.throughput,
        qa.depth_timeline,
        qa.latency,
        qa.utilization,
        qa.retry_outcomes,
        mt.heartbeat_rollups,
    ):
        frame_call(db)
    qa.workers(db, include_removed=True, now="latest")
    qa.queue_metrics(db)
    qa.list_workers(db, include_removed=True)
    qa.active_workers(db)
    qa.stale_workers(db)
    qa.get_worker(db, "w1")
    qa.get_task(db, ids["done"])
    mon = qa.QueueMonitoring(db)
    mon.get_queue_metrics()
    mon.get_active_workers()
    mon.get_stale_workers()
    mon.get_worker_activity()
    mt.stats(db)
    mt.integrity_check(db)
    mt.raw_history_starts_at(db)


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_read_side_never_changes_the_file(
    seeded: tuple[qa.Store, Path, dict[str, int]], journal: str
) -> None:
    db, path, ids = seeded
    mt.prune(db, keep=2)  # some rollups to read too
    db.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute(f"PRAGMA journal_mode = {'DELETE' if journal == 'delete' else 'WAL'}")
    conn.close()
    side = [Path(str(path) + s) for s in ("-wal", "-shm", "-journal")]
    for extra in side:
        extra.unlink(missing_ok=True)
    before = _sha256(path)

    with qa.connect(path, readonly=True) as ro:
        _read_everything(ro, ids)
    with qa.connect(path, readonly=True, clock="latest") as ro:
        _read_everything(ro, ids)
    runner = CliRunner()
    for argv in (
        ["workers", "--include-removed"],
        ["workers", "--format", "json", "--now", "latest"],
        ["stale", "--format", "csv"],
        ["outages", "--since", "7d"],
        ["metrics", "--format", "prometheus"],
        ["metrics", "--format", "json"],
        ["success-rate", "--by", "type", "--level", "attempt"],
        ["requeue-orphans", "--dry-run"],
    ):
        result = runner.invoke(cli_main, [*argv, "--db", str(path)])
        assert result.exit_code in (0, 1), (argv, result.output)
    # The report executes a notebook kernel (seconds), so it runs in one mode only.
    if journal == "delete" and importlib.util.find_spec("qanalytics.report") is not None:
        from qanalytics import report

        write_report = getattr(report, "write_report", None)
        if write_report is not None:
            write_report(path, path.parent / "report.html", now="latest", progress=False)

    assert _sha256(path) == before
    if journal == "delete":
        assert [p.name for p in side if p.exists()] == []


# =========================================================================================
# Migrations
# =========================================================================================
def test_version_one_store_migrates_and_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO workers VALUES (1, 'w1', '{\"gpu\": true}', ?, ?, NULL),"
        " (2, 'w2', '{}', ?, ?, ?)",
        (T0, T0 + 90, T0, T0 + 30, T0 + 40),
    )
    conn.execute(
        "INSERT INTO worker_events (worker_key, at, event, capabilities) VALUES"
        " (1, ?, 'registered', '{\"gpu\": true}'), (2, ?, 'registered', '{}'),"
        " (2, ?, 'removed', NULL)",
        (T0, T0, T0 + 40),
    )
    conn.executemany(
        "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)",
        [(1, T0 + i * 10, 1 if i > 2 else None) for i in range(10)] + [(2, T0, None)],
    )
    conn.execute(
        "INSERT INTO tasks (id, type, status, priority, payload, attempts, max_attempts,"
        " created_at, run_after, started_at, finished_at, lease_until, worker_key, error)"
        " VALUES (1, 'email', 'completed', 100, '{\"to\": 1}', 2, 3, ?, ?, ?, ?, NULL, 1, NULL),"
        " (2, 'report', 'queued', 5, NULL, 0, 3, ?, ?, NULL, NULL, NULL, NULL, NULL)",
        (T0, T0, T0 + 20, T0 + 60, T0 + 1, T0 + 1),
    )
    conn.execute(
        "INSERT INTO attempts VALUES"
        " (1, 1, 1, ?, ?, 'failed', 'x'), (1, 2, 1, ?, ?, 'completed', NULL)",
        (T0 + 5, T0 + 10, T0 + 20, T0 + 60),
    )
    tables = ("workers", "worker_events", "heartbeats", "tasks", "attempts")
    rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in tables}
    conn.close()

    with qa.connect(path, readonly=True) as ro:  # read as it is, not migrated
        assert ro.schema_version == 1
        assert len(qa.heartbeats(ro)) == 11
        assert mt.raw_history_starts_at(ro) is None
    with qa.connect(path, clock=qa.FakeClock(T0 + 100)) as db:
        # Opened for writing, the file is migrated on the first write (or on demand).
        assert db.schema_version == 1
        assert db.prepare_writes()
        assert db.schema_version == SCHEMA_VERSION
        for t in tables:
            # Later versions add columns at the end (external_id, NULL for existing tasks); the
            # old ones keep every value.
            now_rows = db.query(f"SELECT * FROM {t} ORDER BY 1, 2")
            assert [r[: len(rows[t][0])] for r in now_rows] == rows[t], t
        # The counters added by version 4 are filled from the history.
        assert db.query(
            "SELECT worker_id, heartbeats, tasks_completed, tasks_failed FROM workers"
            " ORDER BY worker_key"
        ) == [("w1", 10, 1, 1), ("w2", 1, 0, 0)]
        assert mt.integrity_check(db) == []
        assert qa.get_task(db, 1).payload == {"to": 1}
        assert qa.workers(db, include_removed=True)["worker_id"].tolist() == ["w1", "w2"]
        # The migrated store takes writes, and the new tables work.
        assert qa.heartbeat(db, "w1")
        assert mt.prune(db, keep=30).heartbeats_rolled_up > 0
        claimed = qa.claim(db, "w1")
        assert claimed is not None and claimed.id == 2


# =========================================================================================
# Stateful fuzzing against a model of the queue
# =========================================================================================
WORKER_IDS = ("w1", "w2", "w3")
ADVANCES = (0.0, 0.5, 5.0, 61.0, 301.0)


class QueueMachine(RuleBasedStateMachine):
    """Random sequences of write calls; the store must always match a simple model."""

    tasks = Bundle("tasks")

    @initialize()
    def setup(self) -> None:
        self.clock = qa.FakeClock(T0)
        self.db = qa.connect(":memory:", clock=self.clock)
        self.workers: dict[str, dict[str, Any]] = {}  # id -> removed, last
        self.model: dict[int, dict[str, Any]] = {}
        self.attempts: dict[tuple[int, int], dict[str, Any]] = {}

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()

    # -- model helpers -----------------------------------------------------------------
    def _close(self, task_id: int, outcome: str) -> None:
        self.attempts[(task_id, self.model[task_id]["attempts"])]["outcome"] = outcome

    # -- rules -------------------------------------------------------------------------
    @rule(by=st.sampled_from(ADVANCES))
    def advance(self, by: float) -> None:
        self.clock.advance(by)

    @rule(worker=st.sampled_from(WORKER_IDS))
    def register(self, worker: str) -> None:
        qa.register_worker(self.db, worker)
        self.workers[worker] = {"removed": False, "last": self.clock()}

    @rule(worker=st.sampled_from(WORKER_IDS))
    def heartbeat(self, worker: str) -> None:
        ok = qa.heartbeat(self.db, worker)
        known = worker in self.workers and not self.workers[worker]["removed"]
        assert ok == known
        if known:
            self.workers[worker]["last"] = max(self.workers[worker]["last"], self.clock())

    @rule(worker=st.sampled_from(WORKER_IDS))
    def remove(self, worker: str) -> None:
        ok = qa.remove_worker(self.db, worker)
        known = worker in self.workers and not self.workers[worker]["removed"]
        assert ok == known
        if known:
            self.workers[worker]["removed"] = True

    @rule(
        target=tasks,
        priority=st.integers(0, 2),
        max_attempts=st.integers(1, 3),
        delay=st.sampled_from((0.0, 0.0, 10.0)),
    )
    def enqueue(self, priority: int, max_attempts: int, delay: float) -> int:
        task_id = qa.enqueue(
            self.db,
            "job",
            priority=priority,
            max_attempts=max_attempts,
            run_after=timedelta(seconds=delay) if delay else None,
        )
        now = self.clock()
        self.model[task_id] = {
            "status": "queued",
            "priority": priority,
            "created": now,
            "run_after": now + delay,
            "attempts": 0,
            "max": max_attempts,
            "holder": None,
            "lease_until": None,
        }
        return task_id

    @rule(worker=st.sampled_from(WORKER_IDS), lease=st.sampled_from((30.0, 600.0)))
    def claim(self, worker: str, lease: float) -> None:
        now = self.clock()
        if worker not in self.workers or self.workers[worker]["removed"]:
            with pytest.raises(qa.WorkerNotFound):
                qa.claim(self.db, worker, lease=lease)
            return
        runnable = [
            (m["priority"], m["created"], tid)
            for tid, m in self.model.items()
            if m["status"] == "queued" and m["run_after"] <= now
        ]
        task = qa.claim(self.db, worker, lease=lease)
        if not runnable:
            assert task is None
            return
        expected = min(runnable)[2]
        assert task is not None and task.id == expected
        m = self.model[expected]
        m.update(status="processing", holder=worker, lease_until=now + lease)
        m["attempts"] += 1
        self.attempts[(expected, m["attempts"])] = {"worker": worker, "outcome": None}

    @rule(task_id=tasks)
    def complete(self, task_id: int) -> None:
        m = self.model[task_id]
        if m["status"] != "processing":
            with pytest.raises(qa.InvalidTransition):
                qa.complete(self.db, task_id)
            return
        qa.complete(self.db, task_id)
        self._close(task_id, "completed")
        m["status"] = "completed"

    @rule(task_id=tasks, retry=st.booleans(), delay=st.sampled_from((0.0, 20.0)))
    def fail(self, task_id: int, retry: bool, delay: float) -> None:
        m = self.model[task_id]
        if m["status"] != "processing":
            with pytest.raises(qa.InvalidTransition):
                qa.fail(self.db, task_id, "e", retry=retry, delay=delay)
            return
        status = qa.fail(self.db, task_id, "e", retry=retry, delay=delay)
        self._close(task_id, "failed")
        if retry and m["attempts"] < m["max"]:
            m.update(status="queued", run_after=self.clock() + delay, holder=None)
        else:
            m["status"] = "failed"
        assert status == m["status"]

    @rule(task_id=tasks)
    def cancel(self, task_id: int) -> None:
        m = self.model[task_id]
        expected = m["status"] in ("queued", "processing")
        assert qa.cancel(self.db, task_id) == expected
        if expected:
            if m["status"] == "processing":
                self._close(task_id, "cancelled")
            m["status"] = "cancelled"

    @precondition(lambda self: bool(self.model))
    @rule(stale_after=st.sampled_from((60.0, 300.0)))
    def requeue_orphans(self, stale_after: float) -> None:
        now = self.clock()
        expected = []
        for tid, m in sorted(self.model.items()):
            if m["status"] != "processing":
                continue
            w = self.workers[m["holder"]]
            if m["lease_until"] < now or w["removed"] or w["last"] < now - stale_after:
                expected.append(tid)
                self._close(tid, "abandoned")
                if m["attempts"] < m["max"]:
                    m.update(status="queued", run_after=now, holder=None)
                else:
                    m["status"] = "failed"
        assert qa.requeue_orphans(self.db, stale_after=stale_after) == expected

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def store_matches_model(self) -> None:
        if not hasattr(self, "db"):
            return
        got = {
            tid: (status, n, holder if status == "processing" else None)
            for tid, status, n, holder in self.db.query(
                "SELECT t.id, t.status, t.attempts, w.worker_id FROM tasks t"
                " LEFT JOIN workers w ON w.worker_key = t.worker_key"
            )
        }
        want = {
            tid: (m["status"], m["attempts"], m["holder"] if m["status"] == "processing" else None)
            for tid, m in self.model.items()
        }
        assert got == want
        rows = self.db.query(
            "SELECT a.task_id, a.attempt, w.worker_id, a.outcome FROM attempts a"
            " JOIN workers w ON w.worker_key = a.worker_key"
        )
        assert {(t, a): (w, o) for t, a, w, o in rows} == {
            k: (v["worker"], v["outcome"]) for k, v in self.attempts.items()
        }
        stored = {
            wid: (removed is not None, last)
            for wid, removed, last in self.db.query(
                "SELECT worker_id, removed_at, last_heartbeat_at FROM workers"
            )
        }
        assert stored == {w: (v["removed"], v["last"]) for w, v in self.workers.items()}
        stale = {w.worker_id for w in qa.stale_workers(self.db, 300)}
        assert stale == {
            w
            for w, v in self.workers.items()
            if not v["removed"] and v["last"] < self.clock() - 300
        }

    @invariant()
    def file_invariants_hold(self) -> None:
        if hasattr(self, "db"):
            assert mt.integrity_check(self.db) == []


QueueMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_queue_matches_model = QueueMachine.TestCase
