"""The task lifecycle: enqueue, claim, complete, fail with backoff, cancel, requeue orphans."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import qanalytics as qa
from qanalytics.taskqueue import BACKOFF_BASE_S, BACKOFF_CAP_S

T0 = 1_700_000_000.0  # the start of the `clock` fixture


def _attempts(db: qa.Store, task_id: int) -> list[tuple[Any, ...]]:
    return db.query(
        "SELECT a.attempt, w.worker_id, a.claimed_at, a.finished_at, a.outcome, a.error"
        " FROM attempts a JOIN workers w USING (worker_key) WHERE a.task_id = ?"
        " ORDER BY a.attempt",
        (task_id,),
    )


@pytest.fixture
def w1(db: qa.Store) -> str:
    qa.register_worker(db, "w1")
    return "w1"


# -- enqueue -------------------------------------------------------------------------------
def test_enqueue_defaults(db: qa.Store) -> None:
    task_id = qa.enqueue(db, "email")
    assert task_id == 1
    task = qa.get_task(db, task_id)
    assert task.type == "email" and task.status == "queued"
    assert task.priority == 100 and task.max_attempts == 3 and task.attempts == 0
    assert task.payload is None
    assert task.created_at == task.run_after == datetime.fromtimestamp(T0, tz=UTC)
    assert task.started_at is None and task.finished_at is None and task.lease_until is None
    assert task.worker_id is None and task.error is None
    assert qa.enqueue(db, "email") == 2


def test_enqueue_options(db: qa.Store) -> None:
    payload = {"to": "a@example.com", "n": [1, 2.5, None], "ü": True}
    task = qa.get_task(
        db, qa.enqueue(db, "email", payload, priority=-5, run_after="5min", max_attempts=1)
    )
    assert task.payload == payload
    assert task.priority == -5 and task.max_attempts == 1
    assert task.run_after is not None and task.run_after.timestamp() == T0 + 300


@pytest.mark.parametrize(
    ("run_after", "expected"),
    [
        ("90s", T0 + 90),
        (timedelta(hours=1), T0 + 3600),
        (T0 + 7, T0 + 7),  # a number is an absolute epoch time
        ("2023-11-14T22:15:00Z", T0 + 100),
        (datetime(2023, 11, 14, 22, 15, tzinfo=UTC), T0 + 100),
    ],
)
def test_enqueue_run_after(db: qa.Store, run_after: Any, expected: float) -> None:
    task = qa.get_task(db, qa.enqueue(db, "t", run_after=run_after))
    assert task.run_after is not None and task.run_after.timestamp() == expected


@pytest.mark.parametrize("payload", [0, "text", [1, 2], {"a": {"b": None}}, False])
def test_payload_round_trips(db: qa.Store, payload: Any) -> None:
    assert qa.get_task(db, qa.enqueue(db, "t", payload)).payload == payload


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"type": ""}, ValueError, "type must not be empty"),
        ({"type": None}, TypeError, "type must be a str"),
        ({"type": "x" * 201}, ValueError, "type is 201 characters long"),
        ({"payload": object()}, TypeError, "payload must be JSON-serialisable"),
        ({"payload": {"x": math.nan}}, TypeError, "payload must be JSON-serialisable"),
        ({"payload": {1, 2}}, TypeError, "payload must be JSON-serialisable"),
        ({"priority": 1.5}, TypeError, "priority must be an int"),
        ({"priority": "1"}, TypeError, "priority must be an int"),
        ({"priority": True}, TypeError, "priority must be an int"),
        ({"priority": 2**63}, ValueError, "priority=.* is out of range"),
        ({"max_attempts": 0}, ValueError, "max_attempts=0 must be at least 1"),
        ({"max_attempts": 2.0}, TypeError, "max_attempts must be an int"),
        ({"run_after": "someday"}, ValueError, "run_after="),
        ({"run_after": math.nan}, ValueError, "run_after="),
        ({"run_after": [1]}, TypeError, "run_after must be a time"),
    ],
)
def test_enqueue_rejects(
    db: qa.Store, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args = {"type": "email", **kwargs}
    with pytest.raises(error, match=match):
        qa.enqueue(db, args.pop("type"), **args)
    assert db.query("SELECT count(*) FROM tasks") == [(0,)]


# -- claim ---------------------------------------------------------------------------------
def test_claim_marks_processing_and_opens_an_attempt(
    db: qa.Store, clock: qa.FakeClock, w1: str
) -> None:
    task_id = qa.enqueue(db, "email", {"to": "x"})
    clock.advance(5)
    task = qa.claim(db, w1, lease="2min")
    assert task is not None and task.id == task_id
    assert task.status == "processing" and task.attempts == 1 and task.worker_id == "w1"
    assert task.payload == {"to": "x"}
    assert task.started_at is not None and task.started_at.timestamp() == T0 + 5
    assert task.lease_until is not None and task.lease_until.timestamp() == T0 + 125
    assert _attempts(db, task_id) == [(1, "w1", T0 + 5, None, None, None)]
    assert qa.claim(db, w1) is None  # nothing left


def test_claim_order_priority_then_oldest(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    ids = {}
    for name, priority in [("low-old", 200), ("mid-old", 100), ("mid-new", 100), ("high", 1)]:
        ids[qa.enqueue(db, name, priority=priority)] = name
        clock.advance(1)
    order = []
    while (task := qa.claim(db, w1)) is not None:
        order.append(task.type)
    assert order == ["high", "mid-old", "mid-new", "low-old"]


def test_claim_ties_go_to_lowest_id(db: qa.Store, w1: str) -> None:
    first, second = qa.enqueue(db, "a"), qa.enqueue(db, "b")  # same created_at
    assert [qa.claim(db, w1).id, qa.claim(db, w1).id] == [first, second]  # type: ignore[union-attr]


def test_claim_respects_run_after(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    later = qa.enqueue(db, "t", priority=1, run_after="10s")
    now = qa.enqueue(db, "t", priority=50)
    assert qa.claim(db, w1).id == now  # type: ignore[union-attr]
    assert qa.claim(db, w1) is None
    clock.advance(9.999)
    assert qa.claim(db, w1) is None
    clock.advance(0.001)  # run_after is inclusive
    assert qa.claim(db, w1).id == later  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        ("b", ["b"]),
        (["c", "a"], ["a", "c"]),
        (("a",), ["a"]),
        ({"c"}, ["c"]),
        (["z"], []),
        (None, ["a", "b", "c"]),
    ],
)
def test_claim_types_filter(db: qa.Store, w1: str, types: Any, expected: list[str]) -> None:
    for name in ["a", "b", "c"]:
        qa.enqueue(db, name)
    claimed = []
    while (task := qa.claim(db, w1, types=types)) is not None:
        claimed.append(task.type)
    assert claimed == expected


def test_claim_types_accepts_a_one_shot_iterator(db: qa.Store, w1: str) -> None:
    qa.enqueue(db, "a")
    qa.enqueue(db, "b")
    task = qa.claim(db, w1, types=iter(["b"]))
    assert task is not None and task.type == "b"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"types": []}, ValueError, "types must name at least one task type"),
        ({"types": 5}, TypeError, "types must be a str, an iterable of str or None, not int"),
        ({"types": [""]}, ValueError, "types must not be empty"),
        ({"types": ["a", 3]}, TypeError, "types must be a str"),
        ({"lease": 0}, ValueError, "lease=0 must be greater than zero"),
        ({"lease": -1}, ValueError, "lease=-1 must not be negative"),
        ({"lease": math.nan}, ValueError, "lease=nan must be a finite duration"),
        ({"lease": "forever"}, ValueError, "lease='forever' is not a duration"),
        ({"lease": None}, TypeError, "lease must be seconds or a duration string"),
    ],
)
def test_claim_rejects(
    db: qa.Store, w1: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    qa.enqueue(db, "a")
    with pytest.raises(error, match=match):
        qa.claim(db, w1, **kwargs)
    assert qa.get_task(db, 1).status == "queued"


def test_claim_by_unknown_or_removed_worker(db: qa.Store) -> None:
    qa.enqueue(db, "a")
    with pytest.raises(qa.WorkerNotFound, match="worker 'ghost' is not registered"):
        qa.claim(db, "ghost")
    qa.register_worker(db, "w1")
    qa.remove_worker(db, "w1")
    with pytest.raises(qa.WorkerNotFound, match=r"'w1'.*removed"):
        qa.claim(db, "w1")
    assert qa.get_task(db, 1).status == "queued"
    assert db.query("SELECT count(*) FROM attempts") == [(0,)]


# -- complete / fail -----------------------------------------------------------------------
def test_complete(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    task_id = qa.enqueue(db, "email")
    qa.claim(db, w1)
    clock.advance(3)
    qa.complete(db, task_id, worker_id="w1")
    task = qa.get_task(db, task_id)
    assert task.status == "completed" and task.lease_until is None and task.error is None
    assert task.finished_at is not None and task.finished_at.timestamp() == T0 + 3
    assert task.worker_id == "w1"
    assert _attempts(db, task_id) == [(1, "w1", T0, T0 + 3, "completed", None)]


@pytest.mark.parametrize("verb", ["complete", "fail"])
def test_finishing_a_task_that_is_not_processing(db: qa.Store, w1: str, verb: str) -> None:
    def finish(task_id: int) -> Any:
        return qa.complete(db, task_id) if verb == "complete" else qa.fail(db, task_id, "x")

    queued = qa.enqueue(db, "t")
    with pytest.raises(qa.InvalidTransition, match=f"cannot {verb} task 1: it is queued"):
        finish(queued)
    qa.claim(db, w1)
    qa.complete(db, queued)
    with pytest.raises(qa.InvalidTransition, match="it is completed, not processing"):
        finish(queued)
    cancelled = qa.enqueue(db, "t")
    qa.cancel(db, cancelled)
    with pytest.raises(qa.InvalidTransition, match="it is cancelled"):
        finish(cancelled)
    assert qa.get_task(db, queued).status == "completed"


@pytest.mark.parametrize("verb", ["complete", "fail"])
def test_finishing_requires_the_holder(db: qa.Store, w1: str, verb: str) -> None:
    qa.register_worker(db, "w2")
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1)
    with pytest.raises(qa.InvalidTransition, match="not held by worker 'w2'"):
        if verb == "complete":
            qa.complete(db, task_id, worker_id="w2")
        else:
            qa.fail(db, task_id, "x", worker_id="w2")
    with pytest.raises(qa.InvalidTransition, match="not held by worker 'ghost'"):
        qa.complete(db, task_id, worker_id="ghost")
    assert qa.get_task(db, task_id).status == "processing"
    assert _attempts(db, task_id)[0][4] is None


def test_fail_retries_with_backoff_until_max_attempts(
    db: qa.Store, clock: qa.FakeClock, w1: str
) -> None:
    task_id = qa.enqueue(db, "t", max_attempts=3)
    waits = []
    for attempt in (1, 2):
        task = qa.claim(db, w1)
        assert task is not None and task.attempts == attempt
        clock.advance(1)
        assert qa.fail(db, task_id, f"boom {attempt}") == "queued"
        queued = qa.get_task(db, task_id)
        assert queued.status == "queued" and queued.error == f"boom {attempt}"
        assert queued.worker_id is None and queued.lease_until is None
        assert queued.finished_at is None
        assert queued.run_after is not None
        wait = queued.run_after.timestamp() - clock()
        ceiling = BACKOFF_BASE_S * 2 ** (attempt - 1)
        assert ceiling * 0.5 <= wait < ceiling
        waits.append(wait)
        assert qa.claim(db, w1) is None  # not before the backoff
        clock.set(db.query("SELECT run_after FROM tasks WHERE id = ?", (task_id,))[0][0])
    qa.claim(db, w1)
    clock.advance(1)
    assert qa.fail(db, task_id, "boom 3") == "failed"
    task = qa.get_task(db, task_id)
    assert task.status == "failed" and task.attempts == 3 and task.error == "boom 3"
    assert task.finished_at is not None
    assert task.finished_at.timestamp() == pytest.approx(clock(), abs=1e-6)
    outcomes = [(a[0], a[4], a[5]) for a in _attempts(db, task_id)]
    assert outcomes == [(1, "failed", "boom 1"), (2, "failed", "boom 2"), (3, "failed", "boom 3")]


def test_fail_without_retry_and_with_delay(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    first = qa.enqueue(db, "t")
    qa.claim(db, w1)
    assert qa.fail(db, first, "fatal", retry=False) == "failed"
    assert qa.get_task(db, first).attempts == 1
    second = qa.enqueue(db, "t")
    qa.claim(db, w1)
    assert qa.fail(db, second, "later", delay="1h") == "queued"
    run_after = qa.get_task(db, second).run_after
    assert run_after is not None and run_after.timestamp() == T0 + 3600


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"error": None}, TypeError, "error must be a str"),
        ({"error": 5}, TypeError, "error must be a str"),
        ({"error": "\ud800"}, ValueError, "error holds text that is not valid Unicode"),
        ({"error": "x", "delay": -1}, ValueError, "delay=-1 must not be negative"),
        ({"error": "x", "delay": "whenever"}, ValueError, "delay='whenever' is not a duration"),
    ],
)
def test_fail_rejects(
    db: qa.Store, w1: str, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1)
    with pytest.raises(error, match=match):
        qa.fail(db, task_id, **kwargs)
    assert qa.get_task(db, task_id).status == "processing"


def test_backoff_delay() -> None:
    rng = random.Random(1)
    for attempt in range(1, 40):
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        assert ceiling * 0.5 <= qa.backoff_delay(attempt, rng=rng) < ceiling
    assert qa.backoff_delay(10**6) < BACKOFF_CAP_S
    assert qa.backoff_delay(1, rng=random.Random(7)) == qa.backoff_delay(1, rng=random.Random(7))
    assert qa.backoff_delay(3, base=1, cap=2, rng=random.Random(0)) < 2
    with pytest.raises(ValueError, match="attempt=0 must be at least 1"):
        qa.backoff_delay(0)
    with pytest.raises(TypeError, match="attempt must be an int"):
        qa.backoff_delay(1.0)  # type: ignore[arg-type]


# -- cancel --------------------------------------------------------------------------------
def test_cancel_queued(db: qa.Store, clock: qa.FakeClock) -> None:
    task_id = qa.enqueue(db, "t")
    clock.advance(2)
    assert qa.cancel(db, task_id) is True
    task = qa.get_task(db, task_id)
    assert task.status == "cancelled"
    assert task.finished_at is not None and task.finished_at.timestamp() == T0 + 2
    assert db.query("SELECT count(*) FROM attempts") == [(0,)]


def test_cancel_processing_closes_the_attempt(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1)
    clock.advance(4)
    assert qa.cancel(db, task_id) is True
    task = qa.get_task(db, task_id)
    assert task.status == "cancelled" and task.lease_until is None
    assert _attempts(db, task_id) == [(1, "w1", T0, T0 + 4, "cancelled", "cancelled")]
    assert qa.requeue_orphans(db, now=T0 + 10_000) == []


def test_cancel_finished(db: qa.Store, w1: str) -> None:
    done = qa.enqueue(db, "t")
    qa.claim(db, w1)
    qa.complete(db, done)
    failed = qa.enqueue(db, "t")
    qa.claim(db, w1)
    qa.fail(db, failed, "x", retry=False)
    cancelled = qa.enqueue(db, "t")
    qa.cancel(db, cancelled)
    for task_id, status in [(done, "completed"), (failed, "failed"), (cancelled, "cancelled")]:
        assert qa.cancel(db, task_id) is False
        assert qa.get_task(db, task_id).status == status


# -- unknown and bad task ids --------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        qa.get_task,
        qa.complete,
        qa.cancel,
        lambda db, task_id: qa.fail(db, task_id, "x"),
    ],
)
def test_unknown_task(db: qa.Store, call: Any) -> None:
    with pytest.raises(qa.TaskNotFound, match="no task with id 99") as info:
        call(db, 99)
    assert isinstance(info.value, KeyError) and isinstance(info.value, qa.QAnalyticsError)


@pytest.mark.parametrize(
    ("task_id", "error", "match"),
    [
        ("1", TypeError, "task_id must be an int, not str"),
        (1.0, TypeError, "task_id must be an int, not float"),
        (None, TypeError, "task_id must be an int, not NoneType"),
        (True, TypeError, "task_id must be an int, not bool"),
        (0, ValueError, "task_id=0 is not a valid task id"),
        (-3, ValueError, "task_id=-3 is not a valid task id"),
        (2**63, ValueError, "is not a valid task id"),
    ],
)
@pytest.mark.parametrize(
    "call",
    [qa.get_task, qa.complete, qa.cancel, lambda db, task_id: qa.fail(db, task_id, "x")],
)
def test_bad_task_ids(
    db: qa.Store, call: Any, task_id: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call(db, task_id)


# -- requeue orphans -----------------------------------------------------------------------
def test_requeue_expired_lease(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1, lease="30s")
    clock.advance(30)
    qa.heartbeat(db, w1)
    assert qa.requeue_orphans(db) == []  # the lease ends at, not before, 30 s
    clock.advance(1)
    qa.heartbeat(db, w1)  # the worker is alive, but its lease ran out
    assert qa.requeue_orphans(db) == [task_id]
    task = qa.get_task(db, task_id)
    assert task.status == "queued" and task.worker_id is None and task.lease_until is None
    assert task.error == "abandoned: lease expired"
    assert task.run_after is not None and task.run_after.timestamp() == T0 + 31
    assert _attempts(db, task_id) == [(1, "w1", T0, T0 + 31, "abandoned", "lease expired")]
    assert qa.requeue_orphans(db) == []
    again = qa.claim(db, w1)
    assert again is not None and again.id == task_id and again.attempts == 2
    assert [a[0] for a in _attempts(db, task_id)] == [1, 2]


def test_requeue_stale_worker(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    qa.register_worker(db, "alive")
    stale_task = qa.enqueue(db, "t")
    alive_task = qa.enqueue(db, "t")
    qa.claim(db, w1, lease="1h")
    qa.claim(db, "alive", lease="1h")
    clock.advance(300)
    qa.heartbeat(db, "alive")
    assert qa.requeue_orphans(db) == []  # exactly 5 min silent is not yet stale
    clock.advance(1)
    assert qa.requeue_orphans(db, stale_after="5min") == [stale_task]
    assert _attempts(db, stale_task)[0][4:] == ("abandoned", "worker stale")
    assert qa.get_task(db, alive_task).status == "processing"
    assert qa.get_task(db, stale_task).error == "abandoned: worker stale"


def test_requeue_removed_worker(db: qa.Store, w1: str) -> None:
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1, lease="1h")
    qa.remove_worker(db, w1)
    assert qa.requeue_orphans(db) == [task_id]
    assert _attempts(db, task_id)[0][4:] == ("abandoned", "worker removed")


def test_requeue_out_of_attempts_fails(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    task_id = qa.enqueue(db, "t", max_attempts=1)
    qa.claim(db, w1, lease=10)
    clock.advance(11)
    assert qa.requeue_orphans(db) == [task_id]
    task = qa.get_task(db, task_id)
    assert task.status == "failed"
    assert task.error == "abandoned after 1 attempts: lease expired"
    assert task.finished_at is not None and task.finished_at.timestamp() == T0 + 11
    assert _attempts(db, task_id)[0][4] == "abandoned"


def test_requeue_with_now_and_order(db: qa.Store, w1: str) -> None:
    ids = [qa.enqueue(db, "t") for _ in range(3)]
    for _ in ids:
        qa.claim(db, w1, lease=60)
    assert qa.requeue_orphans(db, stale_after=3600, now=T0 + 59) == []
    assert qa.requeue_orphans(db, stale_after=3600, now="2023-11-14T22:14:21Z") == ids


def test_completing_an_orphaned_task_is_refused(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    qa.register_worker(db, "w2")
    task_id = qa.enqueue(db, "t")
    qa.claim(db, w1, lease=10)
    clock.advance(11)
    qa.requeue_orphans(db)
    qa.claim(db, "w2")
    with pytest.raises(qa.InvalidTransition, match="not held by worker 'w1'"):
        qa.complete(db, task_id, worker_id="w1")
    qa.complete(db, task_id, worker_id="w2")
    assert [(a[1], a[4]) for a in _attempts(db, task_id)] == [
        ("w1", "abandoned"),
        ("w2", "completed"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"stale_after": -1}, ValueError, "stale_after=-1 must not be negative"),
        ({"stale_after": math.nan}, ValueError, "stale_after=nan must be a finite"),
        ({"stale_after": "a while"}, ValueError, "stale_after='a while' is not a duration"),
        ({"now": "not a time"}, ValueError, "now='not a time' is not a timestamp"),
        ({"now": math.inf}, ValueError, "now=inf must be a finite time"),
    ],
)
def test_requeue_rejects(
    db: qa.Store, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        qa.requeue_orphans(db, **kwargs)


def test_attempts_and_task_state_agree(db: qa.Store, clock: qa.FakeClock, w1: str) -> None:
    rng = random.Random(3)
    for _ in range(20):
        qa.enqueue(db, rng.choice("abc"), priority=rng.randint(1, 3))
    for _ in range(80):
        clock.advance(rng.choice([1, 5, 30]))
        task = qa.claim(db, w1, lease=20)
        if task is None:
            qa.requeue_orphans(db)
            continue
        roll = rng.random()
        if roll < 0.5:
            qa.complete(db, task.id)
        elif roll < 0.8:
            qa.fail(db, task.id, "x", delay=0)
        elif roll < 0.9:
            qa.cancel(db, task.id)
    tasks = db.query("SELECT id, status, attempts FROM tasks")
    for task_id, status, attempts in tasks:
        rows = _attempts(db, task_id)
        assert [r[0] for r in rows] == list(range(1, attempts + 1))
        open_rows = [r for r in rows if r[4] is None]
        assert len(open_rows) == (1 if status == "processing" else 0)
        if status in ("completed", "failed") and rows:
            assert rows[-1][4] in (status, "abandoned")


def test_run_after_numbers_are_absolute_and_bare_number_strings_are_refused(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    delayed = qa.enqueue(db, "t", run_after="10s")
    absolute = qa.enqueue(db, "t", run_after=clock() + 20)
    past = qa.enqueue(db, "t", run_after=10.0)  # epoch 10: long ago, runnable now
    assert qa.get_task(db, delayed).run_after.timestamp() == clock() + 10
    assert qa.get_task(db, absolute).run_after.timestamp() == clock() + 20
    assert qa.get_task(db, past).run_after.timestamp() == 10.0
    with pytest.raises(ValueError, match="ambiguous"):
        qa.enqueue(db, "t", run_after="30")
    assert (
        qa.get_task(db, qa.enqueue(db, "t", run_after="2030-01-01T00:00:00Z")).run_after.year
        == 2030
    )


def test_find_orphans_lists_what_requeue_takes_without_writing(
    db: qa.Store, clock: qa.FakeClock
) -> None:
    qa.register_worker(db, "gone")
    qa.register_worker(db, "alive")
    held = qa.enqueue(db, "a", max_attempts=1)
    kept = qa.enqueue(db, "b")
    assert qa.claim(db, "gone", types="a") is not None
    assert qa.claim(db, "alive", types="b", lease="1h") is not None
    clock.advance("6min")
    qa.heartbeat(db, "alive")
    found = qa.find_orphans(db, stale_after="5min")
    assert [(o.task_id, o.worker_id, o.reason, o.next_status) for o in found] == [
        (held, "gone", "worker stale", "failed")
    ]
    assert qa.get_task(db, held).status == "processing"  # nothing written
    assert qa.requeue_orphans(db, stale_after="5min") == [held]
    assert qa.get_task(db, held).status == "failed"
    assert qa.get_task(db, kept).status == "processing"
    assert qa.find_orphans(db) == []


def test_claim_uses_the_claim_index_without_sorting(db: qa.Store) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite query plan")
    for _ in range(50):
        qa.enqueue(db, "t")
    qa.register_worker(db, "w")
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    try:
        assert qa.claim(db, "w", types=["t", "u"]) is not None
    finally:
        db.conn.set_trace_callback(None)
    select = next(s for s in seen if s.startswith("SELECT id FROM tasks"))
    plan = " ".join(str(row) for row in db.conn.execute("EXPLAIN QUERY PLAN " + select))
    # A sort here would read every queued task on every claim.
    assert "tasks_claim" in plan and "TEMP B-TREE" not in plan
