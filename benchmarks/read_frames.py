"""Read-side speed and memory: qanalytics frames and metrics against plain pandas.

What is measured
----------------
A store with 5 million heartbeats over 1,000 workers and 2 million tasks with their
attempts (``--scale`` multiplies the row counts) is built once under
``benchmarks/data/`` and reused. It is written fast (``executemany`` in large
transactions, indexes dropped and re-created with the schema's own DDL) into a file
created by ``qanalytics.connect``, so the schema is exactly the package's. The data is
realistic: beats every ~30 s with jitter and occasional silences of minutes, a few
workers registered late, removed, or silent at the end; six task types with their own
failure rates; tasks mostly completed or failed, with retries, some queued, processing
and cancelled; one attempt row per claim, consistent with the task row; beats carry the
task the worker held. The history ends at a fixed moment, and every measurement asks
"as of" that moment (the store is opened with a clock fixed there).

Each comparison runs the qanalytics call and a plain-pandas baseline, each in a fresh
subprocess, alternating their order over ``--repeats`` runs; the table shows medians:

* ``qanalytics.frames.heartbeats(db)`` vs ``pd.read_sql`` over a ``sqlite3`` connection
  (``worker_id`` by a join, ``at``, ``task_id``) + ``pd.to_datetime(unit="s", utc=True)``.
  Goal: at least 3x faster. Memory goal: the peak RSS growth of the qanalytics read is at
  most 2x the frame's deep size (``DataFrame.memory_usage(deep=True).sum()``).
* ``qanalytics.queue_metrics(db)`` vs loading all tasks (the columns the answer needs)
  with ``pd.read_sql`` and computing the same dict in pandas. Goal: at least 20x.
* ``qanalytics.metrics.success_rate(db, freq="1h", by="type")`` and
  ``qanalytics.liveness.outages(db)`` vs the same computed in pandas from
  ``pd.read_sql`` loads. Goal: at least 2x each.

Timing covers the call only: the subprocess imports its libraries (pyarrow and the ADBC
driver included) and opens its connection first.

Memory method: in the subprocess, after imports, the connection and a garbage
collection, the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) and the
current resident set size read (``VmRSS``). After the call, with the result still alive,
the peak (``VmHWM``) is read. Their difference is the peak growth caused by the call, the
result included: a ratio of 1.0 to the frame's deep size means the read needed no memory
beyond its result. (``resource.getrusage``'s ``ru_maxrss`` is the fallback without
/proc; on Linux it survives ``exec`` and so can include the parent's peak.)

Functions that do not exist yet are reported as missing and skipped. The baselines'
answers are compared with qanalytics' (row counts and totals) and differences are
printed as notes. Exits with status 1 when a goal is missed (``--no-check`` only
reports).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import math
import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import DATA_DIR, Goal, finish, median, print_table, remove_store

#: Bump when the generator changes, so stores built by an older one are rebuilt.
GENERATOR_VERSION = 2
#: The moment the generated history ends (2026-01-01T00:00:00Z); every question is asked then.
HISTORY_END = 1_767_225_600.0
N_WORKERS = 1_000
HEARTBEATS_FULL = 5_000_000
TASKS_FULL = 2_000_000
BEAT_INTERVAL_S = 30.0
TYPES = ["email", "thumbnail", "report", "webhook", "export", "ml-inference"]
TYPE_WEIGHTS = [0.35, 0.25, 0.15, 0.12, 0.08, 0.05]
TYPE_FAILURE = [0.02, 0.04, 0.08, 0.12, 0.06, 0.15]
TYPE_RUN_S = [3.0, 8.0, 40.0, 1.5, 90.0, 30.0]
ERRORS = ["timeout", "connection reset", "upstream 503", "out of memory", "bad payload"]
WILSON_Z = 1.959963984540054  # 95 %


# --------------------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------------------
def _group_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sums restarted at each group of a flat array grouped by `counts`."""
    total = np.cumsum(values)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offsets = np.repeat(total[starts] - values[starts], counts)
    return total - offsets


def _allocate(weights: np.ndarray, total: int) -> np.ndarray:
    """Split `total` into integer parts proportional to `weights` (each at least 1)."""
    parts = np.maximum(1, np.floor(weights / weights.sum() * total)).astype(np.int64)
    parts[np.argmax(parts)] += total - parts.sum()
    return parts


def generate(scale: float, seed: int = 42) -> dict[str, Any]:
    """Generate the workers, heartbeats, tasks and attempts of a realistic queue.

    Parameters
    ----------
    scale : float
        Multiplies the 5 million heartbeats and 2 million tasks (workers stay 1,000).
    seed : int

    Returns
    -------
    dict
        Column arrays per table (``workers``, ``events``, ``heartbeats``, ``tasks``,
        ``attempts``), each a dict of numpy arrays or lists in insertion order.
    """
    rng = np.random.default_rng(seed)
    n_hb = int(HEARTBEATS_FULL * scale)
    n_tasks = int(TASKS_FULL * scale)
    w = N_WORKERS
    span = n_hb / w * BEAT_INTERVAL_S
    t0 = HISTORY_END - span

    # Workers: most start together; some join late; some die (removed, or just silent).
    kind = rng.choice(3, size=w, p=[0.93, 0.04, 0.03])  # 0 steady, 1 late joiner, 2 died
    start = t0 + rng.uniform(0, 0.01 * span, w)
    start[kind == 1] = t0 + rng.uniform(0.1, 0.6, (kind == 1).sum()) * span
    end = HISTORY_END - rng.uniform(0, 25, w)
    died = kind == 2
    end[died] = HISTORY_END - rng.uniform(0.05, 0.5, died.sum()) * span
    removed = died & (rng.random(w) < 0.5)
    # Removals come 5-60 minutes after the last beat, and before the history ends.
    removal = np.minimum(end + rng.uniform(300, 3600, w), HISTORY_END - 60)
    removed_at = np.where(removed, removal, np.nan)

    # Heartbeats: ~30 s apart with jitter, now and then a silence of 3-30 minutes.
    hb_counts = _allocate(end - start, n_hb)
    hb_worker = np.repeat(np.arange(w), hb_counts)
    gaps = np.clip(rng.normal(BEAT_INTERVAL_S, 1.5, n_hb), 20, 40)
    silent = rng.random(n_hb) < 0.0005
    gaps[silent] += rng.uniform(180, 1800, silent.sum())
    firsts = np.concatenate([[0], np.cumsum(hb_counts)[:-1]])
    gaps[firsts] = 0.0
    offsets = _group_cumsum(gaps, hb_counts)
    stretch = (end - start) / np.maximum(offsets[np.cumsum(hb_counts) - 1], 1.0)
    hb_at = start[hb_worker] + offsets * np.minimum(stretch, 1.0)[hb_worker]
    last_beat = hb_at[np.cumsum(hb_counts) - 1]

    # Tasks: how many attempts each claimed task needed; some never claimed.
    n_queued = max(1, int(n_tasks * 0.004))
    n_cancelled = max(1, int(n_tasks * 0.003))
    n_claimed = n_tasks - n_queued - n_cancelled
    n_att = rng.choice([1, 2, 3], size=n_claimed, p=[0.9, 0.07, 0.03])
    n_attempts = int(n_att.sum())
    task_type = rng.choice(len(TYPES), size=n_claimed, p=TYPE_WEIGHTS)

    # Attempt slots per worker (run + idle), filling its lifetime without overlap.
    slot_counts = _allocate(end - start, n_attempts)
    slot_worker = np.repeat(np.arange(w), slot_counts)
    busy = rng.lognormal(np.log(20), 0.9, n_attempts)
    idle = rng.exponential(20, n_attempts)
    slot_off = _group_cumsum(busy + idle, slot_counts)
    slot_len = slot_off[np.cumsum(slot_counts) - 1]
    fit = ((end - start) / slot_len)[slot_worker]
    slot_claim = start[slot_worker] + (slot_off - busy - idle) * fit + 1.0
    slot_finish = slot_claim + busy * fit
    slot_last = np.zeros(n_attempts, dtype=bool)
    slot_last[np.cumsum(slot_counts) - 1] = True
    time_order = np.argsort(slot_claim, kind="stable")

    # Give the slots, in time order, to attempts in "desired" order: a task's retries
    # come minutes after its previous attempt.
    rate = n_attempts / span
    att_task = np.repeat(np.arange(n_claimed), n_att)
    first_index = np.concatenate([[0], np.cumsum(n_att)[:-1]])
    att_no = np.arange(n_attempts) - np.repeat(first_index, n_att) + 1
    base = att_task * (n_attempts / n_claimed)
    retry_gap = rng.uniform(120, 1200, n_attempts) * rate
    desired = base + _group_cumsum(np.where(att_no > 1, retry_gap, 0.0), n_att)
    slot_of = np.empty(n_attempts, dtype=np.int64)
    slot_of[np.argsort(desired, kind="stable")] = time_order
    a_worker = slot_worker[slot_of]
    a_claim = slot_claim[slot_of]
    a_finish = slot_finish[slot_of].copy()
    a_is_last = att_no == n_att[att_task]
    # A retry can only start after the previous attempt ended.
    later = ~np.isin(np.arange(n_attempts), first_index)
    idx = np.nonzero(later)[0]
    a_finish[idx - 1] = np.minimum(a_finish[idx - 1], a_claim[idx] - 0.001)
    a_finish = np.maximum(a_finish, a_claim + 0.001)

    # Outcomes: earlier attempts failed (sometimes abandoned); the final one per type.
    fail_p = np.asarray(TYPE_FAILURE)[task_type]
    final_failed = rng.random(n_claimed) < np.where(n_att > 1, 0.3, fail_p)
    outcome = np.where(rng.random(n_attempts) < 0.9, "failed", "abandoned").astype(object)
    outcome[a_is_last] = np.where(final_failed, "failed", "completed")
    # Still running at the end: the last slot of some live workers, all silent ones'.
    silent_end = died & ~removed
    live_end = (kind != 2) & (rng.random(w) < 0.4)
    open_slot = slot_last & (live_end | silent_end)[slot_worker]
    is_open = a_is_last & open_slot[slot_of]
    outcome[is_open] = None
    a_finish_out = np.where(is_open, np.nan, a_finish)
    err_pick = np.asarray(ERRORS, dtype=object)[rng.integers(0, len(ERRORS), n_attempts)]
    a_error = np.where((outcome == "failed") | (outcome == "abandoned"), err_pick, None)
    a_error[outcome == "abandoned"] = "lease expired"

    # Task rows for claimed tasks.
    last_i = np.cumsum(n_att) - 1
    created = a_claim[first_index] - rng.exponential(15, n_claimed)
    status = np.where(final_failed, "failed", "completed").astype(object)
    status[is_open[last_i]] = "processing"
    run_after = np.where(n_att > 1, a_claim[last_i] - rng.uniform(0, 5, n_claimed), created)
    run_after = np.maximum(run_after, created)
    t_finished = a_finish_out[last_i]
    lease = np.where(is_open[last_i], a_claim[last_i] + 60.0, np.nan)
    t_error = np.where(status == "failed", a_error[last_i], None)

    # Queued (a few delayed) and cancelled tasks.
    q_created = HISTORY_END - rng.uniform(0, 900, n_queued)
    q_run_after = q_created + np.where(rng.random(n_queued) < 0.2, 600.0, 0.0)
    c_created = t0 + rng.uniform(0, span, n_cancelled)

    all_created = np.concatenate([created, q_created, c_created])
    order = np.argsort(all_created, kind="stable")
    task_id = np.empty(n_tasks, dtype=np.int64)
    task_id[order] = np.arange(1, n_tasks + 1)
    nan_q = np.full(n_queued, np.nan)
    nan_c = np.full(n_cancelled, np.nan)
    types_all = np.concatenate(
        [
            task_type,
            rng.choice(len(TYPES), n_queued, p=TYPE_WEIGHTS),
            rng.choice(len(TYPES), n_cancelled, p=TYPE_WEIGHTS),
        ]
    )
    tasks = {
        "id": task_id,
        "type": np.asarray(TYPES, dtype=object)[types_all],
        "status": np.concatenate(
            [status, np.full(n_queued, "queued", object), np.full(n_cancelled, "cancelled", object)]
        ),
        "priority": rng.choice([10, 50, 100], size=n_tasks, p=[0.05, 0.15, 0.8]),
        "payload": np.asarray([f'{{"job": "{t}", "size": 1}}' for t in TYPES], dtype=object)[
            types_all
        ],
        "attempts": np.concatenate([n_att, np.zeros(n_queued + n_cancelled, np.int64)]),
        "max_attempts": np.full(n_tasks, 3),
        "created_at": all_created,
        "run_after": np.concatenate([run_after, q_run_after, c_created]),
        "started_at": np.concatenate([a_claim[last_i], nan_q, nan_c]),
        "finished_at": np.concatenate([t_finished, nan_q, c_created + rng.uniform(1, 600)]),
        "lease_until": np.concatenate([lease, nan_q, nan_c]),
        "worker_key": np.concatenate([a_worker[last_i] + 1.0, nan_q, nan_c]),
        "error": np.concatenate([t_error, np.full(n_queued + n_cancelled, None, dtype=object)]),
    }
    tasks = {k: np.asarray(v)[order] for k, v in tasks.items()}

    attempts = {
        "task_id": task_id[att_task],
        "attempt": att_no,
        "worker_key": a_worker + 1,
        "claimed_at": a_claim,
        "finished_at": a_finish_out,
        "outcome": outcome,
        "error": a_error,
    }
    a_order = np.argsort(a_claim, kind="stable")
    attempts = {k: np.asarray(v)[a_order] for k, v in attempts.items()}

    # The task each beat's worker held: the worker's latest claim before the beat, if
    # still running.
    stride = 4.0 * span + 1e6
    slot_key_order = np.lexsort((a_claim, a_worker))
    s_key = a_worker[slot_key_order] * stride + (a_claim[slot_key_order] - t0)
    h_key = hb_worker * stride + (hb_at - t0)
    pos = np.searchsorted(s_key, h_key, side="right") - 1
    pos_ok = pos >= 0
    pos = np.maximum(pos, 0)
    held = slot_key_order[pos]
    holding = pos_ok & (a_worker[held] == hb_worker) & (is_open[held] | (hb_at <= a_finish[held]))
    hb_task = np.where(holding, task_id[att_task[held]], -1)
    hb_order = np.argsort(hb_at, kind="stable")
    heartbeats = {
        "worker_key": hb_worker[hb_order] + 1,
        "at": hb_at[hb_order],
        "task_id": hb_task[hb_order],
    }

    caps = [
        json.dumps(
            {"gpu": bool(i % 10 == 0), "queues": TYPES[: 2 + i % 5], "region": f"r{i % 3}"},
            sort_keys=True,
        )
        for i in range(w)
    ]
    workers = {
        "worker_key": np.arange(1, w + 1),
        "worker_id": [f"worker-{i:04d}" for i in range(1, w + 1)],
        "capabilities": caps,
        "registered_at": start,
        "last_heartbeat_at": last_beat,
        "removed_at": removed_at,
    }
    ev_keys = np.concatenate([np.arange(w), np.nonzero(removed)[0]])
    events = {
        "worker_key": ev_keys + 1,
        "at": np.concatenate([start, removed_at[removed]]),
        "event": ["registered"] * w + ["removed"] * int(removed.sum()),
        "capabilities": caps + [None] * int(removed.sum()),
    }
    return {
        "workers": workers,
        "events": events,
        "heartbeats": heartbeats,
        "tasks": tasks,
        "attempts": attempts,
    }


def _py(values: Any, *, nullable: str | None = None) -> list[Any]:
    """A column as a list of Python values; NaN (floats) or -1 (ints) become None."""
    arr = np.asarray(values)
    if nullable == "float":
        out = arr.astype(object)
        out[np.isnan(arr)] = None
        return out.tolist()
    if nullable == "int":
        out = arr.astype(object)
        out[arr < 0] = None
        return out.tolist()
    return arr.tolist()


def build_store(path: Path, scale: float) -> dict[str, Any]:
    """Create the benchmark store at `path` (replacing it) and return its description.

    Parameters
    ----------
    path : pathlib.Path
    scale : float

    Returns
    -------
    dict
        ``now`` (when the history ends), row counts and build seconds; also written
        next to the store as ``<name>.json``, which marks the store as complete.
    """
    import qanalytics as qa

    started = time.perf_counter()
    data = generate(scale)
    generated = time.perf_counter() - started
    tmp = path.with_name(path.name + ".building")
    remove_store(tmp)
    qa.connect(tmp).close()  # the package's schema, exactly
    conn = sqlite3.connect(tmp, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -500000")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("BEGIN")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    wk, ev, hb, tk, at = (data[k] for k in ("workers", "events", "heartbeats", "tasks", "attempts"))
    conn.executemany(
        "INSERT INTO workers (worker_key, worker_id, capabilities, registered_at,"
        " last_heartbeat_at, removed_at) VALUES (?, ?, ?, ?, ?, ?)",
        zip(
            _py(wk["worker_key"]),
            wk["worker_id"],
            wk["capabilities"],
            _py(wk["registered_at"]),
            _py(wk["last_heartbeat_at"]),
            _py(wk["removed_at"], nullable="float"),
            strict=True,
        ),
    )
    conn.executemany(
        "INSERT INTO worker_events (worker_key, at, event, capabilities) VALUES (?, ?, ?, ?)",
        zip(_py(ev["worker_key"]), _py(ev["at"]), ev["event"], ev["capabilities"], strict=True),
    )
    conn.executemany(
        "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)",
        zip(
            _py(hb["worker_key"]),
            _py(hb["at"]),
            _py(hb["task_id"], nullable="int"),
            strict=True,
        ),
    )
    conn.executemany(
        "INSERT INTO tasks (id, type, status, priority, payload, attempts, max_attempts,"
        " created_at, run_after, started_at, finished_at, lease_until, worker_key, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        zip(
            _py(tk["id"]),
            tk["type"].tolist(),
            tk["status"].tolist(),
            _py(tk["priority"]),
            tk["payload"].tolist(),
            _py(tk["attempts"]),
            _py(tk["max_attempts"]),
            _py(tk["created_at"]),
            _py(tk["run_after"]),
            _py(tk["started_at"], nullable="float"),
            _py(tk["finished_at"], nullable="float"),
            _py(tk["lease_until"], nullable="float"),
            [None if math.isnan(k) else int(k) for k in tk["worker_key"].tolist()],
            tk["error"].tolist(),
            strict=True,
        ),
    )
    conn.executemany(
        "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at, finished_at,"
        " outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(
            _py(at["task_id"]),
            _py(at["attempt"]),
            _py(at["worker_key"]),
            _py(at["claimed_at"]),
            _py(at["finished_at"], nullable="float"),
            at["outcome"].tolist(),
            at["error"].tolist(),
            strict=True,
        ),
    )
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode = WAL")
    problems = conn.execute("PRAGMA foreign_key_check").fetchmany(5)
    conn.close()
    if problems:
        raise RuntimeError(f"generated store breaks foreign keys: {problems}")
    remove_store(path)
    os.replace(tmp, path)
    remove_store(tmp)
    meta = {
        "generator": GENERATOR_VERSION,
        "scale": scale,
        "now": HISTORY_END,
        "workers": N_WORKERS,
        "heartbeats": len(hb["at"]),
        "tasks": len(tk["id"]),
        "attempts": len(at["task_id"]),
        "generate_seconds": round(generated, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
        "file_mib": round(path.stat().st_size / 2**20, 1),
    }
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=1))
    return meta


def ensure_store(scale: float, *, rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """Reuse the store for `scale` under ``benchmarks/data/``, or build it.

    Parameters
    ----------
    scale : float
    rebuild : bool
        Build even when a complete store of this scale and generator exists.

    Returns
    -------
    (path, meta) : tuple
    """
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"read_frames-scale{scale:g}.db"
    meta_path = path.with_name(path.name + ".json")
    if not rebuild and path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("generator") == GENERATOR_VERSION:
            return path, meta
    print(f"building {path.name} (scale {scale:g}) ...", file=sys.stderr)
    meta = build_store(path, scale)
    print(f"  built in {meta['build_seconds']} s: {meta}", file=sys.stderr)
    return path, meta


# --------------------------------------------------------------------------------------
# measured calls: each returns its result and a small summary to compare the paths by
# --------------------------------------------------------------------------------------
def _sqlite_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _qa_store(path: Path, now: float) -> Any:
    import qanalytics as qa

    return qa.connect(path, readonly=True, clock=lambda: now)


def _frame_summary(frame: pd.DataFrame) -> dict[str, Any]:
    return {"rows": len(frame)}


def qa_heartbeats(db: Any, now: float) -> tuple[Any, dict[str, Any]]:
    """``qanalytics.frames.heartbeats(db)``, the whole history."""
    frames = importlib.import_module("qanalytics.frames")
    frame = frames.heartbeats(db)
    return frame, _frame_summary(frame)


def pd_heartbeats(conn: sqlite3.Connection, now: float) -> tuple[Any, dict[str, Any]]:
    """``pd.read_sql`` of the history with the worker id joined, then ``pd.to_datetime``."""
    frame = pd.read_sql(
        "SELECT w.worker_id, h.at, h.task_id FROM heartbeats h"
        " JOIN workers w ON w.worker_key = h.worker_key",
        conn,
    )
    frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
    return frame, _frame_summary(frame)


def qa_queue_metrics(db: Any, now: float) -> tuple[Any, dict[str, Any]]:
    """``qanalytics.queue_metrics(db)``."""
    import qanalytics as qa

    result = qa.queue_metrics(db)
    return result, result


def pd_queue_metrics(conn: sqlite3.Connection, now: float) -> tuple[Any, dict[str, Any]]:
    """All tasks and workers loaded with ``pd.read_sql``; the classic dict in pandas."""
    tasks = pd.read_sql("SELECT type, status, created_at, run_after FROM tasks", conn)
    workers = pd.read_sql("SELECT last_heartbeat_at, removed_at FROM workers", conn)
    statuses = ["queued", "processing", "completed", "failed", "cancelled"]
    by_status = tasks["status"].value_counts().reindex(statuses, fill_value=0)
    queued = tasks[tasks["status"] == "queued"]
    by_type = queued["type"].value_counts().sort_index()
    runnable = int((queued["run_after"] <= now).sum())
    live = workers[workers["removed_at"].isna()]
    beat = live["last_heartbeat_at"]
    completed, failed = int(by_status["completed"]), int(by_status["failed"])
    decided = completed + failed
    result = {
        "queue_depth_by_status": {k: int(v) for k, v in by_status.items()},
        "queue_depth_by_type": {k: int(v) for k, v in by_type.items()},
        "oldest_queued_task_age_seconds": (
            None if queued.empty else max(0.0, now - float(queued["created_at"].min()))
        ),
        "task_statistics": {
            "total": len(tasks),
            "finished": completed + failed + int(by_status["cancelled"]),
            "runnable": runnable,
            "delayed": len(queued) - runnable,
        },
        "success_rate": None if decided == 0 else completed / decided,
        "failure_rate": None if decided == 0 else failed / decided,
        "total_workers": len(live),
        "active_workers": int((beat >= now - 60).sum()),
        "stale_workers": int((beat.isna() | (beat < now - 300)).sum()),
    }
    return result, result


def qa_success_rate(db: Any, now: float) -> tuple[Any, dict[str, Any]]:
    """``qanalytics.metrics.success_rate(db, freq="1h", by="type")``."""
    metrics = importlib.import_module("qanalytics.metrics")
    frame = metrics.success_rate(db, freq="1h", by="type")
    return frame, _rate_summary(frame)


def _rate_summary(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "completed": int(frame["completed"].sum()),
        "failed": int(frame["failed"].sum()),
    }


def pd_success_rate(conn: sqlite3.Connection, now: float) -> tuple[Any, dict[str, Any]]:
    """Finished tasks via ``pd.read_sql``; hourly counts by type and Wilson intervals."""
    tasks = pd.read_sql(
        "SELECT type, status, finished_at FROM tasks"
        " WHERE status IN ('completed', 'failed') AND finished_at <= ?",
        conn,
        params=(now,),
    )
    tasks["bucket"] = pd.to_datetime(tasks["finished_at"], unit="s", utc=True).dt.floor("1h")
    tasks["type"] = tasks["type"].astype("category")
    counts = (
        tasks.groupby(["bucket", "type", "status"], observed=True)
        .size()
        .unstack("status", fill_value=0)
        .reindex(columns=["completed", "failed"], fill_value=0)
        .reset_index()
    )
    n = counts["completed"] + counts["failed"]
    p = counts["completed"] / n
    z2 = WILSON_Z**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z * np.sqrt(p * (1 - p) / n + z2 / (4 * n**2)) / (1 + z2 / n)
    counts["total"] = n
    counts["rate"] = p
    counts["ci_low"] = centre - half
    counts["ci_high"] = centre + half
    frame = counts[counts["total"] > 0].reset_index(drop=True)
    frame.columns.name = None
    return frame, _rate_summary(frame)


def qa_outages(db: Any, now: float) -> tuple[Any, dict[str, Any]]:
    """``qanalytics.liveness.outages(db)``."""
    liveness = importlib.import_module("qanalytics.liveness")
    frame = liveness.outages(db)
    return frame, _outage_summary(frame)


def _outage_summary(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "ongoing": int(frame["ongoing"].sum()),
        "removed": int((frame["ended_by"] == "removed").sum()),
        "with_tasks": int(frame["tasks_in_flight"].map(len).gt(0).sum()),
    }


def pd_outages(conn: sqlite3.Connection, now: float) -> tuple[Any, dict[str, Any]]:
    """Outages in pandas from ``pd.read_sql`` loads of beats, workers and attempts.

    A gap longer than 3x the worker's median interval is an outage, as is the silence
    after a worker's last beat up to its removal or `now`; the tasks in flight are the
    worker's attempt open at the outage's start plus the task its last beat named.
    """
    beats = pd.read_sql(
        "SELECT w.worker_id, h.at, h.task_id FROM heartbeats h"
        " JOIN workers w ON w.worker_key = h.worker_key WHERE h.at <= ?",
        conn,
        params=(now,),
    )
    workers = pd.read_sql(
        "SELECT worker_id, removed_at FROM workers WHERE removed_at IS NULL OR removed_at <= ?",
        conn,
        params=(now,),
    )
    attempts = pd.read_sql(
        "SELECT w.worker_id, a.task_id, a.claimed_at, a.finished_at FROM attempts a"
        " JOIN workers w ON w.worker_key = a.worker_key WHERE a.claimed_at <= ?",
        conn,
        params=(now,),
    )
    beats = beats.sort_values(["worker_id", "at"], kind="stable").reset_index(drop=True)
    grouped = beats.groupby("worker_id", sort=False)
    beats["gap"] = grouped["at"].diff()
    beats["prev_at"] = grouped["at"].shift()
    beats["prev_task"] = grouped["task_id"].shift()
    medians = beats[beats["gap"] > 0].groupby("worker_id")["gap"].median()
    beats["threshold"] = 3 * beats["worker_id"].map(medians)
    gaps = beats[beats["gap"] > beats["threshold"]]
    inner = pd.DataFrame(
        {
            "worker_id": gaps["worker_id"],
            "start": gaps["prev_at"],
            "end": gaps["at"],
            "task_id": gaps["prev_task"],
            "ended_by": "resumed",
        }
    )
    last = grouped.tail(1).merge(workers, on="worker_id", how="left")
    last["end"] = last["removed_at"].fillna(now)
    tail = last[(last["end"] - last["at"]) > last["threshold"]]
    tail = pd.DataFrame(
        {
            "worker_id": tail["worker_id"],
            "start": tail["at"],
            "end": tail["end"],
            "task_id": tail["task_id"],
            "ended_by": np.where(tail["removed_at"].notna(), "removed", "still silent"),
        }
    )
    out = pd.concat([inner, tail], ignore_index=True).sort_values("start", kind="stable")
    attempts = attempts.sort_values("claimed_at", kind="stable")
    out = pd.merge_asof(
        out,
        attempts,
        left_on="start",
        right_on="claimed_at",
        by="worker_id",
        direction="backward",
        suffixes=("", "_attempt"),
    )
    open_ = out["claimed_at"].notna() & ~(out["finished_at"] <= out["start"])
    held = []
    for beat_task, attempt_task, is_open in zip(
        out["task_id"].tolist(), out["task_id_attempt"].tolist(), open_.tolist(), strict=True
    ):
        ids = set()
        if beat_task == beat_task and beat_task is not None:
            ids.add(int(beat_task))
        if is_open:
            ids.add(int(attempt_task))
        held.append(sorted(ids))
    frame = pd.DataFrame(
        {
            "worker_id": out["worker_id"].astype("category"),
            "start": pd.to_datetime(out["start"], unit="s", utc=True),
            "end": pd.to_datetime(out["end"], unit="s", utc=True),
            "duration_s": out["end"] - out["start"],
            "ongoing": out["ended_by"] == "still silent",
            "tasks_in_flight": held,
            "ended_by": out["ended_by"].astype("category"),
        }
    ).sort_values(["worker_id", "start"], kind="stable")
    return frame.reset_index(drop=True), _outage_summary(frame)


Call = Callable[[Any, float], tuple[Any, dict[str, Any]]]

#: Each comparison: (label, qanalytics call, baseline call, goal ratio, memory goal?).
COMPARISONS: dict[str, tuple[str, Call, Call, float, bool]] = {
    "heartbeats": ("frames.heartbeats(db)", qa_heartbeats, pd_heartbeats, 3.0, True),
    "queue_metrics": ("queue_metrics(db)", qa_queue_metrics, pd_queue_metrics, 20.0, False),
    "success_rate": (
        'success_rate(db, freq="1h", by="type")',
        qa_success_rate,
        pd_success_rate,
        2.0,
        False,
    ),
    "outages": ("liveness.outages(db)", qa_outages, pd_outages, 2.0, False),
}
#: Where each measured function lives, to tell "missing" from "failed".
QA_FUNCTIONS = {
    "heartbeats": ("qanalytics.frames", "heartbeats"),
    "queue_metrics": ("qanalytics.metrics", "queue_metrics"),
    "success_rate": ("qanalytics.metrics", "success_rate"),
    "outages": ("qanalytics.liveness", "outages"),
}


def available(name: str) -> bool:
    """Whether the qanalytics function behind comparison `name` exists yet.

    Parameters
    ----------
    name : str

    Returns
    -------
    bool
    """
    module, attr = QA_FUNCTIONS[name]
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


# --------------------------------------------------------------------------------------
# subprocess measurement
# --------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` figure from /proc/self/status in KiB (None without /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _current_rss() -> int:
    """The resident set size now, in bytes (the peak so far where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else _peak_rss()


def _peak_rss() -> int:
    """The peak resident set size, in bytes (since the last reset, where supported)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    # ru_maxrss survives exec on Linux, so it may include the parent's peak.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _deep_size(result: Any) -> int:
    if isinstance(result, pd.DataFrame):
        return int(result.memory_usage(deep=True, index=True).sum())
    return 0


def child(name: str, variant: str, path: Path, now: float) -> dict[str, Any]:
    """Run one measured call in this (fresh) process and describe it.

    Parameters
    ----------
    name : str
        A key of :data:`COMPARISONS`.
    variant : {"qanalytics", "pandas"}
    path : pathlib.Path
        The store.
    now : float
        The moment the history ends (the store's clock in the qanalytics variant).

    Returns
    -------
    dict
        ``seconds``, ``peak_delta`` (bytes), ``deep`` (the result's deep size, bytes),
        ``summary``.
    """
    import pyarrow  # noqa: F401  - imported before measuring, as qanalytics would

    import qanalytics  # noqa: F401

    with_driver = importlib.util.find_spec("adbc_driver_sqlite") is not None
    if with_driver:
        importlib.import_module("adbc_driver_sqlite.dbapi")
    _, qa_call, pd_call, _, _ = COMPARISONS[name]
    handle = _qa_store(path, now) if variant == "qanalytics" else _sqlite_ro(path)
    call = qa_call if variant == "qanalytics" else pd_call
    gc.collect()
    _reset_peak_rss()
    before = _current_rss()
    t0 = time.perf_counter()
    result, summary = call(handle, now)
    seconds = time.perf_counter() - t0
    peak = _peak_rss()
    return {
        "seconds": seconds,
        "peak_delta": max(0, peak - before),
        "deep": _deep_size(result),
        "summary": summary,
    }


def run_child(name: str, variant: str, path: Path, now: float) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return what it reports.

    Parameters
    ----------
    name, variant, path, now
        As for :func:`child`.

    Returns
    -------
    dict
        As :func:`child`, or ``{"error": message}`` when the call failed.
    """
    cmd = [sys.executable, __file__, "--child", name, variant, str(path), repr(now)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the store, run the comparisons and print the table and goals.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 1 when a goal is missed (or a call failed) and checking is on.
    """
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        name, variant, path, now = argv[1:5]
        print(json.dumps(child(name, variant, Path(path), float(now)), default=str))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies 5 M beats and 2 M tasks (1.0)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (3)")
    parser.add_argument(
        "--only", nargs="+", choices=list(COMPARISONS), help="run only these comparisons"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the store")
    parser.add_argument("--no-check", action="store_true", help="report only; exit 0")
    args = parser.parse_args(argv)

    path, meta = ensure_store(args.scale, rebuild=args.rebuild)
    now = float(meta["now"])
    print(
        f"store {path.name}: {meta['heartbeats']:,} heartbeats, {meta['workers']:,} workers,"
        f" {meta['tasks']:,} tasks, {meta['attempts']:,} attempts, {meta['file_mib']} MiB"
        f" (built in {meta['build_seconds']} s)"
    )
    goals: list[Goal] = []
    rows: list[list[Any]] = []
    notes: list[str] = []
    failed = False
    for name in args.only or list(COMPARISONS):
        label, _, _, target, memory_goal = COMPARISONS[name]
        if not available(name):
            notes.append(f"{label}: not in qanalytics yet, skipped")
            continue
        runs: dict[str, list[dict[str, Any]]] = {"qanalytics": [], "pandas": []}
        order = ["qanalytics", "pandas"]
        for _ in range(args.repeats):
            for variant in order:
                report = run_child(name, variant, path, now)
                if "error" in report:
                    notes.append(f"{label} ({variant}) failed: {report['error']}")
                    failed = True
                    break
                runs[variant].append(report)
                print(f"  {name} ({variant}): {report['seconds']:.3f} s", file=sys.stderr)
            order.reverse()
            if failed and not runs["qanalytics"]:
                break
        if not runs["qanalytics"] or not runs["pandas"]:
            continue
        secs = {v: median([r["seconds"] for r in runs[v]]) for v in runs}
        for variant in ("qanalytics", "pandas"):
            reports = runs[variant]
            deep = reports[-1]["deep"] if memory_goal else 0
            peak = median([r["peak_delta"] for r in reports])
            rows.append(
                [
                    f"{name}: {variant}",
                    f"{secs[variant]:.3f}",
                    " ".join(f"{r['seconds']:.3f}" for r in reports),
                    _mib(peak),
                    _mib(deep) if deep else "",
                    f"{peak / deep:.2f}" if deep else "",
                ]
            )
        goals.append(Goal(f"{label} speed-up", secs["pandas"] / secs["qanalytics"], target))
        if memory_goal:
            qa_runs = runs["qanalytics"]
            peak = median([r["peak_delta"] for r in qa_runs])
            deep = qa_runs[-1]["deep"]
            # Inverted so that higher is better: the goal is peak <= 2x deep.
            goals.append(Goal(f"{label} memory: 2 / (peak / deep size)", 2 * deep / peak, 1.0))
        a, b = runs["qanalytics"][-1]["summary"], runs["pandas"][-1]["summary"]
        if a != b:
            notes.append(f"{name}: answers differ: qanalytics {a} vs pandas {b}")
    print_table(
        ["call", "median s", "runs s", "peak MiB", "frame MiB", "peak/frame"],
        rows,
    )
    if notes:
        print()
        for note in notes:
            print(f"note  {note}")
    status = finish(goals, check=not args.no_check)
    if failed and not args.no_check:
        print("FAILED: a measured call raised; see the notes above", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
