"""Sustained mixed load: many worker processes beating, claiming and finishing tasks.

What is measured
----------------
``--processes`` worker processes (16 by default) share one fresh store under
``benchmarks/data/`` for ``--seconds`` of wall time. Each registers itself, then loops:
a heartbeat; a claim when it holds nothing; a completion (or, one time in five, a
failure with a retry) of what it holds; now and then an enqueue, and a read of
``queue_metrics`` on a read-only connection. Producers keep the queue from running dry:
the store starts with ``--tasks`` queued tasks and every process also enqueues.

The table shows, per operation, the sustained rate over the whole run (operations per
second of wall time, all processes together) and the p50 / p99 / worst latency of a
single call. The slowest and fastest process's share of heartbeats show how fair the
SQLite busy handler is. After the run the history is checked: it must hold every
heartbeat that returned True, and no (task, attempt) may have been claimed twice; any
``database is locked`` error is counted and fails the run.

There is no baseline ratio here: the figures answer "how much load does one store file
take on this machine" for the capacity notes, and the exit status says whether the
invariants held.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import sys
import time
import traceback
from collections import Counter
from typing import Any

import numpy as np
from _common import DATA_DIR, print_table, remove_store

import qanalytics as qa

OPERATIONS = ("heartbeat", "claim", "complete", "fail", "enqueue", "read")


def _worker(path: str, index: int, seconds: float, barrier: Any, results: Any) -> None:
    rng = random.Random(index)
    worker_id = f"bench-{index}"
    latencies: dict[str, list[float]] = {op: [] for op in OPERATIONS}
    acked = 0
    claims: list[tuple[int, int]] = []
    errors: list[str] = []
    try:
        with qa.connect(path) as db, qa.connect(path, readonly=True) as ro:
            qa.register_worker(db, worker_id)
            barrier.wait(timeout=60)
            held: qa.Task | None = None
            deadline = time.perf_counter() + seconds
            while True:
                start = time.perf_counter()
                if start >= deadline:
                    break
                if qa.heartbeat(db, worker_id, task_id=held.id if held else None):
                    acked += 1
                t = time.perf_counter()
                latencies["heartbeat"].append(t - start)
                if held is None:
                    held = qa.claim(db, worker_id, lease="1h")
                    latencies["claim"].append(time.perf_counter() - t)
                    if held is not None:
                        claims.append((held.id, held.attempts))
                else:
                    if rng.random() < 0.8:
                        qa.complete(db, held.id, worker_id=worker_id)
                        latencies["complete"].append(time.perf_counter() - t)
                    else:
                        qa.fail(db, held.id, "bench", delay=0, worker_id=worker_id)
                        latencies["fail"].append(time.perf_counter() - t)
                    held = None
                roll = rng.random()
                t = time.perf_counter()
                if roll < 0.3:
                    qa.enqueue(db, "bench", {"by": index})
                    latencies["enqueue"].append(time.perf_counter() - t)
                elif roll < 0.35:
                    qa.queue_metrics(ro)
                    latencies["read"].append(time.perf_counter() - t)
            if held is not None:
                qa.complete(db, held.id, worker_id=worker_id)
    except BaseException:
        errors.append(traceback.format_exc())
    results.put(
        {
            "worker_id": worker_id,
            "lat": latencies,
            "acked": acked,
            "claims": claims,
            "errors": errors,
        }
    )


def run(processes: int, seconds: float, tasks: int) -> int:
    """Run the load and print the table; return the exit status.

    Parameters
    ----------
    processes : int
    seconds : float
    tasks : int
        Tasks queued before the run starts.

    Returns
    -------
    int
        0 when every invariant held, 1 otherwise.
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "load.db"
    remove_store(path)
    with qa.connect(path) as db:
        for i in range(tasks):
            qa.enqueue(db, "bench", {"i": i}, priority=i % 4)
    ctx: Any = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(str(path), i, seconds, barrier, results))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    outs = [results.get(timeout=seconds + 120) for _ in procs]
    wall = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=60)

    rows = []
    for op in OPERATIONS:
        lat = np.array([x for out in outs for x in out["lat"][op]])
        if lat.size == 0:
            continue
        p50, p99 = np.percentile(lat, [50, 99]) * 1000
        rows.append(
            [op, f"{lat.size / wall:,.0f}", f"{p50:.2f}", f"{p99:.1f}", f"{lat.max() * 1000:.0f}"]
        )
    print(f"{processes} processes, {wall:.1f} s wall, store {path.name}")
    print_table(["operation", "per s", "p50 ms", "p99 ms", "worst ms"], rows)
    beats = sorted(len(out["lat"]["heartbeat"]) for out in outs)
    print(f"\nheartbeats per process: min {beats[0]:,}, max {beats[-1]:,}")

    errors = [e for out in outs for e in out["errors"]]
    locked = sum("locked" in e for e in errors)
    ok = not errors
    with qa.connect(path, readonly=True) as db:
        for out in outs:
            stored = db.query(
                "SELECT count(*) FROM heartbeats h JOIN workers w USING (worker_key)"
                " WHERE w.worker_id = ?",
                (out["worker_id"],),
            )[0][0]
            ok &= stored == out["acked"] + 1  # plus the registration's beat
        claims = Counter(c for out in outs for c in out["claims"])
        ok &= not claims or max(claims.values()) == 1
    print(f"errors: {len(errors)} ({locked} 'database is locked'); invariants held: {ok}")
    for error in errors[:3]:
        print(error, file=sys.stderr)
    return 0 if ok else 1


def main() -> int:
    """Parse arguments and run the benchmark.

    Returns
    -------
    int
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    return run(args.processes, args.seconds, args.tasks)


if __name__ == "__main__":
    sys.exit(main())
