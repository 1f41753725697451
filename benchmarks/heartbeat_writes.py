"""Heartbeat write throughput: ``qanalytics.heartbeat()`` against a bare ``sqlite3`` loop.

What is measured
----------------
Heartbeats per second written by 1 and by 8 writer processes to one store file, for a
fixed time each, through two paths measured in the same run:

* ``qanalytics``: each process opens the store with ``qanalytics.connect``, registers its
  own workers with ``qanalytics.register_worker`` and calls ``qanalytics.heartbeat`` for
  them in turn.
* ``bare sqlite3``: the same workers (registered the same way, untimed), then a plain
  ``sqlite3`` connection with the store's pragmas (WAL, ``synchronous=NORMAL``, the same
  busy timeout, foreign keys on) running the same transaction per beat:
  ``BEGIN IMMEDIATE``; the same ``UPDATE workers SET last_heartbeat_at ... RETURNING``;
  ``INSERT INTO heartbeats``; ``COMMIT``.

Every run starts from a fresh store under ``benchmarks/data/``; the writer processes
register first and start beating together at a barrier. Runs alternate between the two
paths (the order flips every repeat) and the table shows medians over the repeats. Per
beat latency is the wall time of one call; the table shows the median p99 over repeats
and the worst single beat seen in any repeat. After each run the history is counted: it
must hold exactly the registrations plus the beats that returned True.

Goal
----
``qanalytics`` reaches at least 0.8x the bare loop's heartbeats per second, with 1 and
with 8 processes. The script exits with status 1 when a goal is missed (``--no-check``
only reports). ``--profile N`` instead profiles N single-process calls of
``qanalytics.heartbeat`` with cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import array
import cProfile
import io
import multiprocessing as mp
import pstats
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA_DIR, Goal, finish, median, print_table, remove_store

import qanalytics as qa
from qanalytics.store import BUSY_TIMEOUT_S

QA = "qanalytics"
BARE = "bare sqlite3"

# The statements registry.heartbeat runs, so the bare loop does the same work in SQLite.
_UPDATE = (
    "UPDATE workers SET last_heartbeat_at = max(ifnull(last_heartbeat_at, ?1), ?1)"
    " WHERE worker_id = ?2 AND removed_at IS NULL RETURNING worker_key"
)
_INSERT = "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)"


@dataclass(frozen=True)
class RunResult:
    """One timed run of one path with some number of processes.

    Attributes
    ----------
    path : str
        ``"qanalytics"`` or ``"bare sqlite3"``.
    processes : int
    beats : int
        Heartbeats that returned True, over all processes.
    errors : int
        Heartbeats that raised (for example "database is locked").
    seconds : float
        The longest process's beating time.
    latencies_s : numpy.ndarray
        Every beat's wall time, seconds.
    """

    path: str
    processes: int
    beats: int
    errors: int
    seconds: float
    latencies_s: np.ndarray

    @property
    def rate(self) -> float:
        """Heartbeats per second over all processes."""
        return self.beats / self.seconds if self.seconds > 0 else float("nan")


def _worker_ids(process: int, per_process: int) -> list[str]:
    return [f"bench-p{process:02d}-w{i:03d}" for i in range(per_process)]


def _open_bare(db_path: Path) -> sqlite3.Connection:
    """A plain ``sqlite3`` connection with the pragmas ``qanalytics.connect`` sets."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000):d}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _writer(
    path: str,
    db_path: Path,
    process: int,
    per_process: int,
    duration: float,
    barrier: Any,
    results: Any,
) -> None:
    """Body of one writer process: register, wait at the barrier, beat for `duration`."""
    ids = _worker_ids(process, per_process)
    db = qa.connect(db_path)
    for worker_id in ids:
        qa.register_worker(db, worker_id, {"bench": True, "process": process})
    conn: sqlite3.Connection | None = None
    if path == BARE:
        db.close()
        conn = _open_bare(db_path)
    latencies = array.array("d")
    beats = errors = 0
    n = len(ids)
    clock = time.perf_counter
    barrier.wait()
    start = clock()
    deadline = start + duration
    i = 0
    now = start
    while now < deadline:
        worker_id = ids[i % n]
        i += 1
        t0 = clock()
        try:
            if conn is None:
                ok = qa.heartbeat(db, worker_id)
            else:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(_UPDATE, (time.time(), worker_id)).fetchone()
                if row is not None:
                    conn.execute(_INSERT, (row[0], time.time(), None))
                conn.execute("COMMIT")
                ok = row is not None
        except (qa.QAnalyticsError, sqlite3.Error):
            errors += 1
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            ok = False
        now = clock()
        latencies.append(now - t0)
        beats += ok
    elapsed = now - start
    if conn is not None:
        conn.close()
    else:
        db.close()
    results.put((beats, errors, elapsed, latencies.tobytes()))


def run_once(
    path: str, processes: int, *, duration: float, per_process: int, db_path: Path
) -> RunResult:
    """Run one path with `processes` writers on a fresh store and collect the results.

    Parameters
    ----------
    path : {"qanalytics", "bare sqlite3"}
    processes : int
    duration : float
        Seconds each process beats for.
    per_process : int
        Workers each process registers and beats for, in turn.
    db_path : pathlib.Path
        The store file; deleted and created afresh.

    Returns
    -------
    RunResult

    Raises
    ------
    RuntimeError
        If a writer process failed, or the history does not hold exactly the
        registrations plus the beats that returned True.
    """
    remove_store(db_path)
    qa.connect(db_path).close()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer,
            args=(path, db_path, p, per_process, duration, barrier, results),
        )
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    collected = [results.get(timeout=duration + 120) for _ in procs]
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError(f"a {path} writer process exited with status {proc.exitcode}")
    beats = sum(r[0] for r in collected)
    errors = sum(r[1] for r in collected)
    seconds = max(r[2] for r in collected)
    latencies = np.concatenate([np.frombuffer(r[3], dtype="float64") for r in collected])
    check = sqlite3.connect(db_path)
    try:
        stored = check.execute("SELECT count(*) FROM heartbeats").fetchone()[0]
    finally:
        check.close()
    expected = beats + processes * per_process  # registration stamps a first beat too
    if stored != expected:
        raise RuntimeError(
            f"{path}, {processes} processes: history holds {stored} heartbeats, expected {expected}"
        )
    remove_store(db_path)
    return RunResult(path, processes, beats, errors, seconds, latencies)


def profile(n: int, db_path: Path) -> None:
    """Profile `n` single-process ``qanalytics.heartbeat`` calls and print the top costs.

    Also times the same number of bare-loop beats on the same store for scale.

    Parameters
    ----------
    n : int
    db_path : pathlib.Path
    """
    remove_store(db_path)
    db = qa.connect(db_path)
    qa.register_worker(db, "bench-profile")
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for _ in range(n):
        qa.heartbeat(db, "bench-profile")
    profiler.disable()
    profiled = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        qa.heartbeat(db, "bench-profile")
    plain = time.perf_counter() - t0
    db.close()
    conn = _open_bare(db_path)
    t0 = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(_UPDATE, (time.time(), "bench-profile")).fetchone()
        conn.execute(_INSERT, (row[0], time.time(), None))
        conn.execute("COMMIT")
    bare = time.perf_counter() - t0
    conn.close()
    remove_store(db_path)
    print(
        f"{n} beats: qanalytics {plain / n * 1e6:.1f} us/beat "
        f"({profiled / n * 1e6:.1f} under the profiler), bare {bare / n * 1e6:.1f} us/beat, "
        f"ratio {bare / plain:.2f}x"
    )
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table, the ratios and the goals.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 1 when a goal is missed and checking is on.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run (2)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path and size (3)")
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 8], help="writer counts (1 8)"
    )
    parser.add_argument(
        "--workers-per-process", type=int, default=10, help="workers each process beats for"
    )
    parser.add_argument("--goal", type=float, default=0.8, help="minimum ratio (0.8)")
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="profile N single-process heartbeats instead"
    )
    args = parser.parse_args(argv)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    db_path = DATA_DIR / "heartbeat_writes.db"
    if args.profile:
        profile(args.profile, db_path)
        return 0

    runs: dict[tuple[str, int], list[RunResult]] = {}
    order = [QA, BARE]
    for repeat in range(args.repeats):
        for processes in args.processes:
            for path in order:
                result = run_once(
                    path,
                    processes,
                    duration=args.duration,
                    per_process=args.workers_per_process,
                    db_path=db_path,
                )
                runs.setdefault((path, processes), []).append(result)
                print(
                    f"  repeat {repeat + 1}: {path:>12}, {processes} proc: "
                    f"{result.rate:8,.0f} beats/s",
                    file=sys.stderr,
                )
        order.reverse()

    rows = []
    goals = []
    for processes in args.processes:
        rates = {}
        for path in (QA, BARE):
            results = runs[(path, processes)]
            rates[path] = median([r.rate for r in results])
            p99 = median([float(np.percentile(r.latencies_s, 99)) for r in results])
            worst = max(float(r.latencies_s.max()) for r in results)
            rows.append(
                [
                    f"{path}, {processes} proc",
                    f"{rates[path]:,.0f}",
                    f"{p99 * 1e3:.2f}",
                    f"{worst * 1e3:.1f}",
                    sum(r.errors for r in results),
                    " ".join(f"{r.rate:,.0f}" for r in results),
                ]
            )
        goals.append(Goal(f"heartbeats/s, {processes} proc", rates[QA] / rates[BARE], args.goal))
    print(
        f"heartbeat writes: {args.duration:g} s per run, {args.repeats} repeats, "
        f"{args.workers_per_process} workers per process, SQLite {sqlite3.sqlite_version}"
    )
    print_table(["path", "beats/s (median)", "p99 ms", "worst ms", "errors", "runs"], rows)
    return finish(goals, check=not args.no_check)


if __name__ == "__main__":
    sys.exit(main())
