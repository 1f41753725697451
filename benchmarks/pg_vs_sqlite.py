"""Claims and heartbeats per second with 16 processes: PostgreSQL next to SQLite, one run.

What is measured
----------------
For each backend, a fresh store with ``--tasks`` queued tasks; ``--processes`` worker
processes (16 by default) each open the store with ``qanalytics.connect``, register one
worker, meet at a barrier, and for ``--seconds`` either call ``qanalytics.heartbeat`` in a
loop (heartbeats/s) or ``qanalytics.claim`` then ``qanalytics.complete`` (claims/s, each
claim finished so it is a full task cycle). SQLite is a file under ``benchmarks/data/``
(WAL, ``synchronous=NORMAL``); PostgreSQL is a fresh schema on the server named by
``--url`` or ``QANALYTICS_TEST_PG`` (``.ci/postgres.sh`` starts one; pass
``QANALYTICS_PG_SERVER_OPTS=""`` so that it keeps fsync on). After each run the script
checks that no task was claimed twice.

    .ci/postgres.sh .venv/bin/python benchmarks/pg_vs_sqlite.py
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import uuid
from typing import Any

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from _common import DATA_DIR, print_table, remove_store

import qanalytics as qa


def _work(target: str, index: int, kind: str, seconds: float, barrier: Any, out: Any) -> None:
    worker = f"w{index}"
    count = 0
    claimed: list[int] = []
    with qa.connect(target) as db:
        qa.register_worker(db, worker)
        barrier.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if kind == "heartbeats":
                qa.heartbeat(db, worker)
                count += 1
            else:
                task = qa.claim(db, worker, lease="1h")
                if task is None:
                    break
                qa.complete(db, task.id, worker_id=worker)
                claimed.append(task.id)
                count += 1
    out.put((count, claimed))


def _run(target: str, kind: str, processes: int, seconds: float, tasks: int) -> float:
    with qa.connect(target) as db, db.transaction("fill") as conn:
        now = db.now()
        conn.executemany(
            "INSERT INTO tasks (type, status, priority, payload, max_attempts, created_at,"
            " run_after) VALUES ('t', 'queued', 100, NULL, 3, ?, ?)",
            [(now, now)] * (tasks if kind == "claims" else 0),
        )
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_work, args=(target, i, kind, seconds, barrier, out))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    ids = [t for _, claimed in results for t in claimed]
    assert len(ids) == len(set(ids)), "a task was claimed twice"
    return sum(c for c, _ in results) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("QANALYTICS_TEST_PG"))
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=200_000)
    args = parser.parse_args()
    if not args.url:
        parser.error("no PostgreSQL server: pass --url or set QANALYTICS_TEST_PG")
    DATA_DIR.mkdir(exist_ok=True)
    rows = []
    for kind in ("heartbeats", "claims"):
        for backend in ("sqlite", "postgresql"):
            if backend == "sqlite":
                path = DATA_DIR / "pg_vs_sqlite.db"
                remove_store(path)
                rate = _run(str(path), kind, args.processes, args.seconds, args.tasks)
                remove_store(path)
            else:
                schema = "bench_" + uuid.uuid4().hex[:8]
                with psycopg.connect(args.url, autocommit=True) as admin:
                    admin.execute(f"CREATE SCHEMA {schema}")
                sep = "&" if "?" in args.url else "?"
                target = f"{args.url}{sep}options=-csearch_path%3D{schema}"
                try:
                    rate = _run(target, kind, args.processes, args.seconds, args.tasks)
                finally:
                    with psycopg.connect(args.url, autocommit=True) as admin:
                        admin.execute(f"DROP SCHEMA {schema} CASCADE")
            rows.append((kind, backend, args.processes, f"{rate:,.0f}"))
            print(rows[-1], flush=True)
    print_table(["operation", "backend", "processes", "per second"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
