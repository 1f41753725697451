"""Many worker processes against one store: nothing lost, nothing claimed twice."""

from __future__ import annotations

import multiprocessing
import random
import traceback
from collections import Counter
from typing import Any

import pytest

import qanalytics as qa
from qanalytics.schema import SCHEMA_VERSION

PROCESSES = 8
ITERATIONS = 100
TASKS = 150
ENQUEUED_PER_PROCESS = 10
T0 = 1_700_000_000.0
JOIN_TIMEOUT_S = 60


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


def _worker(path: str, index: int, barrier: Any, results: Any) -> None:
    """One worker process: register, then heartbeat, claim, complete or fail."""
    worker_id = f"worker-{index}"
    # Each process drives its own fake clock; distinct steps make every stamp unique.
    clock = qa.FakeClock(T0 + index * 0.0001)
    rng = random.Random(index)
    out: dict[str, Any] = {
        "index": index,
        "worker_id": worker_id,
        "registered_at": None,
        "beats": [],  # (at, returned)
        "claims": [],  # (task_id, attempt)
        "outcomes": [],  # (task_id, attempt, "completed" | status after fail)
        "errors": [],
    }
    try:
        barrier.wait(timeout=JOIN_TIMEOUT_S)
        with qa.connect(path, clock=clock) as db:
            out["registered_at"] = clock()
            qa.register_worker(db, worker_id, {"index": index})
            for j in range(ENQUEUED_PER_PROCESS):  # producers and workers interleave
                qa.enqueue(db, "sms", {"from": index, "j": j}, priority=j % 3)
            for _ in range(ITERATIONS):
                clock.advance(0.01)
                out["beats"].append((clock(), qa.heartbeat(db, worker_id)))
                clock.advance(0.01)
                if rng.random() < 0.1:  # a beat for an unknown worker must not be kept
                    out["beats"].append((clock(), qa.heartbeat(db, f"ghost-{index}")))
                    clock.advance(0.01)
                task = qa.claim(db, worker_id, lease="1h")
                if task is None:
                    continue
                out["claims"].append((task.id, task.attempts))
                clock.advance(0.01)
                out["beats"].append((clock(), qa.heartbeat(db, worker_id, task_id=task.id)))
                clock.advance(0.01)
                if rng.random() < 0.7:
                    qa.complete(db, task.id, worker_id=worker_id)
                    out["outcomes"].append((task.id, task.attempts, "completed"))
                else:
                    status = qa.fail(
                        db, task.id, f"error from {worker_id}", delay=0, worker_id=worker_id
                    )
                    out["outcomes"].append((task.id, task.attempts, status))
    except BaseException:  # report everything to the parent, which asserts on it
        out["errors"].append(traceback.format_exc())
    results.put(out)


def _run(path: str, processes: int) -> list[dict[str, Any]]:
    ctx = _context()
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(path), i, barrier, results)) for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=JOIN_TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join(timeout=JOIN_TIMEOUT_S)
        assert proc.exitcode == 0
    return sorted(outs, key=lambda o: o["index"])


@pytest.mark.parametrize("precreate", [True, False], ids=["existing-store", "fresh-file"])
def test_many_processes_one_store(store_target: str, precreate: bool) -> None:
    # A file on SQLite; on PostgreSQL, a fresh schema that the processes share.
    path = store_target
    if precreate:
        with qa.connect(path, clock=qa.FakeClock(T0 - 10)) as db:
            for i in range(TASKS):
                qa.enqueue(db, ["email", "report"][i % 2], {"i": i}, priority=i % 3)
        outs = _run(path, PROCESSES)
    else:
        # The processes race to create the schema of a file that does not exist yet.
        outs = _run(path, PROCESSES)
        with qa.connect(path, clock=qa.FakeClock(T0 - 10)) as db:
            assert db.schema_version == SCHEMA_VERSION

    errors = [e for out in outs for e in out["errors"]]
    assert errors == [], errors[0] if errors else ""
    assert not any("database is locked" in e for e in errors)

    with qa.connect(path, readonly=True) as db:
        # The history holds exactly the beats that returned True, plus one per registration.
        for out in outs:
            kept = sorted(
                at
                for (at,) in db.query(
                    "SELECT h.at FROM heartbeats h JOIN workers w USING (worker_key)"
                    " WHERE w.worker_id = ?",
                    (out["worker_id"],),
                )
            )
            expected = sorted([out["registered_at"]] + [at for at, ok in out["beats"] if ok])
            assert kept == expected
            assert all(ok for at, ok in out["beats"][:1])
        ghosts = [ok for out in outs for _, ok in out["beats"] if not ok]
        assert all(ok is False for ok in ghosts)
        assert db.query("SELECT count(*) FROM workers") == [(PROCESSES,)]

        # Every claimed (task, attempt) was seen by exactly one process, and it is the
        # worker recorded on the attempt row.
        claims = Counter(c for out in outs for c in out["claims"])
        assert claims and max(claims.values()) == 1
        rows = db.query(
            "SELECT a.task_id, a.attempt, w.worker_id, a.outcome FROM attempts a"
            " JOIN workers w USING (worker_key)"
        )
        assert len(rows) == len({(t, a) for t, a, _, _ in rows})  # (task, attempt) unique
        by_claim = {(t, a): (worker, outcome) for t, a, worker, outcome in rows}
        assert set(by_claim) == set(claims)
        for out in outs:
            for task_id, attempt in out["claims"]:
                assert by_claim[(task_id, attempt)][0] == out["worker_id"]
            for task_id, attempt, result in out["outcomes"]:
                expected_outcome = "completed" if result == "completed" else "failed"
                assert by_claim[(task_id, attempt)][1] == expected_outcome

        # Attempts and task states agree.
        tasks = db.query("SELECT id, status, attempts, max_attempts FROM tasks")
        for task_id, status, attempts, max_attempts in tasks:
            outcomes = [
                by_claim[(task_id, a)][1] for a in range(1, attempts + 1)
            ]  # KeyError here would mean a missing attempt row
            assert attempts <= max_attempts
            if status == "completed":
                assert outcomes[-1] == "completed"
                assert all(o == "failed" for o in outcomes[:-1])
            elif status == "failed":
                assert outcomes == ["failed"] * max_attempts
            elif status == "queued":
                assert all(o == "failed" for o in outcomes)
            else:
                pytest.fail(f"task {task_id} ended {status}; every claim was finished")
        finished = sum(1 for out in outs for o in out["outcomes"] if o[2] == "completed")
        assert finished == sum(1 for t in tasks if t[1] == "completed")
