"""Reading a large frame from PostgreSQL: the store's Arrow path against ``pd.read_sql``.

Fills a fresh schema on the server named by ``--url`` or ``QANALYTICS_TEST_PG`` with
``--beats`` heartbeats over 1,000 workers (server-side ``generate_series``), then reads the
history three ways in the same run, medians of ``--repeat``:

* ``qa.heartbeats(db)``: the package's read (ADBC PostgreSQL driver, Arrow batches,
  categorical worker ids, UTC timestamps);
* ``db.read_frame(...)``: the raw three columns through the same Arrow path;
* ``pd.read_sql`` of the same three columns over the psycopg connection.

    .ci/postgres.sh .venv/bin/python benchmarks/pg_read.py --beats 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
import warnings

import pandas as pd
import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from _common import print_table

import qanalytics as qa

SQL = "SELECT worker_key, at, IFNULL(task_id, -1) FROM heartbeats"
COLUMNS = {"worker_key": "int64", "at": "float64", "task_id": "int?"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("QANALYTICS_TEST_PG"))
    parser.add_argument("--beats", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.url:
        parser.error("no PostgreSQL server: pass --url or set QANALYTICS_TEST_PG")
    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in args.url else "?"
    url = f"{args.url}{sep}options=-csearch_path%3D{schema}"
    try:
        with qa.connect(url) as db:
            raw = db.conn.raw  # type: ignore[attr-defined]
            raw.execute(
                "INSERT INTO workers (worker_id, registered_at, last_heartbeat_at)"
                " SELECT 'w' || g, 1.7e9, 1.7e9 FROM generate_series(1, 1000) g"
            )
            raw.execute(
                "INSERT INTO heartbeats (worker_key, at, task_id)"
                " SELECT 1 + g %% 1000, 1.7e9 + g * 0.03,"
                " CASE WHEN g %% 5 = 0 THEN g END FROM generate_series(1, %s) g",
                (args.beats,),
            )
            raw.execute("VACUUM ANALYZE heartbeats")
            times: dict[str, list[float]] = {"qa.heartbeats": [], "read_frame": [], "read_sql": []}
            for _ in range(args.repeat):
                t = time.perf_counter()
                frame = qa.heartbeats(db, now=2e9)
                times["qa.heartbeats"].append(time.perf_counter() - t)
                assert len(frame) == args.beats + 0
                t = time.perf_counter()
                db.read_frame(SQL, columns=COLUMNS)
                times["read_frame"].append(time.perf_counter() - t)
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # pandas asks for SQLAlchemy
                    pd.read_sql("SELECT worker_key, at, task_id FROM heartbeats", raw)
                times["read_sql"].append(time.perf_counter() - t)
    finally:
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    base = statistics.median(times["read_sql"])
    rows = [
        (name, f"{statistics.median(v):.2f}", f"{base / statistics.median(v):.1f}x")
        for name, v in times.items()
    ]
    print(f"{args.beats:,} heartbeats, medians of {args.repeat}")
    print_table(["path", "seconds", "vs pd.read_sql"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
