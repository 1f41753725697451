"""Tests for the queue metrics: each answer is checked against a plain loop over raw rows."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qanalytics as qa
from qanalytics import metrics
from qanalytics.liveness import alive_intervals
from qanalytics.read import snapshot as metrics_module

T0 = 1_700_000_000.0
HOUR = 3600.0


# -- workloads ------------------------------------------------------------------------------
def run_workload(db: qa.Store, clock: qa.FakeClock, seed: int, steps: int = 300) -> list[dict]:
    """Drive a random but reproducible workload through the write API.

    Returns snapshots of the current-state answers taken along the way, so as-of
    questions can be checked against what the store said at that moment.
    """
    rng = random.Random(seed)
    workers: list[str] = []
    snapshots: list[dict] = []
    for i in range(3):
        qa.register_worker(db, f"w{i}")
        workers.append(f"w{i}")
    for _step in range(steps):
        clock.advance(rng.choice([0.5, 3.25, 17.0, 61.5, 240.0, 900.0, 1700.0]))
        op = rng.random()
        live = [w for w in workers if not qa.get_worker(db, w).removed]
        if op < 0.3:
            run_after = "30min" if rng.random() < 0.1 else None
            qa.enqueue(db, rng.choice(["email", "report", "resize"]), run_after=run_after)
        elif op < 0.55 and live:
            qa.claim(db, rng.choice(live), lease=rng.choice(["60s", "1h"]))
        elif op < 0.8:
            held = db.query("SELECT id FROM tasks WHERE status = 'processing' ORDER BY id")
            if held:
                task_id = rng.choice(held)[0]
                roll = rng.random()
                if roll < 0.6:
                    qa.complete(db, task_id)
                elif roll < 0.95:
                    qa.fail(db, task_id, "boom", retry=rng.random() < 0.8, delay=0)
                else:
                    qa.cancel(db, task_id)
        elif op < 0.85:
            queued = db.query("SELECT id FROM tasks WHERE status = 'queued' ORDER BY id")
            if queued:
                qa.cancel(db, rng.choice(queued)[0])
        elif op < 0.9:
            qa.requeue_orphans(db, stale_after="10min")
        elif op < 0.97:
            for w in live:
                if rng.random() < 0.8:
                    qa.heartbeat(db, w)
        elif op < 0.985 and len(live) > 1:
            qa.remove_worker(db, rng.choice(live))
        else:
            qa.register_worker(db, rng.choice(workers))
        if rng.random() < 0.15:
            snapshots.append(
                {
                    "at": clock.now,
                    "metrics": qa_metrics(db),
                    "depth": metrics.queue_depth(db),
                    "tasks": task_states(db),
                }
            )
    return snapshots


def qa_metrics(db: qa.Store) -> dict:
    return metrics.queue_metrics(db)


def task_states(db: qa.Store) -> dict[int, tuple[str, str]]:
    return {r[0]: (r[1], r[2]) for r in db.query("SELECT id, type, status FROM tasks")}


def raw_tasks(db: qa.Store) -> list[dict]:
    rows = db.query(
        "SELECT t.id, t.type, t.status, t.created_at, t.started_at, t.finished_at, t.attempts,"
        " w.worker_id FROM tasks t LEFT JOIN workers w ON w.worker_key = t.worker_key"
    )
    keys = ["id", "type", "status", "created", "started", "finished", "attempts", "worker"]
    return [dict(zip(keys, r, strict=True)) for r in rows]


def raw_attempts(db: qa.Store) -> list[dict]:
    rows = db.query(
        "SELECT a.task_id, a.attempt, w.worker_id, a.claimed_at, a.finished_at, a.outcome,"
        " t.type FROM attempts a JOIN workers w ON w.worker_key = a.worker_key"
        " JOIN tasks t ON t.id = a.task_id ORDER BY a.task_id, a.attempt"
    )
    keys = ["task", "attempt", "worker", "claimed", "finished", "outcome", "type"]
    return [dict(zip(keys, r, strict=True)) for r in rows]


def utc(seconds: float) -> pd.Timestamp:
    return pd.Timestamp(round(seconds * 1e6), unit="us", tz="UTC")


@pytest.fixture
def loaded(db: qa.Store, clock: qa.FakeClock) -> tuple[qa.Store, list[dict]]:
    return db, run_workload(db, clock, seed=7)


# -- empty store ----------------------------------------------------------------------------
EMPTY_CASES: list[tuple[Any, dict, list[str]]] = [
    (metrics.queue_depth, {}, ["status", "type", "count"]),
    (
        metrics.success_rate,
        {"by": ["type", "worker_id"]},
        [
            "bucket",
            "type",
            "worker_id",
            "completed",
            "failed",
            "total",
            "rate",
            "ci_low",
            "ci_high",
        ],
    ),
    (metrics.throughput, {"by": "type"}, ["bucket", "type", "outcome", "count"]),
    (metrics.depth_timeline, {}, ["bucket", "queued", "processing"]),
    (metrics.depth_timeline, {"by": "type"}, ["bucket", "type", "queued", "processing"]),
    (metrics.latency, {"freq": "1h"}, ["bucket", "type", "quantile", "wait_s", "run_s", "count"]),
    (metrics.utilization, {}, ["worker_id", "bucket", "busy_s", "alive_s", "utilization"]),
    (
        metrics.retry_outcomes,
        {},
        [
            "attempt",
            "reached",
            "succeeded",
            "failed",
            "abandoned",
            "success_rate_at_attempt",
            "eventual_success",
        ],
    ),
]


def _kinds(frame: pd.DataFrame) -> list[str]:
    return ["category" if isinstance(d, pd.CategoricalDtype) else str(d) for d in frame.dtypes]


@pytest.mark.parametrize(("func", "kwargs", "columns"), EMPTY_CASES)
def test_empty_store_same_columns_and_dtypes(
    db: qa.Store, clock: qa.FakeClock, func: Any, kwargs: dict, columns: list[str]
) -> None:
    empty = func(db, **kwargs)
    assert list(empty.columns) == columns and empty.empty
    run_workload(db, clock, seed=3, steps=150)
    full = func(db, **kwargs)
    assert list(full.columns) == columns and not full.empty
    assert _kinds(empty) == _kinds(full)
    for name in columns:
        if name == "bucket":
            assert str(full[name].dtype) == "datetime64[us, UTC]"


def test_queue_metrics_empty(db: qa.Store) -> None:
    result = metrics.queue_metrics(db)
    assert result["queue_depth_by_status"] == dict.fromkeys(qa.schema.TASK_STATUSES, 0)
    assert result["success_rate"] is None and result["oldest_queued_task_age_seconds"] is None


# -- queue_metrics and queue_depth, current and as of -----------------------------------------
def test_queue_metrics_current_matches_raw_rows(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    tasks = raw_tasks(db)
    got = metrics.queue_metrics(db)
    by_status = Counter(t["status"] for t in tasks)
    assert got["queue_depth_by_status"] == {s: by_status[s] for s in qa.schema.TASK_STATUSES}
    queued_types = Counter(t["type"] for t in tasks if t["status"] == "queued")
    assert got["queue_depth_by_type"] == dict(sorted(queued_types.items()))
    done = by_status["completed"] + by_status["failed"]
    assert got["success_rate"] == pytest.approx(by_status["completed"] / done)


def test_queue_metrics_as_of_equals_what_the_store_said_then(
    loaded: tuple[qa.Store, list[dict]],
) -> None:
    db, snapshots = loaded
    assert len(snapshots) >= 10
    for snap in snapshots:
        got = metrics.queue_metrics(db, now=snap["at"])
        want = snap["metrics"]
        # A retry after the moment rewrites run_after; such a task counts as runnable.
        got_stats, want_stats = got.pop("task_statistics"), dict(want)["task_statistics"]
        assert got == {k: v for k, v in want.items() if k != "task_statistics"}
        assert got_stats["total"] == want_stats["total"]
        assert got_stats["finished"] == want_stats["finished"]
        assert got_stats["runnable"] >= want_stats["runnable"]
        assert got_stats["runnable"] + got_stats["delayed"] == (
            want_stats["runnable"] + want_stats["delayed"]
        )


def test_queue_metrics_as_of_runnable_and_delayed(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    qa.enqueue(db, "x", run_after="1h")
    qa.enqueue(db, "x")
    cut = clock.now + 60
    clock.advance("2h")
    qa.enqueue(db, "y")
    stats = metrics.queue_metrics(db, now=cut)["task_statistics"]
    assert (stats["runnable"], stats["delayed"], stats["total"]) == (1, 1, 2)


def test_queue_depth_as_of_equals_what_the_store_said_then(
    loaded: tuple[qa.Store, list[dict]],
) -> None:
    db, snapshots = loaded
    for snap in snapshots:
        got = metrics.queue_depth(db, now=snap["at"])
        want = snap["depth"]
        pd.testing.assert_frame_equal(
            got.astype({"type": object, "status": object}),
            want.astype({"type": object, "status": object}),
        )


def test_queue_depth_matches_raw_rows(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    counts = Counter((t["status"], t["type"]) for t in raw_tasks(db))
    got = metrics.queue_depth(db)
    assert {(s, t): n for s, t, n in got.itertuples(index=False)} == dict(counts)
    order = [qa.schema.TASK_STATUSES.index(s) for s in got["status"]]
    assert order == sorted(order)


def test_queue_metrics_now_after_last_event_uses_current_state(
    db: qa.Store, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_workload(db, clock, seed=11, steps=80)
    later = clock.now + 500
    replayed = metrics_module._queue_metrics_as_of(db, later, 60.0, 300.0)

    def no_replay(*args: Any) -> None:
        raise AssertionError("replayed history although nothing happened after now")

    monkeypatch.setattr(metrics_module, "_states_at", no_replay)
    assert metrics.queue_metrics(db, now=later) == replayed
    clock.set(later)
    assert metrics.queue_metrics(db) == replayed


def test_queue_metrics_as_of_ignores_later_events(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    first = qa.enqueue(db, "email")
    t_before = clock.now + 5
    clock.advance(10)
    qa.enqueue(db, "email")
    qa.claim(db, "w1")
    clock.advance(10)
    qa.complete(db, first)
    qa.remove_worker(db, "w1")
    past = metrics.queue_metrics(db, now=t_before)
    assert past["queue_depth_by_status"]["queued"] == 1
    assert past["queue_depth_by_status"]["completed"] == 0
    assert past["oldest_queued_task_age_seconds"] == pytest.approx(5.0)
    assert past["total_workers"] == 1 and past["active_workers"] == 1
    assert metrics.queue_metrics(db)["total_workers"] == 0


# -- success_rate -----------------------------------------------------------------------------
def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def expected_rates(
    rows: list[tuple[float, bool, dict]], width: float, keys: list[str]
) -> dict[tuple, tuple[int, int]]:
    out: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for at, ok, row in rows:
        key = (math.floor(at / width) * width, *(row[k] for k in keys))
        out[key][0] += int(ok)
        out[key][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def frame_rates(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, tuple[int, int]]:
    got = {}
    for row in frame.to_dict("records"):
        key = (row["bucket"].timestamp(), *(row[k] for k in keys))
        got[key] = (row["completed"], row["total"])
        assert row["failed"] == row["total"] - row["completed"]
        assert row["rate"] == pytest.approx(row["completed"] / row["total"])
        low, high = wilson(row["completed"], row["total"])
        assert row["ci_low"] == pytest.approx(low, abs=1e-12)
        assert row["ci_high"] == pytest.approx(high, abs=1e-12)
    return got


@pytest.mark.parametrize("by", [None, "type", "worker_id", ["type", "worker_id"]])
@pytest.mark.parametrize("freq", ["30min", "1h", 7200])
def test_success_rate_task_level(loaded: tuple[qa.Store, list[dict]], by: Any, freq: Any) -> None:
    db, _ = loaded
    keys = [] if by is None else [by] if isinstance(by, str) else by
    width = qa.parse_duration(freq)
    rows = [
        (t["finished"], t["status"] == "completed", {"type": t["type"], "worker_id": t["worker"]})
        for t in raw_tasks(db)
        if t["status"] in ("completed", "failed")
    ]
    got = metrics.success_rate(db, freq=freq, by=by)
    assert frame_rates(got, keys) == expected_rates(rows, width, keys)
    assert got["bucket"].is_monotonic_increasing


@pytest.mark.parametrize("by", [None, ["type", "worker_id"]])
def test_success_rate_attempt_level(loaded: tuple[qa.Store, list[dict]], by: Any) -> None:
    db, _ = loaded
    keys = [] if by is None else by
    rows = [
        (a["finished"], a["outcome"] == "completed", {"type": a["type"], "worker_id": a["worker"]})
        for a in raw_attempts(db)
        if a["outcome"] in ("completed", "failed", "abandoned")
    ]
    assert any(a["outcome"] == "abandoned" for a in raw_attempts(db))
    got = metrics.success_rate(db, by=by, level="attempt")
    assert frame_rates(got, keys) == expected_rates(rows, HOUR, keys)


def test_success_rate_since_until_forms_agree(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    now = db.now()
    lo, hi = now - 20 * HOUR, now - 2 * HOUR
    frames = [
        metrics.success_rate(db, since=lo, until=hi, now=now),
        metrics.success_rate(db, since="20h", until="2h", now=now),
        metrics.success_rate(db, since=utc(lo).isoformat(), until=utc(hi), now=now),
        metrics.success_rate(db, since=pd.Timedelta(hours=20), until=hi, now=now),
    ]
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other)
    rows = [
        (t["finished"], t["status"] == "completed", {})
        for t in raw_tasks(db)
        if t["status"] in ("completed", "failed") and lo <= t["finished"] <= hi
    ]
    assert frame_rates(frames[0], []) == expected_rates(rows, HOUR, [])


def test_success_rate_as_of_ignores_later_finishes(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    a, b = qa.enqueue(db, "x"), qa.enqueue(db, "x")
    qa.claim(db, "w1")
    clock.advance(10)
    qa.complete(db, a)
    cut = clock.now
    qa.claim(db, "w1")
    clock.advance(10)
    qa.fail(db, b, "no", retry=False)
    got = metrics.success_rate(db, now=cut)
    assert got[["completed", "failed"]].values.tolist() == [[1, 0]]
    assert metrics.success_rate(db)[["completed", "failed"]].values.tolist() == [[1, 1]]


def test_cancelled_tasks_are_not_in_the_rate(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    qa.cancel(db, qa.enqueue(db, "x"))
    task = qa.enqueue(db, "x")
    qa.claim(db, "w1")
    qa.cancel(db, task)
    assert metrics.success_rate(db).empty
    assert metrics.success_rate(db, level="attempt").empty
    got = metrics.throughput(db)
    assert got["outcome"].astype(str).tolist() == ["cancelled"] and got["count"].tolist() == [2]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"freq": "soon"}, ValueError),
        ({"freq": 0}, ValueError),
        ({"freq": "MS"}, ValueError),
        ({"by": "status"}, ValueError),
        ({"by": 3}, TypeError),
        ({"level": "job"}, ValueError),
        ({"confidence": 1.0}, ValueError),
        ({"confidence": "high"}, TypeError),
        ({"since": "1h", "until": "2h"}, ValueError),
    ],
)
def test_success_rate_bad_arguments(db: qa.Store, kwargs: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        metrics.success_rate(db, **kwargs)


def test_freq_spellings_agree(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    base = metrics.throughput(db, freq="1h")
    for freq in (3600, "60min", "h", pd.Timedelta(hours=1)):
        pd.testing.assert_frame_equal(metrics.throughput(db, freq=freq), base)


# -- throughput -----------------------------------------------------------------------------
@pytest.mark.parametrize("by", [None, "type", "worker_id"])
def test_throughput_matches_raw_rows(loaded: tuple[qa.Store, list[dict]], by: Any) -> None:
    db, _ = loaded
    keys = [] if by is None else [by]
    want: Counter = Counter()
    for t in raw_tasks(db):
        if t["status"] in ("completed", "failed", "cancelled"):
            row = {"type": t["type"], "worker_id": t["worker"]}
            key = (math.floor(t["finished"] / HOUR) * HOUR, *(row[k] for k in keys), t["status"])
            want[key] += 1
    got = metrics.throughput(db, by=by)
    seen = {}
    for row in got.to_dict("records"):
        value = row[keys[0]] if keys else None
        if keys and isinstance(value, float) and math.isnan(value):
            value = None
        key = (row["bucket"].timestamp(), *([value] if keys else []), row["outcome"])
        seen[key] = row["count"]
    assert seen == dict(want)


# -- depth_timeline -------------------------------------------------------------------------
def state_before(task: dict, attempts: list[dict], moment: float, inclusive: bool) -> str:
    """The task's state after its events before `moment` (or at it, if inclusive)."""

    def happened(t: float | None) -> bool:
        return t is not None and (t <= moment if inclusive else t < moment)

    if not happened(task["created"]):
        return "absent"
    if task["finished"] is not None and happened(task["finished"]):
        return "done"
    state = "queued"
    for a in attempts:
        if happened(a["claimed"]):
            state = "processing"
        if happened(a["finished"]):
            state = "queued"  # completion or final failure already returned "done"
    return state


@pytest.mark.parametrize("freq", ["15min", "1h"])
@pytest.mark.parametrize("by", [None, "type"])
def test_depth_timeline_matches_replay(
    loaded: tuple[qa.Store, list[dict]], freq: str, by: Any
) -> None:
    db, _ = loaded
    width = qa.parse_duration(freq)
    tasks = raw_tasks(db)
    by_task: dict[int, list[dict]] = defaultdict(list)
    for a in raw_attempts(db):
        by_task[a["task"]].append(a)
    now = db.now()
    since = now - 30 * HOUR
    got = metrics.depth_timeline(db, freq=freq, by=by, since=since)
    buckets = sorted(set(got["bucket"]))
    assert buckets[0] == utc(math.floor(since / width) * width)
    assert len(buckets) == math.floor(now / width) - math.floor(since / width) + 1
    types = sorted({t["type"] for t in tasks})
    for row in got.to_dict("records"):
        end = row["bucket"].timestamp() + width
        last = end > now
        states = Counter(
            (state_before(t, by_task[t["id"]], now if last else end, last), t["type"])
            for t in tasks
        )
        wanted_types = [row["type"]] if by else types
        assert row["queued"] == sum(states["queued", ty] for ty in wanted_types)
        assert row["processing"] == sum(states["processing", ty] for ty in wanted_types)


def test_depth_timeline_as_of_ends_at_the_snapshot(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, snapshots = loaded
    for snap in snapshots[::3]:
        got = metrics.depth_timeline(db, freq="1h", now=snap["at"])
        counts = Counter(status for _type, status in snap["tasks"].values())
        if not counts:
            assert got.empty
            continue
        assert got["queued"].iloc[-1] == counts["queued"]
        assert got["processing"].iloc[-1] == counts["processing"]


def test_depth_timeline_task_spanning_buckets(db: qa.Store, clock: qa.FakeClock) -> None:
    clock.set(10 * HOUR)
    qa.register_worker(db, "w1")
    task = qa.enqueue(db, "x")
    clock.advance("90min")
    qa.claim(db, "w1")
    clock.advance("2h")
    qa.fail(db, task, "boom", delay=0)
    clock.advance("30min")
    got = metrics.depth_timeline(db, freq="1h")
    assert got["bucket"].tolist() == [utc(h * HOUR) for h in range(10, 15)]
    assert got["queued"].tolist() == [1, 0, 0, 1, 1]
    assert got["processing"].tolist() == [0, 1, 1, 0, 0]


def test_depth_timeline_by_worker_is_refused(db: qa.Store) -> None:
    with pytest.raises(ValueError, match="by"):
        metrics.depth_timeline(db, by="worker_id")


# -- latency --------------------------------------------------------------------------------
@pytest.mark.parametrize(("by", "freq"), [("type", None), (None, "6h"), (["worker_id"], None)])
def test_latency_matches_numpy_quantiles(
    loaded: tuple[qa.Store, list[dict]], by: Any, freq: Any
) -> None:
    db, _ = loaded
    keys = [] if by is None else [by] if isinstance(by, str) else by
    first_claim = {a["task"]: a["claimed"] for a in raw_attempts(db) if a["attempt"] == 1}
    groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    width = None if freq is None else qa.parse_duration(freq)
    for t in raw_tasks(db):
        if t["status"] in ("completed", "failed"):
            row = {"type": t["type"], "worker_id": t["worker"]}
            bucket = () if width is None else (math.floor(t["finished"] / width) * width,)
            key = (*bucket, *(row[k] for k in keys))
            groups[key].append((first_claim[t["id"]] - t["created"], t["finished"] - t["started"]))
    qs = (0.25, 0.5, 0.9)
    got = metrics.latency(db, by=by, freq=freq, quantiles=qs)
    assert len(got) == len(groups) * len(qs)
    for row in got.to_dict("records"):
        bucket = () if width is None else (row["bucket"].timestamp(),)
        values = np.array(groups[(*bucket, *(row[k] for k in keys))])
        assert row["count"] == len(values)
        assert row["wait_s"] == pytest.approx(np.quantile(values[:, 0], row["quantile"]))
        assert row["run_s"] == pytest.approx(np.quantile(values[:, 1], row["quantile"]))


def test_latency_bad_quantiles(db: qa.Store) -> None:
    with pytest.raises(ValueError, match="quantiles"):
        metrics.latency(db, quantiles=(0.5, 1.5))
    with pytest.raises(ValueError, match="quantiles"):
        metrics.latency(db, quantiles=())


# -- utilization ----------------------------------------------------------------------------
def overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def test_utilization_matches_raw_rows(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    now = db.now()
    since = now - 12 * HOUR
    got = metrics.utilization(db, freq="1h", since=since)
    alive = alive_intervals(db, since=since, now=now)
    for column in ("start", "end"):  # epoch seconds for the arithmetic below
        alive[column] = alive[column].map(pd.Timestamp.timestamp)
    busy: dict[tuple[str, float], float] = defaultdict(float)
    up: dict[tuple[str, float], float] = defaultdict(float)
    first, last = math.floor(since / HOUR), math.floor(now / HOUR)
    for h in range(first, last + 1):
        b0, b1 = max(h * HOUR, since), min((h + 1) * HOUR, now)
        for a in raw_attempts(db):
            end = now if a["finished"] is None else a["finished"]
            busy[a["worker"], h * HOUR] += overlap(a["claimed"], end, b0, b1)
        for w, s, e in alive.itertuples(index=False):
            up[w, h * HOUR] += overlap(s, e, b0, b1)
    keys = {k for k in set(busy) | set(up) if busy[k] > 0 or up[k] > 0}
    assert len(got) == len(keys)
    for row in got.to_dict("records"):
        key = (row["worker_id"], row["bucket"].timestamp())
        assert row["busy_s"] == pytest.approx(busy[key])
        assert row["alive_s"] == pytest.approx(up[key])
        if up[key] > 0:
            assert row["utilization"] == pytest.approx(busy[key] / up[key])
        else:
            assert math.isnan(row["utilization"])


def test_utilization_single_worker(db: qa.Store, clock: qa.FakeClock) -> None:
    clock.set(100 * HOUR)
    qa.register_worker(db, "solo")
    for _ in range(8):
        task = qa.enqueue(db, "x")
        clock.advance("15min")
        qa.heartbeat(db, "solo")
        qa.claim(db, "solo")
        clock.advance("15min")
        qa.heartbeat(db, "solo")
        qa.complete(db, task)
    got = metrics.utilization(db, freq="1h")
    assert got["worker_id"].astype(str).unique().tolist() == ["solo"]
    assert got["busy_s"].tolist() == [1800.0] * 4
    assert got["alive_s"].tolist() == [3600.0] * 4
    assert got["utilization"].tolist() == [0.5] * 4


# -- retry_outcomes -------------------------------------------------------------------------
def test_retry_outcomes_matches_raw_rows(loaded: tuple[qa.Store, list[dict]]) -> None:
    db, _ = loaded
    tasks = {t["id"]: t for t in raw_tasks(db)}
    table: dict[int, Counter] = defaultdict(Counter)
    for a in raw_attempts(db):
        k = a["attempt"]
        table[k]["reached"] += 1
        table[k][a["outcome"]] += 1
        if a["outcome"] in ("failed", "abandoned"):
            fate = tasks[a["task"]]["status"]
            if fate in ("completed", "failed"):
                table[k]["known"] += 1
                table[k]["recovered"] += fate == "completed"
    got = metrics.retry_outcomes(db)
    assert got["attempt"].tolist() == sorted(table)
    assert len(got) >= 2
    for row in got.to_dict("records"):
        c = table[row["attempt"]]
        assert row["reached"] == c["reached"]
        assert (row["succeeded"], row["failed"], row["abandoned"]) == (
            c["completed"],
            c["failed"],
            c["abandoned"],
        )
        decided = c["completed"] + c["failed"] + c["abandoned"]
        if decided:
            assert row["success_rate_at_attempt"] == pytest.approx(c["completed"] / decided)
        if c["known"]:
            assert row["eventual_success"] == pytest.approx(c["recovered"] / c["known"])
        else:
            assert math.isnan(row["eventual_success"])


def test_retry_outcomes_retries(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    ok, bad = qa.enqueue(db, "x", max_attempts=3), qa.enqueue(db, "x", max_attempts=2)
    for task, results in ((ok, ["fail", "fail", "ok"]), (bad, ["fail", "fail"])):
        for result in results:
            clock.advance(5)
            qa.claim(db, "w1")
            clock.advance(5)
            if result == "ok":
                qa.complete(db, task)
            else:
                qa.fail(db, task, "boom", delay=0)
    got = metrics.retry_outcomes(db)
    assert got["reached"].tolist() == [2, 2, 1]
    assert got["succeeded"].tolist() == [0, 0, 1]
    assert got["failed"].tolist() == [2, 2, 0]
    assert got["eventual_success"].tolist()[:2] == [0.5, 0.5]
    assert math.isnan(got["eventual_success"].iloc[2])


# -- in-memory and file stores agree ----------------------------------------------------------
def test_memory_and_file_stores_give_equal_results(tmp_path: Path) -> None:
    results = []
    for target in (":memory:", tmp_path / "q.db"):
        clock = qa.FakeClock(T0)
        with qa.connect(target, clock=clock) as store:
            snaps = run_workload(store, clock, seed=5, steps=200)
            middle = snaps[len(snaps) // 2]["at"]
            results.append(
                [
                    metrics.queue_metrics(store),
                    metrics.queue_metrics(store, now=middle),
                    metrics.queue_depth(store, now=middle),
                    metrics.success_rate(store, by=["type", "worker_id"]),
                    metrics.success_rate(store, level="attempt", by="type"),
                    metrics.throughput(store, by="worker_id"),
                    metrics.depth_timeline(store, by="type", freq="30min"),
                    metrics.latency(store, freq="2h"),
                    metrics.utilization(store),
                    metrics.retry_outcomes(store),
                ]
            )
    for a, b in zip(*results, strict=True):
        if isinstance(a, dict):
            assert a == b
        else:
            pd.testing.assert_frame_equal(a, b)


# -- properties -----------------------------------------------------------------------------
ops = st.lists(
    st.tuples(
        st.sampled_from(["enqueue", "claim", "complete", "fail", "retry", "cancel", "orphans"]),
        st.sampled_from(["a", "b"]),
        st.sampled_from([0.0, 1.0, 59.5, 600.0, 3599.0]),
    ),
    max_size=60,
)


def apply_ops(db: qa.Store, clock: qa.FakeClock, steps: list[tuple[str, str, float]]) -> None:
    qa.register_worker(db, "w1")
    qa.register_worker(db, "w2")
    for i, (op, type_, dt) in enumerate(steps):
        clock.advance(dt)
        held = [r[0] for r in db.query("SELECT id FROM tasks WHERE status = 'processing'")]
        queued = [r[0] for r in db.query("SELECT id FROM tasks WHERE status = 'queued'")]
        if op == "enqueue":
            qa.enqueue(db, type_, max_attempts=2)
        elif op == "claim":
            qa.claim(db, f"w{1 + i % 2}")
        elif op == "complete" and held:
            qa.complete(db, held[0])
        elif op in ("fail", "retry") and held:
            qa.fail(db, held[-1], "boom", retry=op == "retry", delay=0)
        elif op == "cancel" and (queued or held):
            qa.cancel(db, (queued or held)[0])
        elif op == "orphans":
            qa.requeue_orphans(db, stale_after="1h")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=ops, freq=st.sampled_from(["1min", "10min", "1h"]))
def test_property_depth_sums_to_task_states(steps: list, freq: str) -> None:
    clock = qa.FakeClock(T0)
    with qa.connect(":memory:", clock=clock) as db:
        apply_ops(db, clock, steps)
        states = Counter(r[0] for r in db.query("SELECT status FROM tasks"))
        total = metrics.depth_timeline(db, freq=freq)
        typed = metrics.depth_timeline(db, freq=freq, by="type")
        if not states:
            assert total.empty and typed.empty
            return
        assert total["queued"].iloc[-1] == states["queued"]
        assert total["processing"].iloc[-1] == states["processing"]
        summed = typed.groupby("bucket", observed=True)[["queued", "processing"]].sum()
        assert summed["queued"].tolist() == total["queued"].tolist()
        assert summed["processing"].tolist() == total["processing"].tolist()
        assert (total[["queued", "processing"]] >= 0).all().all()
        depth = metrics.queue_depth(db)
        assert depth["count"].sum() == sum(states.values())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=ops,
    level=st.sampled_from(["task", "attempt"]),
    confidence=st.floats(0.5, 0.999),
)
def test_property_rates_inside_their_interval(steps: list, level: str, confidence: float) -> None:
    clock = qa.FakeClock(T0)
    with qa.connect(":memory:", clock=clock) as db:
        apply_ops(db, clock, steps)
        got = metrics.success_rate(db, freq="10min", by="type", level=level, confidence=confidence)
        assert (got["total"] > 0).all()
        assert ((got["rate"] >= 0) & (got["rate"] <= 1)).all()
        assert (got["ci_low"] <= got["rate"]).all() and (got["rate"] <= got["ci_high"]).all()
        assert ((got["ci_low"] >= 0) & (got["ci_high"] <= 1)).all()
