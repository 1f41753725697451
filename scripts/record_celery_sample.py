"""Record a real Celery fleet for data/celery-sample.db (about three minutes).

Starts a throwaway Redis server (Debian's ``redis-server``), ``qanalytics record celery``
and four Celery workers (``w1``..``w4@shop``, thread pool, events on, Celery's default 2 s
heartbeat), then a producer sends the shop's jobs (``scripts/celery_sample_app.py``) for
about two minutes. Scripted on top of the ordinary workload:

- about 60 s in, ``w3`` is killed with SIGKILL while it runs a long report;
- about 90 s in, ``w4`` stops cleanly (SIGTERM: it says goodbye and finishes its work);
- the producer stops at 120 s; the recorder keeps listening until every task sent has a
  result and w3 has been silent for 30 s, then stops with SIGTERM.

What it printed about the run (Celery's own results) is written to
``data/celery-sample.json``, which the notebook checks the recording against.

Run from the repository root: ``python scripts/record_celery_sample.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "data" / "celery-sample.db"))
    parser.add_argument("--duration", type=float, default=120.0, help="producer seconds")
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="celery-sample-"))
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(SCRIPTS), env.get("PYTHONPATH", "")])
    env["QA_SAMPLE_BROKER"] = broker
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (tmp / f"{name}.log").open("wb")
        procs[name] = subprocess.Popen(argv, env=env, cwd=tmp, stdout=log, stderr=log)
        return procs[name]

    db = tmp / "fleet.db"
    try:
        start(
            "redis",
            [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
             "--save", "", "--appendonly", "no"],
        )
        os.environ["QA_SAMPLE_BROKER"] = broker
        sys.path.insert(0, str(SCRIPTS))
        import celery_sample_app as shop
        import redis

        client = redis.Redis.from_url(broker)

        def redis_up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(redis_up, "redis-server")
        start(
            "recorder",
            [sys.executable, "-m", "qanalytics", "record", "celery", "--broker", broker,
             "--db", str(db)],
        )
        wait_for(lambda: (tmp / "recorder.log").read_text().count("listening to") > 0,
                 "the recorder")
        for n in range(1, 5):
            start(
                f"w{n}",
                [sys.executable, "-m", "celery", "-A", "celery_sample_app", "worker", "-E",
                 "-P", "threads", "-c", "3", "-n", f"w{n}@shop", "-Q", f"celery,w{n}",
                 "--without-gossip", "--without-mingle", "-l", "WARNING"],
            )
        time.sleep(5)  # let the workers come online before the first job
        rng = random.Random(15)
        results: list[Any] = []
        began = time.monotonic()
        killed = stopped = False
        facts: dict[str, Any] = {}
        while time.monotonic() - began < args.duration:
            elapsed = time.monotonic() - began
            kind = rng.random()
            if kind < 0.45:
                results.append(shop.send_email.delay(f"customer{rng.randrange(1000)}@example.com"))
            elif kind < 0.7:
                results.append(shop.resize_image.delay(rng.randrange(10**6)))
            elif kind < 0.9:
                results.append(shop.charge_card.delay(rng.randrange(10**6)))
            else:
                results.append(shop.build_report.delay(f"2026-01-{rng.randrange(1, 29):02d}"))
            if not killed and elapsed > 60:
                marker = tmp / "doomed.started"
                doomed = shop.build_report.apply_async(
                    ("2026-01-31", str(marker), 600.0), queue="w3"
                )
                wait_for(marker.exists, "w3 to start the long report")
                time.sleep(3)  # a beat or two while it runs
                procs["w3"].send_signal(signal.SIGKILL)
                procs["w3"].wait()
                facts["killed_worker"] = "w3@shop"
                facts["killed_at"] = time.time()
                facts["killed_task"] = doomed.id
                killed = True
            if not stopped and elapsed > 90:
                procs["w4"].send_signal(signal.SIGTERM)
                facts["stopped_worker"] = "w4@shop"
                facts["stopped_at"] = time.time()
                stopped = True
            time.sleep(rng.expovariate(6.0))
        states: dict[str, str] = {}
        deadline = time.monotonic() + 60
        for result in results:
            # The killed worker's tasks never finish.
            with contextlib.suppress(Exception):
                result.get(timeout=max(0.1, deadline - time.monotonic()), propagate=False)
            states[result.id] = result.state
        facts["celery_states"] = states
        wait_for(lambda: time.time() - facts["killed_at"] > 30, "w3 to be silent for 30 s",
                 timeout=120)
        procs["recorder"].send_signal(signal.SIGTERM)
        if procs["recorder"].wait(timeout=60) != 0:
            raise SystemExit("the recorder did not exit cleanly: " + str(tmp / "recorder.log"))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    # A compact copy in rollback-journal mode, so nothing is created beside it when read.
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(out) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("VACUUM INTO ?", (str(out),))
    conn.close()
    conn = sqlite3.connect(out)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    counts = {
        state: sum(1 for s in facts["celery_states"].values() if s == state)
        for state in sorted(set(facts["celery_states"].values()))
    }
    facts["celery_state_counts"] = counts
    Path(out.with_suffix(".json")).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"Wrote {out} ({out.stat().st_size / 1e6:.1f} MB): Celery results {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
