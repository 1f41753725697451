"""Generate large, realistic qanalytics stores fast: millions of heartbeats, streamed.

A fleet of ``--workers`` (1,000) beats every ``--interval`` seconds (30; ``2`` for
Celery-style beats) until ``--beats`` heartbeats exist (5 M, 20 M, 50 M, ...). The history
is produced in time slabs of about two million beats, so memory stays bounded by a slab
whatever the size, and each slab is written with ``executemany`` into a file whose
schema comes from ``qanalytics.connect`` (indexes dropped during the load and re-created
from the schema's own DDL afterwards).

Realism: beat intervals jitter around the interval; now and then a silence of 3-30
minutes, rarely one of hours; a few workers join late, some die (half of them are
removed a few minutes later, the others just fall silent). Tasks and attempts scale with
time (a worker claims a task about every 66 s: 30 s of work on average, then idle):
six task types with their own failure rates, a failed attempt retried on the worker's
next slot half the time, tasks running at the end left ``processing``, a few queued and
cancelled ones; each beat names the task its worker held.

Files go to ``--dir`` (default: a ``qanalytics-scale`` folder in the system temp dir),
never into the repository: ``scale-<beats>-<interval>s.db`` plus a ``.json`` that marks
it complete and records the ``now`` every question is asked at.

Usage::

    python benchmarks/scale_data.py --beats 5M            # ~1 min
    python benchmarks/scale_data.py --beats 20M --interval 2
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The moment every generated history ends (2026-01-01T00:00:00Z).
HISTORY_END = 1_767_225_600.0
GENERATOR_VERSION = 1
TYPES = ["email", "thumbnail", "report", "webhook", "export", "ml-inference"]
TYPE_WEIGHTS = [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]
TYPE_FAILURE = [0.02, 0.04, 0.08, 0.12, 0.06, 0.15]
ERRORS = ["timeout", "connection reset", "upstream 503", "out of memory", "bad payload"]
SLAB_BEATS = 2_000_000


def default_dir() -> Path:
    """Where generated stores go unless ``--dir`` says otherwise (outside the repository)."""
    return Path(
        os.environ.get("QANALYTICS_SCALE_DIR", Path(tempfile.gettempdir()) / "qanalytics-scale")
    )


def parse_count(text: str) -> int:
    """``"5M"`` -> 5,000,000; ``"500k"`` -> 500,000; plain integers as they are."""
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def store_path(directory: Path, beats: int, interval: float) -> Path:
    """The file name of a generated store."""
    return directory / f"scale-{beats / 1e6:g}M-{interval:g}s.db"


def _nullable(values: np.ndarray, missing: np.ndarray) -> list[Any]:
    out = values.astype(object)
    out[missing] = None
    return out.tolist()


def build(
    path: Path, beats: int, workers: int = 1000, interval: float = 30.0, seed: int = 7
) -> dict[str, Any]:
    """Write a store of `beats` heartbeats at `path` (replacing it) and return its description.

    Parameters
    ----------
    path : pathlib.Path
    beats : int
        Heartbeats in the history (approximately: silences shave a little off).
    workers : int
    interval : float
        Seconds between a worker's beats.
    seed : int

    Returns
    -------
    dict
        Row counts, ``now`` and timings; also written next to the store as ``.json``.
    """
    import qanalytics as qa

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    w = workers
    span = beats / w * interval
    t0 = HISTORY_END - span
    kind = rng.choice(3, size=w, p=[0.93, 0.04, 0.03])  # steady, late joiner, dies
    w_start = t0 + rng.uniform(0, min(600.0, 0.01 * span), w)
    late = kind == 1
    w_start[late] = t0 + rng.uniform(0.1, 0.6, late.sum()) * span
    w_end = np.full(w, HISTORY_END)
    died = kind == 2
    w_end[died] = HISTORY_END - rng.uniform(0.05, 0.5, died.sum()) * span
    removed = died & (rng.random(w) < 0.5)
    removal = np.where(
        removed, np.minimum(w_end + rng.uniform(300, 3600, w), HISTORY_END - 60), np.nan
    )

    tmp = path.with_name(path.name + ".building")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    qa.connect(tmp).close()
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    caps = [
        json.dumps(
            {"gpu": i % 10 == 0, "queues": TYPES[: 2 + i % 5], "region": f"r{i % 3}"},
            sort_keys=True,
        )
        for i in range(w)
    ]
    keys = np.arange(1, w + 1)

    next_beat = w_start.copy()
    last_beat = np.full(w, np.nan)
    next_claim = w_start + rng.uniform(0, 30, w)
    # The attempt each worker ran last, carried across slabs: claim, finish, task id.
    carry = (np.full(w, -np.inf), np.full(w, -np.inf), np.full(w, -1, dtype=np.int64))
    next_task = 1
    n_beats = n_attempts = n_tasks = 0
    slab_s = SLAB_BEATS / w * interval
    slab_lo = t0
    slot_mean = 66.0
    while slab_lo < HISTORY_END:
        slab_hi = min(slab_lo + slab_s, HISTORY_END)
        # -- beats: a (worker x k) matrix of candidate times, kept inside the slab and life.
        k = int(np.ceil((slab_hi - slab_lo) / (interval * 0.66))) + 2
        gaps = np.clip(
            rng.normal(interval, interval * 0.05, (w, k)), interval * 0.66, interval * 1.33
        )
        silent = rng.random((w, k)) < 0.0005 * interval / 30.0
        gaps[silent] += rng.uniform(180, 1800, silent.sum())
        long_silent = rng.random((w, k)) < 0.00002 * interval / 30.0
        gaps[long_silent] += rng.uniform(3600, 6 * 3600, long_silent.sum())
        gaps[:, 0] = 0.0
        times = next_beat[:, None] + np.cumsum(gaps, axis=1)
        beyond = times >= slab_hi
        first_beyond = np.where(beyond.any(axis=1), beyond.argmax(axis=1), k - 1)
        next_beat = np.maximum(times[np.arange(w), first_beyond], slab_hi)
        keep = ~beyond & (times >= w_start[:, None]) & (times <= w_end[:, None])
        hb_w, hb_col = np.nonzero(keep)
        hb_at = times[hb_w, hb_col]
        del times, gaps, beyond, keep
        if len(hb_at):
            np.fmax.at(last_beat, hb_w, hb_at)

        # -- attempts: slots of work + idle per worker.
        k2 = int(np.ceil((slab_hi - slab_lo) / 2.0 / slot_mean * 3)) + 4
        busy = rng.lognormal(np.log(20), 0.9, (w, k2))
        idle = rng.exponential(slot_mean - 30.0, (w, k2))
        offs = np.cumsum(busy + idle, axis=1) - (busy + idle)
        claim = next_claim[:, None] + offs
        finish = claim + busy
        in_slab = claim < slab_hi
        past = ~in_slab
        first_out = np.where(past.any(axis=1), past.argmax(axis=1), k2 - 1)
        next_claim = np.maximum(claim[np.arange(w), first_out], slab_hi)
        live = in_slab & (claim >= w_start[:, None]) & (claim <= w_end[:, None])
        ttype = rng.choice(len(TYPES), size=(w, k2), p=TYPE_WEIGHTS)
        failed = rng.random((w, k2)) < np.asarray(TYPE_FAILURE)[ttype]
        retry = np.zeros((w, k2), dtype=bool)
        coin = rng.random((w, k2)) < 0.5
        for j in range(1, k2):  # a failed first attempt is retried on the next slot
            retry[:, j] = failed[:, j - 1] & coin[:, j] & ~retry[:, j - 1] & live[:, j - 1]
        retry &= live
        ttype[:, 1:] = np.where(retry[:, 1:], ttype[:, :-1], ttype[:, 1:])
        a_w, a_col = np.nonzero(live)
        a_claim = claim[a_w, a_col]
        a_finish = finish[a_w, a_col]
        a_retry = retry[a_w, a_col]
        a_failed = failed[a_w, a_col]
        a_type = ttype[a_w, a_col]
        n_a = len(a_claim)
        # Task ids in row-major (worker, slot) order: a retry reuses its predecessor's.
        new = ~a_retry
        a_task_local = np.cumsum(new) - 1
        a_no = np.where(a_retry, 2, 1)
        n_new = int(new.sum())
        # Ids in order of creation time.
        created_local = a_claim[new] - rng.exponential(15, n_new)
        order = np.argsort(created_local, kind="stable")
        rank = np.empty(n_new, dtype=np.int64)
        rank[order] = np.arange(n_new)
        a_task = next_task + rank[a_task_local]
        # Outcomes: a retried attempt failed; the last of a task by its own failure draw.
        followed = np.zeros(n_a, dtype=bool)
        followed[:-1] = a_retry[1:]
        outcome = np.where(a_failed, "failed", "completed").astype(object)
        outcome[followed] = np.where(rng.random(int(followed.sum())) < 0.9, "failed", "abandoned")
        dead_mid = a_finish > w_end[a_w]
        outcome[dead_mid] = "abandoned"
        a_fin = np.where(dead_mid, w_end[a_w] + 60.0, a_finish)
        open_ = a_finish > HISTORY_END
        outcome[open_] = None
        a_fin[open_] = np.nan
        # A silent dead worker's last claim stays open.
        silent_dead = died & ~removed
        open_dead = dead_mid & silent_dead[a_w]
        outcome[open_dead] = None
        a_fin[open_dead] = np.nan
        err = np.asarray(ERRORS, dtype=object)[rng.integers(0, len(ERRORS), n_a)]
        a_err = np.where(outcome == "failed", err, None)
        a_err[outcome == "abandoned"] = "lease expired"

        # Tasks: one row per new task, its state from its last attempt.
        last_of_task = ~followed
        t_attempt_idx = np.flatnonzero(last_of_task)  # in task order (cumsum order)
        first_idx = np.flatnonzero(new)
        t_ids = a_task[first_idx]
        t_type = a_type[first_idx]
        t_out = outcome[t_attempt_idx]
        t_status = np.where(t_out == "completed", "completed", "failed").astype(object)
        t_status[pd_isnull(t_out)] = "processing"
        t_created = created_local
        t_started = a_claim[t_attempt_idx]
        t_fin = a_fin[t_attempt_idx]
        t_worker = a_w[t_attempt_idx] + 1
        t_attempts = a_no[t_attempt_idx]
        t_lease = np.where(t_status == "processing", t_started + 60.0, np.nan)
        t_run_after = np.where(t_attempts > 1, t_started - 1.0, t_created)
        t_error = np.where(t_status == "failed", a_err[t_attempt_idx], None)
        # Cancelled tasks (never claimed), and queued ones at the very end.
        n_c = max(1, n_new // 300)
        c_created = rng.uniform(slab_lo, slab_hi, n_c)
        final = slab_hi >= HISTORY_END
        n_q = max(1, n_new // 250) if final else 0
        q_created = HISTORY_END - rng.uniform(0, 900, n_q)
        extra_ids = next_task + n_new + np.arange(n_c + n_q)
        next_task += n_new + n_c + n_q

        # The task each beat's worker held (also the previous slab's last attempt).
        c_claim, c_fin, c_task = carry
        cand_w = np.concatenate([np.arange(w), a_w])
        cand_claim = np.concatenate([c_claim, a_claim])
        cand_fin = np.concatenate([c_fin, np.where(np.isnan(a_fin), np.inf, a_fin)])
        cand_task = np.concatenate([c_task, a_task])
        stride = 4.0 * (slab_hi - slab_lo + 1e6)
        base = slab_lo - 1e6
        c_key = cand_w * stride + np.maximum(cand_claim - base, 0.0)
        c_order = np.argsort(c_key, kind="stable")
        c_key = c_key[c_order]
        h_key = hb_w * stride + (hb_at - base)
        pos = np.searchsorted(c_key, h_key, side="right") - 1
        pos_c = c_order[np.maximum(pos, 0)]
        holding = (pos >= 0) & (cand_w[pos_c] == hb_w) & (hb_at < cand_fin[pos_c])
        hb_task = np.where(holding, cand_task[pos_c], -1)
        # Carry each worker's last attempt of this slab.
        if n_a:
            last_pos = np.full(w, -1)
            last_pos[a_w] = np.arange(n_a)  # row-major: the last write per worker wins
            has = last_pos >= 0
            c_claim = c_claim.copy()
            c_fin = c_fin.copy()
            c_task = c_task.copy()
            c_claim[has] = a_claim[last_pos[has]]
            c_fin[has] = np.where(np.isnan(a_fin[last_pos[has]]), np.inf, a_fin[last_pos[has]])
            c_task[has] = a_task[last_pos[has]]
            carry = (c_claim, c_fin, c_task)

        # -- write the slab in time order.
        hb_order = np.argsort(hb_at, kind="stable")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)",
            zip(
                (hb_w[hb_order] + 1).tolist(),
                hb_at[hb_order].tolist(),
                _nullable(hb_task[hb_order], hb_task[hb_order] < 0),
                strict=True,
            ),
        )
        ids_all = np.concatenate([t_ids, extra_ids])
        t_rows = np.argsort(ids_all, kind="stable")
        nan_x = np.full(n_c + n_q, np.nan)
        none_x = np.full(n_c + n_q, None, dtype=object)
        x_types = rng.choice(len(TYPES), n_c + n_q, p=TYPE_WEIGHTS)
        cols = {
            "id": ids_all,
            "type": np.asarray(TYPES, dtype=object)[np.concatenate([t_type, x_types])],
            "status": np.concatenate(
                [t_status, np.full(n_c, "cancelled", object), np.full(n_q, "queued", object)]
            ),
            "attempts": np.concatenate([t_attempts, np.zeros(n_c + n_q, np.int64)]),
            "created": np.concatenate([t_created, c_created, q_created]),
            "run_after": np.concatenate([t_run_after, c_created, q_created]),
            "started": np.concatenate([t_started, nan_x]),
            "finished": np.concatenate([t_fin, c_created + 30.0, np.full(n_q, np.nan)]),
            "lease": np.concatenate([t_lease, nan_x]),
            "worker": np.concatenate([t_worker, np.full(n_c + n_q, -1)]),
            "error": np.concatenate([t_error, none_x]),
        }
        cols = {name: arr[t_rows] for name, arr in cols.items()}
        conn.executemany(
            "INSERT INTO tasks (id, type, status, attempts, created_at, run_after, started_at,"
            " finished_at, lease_until, worker_key, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?)",
            zip(
                cols["id"].tolist(),
                cols["type"].tolist(),
                cols["status"].tolist(),
                cols["attempts"].tolist(),
                cols["created"].tolist(),
                cols["run_after"].tolist(),
                _nullable(cols["started"], np.isnan(cols["started"])),
                _nullable(cols["finished"], np.isnan(cols["finished"])),
                _nullable(cols["lease"], np.isnan(cols["lease"])),
                _nullable(cols["worker"], cols["worker"] < 0),
                cols["error"].tolist(),
                strict=True,
            ),
        )
        a_order = np.argsort(a_claim, kind="stable")
        conn.executemany(
            "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at, finished_at, outcome,"
            " error) VALUES (?, ?, ?, ?, ?, ?, ?)",
            zip(
                a_task[a_order].tolist(),
                a_no[a_order].tolist(),
                (a_w[a_order] + 1).tolist(),
                a_claim[a_order].tolist(),
                _nullable(a_fin[a_order], np.isnan(a_fin[a_order])),
                outcome[a_order].tolist(),
                a_err[a_order].tolist(),
                strict=True,
            ),
        )
        conn.execute("COMMIT")
        n_beats += len(hb_at)
        n_attempts += n_a
        n_tasks += n_new + n_c + n_q
        print(
            f"  {n_beats / 1e6:7.2f} M beats, {n_attempts / 1e6:6.2f} M attempts"
            f"  ({time.perf_counter() - started:5.0f} s)",
            file=sys.stderr,
        )
        slab_lo = slab_hi

    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO workers (worker_key, worker_id, capabilities, registered_at,"
        " last_heartbeat_at, removed_at) VALUES (?, ?, ?, ?, ?, ?)",
        zip(
            keys.tolist(),
            [f"worker-{i:04d}" for i in keys],
            caps,
            w_start.tolist(),
            _nullable(last_beat, np.isnan(last_beat)),
            _nullable(removal, np.isnan(removal)),
            strict=True,
        ),
    )
    ev_w = np.concatenate([keys, keys[removed]])
    conn.executemany(
        "INSERT INTO worker_events (worker_key, at, event, capabilities) VALUES (?, ?, ?, ?)",
        zip(
            ev_w.tolist(),
            np.concatenate([w_start, removal[removed]]).tolist(),
            ["registered"] * w + ["removed"] * int(removed.sum()),
            caps + [None] * int(removed.sum()),
            strict=True,
        ),
    )
    conn.execute("COMMIT")
    loaded = time.perf_counter() - started
    for _, sql in indexes:
        conn.execute(sql)
    fill_counters(conn)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    meta = {
        "generator": GENERATOR_VERSION,
        "now": HISTORY_END,
        "workers": w,
        "interval_s": interval,
        "heartbeats": n_beats,
        "tasks": n_tasks,
        "attempts": n_attempts,
        "days": round(span / 86400, 2),
        "load_seconds": round(loaded, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
        "file_mib": round(path.stat().st_size / 2**20, 1),
        "counters": True,
    }
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=1))
    return meta


def fill_counters(conn: sqlite3.Connection) -> None:
    """Set the workers' counters (beats, completed and failed attempts) from the rows.

    The write path keeps them as it goes; a bulk load writes the rows directly, so they
    are counted once here, as the schema migration that introduced them does.
    """
    conn.execute(
        "UPDATE workers SET"
        " heartbeats = (SELECT count(*) FROM heartbeats h"
        "  WHERE h.worker_key = workers.worker_key),"
        " tasks_completed = (SELECT count(*) FROM attempts a"
        "  WHERE a.worker_key = workers.worker_key AND a.outcome = 'completed'),"
        " tasks_failed = (SELECT count(*) FROM attempts a"
        "  WHERE a.worker_key = workers.worker_key AND a.outcome = 'failed')"
    )


def pd_isnull(values: np.ndarray) -> np.ndarray:
    """Which entries of an object array are None."""
    return np.array([v is None for v in values.tolist()], dtype=bool)


def ensure(
    directory: Path,
    beats: int,
    *,
    interval: float = 30.0,
    workers: int = 1000,
    rebuild: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Reuse a complete generated store, or build it.

    Returns
    -------
    (path, meta) : tuple
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = store_path(directory, beats, interval)
    meta_path = path.with_name(path.name + ".json")
    if not rebuild and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("generator") == GENERATOR_VERSION and meta.get("workers") == workers:
            if not meta.get("counters"):
                # Stores generated before the loader filled the counters.
                conn = sqlite3.connect(path, isolation_level=None)
                fill_counters(conn)
                conn.close()
                meta["counters"] = True
                meta_path.write_text(json.dumps(meta, indent=1))
            return path, meta
    print(f"building {path} ...", file=sys.stderr)
    meta = build(path, beats, workers=workers, interval=interval)
    print(f"  {meta}", file=sys.stderr)
    return path, meta


def main(argv: list[str] | None = None) -> int:
    """Command line: build (or reuse) the stores asked for and print their descriptions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", nargs="+", default=["5M"], help="sizes, e.g. 5M 20M 50M")
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument(
        "--interval", type=float, default=30.0, help="seconds between beats (2: Celery)"
    )
    parser.add_argument("--dir", type=Path, default=default_dir())
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    for size in args.beats:
        path, meta = ensure(
            args.dir,
            parse_count(size),
            interval=args.interval,
            workers=args.workers,
            rebuild=args.rebuild,
        )
        print(path, json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
