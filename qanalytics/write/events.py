"""Writing another queue's events: apply a batch of normalised events in one transaction.

A recorder (:mod:`qanalytics.record.celery`) turns each event of another queue into a
:class:`RecordedEvent` and hands batches of them to :meth:`EventWriter.apply`. Every row
written is stamped with the event's own time, never the recorder's clock, and applying is
idempotent: events may arrive duplicated, out of order, or for tasks and workers first seen
in the middle of their life, and none of these raises or loses a row.

The mapping onto the store:

=====================  ==========================================================
event                  effect
=====================  ==========================================================
``worker-online``      register the worker (a revival after ``worker-offline``), one beat
``worker-heartbeat``   one heartbeat row (registers or revives a worker seen first here)
``worker-offline``     the worker is removed (softly: history stays)
``task-sent``          the task exists, queued (created at the event)
``task-received``      the same; for a retry, the retry's ``eta`` becomes ``run_after``
``task-started``       a new attempt on that worker; the task is processing
``task-succeeded``     the attempt and task complete (the attempt runs ``runtime``)
``task-failed``        the attempt and task fail, with the exception text
``task-retried``       the attempt fails, the task is queued again
``task-revoked``       the task is cancelled (its open attempt too)
``task-rejected``      the open attempt is abandoned; queued again if requeued
=====================  ==========================================================

Duplicates are recognised by their timestamps (a duplicated event carries the same one);
they and events that tell nothing new are counted as :attr:`ApplyResult.unchanged`.

A finish (``task-succeeded``, ``task-failed``, ``task-retried``) closes an attempt of the
worker that sent it, never another worker's: with ``retry(countdown=0)`` on a prefork
worker the retry is published from the pool process, and another worker (or another pool
process of the same one) may receive, run and finish it before the first worker's main
process reports ``task-retried``. A start elsewhere closes the open attempt as
``abandoned: started again``; its own late report replaces that outcome. A retry closes
the sender's earliest open attempt, a final outcome its latest. A task's state is its
latest attempt's (attempts are ordered by start), so a report about an earlier attempt adds
its history without moving the task; among events about the latest attempt the state only
moves to one at least as late as the state it holds. A start that a prefork main process
announced after the retry its attempt published (seen as that retry's ``task-sent`` or
``task-received``) is dated at that publication, so attempts keep their real order.

``run_s``: a success carries Celery's ``runtime``, measured in the process that ran the
task. Its attempt ends at the ``task-succeeded`` stamp and starts ``runtime`` before it, so
the attempt's ``run_s`` is Celery's runtime (the ``task-started`` and ``task-succeeded``
stamps both come from the worker's main process, and their gap also holds the hand-over
to and from the pool). A failure or retry carries no runtime: its ``run_s`` runs from the
``task-started`` stamp to the report's.

A task first seen after its start has type ``"unknown"`` until an event naming it arrives.
The queue does not announce how many attempts a task may take, so ``max_attempts`` is the
number of attempts seen.

Coverage: :meth:`EventWriter.start_coverage` opens a listening period in
``recorder_coverage``, every :meth:`~EventWriter.apply` extends it, and
:meth:`~EventWriter.end_coverage` closes it.
:func:`qanalytics.read.coverage.unobserved_intervals` reads back when nobody was listening.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..history.marks import summarized_until
from ..store import Store
from .task_hours import apply_changes, contributions
from .workers import check_worker_id, encode_json

__all__ = [
    "EVENT_KINDS",
    "UNKNOWN_TYPE",
    "ApplyResult",
    "EventWriter",
    "RecordedEvent",
]

#: The event kinds :meth:`EventWriter.apply` understands, in the order events with the
#: same timestamp are applied.
EVENT_KINDS = (
    "worker-online",
    "worker-heartbeat",
    "task-sent",
    "task-received",
    "task-started",
    "task-retried",
    "task-succeeded",
    "task-failed",
    "task-rejected",
    "task-revoked",
    "worker-offline",
)
_RANK = {kind: i for i, kind in enumerate(EVENT_KINDS)}

#: The type of a task first seen after its start (its name arrives with sent/received).
UNKNOWN_TYPE = "unknown"

_FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One queue event, normalised for :class:`EventWriter`.

    Attributes
    ----------
    kind : str
        One of :data:`EVENT_KINDS`.
    at : float
        When it happened, epoch seconds, as the sender stamped it.
    worker : str or None
        The worker it concerns or came from (Celery's hostname, ``celery@host``).
    task : str or None
        The task's id in the recorded queue (Celery's UUID); required for task events.
    name : str or None
        The task's name (its type), when the event carries it.
    eta : float or None
        Not to run before this (a retry's countdown), epoch seconds.
    retries : int or None
        How many times the task had been retried when the message was sent.
    runtime : float or None
        Seconds the successful attempt ran.
    error : str or None
        The exception text of a failure or retry.
    requeue : bool
        For ``task-rejected``: whether the message went back to the queue.
    capabilities : mapping or None
        What a worker announced about itself (hostname, pid, software, beat frequency).
    """

    kind: str
    at: float
    worker: str | None = None
    task: str | None = None
    name: str | None = None
    eta: float | None = None
    retries: int | None = None
    runtime: float | None = None
    error: str | None = None
    requeue: bool = False
    capabilities: Mapping[str, Any] | None = None


@dataclass
class ApplyResult:
    """What one :meth:`EventWriter.apply` call did.

    Attributes
    ----------
    applied : int
        Events that changed the store.
    unchanged : int
        Events that changed nothing: already recorded (a duplicate: same kind, subject and
        timestamp), or telling nothing new (a ``task-received`` after ``task-sent``, the
        ``task-sent`` of a retry, a revocation of a finished task, a beat already kept).
    ignored : int
        Events of a kind the writer does not know, or missing what their kind needs.
    by_kind : dict of str to int
        Applied events per kind.
    """

    applied: int = 0
    unchanged: int = 0
    ignored: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, other: ApplyResult) -> None:
        """Add another result's counts to this one.

        Parameters
        ----------
        other : ApplyResult
        """
        self.applied += other.applied
        self.unchanged += other.unchanged
        self.ignored += other.ignored
        for kind, n in other.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n


# The task row as the writer reads it.
_TASK_STATE = (
    "SELECT id, type, status, attempts, max_attempts, created_at, started_at, finished_at"
    " FROM tasks WHERE external_id = ?"
)
# A beat, unless already recorded, holding the task the worker started last and still runs.
_INSERT_HELD_BEAT = (
    "INSERT INTO heartbeats (worker_key, at, task_id) SELECT ?1, ?2,"
    " (SELECT id FROM tasks WHERE worker_key = ?1 AND status = 'processing'"
    "  ORDER BY started_at DESC, id DESC LIMIT 1)"
    " WHERE NOT EXISTS (SELECT 1 FROM heartbeats WHERE worker_key = ?1 AND at = ?2)"
)
_INSERT_BEAT = (
    "INSERT INTO heartbeats (worker_key, at, task_id) SELECT ?1, ?2, ?3"
    " WHERE NOT EXISTS (SELECT 1 FROM heartbeats WHERE worker_key = ?1 AND at = ?2)"
)

# The workers' counters (see store.schema, version 4), kept with the rows they count.
_COUNT_BEAT = "UPDATE workers SET heartbeats = heartbeats + 1 WHERE worker_key = ?"
_COUNT_FINISH = {
    "completed": "UPDATE workers SET tasks_completed = tasks_completed + ? WHERE worker_key = ?",
    "failed": "UPDATE workers SET tasks_failed = tasks_failed + ? WHERE worker_key = ?",
}
_FINISHED_ATTEMPTS = (
    "SELECT a.worker_key, a.outcome FROM attempts a JOIN tasks t ON t.id = a.task_id"
    " WHERE t.external_id = ? AND a.outcome IN ('completed', 'failed')"
)


def _finished_attempts(conn: Any, external_id: str) -> Counter[tuple[int, str]]:
    """How many completed and failed attempts of a task each worker holds."""
    rows = conn.execute(_FINISHED_ATTEMPTS, (external_id,)).fetchall()
    return Counter((int(key), str(outcome)) for key, outcome in rows)


# What closes an attempt when another start of its task is recorded; the attempt's own
# finish, should it arrive later (a late report), replaces it.
_STARTED_AGAIN = "abandoned: started again"
# How many tasks' message times the writer remembers.
_MESSAGES_KEPT = 100_000


class _Task:
    __slots__ = (
        "attempts",
        "created_at",
        "finished_at",
        "id",
        "max_attempts",
        "started_at",
        "status",
        "type",
    )

    def __init__(self, row: tuple[Any, ...]) -> None:
        (
            self.id,
            self.type,
            self.status,
            self.attempts,
            self.max_attempts,
            self.created_at,
            self.started_at,
            self.finished_at,
        ) = row

    def newer_than(self, at: float) -> bool:
        """Whether the task's state dates from after `at` (so an event at `at` is history)."""
        state_at = max(
            self.created_at,
            -math.inf if self.started_at is None else self.started_at,
            -math.inf if self.finished_at is None else self.finished_at,
        )
        return bool(state_at > at)


class EventWriter:
    """Applies batches of :class:`RecordedEvent` to a store, one transaction per batch.

    Parameters
    ----------
    db : Store
        A writable store (schema version 3 or later, which :func:`qanalytics.connect`
        migrates to when it opens a file for writing).

    Notes
    -----
    Not thread-safe, like the store: one writer per store and thread. The writer caches
    worker keys (which never change once written) to save a lookup per event.
    """

    def __init__(self, db: Store) -> None:
        db.require_writable("record events")
        self.db = db
        self._workers: dict[str, int] = {}
        self._coverage: int | None = None
        self._result = ApplyResult()
        # The hourly tiers' watermark, read once per batch (the batch holds the write lock).
        self._until: float | None = None
        # When each message of a task (by its retries count) was first seen published or
        # received, and what each worker received: a retry is published by the attempt
        # before it, which therefore began earlier, whatever its start's stamp says.
        self._messages: dict[str, dict[int, float]] = {}
        self._receipts: dict[tuple[str, str], list[tuple[float, int]]] = {}

    # -- coverage -----------------------------------------------------------------------
    def start_coverage(self, source: str, at: float) -> int:
        """Open a listening period: from `at`, the recorder sees every event of `source`.

        Parameters
        ----------
        source : str
            What is listened to, e.g. ``"celery redis://host:6379/0"`` (no password).
        at : float
            Epoch seconds.

        Returns
        -------
        int
            The period's id.
        """
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"source must be a non-empty str, got {source!r}")
        at = _finite(at, "at")
        if self._coverage is not None:
            self.end_coverage(at)
        with self.db.transaction("start a recorder coverage period") as conn:
            row = conn.execute(
                "INSERT INTO recorder_coverage (source, started_at, last_seen_at)"
                " VALUES (?, ?, ?) RETURNING id",
                (source, at, at),
            ).fetchone()
        self._coverage = int(row[0])
        return self._coverage

    def end_coverage(self, at: float) -> None:
        """Close the open listening period at `at` (nothing happens if none is open).

        Parameters
        ----------
        at : float
            Epoch seconds.
        """
        at = _finite(at, "at")
        if self._coverage is None:
            return
        with self.db.transaction("end a recorder coverage period") as conn:
            conn.execute(
                "UPDATE recorder_coverage SET last_seen_at = max(last_seen_at, ?1),"
                " ended_at = max(last_seen_at, ?1) WHERE id = ?2",
                (at, self._coverage),
            )
        self._coverage = None

    @property
    def listening(self) -> bool:
        """Whether a listening period is open."""
        return self._coverage is not None

    # -- applying -----------------------------------------------------------------------
    def apply(
        self, events: Iterable[RecordedEvent], *, seen_at: float | None = None
    ) -> ApplyResult:
        """Apply a batch of events in one transaction.

        Events are applied in timestamp order (the batch is sorted; ties in the order of
        :data:`EVENT_KINDS`). Either the whole batch is written or, on an error, none of
        it (the caches are dropped and the error raised, so the caller can retry).

        Parameters
        ----------
        events : iterable of RecordedEvent
        seen_at : float, optional
            The recorder's time at the end of the batch: extends the open listening
            period to it (also for an empty batch).

        Returns
        -------
        ApplyResult
            What this batch did.

        Raises
        ------
        TypeError
            If an item is not a :class:`RecordedEvent`.
        ReadOnlyError, StoreError
            If the store refuses the write.
        """
        batch = list(events)
        for event in batch:
            if not isinstance(event, RecordedEvent):
                raise TypeError(f"events must be RecordedEvent items, not {type(event).__name__}")
        batch.sort(key=lambda e: (e.at, _RANK.get(e.kind, len(_RANK))))
        result = ApplyResult()
        workers = dict(self._workers)
        try:
            with self.db.transaction("record a batch of queue events") as conn:
                self._until = summarized_until(self.db, conn)
                for event in batch:
                    outcome = self._apply_one(conn, event)
                    if outcome == "applied":
                        result.applied += 1
                        result.by_kind[event.kind] = result.by_kind.get(event.kind, 0) + 1
                    elif outcome == "unchanged":
                        result.unchanged += 1
                    else:
                        result.ignored += 1
                if seen_at is not None and self._coverage is not None:
                    conn.execute(
                        "UPDATE recorder_coverage SET last_seen_at = max(last_seen_at, ?)"
                        " WHERE id = ?",
                        (_finite(seen_at, "seen_at"), self._coverage),
                    )
        except BaseException:
            # Keys cached inside the rolled-back transaction may not exist.
            self._workers = workers
            raise
        self._result.add(result)
        return result

    @property
    def totals(self) -> ApplyResult:
        """What every :meth:`apply` of this writer did, added up."""
        return self._result

    def _apply_one(self, conn: Any, event: RecordedEvent) -> str:
        kind = event.kind
        if kind not in _RANK or not _usable_time(event.at):
            return "ignored"
        if kind.startswith("worker-"):
            if not event.worker:
                return "ignored"
            if kind == "worker-heartbeat":
                return self._beat(conn, event)
            if kind == "worker-online":
                return self._online(conn, event)
            return self._offline(conn, event)
        if not event.task:
            return "ignored"
        # A late event can finish, reopen, rename or move a finish dated before the
        # hourly tiers' watermark: the tiers follow the difference it made to the task.
        until = self._until
        tier_before = None if until is None else contributions(conn, event.task, until)
        if kind in ("task-sent", "task-received"):
            self._note_message(event)
            outcome = self._queued(conn, event)  # touches no attempt, so no counter
        else:
            # Any other task event may finish, reopen or move an attempt of its task: the
            # workers' completed / failed counters follow the difference it made to them.
            before = _finished_attempts(conn, event.task)
            outcome = self._task_event(conn, event)
            if outcome == "applied":
                after = _finished_attempts(conn, event.task)
                for (key, result), n in (after - before).items():
                    conn.execute(_COUNT_FINISH[result], (n, key))
                for (key, result), n in (before - after).items():
                    conn.execute(_COUNT_FINISH[result], (-n, key))
        # An event dates the finishes it makes at or after its own time: one at or after
        # the watermark can only take back counts the task already had.
        if until is not None and tier_before is not None and (tier_before or event.at < until):
            # Also after an "unchanged": a late rejection can close an attempt of a task
            # whose state is newer, which changes the attempt tier and nothing else.
            changes = contributions(conn, event.task, until)
            changes.subtract(tier_before)
            apply_changes(conn, changes)
        return outcome

    def _task_event(self, conn: Any, event: RecordedEvent) -> str:
        kind = event.kind
        if kind == "task-started":
            return self._started(conn, event)
        if kind in ("task-succeeded", "task-failed", "task-retried"):
            return self._finished(conn, event)
        if kind == "task-revoked":
            return self._revoked(conn, event)
        return self._rejected(conn, event)

    # -- workers ------------------------------------------------------------------------
    def _worker(self, conn: Any, event: RecordedEvent, *, beat: bool = False) -> tuple[int, bool]:
        """The worker's key, registering it at the event if unknown.

        Only a sign of life (`beat`: online or heartbeat) records a beat with the
        registration; a worker first seen through a task event or its goodbye is
        registered without one.
        """
        name = str(event.worker)
        key = self._workers.get(name)
        if key is not None:
            return key, False
        row = conn.execute("SELECT worker_key FROM workers WHERE worker_id = ?", (name,)).fetchone()
        created = row is None
        if created:
            check_worker_id(name, name="worker")
            caps = _caps(event)
            key = int(
                conn.execute(
                    "INSERT INTO workers (worker_id, capabilities, registered_at,"
                    " last_heartbeat_at) VALUES (?, ?, ?, ?) RETURNING worker_key",
                    (name, caps, event.at, event.at if beat else None),
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO worker_events (worker_key, at, event, capabilities, interval_s)"
                " VALUES (?, ?, 'registered', ?, ?)",
                (key, event.at, caps, _freq(caps)),
            )
            if beat:
                conn.execute(_INSERT_BEAT, (key, event.at, None))
                conn.execute(_COUNT_BEAT, (key,))
        else:
            key = int(row[0])
        self._workers[name] = key
        return key, created

    def _revive_if_removed(self, conn: Any, key: int, event: RecordedEvent) -> bool:
        """Revive a removed worker that shows life after its removal."""
        row = conn.execute(
            "UPDATE workers SET removed_at = NULL, registered_at = ?1,"
            " last_heartbeat_at = max(ifnull(last_heartbeat_at, ?1), ?1)"
            " WHERE worker_key = ?2 AND removed_at IS NOT NULL AND removed_at < ?1"
            " RETURNING capabilities",
            (event.at, key),
        ).fetchone()
        if row is None:
            return False
        caps = _caps(event) if event.capabilities else row[0]
        if event.capabilities:
            conn.execute("UPDATE workers SET capabilities = ? WHERE worker_key = ?", (caps, key))
        conn.execute(
            "INSERT INTO worker_events (worker_key, at, event, capabilities, interval_s)"
            " VALUES (?, ?, 'registered', ?, ?)",
            (key, event.at, caps, _freq(caps)),
        )
        return True

    def _record_beat(self, conn: Any, key: int, at: float) -> bool:
        cursor = conn.execute(_INSERT_HELD_BEAT, (key, at))
        if cursor.rowcount == 0:
            return False
        conn.execute(
            "UPDATE workers SET last_heartbeat_at = max(ifnull(last_heartbeat_at, ?1), ?1),"
            " heartbeats = heartbeats + 1 WHERE worker_key = ?2",
            (at, key),
        )
        return True

    def _beat(self, conn: Any, event: RecordedEvent) -> str:
        key, created = self._worker(conn, event, beat=True)
        if created:
            return "applied"
        revived = self._revive_if_removed(conn, key, event)
        return "applied" if self._record_beat(conn, key, event.at) or revived else "unchanged"

    def _online(self, conn: Any, event: RecordedEvent) -> str:
        key, created = self._worker(conn, event, beat=True)
        if created:
            return "applied"
        if self._revive_if_removed(conn, key, event):
            self._record_beat(conn, key, event.at)
            return "applied"
        seen = conn.execute(
            "SELECT 1 FROM worker_events WHERE worker_key = ? AND at = ?"
            " AND event IN ('registered', 'updated')",
            (key, event.at),
        ).fetchone()
        if seen is not None:
            return "unchanged"
        caps = _caps(event)
        # A worker that comes online while registered restarted without saying goodbye
        # (killed), or is announced again: an update, and a sign of life.
        conn.execute(
            "INSERT INTO worker_events (worker_key, at, event, capabilities, interval_s)"
            " VALUES (?, ?, 'updated', ?, ?)",
            (key, event.at, caps, _freq(caps)),
        )
        conn.execute(
            "UPDATE workers SET capabilities = ? WHERE worker_key = ?"
            " AND ifnull(last_heartbeat_at, 0) <= ?",
            (caps, key, event.at),
        )
        self._record_beat(conn, key, event.at)
        return "applied"

    def _offline(self, conn: Any, event: RecordedEvent) -> str:
        key, _created = self._worker(conn, event)
        seen = conn.execute(
            "SELECT 1 FROM worker_events WHERE worker_key = ? AND at = ? AND event = 'removed'",
            (key, event.at),
        ).fetchone()
        if seen is not None:
            return "unchanged"
        conn.execute(
            "INSERT INTO worker_events (worker_key, at, event) VALUES (?, ?, 'removed')",
            (key, event.at),
        )
        later = conn.execute(
            "SELECT min(at) FROM heartbeats WHERE worker_key = ? AND at > ?", (key, event.at)
        ).fetchone()[0]
        if later is None:
            conn.execute(
                "UPDATE workers SET removed_at = ? WHERE worker_key = ?", (event.at, key)
            )
            return "applied"
        # Beats after the goodbye were recorded first (the goodbye arrived late): the
        # worker came back at the first of them, and stays registered.
        back = conn.execute(
            "SELECT 1 FROM worker_events WHERE worker_key = ? AND at > ? AND at <= ?"
            " AND event = 'registered'",
            (key, event.at, later),
        ).fetchone()
        if back is None:
            caps = conn.execute(
                "SELECT capabilities FROM workers WHERE worker_key = ?", (key,)
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO worker_events (worker_key, at, event, capabilities, interval_s)"
                " VALUES (?, ?, 'registered', ?, ?)",
                (key, later, caps, _freq(caps)),
            )
        return "applied"

    # -- tasks --------------------------------------------------------------------------
    def _task(self, conn: Any, event: RecordedEvent, created_at: float) -> tuple[_Task, bool]:
        """The task's state, creating the task (queued, at `created_at`) if unknown."""
        external = str(event.task)
        row = conn.execute(_TASK_STATE, (external,)).fetchone()
        if row is not None:
            return _Task(tuple(row)), False
        name = event.name if event.name else UNKNOWN_TYPE
        check_worker_id(name, name="task name")
        run_after = created_at if event.eta is None else max(created_at, event.eta)
        task_id = conn.execute(
            "INSERT INTO tasks (type, status, priority, max_attempts, created_at, run_after,"
            " external_id) VALUES (?, 'queued', 100, 1, ?, ?, ?) RETURNING id",
            (name, created_at, run_after, external),
        ).fetchone()[0]
        return _Task((task_id, name, "queued", 0, 1, created_at, None, None)), True

    def _name_task(self, conn: Any, task: _Task, event: RecordedEvent) -> bool:
        if event.name and task.type == UNKNOWN_TYPE:
            check_worker_id(event.name, name="task name")
            conn.execute("UPDATE tasks SET type = ? WHERE id = ?", (event.name, task.id))
            return True
        return False

    def _queued(self, conn: Any, event: RecordedEvent) -> str:
        task, created = self._task(conn, event, event.at)
        if created:
            return "applied"
        changed = self._name_task(conn, task, event)
        if event.at < task.created_at:
            # Sent before it was received (or a clock ahead): the earlier is the creation.
            conn.execute(
                "UPDATE tasks SET created_at = ?1, run_after = min(run_after, ?1) WHERE id = ?2",
                (event.at, task.id),
            )
            changed = True
        elif task.status == "queued" and event.retries and event.eta is not None:
            # The retry's message: it may not run before its countdown ends.
            cursor = conn.execute(
                "UPDATE tasks SET run_after = ? WHERE id = ? AND run_after <> ?",
                (event.eta, task.id, event.eta),
            )
            changed = changed or cursor.rowcount > 0
        return "applied" if changed else "unchanged"

    def _note_message(self, event: RecordedEvent) -> None:
        if event.retries is None or event.task is None:
            return
        if len(self._messages) >= _MESSAGES_KEPT and event.task not in self._messages:
            # Forget the oldest task: its attempts are long recorded.
            oldest = next(iter(self._messages))
            del self._messages[oldest]
            for pair in [p for p in self._receipts if p[0] == oldest]:
                del self._receipts[pair]
        seen = self._messages.setdefault(event.task, {})
        seen[event.retries] = min(seen.get(event.retries, math.inf), event.at)
        if event.kind == "task-received" and event.worker:
            got = self._receipts.setdefault((event.task, event.worker), [])
            if (event.at, event.retries) not in got:
                got.append((event.at, event.retries))

    def _start_time(self, event: RecordedEvent, key: int, rows: list[tuple[Any, ...]]) -> float:
        """When an attempt began: its start's stamp, or earlier when its retry was seen
        published before it (a prefork main process can announce a start late)."""
        if event.worker is None or event.task is None:
            return event.at
        got = [r for r in self._receipts.get((event.task, event.worker), ()) if r[0] <= event.at]
        if not got:
            return event.at
        received, retries = max(got)
        if any(r[1] == key and received <= r[2] < event.at for r in rows):
            return event.at  # that receipt's start is recorded: this one's was missed
        published = self._messages.get(event.task, {}).get(retries + 1, math.inf)
        return min(event.at, published)

    def _started(self, conn: Any, event: RecordedEvent) -> str:
        at = event.at
        key = self._worker(conn, event)[0] if event.worker else None
        task, _created = self._task(conn, event, at)
        self._name_task(conn, task, event)
        # A task has a few attempts: read them once, in the order they started.
        rows = _attempts_of(conn, task.id) if task.attempts or task.status != "queued" else []
        if key is None:
            # A start naming no worker belongs to the worker of the attempt around it.
            earlier = [r for r in rows if r[2] <= at]
            near = earlier[-1] if earlier else (rows[0] if rows else None)
            if near is None:
                return "ignored"  # a start from nowhere: no worker to put the attempt on
            key = int(near[1])
        at = self._start_time(event, key, rows)
        if any(r[1] == key and r[2] == at for r in rows):
            return "unchanged"
        # A worker runs one message of a task at a time, so a start belongs to the sender's
        # attempt that had not finished by then, when one is recorded.
        mine = next((r for r in rows if r[1] == key and (r[3] is None or r[3] >= at)), None)
        ends_at = None
        if mine is not None:
            number, _key, claimed, finished, outcome, _error = mine
            if finished is not None and claimed == finished:
                # Recorded from its finish first, with no runtime to date its start.
                conn.execute(
                    "UPDATE attempts SET claimed_at = ? WHERE task_id = ? AND attempt = ?",
                    (at, task.id, number),
                )
                if claimed == task.started_at:
                    conn.execute("UPDATE tasks SET started_at = ? WHERE id = ?", (at, task.id))
                _renumber(conn, task.id)
                return "applied"
            if finished is not None and (outcome == "completed" or claimed <= at):
                # Its start is dated from Celery's runtime, or already recorded.
                return "unchanged"
            if claimed > at:
                # An earlier message of this worker whose end was never heard: it ended
                # when the worker started the one recorded.
                ends_at = claimed
        # The attempts still open when this one started lost the task (killed, redelivered,
        # or their own finish is on its way and will replace this outcome).
        conn.execute(
            "UPDATE attempts SET finished_at = ?1, outcome = 'abandoned', error = ?2"
            " WHERE task_id = ?3 AND outcome IS NULL AND claimed_at < ?1",
            (at, _STARTED_AGAIN, task.id),
        )
        later = [r[2] for r in rows if r[2] > at]
        if later and ends_at is None:
            ends_at = min(later)  # a later start elsewhere was recorded first
        number = max((int(r[0]) for r in rows), default=0) + 1
        count = len(rows) + 1
        if ends_at is None:
            conn.execute(
                "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at)"
                " VALUES (?, ?, ?, ?)",
                (task.id, number, key, at),
            )
        else:
            conn.execute(
                "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at, finished_at,"
                " outcome, error) VALUES (?, ?, ?, ?, ?, 'abandoned', ?)",
                (task.id, number, key, at, ends_at, _STARTED_AGAIN),
            )
        if later:
            _renumber(conn, task.id)  # a start older than attempts already recorded
        elif task.status == "cancelled" and task.newer_than(at):
            # The revocation that ended this attempt was recorded first.
            conn.execute(
                "UPDATE attempts SET finished_at = t.finished_at, outcome = 'cancelled',"
                " error = t.error FROM (SELECT finished_at, error FROM tasks WHERE id = ?1) AS t"
                " WHERE attempts.task_id = ?1 AND attempts.attempt = ?2",
                (task.id, number),
            )
        if not later and not task.newer_than(at):
            conn.execute(
                "UPDATE tasks SET status = 'processing', attempts = ?1,"
                " max_attempts = max(max_attempts, ?1), started_at = ?2, finished_at = NULL,"
                " worker_key = ?3, error = NULL WHERE id = ?4",
                (count, at, key, task.id),
            )
        else:
            conn.execute(
                "UPDATE tasks SET attempts = max(attempts, ?1),"
                " max_attempts = max(max_attempts, ?1) WHERE id = ?2",
                (count, task.id),
            )
        return "applied"

    def _finished(self, conn: Any, event: RecordedEvent) -> str:
        kind, at = event.kind, event.at
        outcome = "completed" if kind == "task-succeeded" else "failed"
        error = None if outcome == "completed" else (event.error or kind)
        runtime = event.runtime if kind == "task-succeeded" else None
        if runtime is not None and not (math.isfinite(runtime) and runtime >= 0):
            runtime = None
        # Celery's runtime is measured in the process that ran the task; the events are
        # stamped by the worker's main process. The attempt ends at its report and starts
        # `runtime` before it, so its run_s is Celery's runtime.
        began = at - (runtime or 0.0)
        key = self._worker(conn, event)[0] if event.worker else None
        task, _created = self._task(conn, event, began)
        self._name_task(conn, task, event)
        rows = _attempts_of(conn, task.id) if task.attempts or task.status != "queued" else []
        if any(
            r[3] == at and r[4] == outcome and (key is None or r[1] == key) for r in rows
        ):
            return "unchanged"
        # The attempt this ends: the sender's latest started by then, if it is still open
        # or was closed only by a later start (elsewhere: this report came late) or a later
        # rejection.
        mine = [
            r
            for r in rows
            if r[2] <= at
            and (key is None or r[1] == key)
            and (r[4] is None or (r[4] == "abandoned" and (r[5] == _STARTED_AGAIN or r[3] >= at)))
        ]
        # A prefork worker may run two messages of one task at once (a retry published by
        # the first runs in another pool process): a retry ends the earliest open one,
        # whose message was retried; a final outcome the latest.
        own = (mine[0] if kind == "task-retried" else mine[-1]) if mine else None
        if own is not None:
            number, key = int(own[0]), (key if key is not None else int(own[1]))
            claimed = began if runtime is not None else own[2]
            conn.execute(
                "UPDATE attempts SET claimed_at = ?, finished_at = ?, outcome = ?, error = ?"
                " WHERE task_id = ? AND attempt = ?",
                (claimed, at, outcome, error, task.id, number),
            )
            others = [r for r in rows if int(r[0]) != number]
        else:
            # The start was missed (recorder started mid-flight): date it from the runtime.
            last = max(rows, key=lambda r: r[0]) if rows else None
            if key is None and last is not None:
                key = int(last[1])
            if key is None:
                return "ignored"
            number = 1 if last is None else int(last[0]) + 1
            claimed = began
            conn.execute(
                "INSERT INTO attempts (task_id, attempt, worker_key, claimed_at, finished_at,"
                " outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (task.id, number, key, claimed, at, outcome, error),
            )
            others = rows
        _renumber(conn, task.id)  # the start may have moved, or attempts started later
        if claimed < task.created_at:
            conn.execute(
                "UPDATE tasks SET created_at = ?1, run_after = min(run_after, ?1) WHERE id = ?2",
                (claimed, task.id),
            )
        count = len(others) + 1
        # The task's state is its latest attempt's: a report of an earlier attempt (a
        # retry reported after the next attempt started) adds history and moves nothing.
        latest = not any(r[2] > claimed for r in others)
        if not latest or task.newer_than(at):
            conn.execute(
                "UPDATE tasks SET attempts = max(attempts, ?1),"
                " max_attempts = max(max_attempts, ?1) WHERE id = ?2",
                (count, task.id),
            )
        elif kind == "task-retried":
            conn.execute(
                "UPDATE tasks SET status = 'queued', attempts = max(attempts, ?1),"
                " max_attempts = max(max_attempts, ?1 + 1), started_at = ?2,"
                " run_after = ?3, finished_at = NULL, worker_key = NULL, error = ?4"
                " WHERE id = ?5",
                (count, claimed, at, error, task.id),
            )
        else:
            conn.execute(
                "UPDATE tasks SET status = ?1, attempts = max(attempts, ?2),"
                " max_attempts = max(max_attempts, ?2), started_at = ?3, finished_at = ?4,"
                " worker_key = ?5, error = ?6 WHERE id = ?7",
                (outcome, count, claimed, at, key, error, task.id),
            )
        return "applied"

    def _revoked(self, conn: Any, event: RecordedEvent) -> str:
        task, created = self._task(conn, event, event.at)
        if not created:
            self._name_task(conn, task, event)
            if task.status == "cancelled" and task.finished_at == event.at:
                return "unchanged"
            if task.status in ("completed", "failed") and (task.finished_at or 0) <= event.at:
                return "unchanged"  # revoking a finished task changes nothing
        error = event.error or "revoked"
        conn.execute(
            "UPDATE attempts SET finished_at = ?, outcome = 'cancelled', error = ?"
            " WHERE task_id = ? AND outcome IS NULL AND claimed_at <= ?",
            (event.at, error, task.id, event.at),
        )
        if not task.newer_than(event.at):
            conn.execute(
                "UPDATE tasks SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?",
                (event.at, error, task.id),
            )
        return "applied"

    def _rejected(self, conn: Any, event: RecordedEvent) -> str:
        task, _created = self._task(conn, event, event.at)
        self._name_task(conn, task, event)
        cursor = conn.execute(
            "UPDATE attempts SET finished_at = ?, outcome = 'abandoned', error = 'rejected'"
            " WHERE task_id = ? AND outcome IS NULL AND claimed_at <= ?",
            (event.at, task.id, event.at),
        )
        if task.newer_than(event.at) or (task.status in _FINAL and cursor.rowcount == 0):
            return "unchanged"
        if event.requeue:
            conn.execute(
                "UPDATE tasks SET status = 'queued', run_after = ?, worker_key = NULL,"
                " error = 'rejected' WHERE id = ?",
                (event.at, task.id),
            )
        else:
            conn.execute(
                "UPDATE tasks SET status = 'failed', finished_at = ?, error = 'rejected'"
                " WHERE id = ?",
                (event.at, task.id),
            )
        return "applied"


def _attempts_of(conn: Any, task_id: int) -> list[tuple[Any, ...]]:
    """A task's attempts (attempt, worker_key, claimed_at, finished_at, outcome, error)."""
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT attempt, worker_key, claimed_at, finished_at, outcome, error FROM attempts"
            " WHERE task_id = ? ORDER BY claimed_at, attempt",
            (task_id,),
        ).fetchall()
    ]


def _renumber(conn: Any, task_id: int) -> None:
    """Number a task's attempts in the order they started (after a late event)."""
    order = [
        int(row[0])
        for row in conn.execute(
            "SELECT attempt FROM attempts WHERE task_id = ? ORDER BY claimed_at, attempt",
            (task_id,),
        ).fetchall()
    ]
    if order == list(range(1, len(order) + 1)):
        return
    # Move every number past the current ones first, so no two rows ever share one.
    offset = max(order) + len(order)
    conn.execute(
        "UPDATE attempts SET attempt = attempt + ? WHERE task_id = ?", (offset, task_id)
    )
    for new, old in enumerate(order, start=1):
        conn.execute(
            "UPDATE attempts SET attempt = ? WHERE task_id = ? AND attempt = ?",
            (new, task_id, old + offset),
        )


def _usable_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value: Any, name: str) -> float:
    if not _usable_time(value):
        raise ValueError(f"{name} must be finite epoch seconds, got {value!r}")
    return float(value)


def _freq(caps: str | None) -> float | None:
    """The beat interval a worker announced (Celery's ``freq``) in its capabilities."""
    if not caps:
        return None
    try:
        value = json.loads(caps).get("freq")
    except (ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _caps(event: RecordedEvent) -> str:
    caps = dict(event.capabilities or {})
    if event.worker and "hostname" not in caps:
        caps["hostname"] = event.worker
    return encode_json(caps, name="capabilities", require_dict=True)
