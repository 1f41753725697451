"""Celery recorder write throughput: ``EventWriter.apply`` against a bare ``sqlite3`` loop.

What is measured
----------------
A synthetic Celery event stream, as the recorder receives it: ``--workers`` workers
beating every 2 s, and tasks that each send ``task-sent``, ``task-received``,
``task-started`` and ``task-succeeded`` (10 % fail once and are retried: ``task-retried``,
then received, started and succeeded again; 5 % fail for good: ``task-failed``), arriving
at ``--rate`` tasks per second of event time. The stream is mapped with
``qanalytics.record.from_celery`` once, untimed, then two paths are timed in the same run:

* ``recorder``: ``EventWriter.apply`` on a fresh file store, one call (one transaction)
  per ``--batch`` events, as the recorder does every flush interval. This includes every
  idempotency check (duplicate beats, attempts, state ordering).
* ``bare sqlite3``: the rows the recorder wrote (workers, worker events, heartbeats, tasks,
  attempts), read back and inserted into another fresh store with a plain ``sqlite3``
  connection and the store's pragmas, one ``INSERT`` per row, one transaction per batch of
  the same share of rows: the least work that stores the same result.

Runs alternate between the two paths; the table shows medians over ``--repeats``.

Goals
-----
The recorder applies at least 5,000 events/s (the issue's figure: a busy fleet's event
stream). Against the bare loop it is a regression guard of 0.15x: the recorder reads each
task's state and attempts before it writes (about 2.6 statements per event, where the bare
loop runs one statement per row and there are about 0.5 rows per event), which is what makes
duplicated and out-of-order events harmless. The script exits with status 1 when a goal is missed
(``--no-check`` only reports).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, Goal, finish, median, print_table, remove_store

import qanalytics as qa
from qanalytics.record import EventWriter, RecordedEvent, from_celery

T0 = 1_700_000_000.0
TABLES = {
    "workers": "worker_key, worker_id, capabilities, registered_at, last_heartbeat_at, removed_at",
    "worker_events": "id, worker_key, at, event, capabilities",
    "heartbeats": "worker_key, at, task_id",
    "tasks": "id, type, status, priority, payload, attempts, max_attempts, created_at,"
    " run_after, started_at, finished_at, lease_until, worker_key, error, external_id",
    "attempts": "task_id, attempt, worker_key, claimed_at, finished_at, outcome, error",
}


def stream(n_tasks: int, workers: int, rate: float, seed: int) -> list[dict[str, Any]]:
    """Celery event dicts for `n_tasks` tasks and the fleet's heartbeats, in time order."""
    rng = random.Random(seed)
    hosts = [f"celery@host-{i:02d}" for i in range(workers)]
    events: list[dict[str, Any]] = []

    def worker_event(kind: str, host: str, at: float) -> dict[str, Any]:
        return {"type": kind, "hostname": host, "timestamp": at, "pid": 1000, "freq": 2.0,
                "sw_ident": "py-celery", "sw_ver": "5.4.0", "sw_sys": "Linux"}

    for host in hosts:
        events.append(worker_event("worker-online", host, T0))
    t = T0
    for i in range(n_tasks):
        t += rng.expovariate(rate)
        uuid = f"{i:08d}-0000-4000-8000-{seed:012d}"
        name = rng.choice(["app.email", "app.resize", "app.report"])
        host = rng.choice(hosts)
        at = t
        events.append({"type": "task-sent", "uuid": uuid, "name": name, "timestamp": at,
                       "hostname": "producer", "retries": 0})
        roll = rng.random()
        tries = 2 if roll < 0.10 else 1
        for attempt in range(tries):
            at += 0.002
            events.append({"type": "task-received", "uuid": uuid, "name": name,
                           "timestamp": at, "hostname": host, "retries": attempt})
            at += 0.001
            events.append({"type": "task-started", "uuid": uuid, "timestamp": at,
                           "hostname": host})
            run = rng.expovariate(10.0)
            at += run
            if attempt < tries - 1:
                events.append({"type": "task-retried", "uuid": uuid, "timestamp": at,
                               "hostname": host, "exception": "TimeoutError('smtp')"})
            elif roll > 0.95:
                events.append({"type": "task-failed", "uuid": uuid, "timestamp": at,
                               "hostname": host, "exception": "ValueError('bad')"})
            else:
                events.append({"type": "task-succeeded", "uuid": uuid, "timestamp": at,
                               "hostname": host, "runtime": run})
    beat = T0 + 2.0
    while beat < t:
        for host in hosts:
            events.append(worker_event("worker-heartbeat", host, beat + rng.random() * 0.01))
        beat += 2.0
    events.sort(key=lambda e: e["timestamp"])
    return events


def run_recorder(path: Path, events: list[RecordedEvent], batch: int) -> float:
    remove_store(path)
    with qa.connect(path) as db:
        writer = EventWriter(db)
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            writer.apply(events[i : i + batch])
        return time.perf_counter() - start


def run_bare(source: Path, path: Path, batches: int) -> tuple[float, int]:
    remove_store(path)
    qa.connect(path).close()  # the schema
    with qa.connect(source, readonly=True) as src:
        rows = {name: src.query(f"SELECT {cols} FROM {name}") for name, cols in TABLES.items()}
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(qa.store.BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    total = sum(len(r) for r in rows.values())
    start = time.perf_counter()
    for name in ("workers", "worker_events", "tasks", "attempts", "heartbeats"):
        cols = TABLES[name]
        sql = f"INSERT INTO {name} ({cols}) VALUES ({', '.join('?' * len(cols.split(',')))})"
        table = rows[name]
        size = max(1, len(table) // batches)
        for i in range(0, len(table), size):
            conn.execute("BEGIN IMMEDIATE")
            for row in table[i : i + size]:
                conn.execute(sql, row)
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1_000.0, help="tasks/s of event time")
    parser.add_argument("--batch", type=int, default=2_500, help="events per transaction")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--goal-rate", type=float, default=5_000.0)
    parser.add_argument("--goal-ratio", type=float, default=0.15)
    parser.add_argument("--no-check", action="store_true")
    args = parser.parse_args()

    raw = stream(args.tasks, args.workers, args.rate, seed=0)
    events = [e for e in (from_celery(d) for d in raw) if e is not None]
    DATA_DIR.mkdir(exist_ok=True)
    recorded, bare = DATA_DIR / "celery-recorder.db", DATA_DIR / "celery-bare.db"
    batches = max(1, len(events) // args.batch)
    rec_times, bare_times, rows = [], [], 0
    for repeat in range(args.repeats):
        order = ["rec", "bare"] if repeat % 2 == 0 else ["bare", "rec"]
        if repeat == 0:
            order = ["rec", "bare"]  # the bare loop replays the recorder's rows
        for which in order:
            if which == "rec":
                rec_times.append(run_recorder(recorded, events, args.batch))
            else:
                elapsed, rows = run_bare(recorded, bare, batches)
                bare_times.append(elapsed)
    rec_s, bare_s = median(rec_times), median(bare_times)
    rate = len(events) / rec_s
    print(f"{len(events):,} events ({args.tasks:,} tasks, {args.workers} workers) ->"
          f" {rows:,} rows; batches of {args.batch:,} events; medians of {args.repeats}")
    print_table(
        ["path", "seconds", "events/s", "rows/s"],
        [
            ["recorder", f"{rec_s:.2f}", f"{rate:,.0f}", f"{rows / rec_s:,.0f}"],
            ["bare sqlite3", f"{bare_s:.2f}", f"{len(events) / bare_s:,.0f}",
             f"{rows / bare_s:,.0f}"],
        ],
    )
    print(f"\nratio recorder / bare sqlite3: {bare_s / rec_s:.2f}x")
    for path in (recorded, bare):
        remove_store(path)
    goals = [
        Goal(f"events/s against {args.goal_rate:,.0f}/s", rate / args.goal_rate, 1.0),
        Goal("recorder vs bare sqlite3 loop", bare_s / rec_s, args.goal_ratio),
    ]
    return finish(goals, check=not args.no_check)


if __name__ == "__main__":
    sys.exit(main())
