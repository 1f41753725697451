"""Summary tiers at scale: liveness from the tiers, a year of a fleet, and upkeep rates.

Three measurements, each printing ratios taken in the same run:

1. ``--beats 5M 20M 50M`` (stores from ``scale_data.py``: 1,000 workers beating every
   30 s): the store's tiers are emptied, then ``qa.outages()`` and ``qa.uptime("1d")``
   are measured from the raw beats, beside DuckDB's gap query over the same file
   (``_prototypes.duck_outages``); then ``summarize(lag="1h")`` runs (timed: beats/s),
   and the two calls are measured again, now reading the tiers. Each call runs in a
   fresh, niced subprocess: wall seconds and peak resident-set growth (see
   ``scale_reads.py``).
2. ``--year``: a year of 1,000 workers as the tiers hold it after a year of
   ``summarize``/``prune`` (written directly: 365 days of day rows per worker and the
   silences a fleet keeps; one hour of raw beats after the mark), for a 30 s fleet and
   for Celery's 2 s beats; ``outages()``, ``uptime("1d")`` and ``alive_intervals()``.
3. ``--prune``: on a copy of the 5 M store, ``prune(keep="1h")`` (summarize, roll up
   into minutes, delete), in beats per second, against the write rate of 1,000 workers
   beating every 2 s (500 beats/s).

Usage::

    python benchmarks/scale_data.py --beats 5M 20M 50M
    python benchmarks/scale_tiers.py --beats 5M 20M 50M --year --prune
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import peak_call, print_table
from scale_data import default_dir, ensure, parse_count

DAY = 86400.0
#: Write rate the upkeep must keep up with: 1,000 workers beating every 2 s.
WRITE_RATE = 1000 / 2.0


def child(read: str, path: Path, now: float) -> dict[str, Any]:
    """Run one call in this fresh process; seconds, peak RSS growth, rows."""
    import _prototypes as P
    import pyarrow  # noqa: F401

    import qanalytics as qa

    if read.startswith("duckdb"):
        P.duckdb_connect().close()
    db = qa.connect(path, readonly=True, clock=lambda: now)
    calls = {
        "outages": lambda: qa.outages(db),
        "uptime_1d": lambda: qa.uptime(db, freq="1d"),
        "alive_intervals": lambda: qa.alive_intervals(db),
        "duckdb_outages": lambda: P.duck_outages(path, now),
    }
    result, seconds, peak_mib = peak_call(calls[read])
    return {"seconds": seconds, "peak_mib": peak_mib, "rows": len(result)}


def measure(read: str, path: Path, now: float) -> dict[str, Any]:
    """Run :func:`child` in a fresh, niced subprocess."""
    cmd = [sys.executable, __file__, "--child", read, str(path), repr(now)]
    done = subprocess.run(["nice", *cmd], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{read} failed: {done.stderr.strip()[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _row(section: str, label: str, read: str, m: dict[str, Any], note: str = "") -> list[Any]:
    row = [section, label, read, f"{m['seconds']:.2f}", f"{m['peak_mib']:.0f}", note]
    print("  ".join(str(c) for c in row), flush=True)
    return row


def _reset_tiers(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM heartbeat_days")
    conn.execute("DELETE FROM heartbeat_silences")
    conn.execute("DELETE FROM meta WHERE key = 'heartbeats_summarized_until'")
    conn.commit()
    conn.close()


def run_size(path: Path, meta: dict[str, Any]) -> list[list[Any]]:
    """Raw reads, DuckDB, summarize, tiered reads at one size."""
    import qanalytics as qa
    from qanalytics.maintenance import summarize

    now = float(meta["now"])
    label = f"{meta['heartbeats'] / 1e6:.1f}M"
    with qa.connect(path):
        pass  # migrate once
    _reset_tiers(path)
    rows = []
    raw = {r: measure(r, path, now) for r in ("outages", "uptime_1d")}
    duck = measure("duckdb_outages", path, now)
    rows.append(_row("size", label, "outages, raw beats", raw["outages"]))
    rows.append(_row("size", label, "uptime 1d, raw beats", raw["uptime_1d"]))
    rows.append(_row("size", label, "DuckDB gap query", duck))
    with qa.connect(path, clock=lambda: now) as db:
        started = time.perf_counter()
        result = summarize(db, lag="1h")
        seconds = time.perf_counter() - started
    rate = result.beats / seconds
    rows.append(
        _row(
            "size", label, "summarize(lag=1h)", {"seconds": seconds, "peak_mib": float("nan")},
            f"{result.beats:,} beats, {rate:,.0f} beats/s = {rate / WRITE_RATE:,.0f}x"
            " the 2 s fleet's write rate",
        )
    )
    for read in ("outages", "uptime_1d"):
        m = measure(read, path, now)
        note = f"{raw[read]['seconds'] / m['seconds']:.1f}x faster than raw"
        if read == "outages":
            note += f", {duck['seconds'] / m['seconds']:.1f}x faster than DuckDB"
        rows.append(_row("size", label, f"{read}, tiers", m, note))
    return rows


def synth_year(path: Path, interval: float, workers: int = 1000, days: int = 365) -> float:
    """A store holding a year of tiers (and an hour of raw beats after them); its now."""
    import qanalytics as qa

    rng = np.random.default_rng(11)
    end_day = 20_454  # 2026-01-01
    mark = end_day * DAY
    now = mark + 3600.0
    with qa.connect(path):
        pass
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    per_day = int(DAY / interval)
    start = (end_day - days) * DAY
    conn.executemany(
        "INSERT INTO workers (worker_key, worker_id, registered_at, last_heartbeat_at,"
        " heartbeats) VALUES (?, ?, ?, ?, ?)",
        [(k, f"worker-{k:04d}", start, now - interval, per_day * days + int(3600 / interval))
         for k in range(1, workers + 1)],
    )
    conn.executemany(
        "INSERT INTO worker_events (worker_key, at, event) VALUES (?, ?, 'registered')",
        [(k, start) for k in range(1, workers + 1)],
    )
    day = np.arange(end_day - days, end_day)
    # Silences a fleet keeps: just over the floor (twice the interval), and outages of
    # seconds to half an hour; a few per worker and day.
    short_rate, long_rate = (4.0, 1.0) if interval >= 10 else (10.0, 3.0)
    n_sil = 0
    for k in range(1, workers + 1):
        conn.executemany(
            "INSERT INTO heartbeat_days VALUES (?, ?, ?, ?, ?, NULL, ?)",
            zip(
                [k] * days, day.tolist(), [per_day] * days,
                (day * DAY + rng.uniform(0, interval, days)).tolist(),
                (day * DAY + DAY - rng.uniform(0, interval, days)).tolist(),
                rng.normal(interval, interval * 0.01, days).tolist(),
                strict=True,
            ),
        )
        n = rng.poisson(short_rate * days) + rng.poisson(long_rate * days)
        st = np.sort(rng.uniform(day[0] * DAY, mark - 1800, n))
        long = rng.random(n) < long_rate / (short_rate + long_rate)
        du = np.where(
            long, rng.uniform(3.5 * interval, 1800, n), rng.uniform(2.1, 2.9, n) * interval
        )
        conn.executemany(
            "INSERT OR IGNORE INTO heartbeat_silences VALUES (?, ?, ?, NULL)",
            zip([k] * n, st.tolist(), (st + du).tolist(), strict=True),
        )
        n_sil += n
    beats = [
        (k, float(t))
        for t in np.arange(mark, now, interval)
        for k in range(1, workers + 1)
    ]
    conn.executemany("INSERT INTO heartbeats (worker_key, at) VALUES (?, ?)", beats)
    conn.execute(
        "INSERT INTO meta VALUES ('heartbeats_summarized_until', ?)", (mark,)
    )
    conn.execute("COMMIT")
    conn.close()
    print(f"  year store ({interval:g} s beats): {workers * days:,} day rows, "
          f"{n_sil:,} silences, {len(beats):,} raw beats", flush=True)
    return now


def run_year(directory: Path) -> list[list[Any]]:
    """A year of 1,000 workers at 30 s and at 2 s beats, read from the tiers."""
    rows = []
    for interval in (30.0, 2.0):
        path = directory / f"year-tiers-{interval:g}s.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        now = synth_year(path, interval)
        label = f"1 year, {interval:g} s"
        for read in ("outages", "uptime_1d", "alive_intervals"):
            m = measure(read, path, now)
            rows.append(_row("year", label, read, m, f"{m['rows']:,} rows"))
    return rows


def run_prune(path: Path, meta: dict[str, Any]) -> list[list[Any]]:
    """prune(keep="1h") on a copy of a store, in beats per second."""
    import qanalytics as qa
    from qanalytics.maintenance import prune

    now = float(meta["now"])
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        with qa.connect(copy, clock=lambda: now) as db:
            _reset_tiers(copy)
            started = time.perf_counter()
            result = prune(db, keep="1h", batch=50_000)
            seconds = time.perf_counter() - started
    rate = result.heartbeats_rolled_up / seconds
    label = f"{meta['heartbeats'] / 1e6:.1f}M"
    return [
        _row(
            "prune", label, 'prune(keep="1h")', {"seconds": seconds, "peak_mib": float("nan")},
            f"{result.heartbeats_rolled_up:,} beats, {rate:,.0f} beats/s ="
            f" {rate / WRITE_RATE:,.0f}x the 2 s fleet's write rate",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", nargs="*", default=[])
    parser.add_argument("--year", action="store_true")
    parser.add_argument("--prune", action="store_true")
    parser.add_argument("--dir", type=Path, default=default_dir())
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        read, path, now = args.child
        print(json.dumps(child(read, Path(path), float(now))))
        return 0
    rows: list[list[Any]] = []
    for size in args.beats:
        path, meta = ensure(args.dir, parse_count(size), interval=30.0)
        rows += run_size(path, meta)
    if args.year:
        args.dir.mkdir(parents=True, exist_ok=True)
        rows += run_year(args.dir)
    if args.prune:
        path, meta = ensure(args.dir, parse_count("5M"), interval=30.0)
        rows += run_prune(path, meta)
    print()
    print_table(["section", "history", "call", "seconds", "peak MiB", "note"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
