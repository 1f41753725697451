"""The worker registry: register (UPSERT), heartbeat history, soft removal, liveness."""

from __future__ import annotations

import math
from datetime import UTC, timedelta
from typing import Any

import pytest

import qanalytics as qa
from qanalytics.registry import MAX_ID_LENGTH, classify

T0 = 1_700_000_000.0  # the start of the `clock` fixture


def _events(db: qa.Store, worker_id: str) -> list[tuple[float, str, str | None]]:
    return db.query(
        "SELECT e.at, e.event, e.capabilities FROM worker_events e"
        " JOIN workers w USING (worker_key) WHERE w.worker_id = ? ORDER BY e.id",
        (worker_id,),
    )


def _beats(db: qa.Store, worker_id: str) -> list[tuple[float, int | None]]:
    return db.query(
        "SELECT h.at, h.task_id FROM heartbeats h JOIN workers w USING (worker_key)"
        " WHERE w.worker_id = ? ORDER BY h.rowid",
        (worker_id,),
    )


# -- register ------------------------------------------------------------------------------
def test_register_new_worker(db: qa.Store) -> None:
    worker = qa.register_worker(db, "w1", {"gpu": True, "queues": ["email"]})
    assert worker.worker_id == "w1"
    assert worker.capabilities == {"gpu": True, "queues": ["email"]}
    assert worker.registered_at is not None and worker.registered_at.tzinfo is UTC
    assert worker.registered_at.timestamp() == T0
    assert worker.last_heartbeat_at == worker.registered_at == worker.last_heartbeat
    assert worker.removed_at is None and not worker.removed
    assert _events(db, "w1") == [(T0, "registered", '{"gpu": true, "queues": ["email"]}')]
    assert _beats(db, "w1") == [(T0, None)]  # the first heartbeat is history too


def test_register_defaults_to_empty_capabilities(db: qa.Store) -> None:
    assert qa.register_worker(db, "w1").capabilities == {}
    assert qa.register_worker(db, "w2", {}).capabilities == {}
    assert db.query("SELECT capabilities FROM workers ORDER BY worker_id") == [("{}",), ("{}",)]


def test_register_again_updates(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1", {"v": 1})
    clock.advance(30)
    worker = qa.register_worker(db, "w1", {"v": 2})
    assert worker.capabilities == {"v": 2}
    assert worker.registered_at is not None and worker.registered_at.timestamp() == T0
    assert worker.last_heartbeat_at is not None
    assert worker.last_heartbeat_at.timestamp() == T0 + 30
    assert [e[1] for e in _events(db, "w1")] == ["registered", "updated"]
    assert _beats(db, "w1") == [(T0, None), (T0 + 30, None)]
    assert db.query("SELECT count(*) FROM workers") == [(1,)]


def test_remove_is_soft_and_register_revives(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1", {"v": 1})
    clock.advance(10)
    assert qa.heartbeat(db, "w1") is True
    clock.advance(10)
    assert qa.remove_worker(db, "w1") is True
    assert qa.remove_worker(db, "w1") is False  # already removed
    removed = qa.get_worker(db, "w1")
    assert removed.removed and removed.removed_at is not None
    assert removed.removed_at.timestamp() == T0 + 20
    assert qa.heartbeat(db, "w1") is False
    assert len(_beats(db, "w1")) == 2  # history stays
    assert qa.list_workers(db) == []
    assert [w.worker_id for w in qa.list_workers(db, include_removed=True)] == ["w1"]

    clock.advance(10)
    revived = qa.register_worker(db, "w1", {"v": 2})
    assert not revived.removed
    assert revived.registered_at is not None and revived.registered_at.timestamp() == T0 + 30
    assert revived.capabilities == {"v": 2}
    assert [e[1] for e in _events(db, "w1")] == ["registered", "removed", "registered"]
    assert _events(db, "w1")[1] == (T0 + 20, "removed", None)
    assert qa.heartbeat(db, "w1") is True
    assert len(_beats(db, "w1")) == 4


def test_remove_unknown_worker(db: qa.Store) -> None:
    assert qa.remove_worker(db, "ghost") is False
    assert db.query("SELECT count(*) FROM worker_events") == [(0,)]


# -- heartbeat -----------------------------------------------------------------------------
def test_heartbeat_appends_history(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    qa.register_worker(db, "w2")
    clock.advance(5)
    assert qa.heartbeat(db, "w1") is True
    clock.advance(5)
    assert qa.heartbeat(db, "w1", task_id=7) is True
    assert _beats(db, "w1") == [(T0, None), (T0 + 5, None), (T0 + 10, 7)]
    assert _beats(db, "w2") == [(T0, None)]
    worker = qa.get_worker(db, "w1")
    assert worker.last_heartbeat_at is not None
    assert worker.last_heartbeat_at.timestamp() == T0 + 10


def test_heartbeat_unknown_worker(db: qa.Store) -> None:
    assert qa.heartbeat(db, "ghost") is False
    assert db.query("SELECT count(*) FROM heartbeats") == [(0,)]


def test_heartbeat_never_moves_last_beat_backwards(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    clock.set(T0 - 100)  # a clock that stepped back
    assert qa.heartbeat(db, "w1")
    worker = qa.get_worker(db, "w1")
    assert worker.last_heartbeat_at is not None and worker.last_heartbeat_at.timestamp() == T0
    assert [b[0] for b in _beats(db, "w1")] == [T0, T0 - 100]


# -- get / list ----------------------------------------------------------------------------
def test_get_worker_unknown(db: qa.Store) -> None:
    with pytest.raises(qa.WorkerNotFound, match="no worker 'ghost'") as info:
        qa.get_worker(db, "ghost")
    assert isinstance(info.value, KeyError) and isinstance(info.value, qa.QAnalyticsError)
    assert str(info.value) == "no worker 'ghost' is registered"


def test_list_workers_most_recent_first(db: qa.Store, clock: qa.FakeClock) -> None:
    for name in ["a", "b", "c"]:
        qa.register_worker(db, name)
        clock.advance(1)
    qa.heartbeat(db, "a")
    assert [w.worker_id for w in qa.list_workers(db)] == ["a", "c", "b"]


def test_seconds_since_heartbeat(db: qa.Store, clock: qa.FakeClock) -> None:
    worker = qa.register_worker(db, "w1")
    assert worker.seconds_since_heartbeat(T0 + 42) == 42
    assert qa.Worker("x").seconds_since_heartbeat(T0) is None


def test_unicode_ids_and_capabilities_round_trip(db: qa.Store) -> None:
    caps = {"zone": "Zürich", "emoji": "🚀", "nested": {"list": [1, 2.5, None]}}
    qa.register_worker(db, "wörker-☃", caps)
    assert qa.get_worker(db, "wörker-☃").capabilities == caps
    longest = "x" * MAX_ID_LENGTH
    assert qa.register_worker(db, longest).worker_id == longest


# -- liveness ------------------------------------------------------------------------------
@pytest.fixture
def aged(db: qa.Store, clock: qa.FakeClock) -> qa.Store:
    """Workers whose last heartbeat is 0, 60, 61, 300, 301 and 1000 seconds old."""
    for age in [1000, 301, 300, 61, 60, 0]:
        clock.set(T0 - age)
        qa.register_worker(db, f"age{age}")
    clock.set(T0 - 5)
    qa.register_worker(db, "gone")
    qa.remove_worker(db, "gone")
    clock.set(T0)
    return db


def test_active_and_stale_boundaries(aged: qa.Store) -> None:
    # No worker has beaten since registering: each has the default 30 s interval, so
    # it is active up to 90 s of silence and stale after 300 s.
    active = [w.worker_id for w in qa.active_workers(aged)]
    stale = [w.worker_id for w in qa.stale_workers(aged)]
    assert active == ["age0", "age60", "age61"]  # most recent first
    assert stale == ["age1000", "age301"]  # oldest first
    late = {w.worker_id for w in qa.list_workers(aged)} - set(active) - set(stale)
    assert late == {"age300"}  # between the thresholds: neither
    # Fixed thresholds (the classic API's 60 s and 300 s) mean what they say.
    assert [w.worker_id for w in qa.active_workers(aged, 60)] == ["age0", "age60"]
    assert [w.worker_id for w in qa.stale_workers(aged, 300)] == ["age1000", "age301"]


def test_liveness_thresholds_and_now(aged: qa.Store) -> None:
    assert [w.worker_id for w in qa.active_workers(aged, "5min")] == [
        "age0",
        "age60",
        "age61",
        "age300",
    ]
    assert [w.worker_id for w in qa.stale_workers(aged, 0)] == [
        "age1000",
        "age301",
        "age300",
        "age61",
        "age60",
    ]
    assert [w.worker_id for w in qa.active_workers(aged, 0)] == ["age0"]
    assert [w.worker_id for w in qa.stale_workers(aged, 100, now=T0 - 800)] == ["age1000"]
    later = "2023-11-14T22:30:00Z"
    assert len(qa.stale_workers(aged, timedelta(minutes=5), now=later)) == 6


def test_stale_workers_takes_stale_after_and_its_old_name_warns(aged: qa.Store) -> None:
    expected = [w.worker_id for w in qa.stale_workers(aged, 100)]
    assert [w.worker_id for w in qa.stale_workers(aged, stale_after=100)] == expected
    with pytest.warns(DeprecationWarning, match=r"stale_workers\(after=...\) is deprecated"):
        old = qa.stale_workers(aged, after=100)
    assert [w.worker_id for w in old] == expected
    with pytest.warns(DeprecationWarning):
        old = qa.stale_workers(aged, after="100s", now=T0 - 800)
    assert [w.worker_id for w in old] == ["age1000"]
    with pytest.raises(TypeError, match="both stale_after= and its old name after="):
        qa.stale_workers(aged, stale_after=100, after=200)
    with pytest.raises(ValueError, match="stale_after"):
        qa.stale_workers(aged, stale_after="soon")


@pytest.mark.parametrize(
    ("age", "state"),
    [
        (0, "active"),
        (60, "active"),
        (60.5, "late"),
        (300, "late"),
        (300.1, "stale"),
        (math.nan, "stale"),
    ],
)
def test_classify(age: float, state: str) -> None:
    assert classify(age, 60, 300) == state


# -- bad input ------------------------------------------------------------------------------
BAD_IDS: list[tuple[Any, type[Exception], str]] = [
    ("", ValueError, "must not be empty"),
    ("   ", ValueError, "must not be empty"),
    (None, TypeError, "must be a str, not NoneType"),
    (42, TypeError, "must be a str, not int"),
    (b"w1", TypeError, "must be a str, not bytes"),
    ("x" * (MAX_ID_LENGTH + 1), ValueError, "201 characters long; at most 200"),
    ("w\x001", ValueError, "NUL"),
    ("w\ud8001", ValueError, "not valid Unicode"),
]


@pytest.mark.parametrize(("worker_id", "error", "match"), BAD_IDS)
@pytest.mark.parametrize(
    "call",
    [
        qa.register_worker,
        qa.heartbeat,
        qa.remove_worker,
        qa.get_worker,
        lambda db, wid: qa.claim(db, wid),
    ],
)
def test_bad_worker_ids(
    db: qa.Store, call: Any, worker_id: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        call(db, worker_id)
    assert "worker_id" in str(info.value)
    assert db.query("SELECT count(*) FROM workers") == [(0,)]


class _Opaque:
    pass


@pytest.mark.parametrize(
    ("capabilities", "error", "match"),
    [
        (["gpu"], TypeError, "capabilities must be a dict, not list"),
        ("gpu", TypeError, "capabilities must be a dict, not str"),
        (42, TypeError, "capabilities must be a dict, not int"),
        ({1: "x"}, TypeError, "capabilities keys must be strings"),
        ({"at": _Opaque()}, TypeError, "capabilities must be JSON-serialisable"),
        ({"s": {1, 2}}, TypeError, "capabilities must be JSON-serialisable"),
        ({"x": math.nan}, TypeError, "capabilities must be JSON-serialisable"),
        ({"x": math.inf}, TypeError, "capabilities must be JSON-serialisable"),
        ({"x": "\ud800"}, ValueError, "capabilities holds text that is not valid Unicode"),
    ],
)
def test_bad_capabilities(
    db: qa.Store, capabilities: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        qa.register_worker(db, "w1", capabilities)
    assert db.query("SELECT count(*) FROM workers") == [(0,)]


def test_circular_capabilities(db: qa.Store) -> None:
    caps: dict[str, Any] = {}
    caps["self"] = caps
    with pytest.raises(TypeError, match="capabilities must be JSON-serialisable"):
        qa.register_worker(db, "w1", caps)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, "must not be negative"),
        (math.nan, ValueError, "must be a finite duration"),
        (math.inf, ValueError, "must be a finite duration"),
        ("soon", ValueError, "is not a duration"),
        ("-5min", ValueError, "is not a duration"),
        ([], TypeError, "must be seconds or a duration string"),
        (True, TypeError, "bool"),
    ],
)
@pytest.mark.parametrize(
    ("call", "name"),
    [(qa.active_workers, "within"), (qa.stale_workers, "after")],
)
def test_bad_thresholds(
    db: qa.Store, call: Any, name: str, value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        call(db, value)
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("task_id", "error"),
    [("7", TypeError), (1.5, TypeError), (True, TypeError)],
)
def test_heartbeat_bad_task_id(db: qa.Store, task_id: Any, error: type[Exception]) -> None:
    qa.register_worker(db, "w1")
    with pytest.raises(error, match="task_id must be an int or None"):
        qa.heartbeat(db, "w1", task_id=task_id)
    assert len(_beats(db, "w1")) == 1


def test_bad_now(db: qa.Store) -> None:
    with pytest.raises(ValueError, match="now="):
        qa.active_workers(db, now="not a time")


def test_active_and_stale_as_of_a_past_moment(db: qa.Store, clock: qa.FakeClock) -> None:
    start = clock()
    qa.register_worker(db, "early")
    clock.advance(400)
    qa.register_worker(db, "late")  # did not exist at start + 100
    qa.heartbeat(db, "early")
    # Today both beat just now; at start + 100 only "early" existed, silent for 100 s.
    assert sorted(w.worker_id for w in qa.active_workers(db)) == ["early", "late"]
    assert qa.active_workers(db, 60, now=start + 100) == []
    stale = qa.stale_workers(db, 60, now=start + 100)
    assert [w.worker_id for w in stale] == ["early"]
    assert stale[0].last_heartbeat_at.timestamp() == start
    assert [w.worker_id for w in qa.active_workers(db, 60, now=start + 30)] == ["early"]
