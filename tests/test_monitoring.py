"""The classic QueueMonitoring API: names, defaults, return shapes."""

from __future__ import annotations

import inspect
import math
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest

import qanalytics as qa

T0 = 1_700_000_000.0  # the start of the `clock` fixture

METRIC_KEYS = [
    "queue_depth_by_status",
    "queue_depth_by_type",
    "oldest_queued_task_age_seconds",
    "task_statistics",
    "success_rate",
    "failure_rate",
    "total_workers",
    "active_workers",
    "stale_workers",
]


@pytest.fixture
def mon(db: qa.Store) -> qa.QueueMonitoring:
    return qa.QueueMonitoring(db)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("register_worker", [("worker_id", inspect.Parameter.empty), ("capabilities", None)]),
        ("update_heartbeat", [("worker_id", inspect.Parameter.empty)]),
        ("get_worker", [("worker_id", inspect.Parameter.empty)]),
        ("get_all_workers", []),
        ("get_active_workers", [("active_threshold_seconds", 60)]),
        ("get_stale_workers", [("stale_threshold_seconds", 300)]),
        ("remove_worker", [("worker_id", inspect.Parameter.empty)]),
        ("get_queue_metrics", []),
        ("get_worker_activity", []),
    ],
)
def test_classic_signatures(method: str, params: list[tuple[str, Any]]) -> None:
    signature = inspect.signature(getattr(qa.QueueMonitoring, method))
    got = [(p.name, p.default) for p in signature.parameters.values() if p.name != "self"]
    assert got == params


def test_opens_a_path(db_path: Path) -> None:
    mon = qa.QueueMonitoring(db_path)
    try:
        assert mon.register_worker("w1").worker_id == "w1"
        assert mon.db.path == str(db_path) and not mon.db.readonly
    finally:
        mon.close()
    mon = qa.QueueMonitoring(str(db_path))
    try:
        assert mon.get_worker("w1") is not None
    finally:
        mon.close()


def test_bad_target() -> None:
    with pytest.raises(TypeError, match="target must be a path"):
        qa.QueueMonitoring(42)  # type: ignore[arg-type]


def test_worker_round_trip(mon: qa.QueueMonitoring, clock: qa.FakeClock) -> None:
    worker = mon.register_worker("w1", {"gpu": True, "queues": ["email"]})
    assert isinstance(worker, qa.Worker)
    assert worker.capabilities == {"gpu": True, "queues": ["email"]}
    clock.advance(5)
    assert mon.update_heartbeat("w1") is True
    assert mon.update_heartbeat("ghost") is False
    got = mon.get_worker("w1")
    assert got is not None and isinstance(got.capabilities, dict)
    for when in (got.registered_at, got.last_heartbeat_at, got.last_heartbeat):
        assert when is not None and when.tzinfo is UTC and when.utcoffset() == timedelta(0)
    assert got.last_heartbeat_at is not None and got.last_heartbeat_at.timestamp() == T0 + 5
    assert mon.get_worker("ghost") is None
    assert [w.worker_id for w in mon.get_all_workers()] == ["w1"]
    assert mon.remove_worker("w1") is True
    assert mon.remove_worker("w1") is False
    assert mon.get_all_workers() == []
    removed = mon.get_worker("w1")
    assert removed is not None and removed.removed_at is not None
    assert removed.removed_at.tzinfo is UTC


def test_active_late_stale(mon: qa.QueueMonitoring, clock: qa.FakeClock) -> None:
    for worker_id, age in [("fresh", 0), ("edge", 60), ("late", 200), ("limit", 300), ("old", 301)]:
        clock.set(T0 - age)
        mon.register_worker(worker_id)
    clock.set(T0)
    assert [w.worker_id for w in mon.get_active_workers()] == ["fresh", "edge"]
    assert [w.worker_id for w in mon.get_stale_workers()] == ["old"]
    assert [w.worker_id for w in mon.get_active_workers(250)] == ["fresh", "edge", "late"]
    assert [w.worker_id for w in mon.get_stale_workers(100)] == ["old", "limit", "late"]
    assert [w.worker_id for w in mon.get_active_workers(active_threshold_seconds="61s")] == [
        "fresh",
        "edge",
    ]


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, "must not be negative"),
        (math.nan, ValueError, "must be a finite duration"),
        ("soon", ValueError, "is not a duration"),
        (None, TypeError, "must be seconds or a duration string"),
    ],
)
@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("get_active_workers", "active_threshold_seconds"),
        ("get_stale_workers", "stale_threshold_seconds"),
    ],
)
def test_bad_thresholds(
    mon: qa.QueueMonitoring, method: str, name: str, value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        getattr(mon, method)(value)
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("worker_id", "error"),
    [("", ValueError), (None, TypeError), ("x" * 201, ValueError), (7, TypeError)],
)
@pytest.mark.parametrize(
    "method", ["register_worker", "update_heartbeat", "get_worker", "remove_worker"]
)
def test_bad_worker_ids(
    mon: qa.QueueMonitoring, method: str, worker_id: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="worker_id"):
        getattr(mon, method)(worker_id)


def test_bad_capabilities(mon: qa.QueueMonitoring) -> None:
    with pytest.raises(TypeError, match="capabilities must be a dict"):
        mon.register_worker("w1", ["gpu"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="capabilities must be JSON-serialisable"):
        mon.register_worker("w1", {"x": object()})
    assert mon.get_worker("w1") is None


def test_queue_metrics_empty(mon: qa.QueueMonitoring) -> None:
    metrics = mon.get_queue_metrics()
    assert list(metrics) == METRIC_KEYS
    assert metrics["queue_depth_by_status"] == {
        "queued": 0,
        "processing": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert metrics["queue_depth_by_type"] == {}
    assert metrics["oldest_queued_task_age_seconds"] is None
    assert metrics["success_rate"] is None and metrics["failure_rate"] is None
    assert metrics["total_workers"] == metrics["active_workers"] == metrics["stale_workers"] == 0


def test_queue_metrics(mon: qa.QueueMonitoring, db: qa.Store, clock: qa.FakeClock) -> None:
    mon.register_worker("w1")
    clock.set(T0 - 1000)
    mon.register_worker("old")
    clock.set(T0)
    ids = [qa.enqueue(db, t) for t in ["email", "email", "report", "sms", "sms"]]
    for _ in range(3):
        qa.claim(db, "w1")
    qa.complete(db, ids[0])
    qa.fail(db, ids[1], "boom", retry=False)
    qa.cancel(db, ids[3])  # a queued sms
    clock.advance(30)
    qa.enqueue(db, "email", run_after="1h")
    metrics = mon.get_queue_metrics()
    assert list(metrics) == METRIC_KEYS
    assert metrics["queue_depth_by_status"] == {
        "queued": 2,
        "processing": 1,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert metrics["queue_depth_by_type"] == {"email": 1, "sms": 1}  # queued only
    assert metrics["oldest_queued_task_age_seconds"] == 30.0
    assert metrics["success_rate"] == 0.5 and metrics["failure_rate"] == 0.5
    assert metrics["total_workers"] == 2
    assert metrics["active_workers"] == 1 and metrics["stale_workers"] == 1
    stats = metrics["task_statistics"]
    assert stats["total"] == 6 and stats["runnable"] == 1 and stats["delayed"] == 1


def test_failure_rate_none_until_something_finishes(mon: qa.QueueMonitoring, db: qa.Store) -> None:
    mon.register_worker("w1")
    task_id = qa.enqueue(db, "t")
    qa.claim(db, "w1")
    qa.cancel(db, qa.enqueue(db, "t"))  # cancelled is not a success nor a failure
    assert mon.get_queue_metrics()["failure_rate"] is None
    qa.complete(db, task_id)
    metrics = mon.get_queue_metrics()
    assert metrics["success_rate"] == 1.0 and metrics["failure_rate"] == 0.0


def test_worker_activity(mon: qa.QueueMonitoring, clock: qa.FakeClock) -> None:
    assert mon.get_worker_activity() == []
    mon.register_worker("a", {"zone": "x"})
    clock.advance(10)
    mon.register_worker("b")
    clock.advance(10)
    mon.register_worker("c")
    clock.advance(5)
    mon.update_heartbeat("a")
    mon.remove_worker("c")
    clock.advance(1)
    activity = mon.get_worker_activity()
    assert [row["worker_id"] for row in activity] == ["a", "b"]  # most recent first
    assert set(activity[0]) == {
        "worker_id",
        "capabilities",
        "last_heartbeat",
        "seconds_since_heartbeat",
    }
    assert activity[0]["capabilities"] == {"zone": "x"}
    assert activity[0]["last_heartbeat"].tzinfo is UTC
    assert activity[0]["last_heartbeat"].timestamp() == T0 + 25
    assert [row["seconds_since_heartbeat"] for row in activity] == [1.0, 16.0]
