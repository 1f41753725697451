"""Synthetic but realistic queue workloads, written through the public write API.

:func:`simulate` runs a discrete-event simulation of a worker fleet and its workload on a
simulated clock (a :class:`~qanalytics.FakeClock`; nothing sleeps) and writes every event
into a store with the same calls real workers and producers make: ``register_worker``,
``heartbeat``, ``enqueue``, ``claim``, ``complete``, ``fail``, ``remove_worker`` and
``requeue_orphans``. Five incidents are scripted into every run, placed relative to its
duration, and returned as ground truth so analyses can be checked against what happened.

Every random choice comes from one ``random.Random(seed)``, so the same arguments give
the same database, row for row.
"""

from __future__ import annotations

import heapq
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._progress import leave_bar, progress_class
from .._time import FakeClock, parse_duration, to_datetime, to_epoch
from ..read.snapshot import queue_metrics
from ..state import STALE_AFTER_S as _STALE_AFTER_S
from ..store import Store, connect
from ..write.tasks import backoff_delay, claim, complete, enqueue, fail, requeue_orphans
from ..write.workers import heartbeat, register_worker, remove_worker

__all__ = [
    "DEFAULT_START",
    "TASK_PROFILES",
    "Crash",
    "Decommission",
    "FailureIncident",
    "Flapping",
    "GroundTruth",
    "ScaleUp",
    "Silence",
    "SimulationResult",
    "TaskProfile",
    "simulate",
]

#: The default start of a simulation: Monday 2026-01-05 00:00 UTC (epoch seconds).
DEFAULT_START = 1_767_571_200.0

HEARTBEAT_INTERVAL_S = 30.0
#: Each beat lands within +-10 % of the interval after the previous one.
HEARTBEAT_JITTER = 0.1
#: A few beats are late (a GC pause, a busy event loop) by this much on top; the longest
#: gap stays below 3x the interval, so only the scripted silences read as outages.
LATE_BEAT_PROBABILITY = 0.002
LATE_BEAT_EXTRA_S = (10.0, 40.0)
REQUEUE_EVERY_S = 60.0
# Imported by name, not ``from .. import state``: that asks the package's lazy __getattr__,
# which loads the public API, which imports this half-loaded package.
STALE_AFTER_S = _STALE_AFTER_S
LEASE_S = 3600.0
#: Runs are capped well inside the lease, so a healthy worker never loses its task.
MAX_RUN_S = 2700.0
#: Idle workers poll for work about once a second; a new task waits up to this long.
POLL_S = 1.0
RETRY_BACKOFF_BASE_S = 15.0

#: Load: at the afternoon peak the initial fleet is this busy on day one ...
PEAK_UTILIZATION = 0.78
#: ... and at the 04:00 trough the arrival rate is this fraction of the peak rate.
NIGHT_FLOOR = 0.12
PEAK_HOUR = 16.0
WEEKEND_FACTOR = 0.5
#: Load grows by this fraction per simulated day (what makes the scale-up necessary).
GROWTH_PER_DAY = 0.12

INCIDENT_TYPE = "thumbnail"
INCIDENT_FAILURE_RATE = 0.7
INCIDENT_ERROR = "ImageDecodeError: unsupported colour profile (regression in release 2.8.0)"
INCIDENT_LENGTH_S = 7200.0

#: Where each incident goes, as a fraction of the run (for the default 48 hours, the hour
#: of the run over 48). Times are rounded to the whole minute.
_CRASH_AT = 15.5 / 48
_FLAP_AT = 19.0 / 48
_DECOMMISSION_AT = 29.0 / 48
_SCALE_UP_AT = 36.0 / 48
_INCIDENT_AT = 38.0 / 48
#: The flapping worker's silences, in minutes, and the pause between their scripted
#: starts (at most 45 minutes, less in short runs).
FLAP_SILENCES_MIN = (3.0, 6.0, 4.0, 8.0)
_SCALE_UP_STAGGER_S = 20.0
MIN_WORKERS = 4
MAX_WORKERS = 1000
MIN_DURATION_S = 2 * 3600.0
#: Simulated seconds written per transaction: one commit per batch, not per event.
_BATCH_S = 300.0


@dataclass(frozen=True)
class TaskProfile:
    """One simulated task type.

    Attributes
    ----------
    name : str
        The task type.
    share : float
        Its fraction of arrivals.
    median_s : float
        Median run time, seconds; run times are lognormal (long-tailed).
    sigma : float
        The lognormal shape: the standard deviation of the log run time.
    failure_rate : float
        Probability that an attempt fails (outside the failure incident).
    max_attempts : int
        Claims a task gets before a failure is final.
    priority : int
        Lower numbers are claimed first.
    errors : tuple of str
        The error messages failed attempts report.
    """

    name: str
    share: float
    median_s: float
    sigma: float
    failure_rate: float
    max_attempts: int
    priority: int
    errors: tuple[str, ...]

    @property
    def mean_s(self) -> float:
        """Mean run time in seconds (before the cap at ``MAX_RUN_S``)."""
        return self.median_s * math.exp(self.sigma**2 / 2)


#: The simulated workload: six task types with different run times and failure rates.
TASK_PROFILES: tuple[TaskProfile, ...] = (
    TaskProfile(
        name="email",
        share=0.30,
        median_s=3.0,
        sigma=0.6,
        failure_rate=0.010,
        max_attempts=3,
        priority=50,
        errors=("SMTPServerDisconnected: connection unexpectedly closed", "SMTP 451: try later"),
    ),
    TaskProfile(
        name="webhook",
        share=0.20,
        median_s=2.0,
        sigma=1.2,
        failure_rate=0.050,
        max_attempts=5,
        priority=100,
        errors=(
            "HTTP 503 Service Unavailable",
            "ReadTimeout: no response within 30 s",
            "HTTP 429 Too Many Requests",
        ),
    ),
    TaskProfile(
        name="thumbnail",
        share=0.20,
        median_s=12.0,
        sigma=0.5,
        failure_rate=0.015,
        max_attempts=3,
        priority=100,
        errors=("OSError: image file is truncated",),
    ),
    TaskProfile(
        name="pdf-render",
        share=0.15,
        median_s=60.0,
        sigma=0.7,
        failure_rate=0.030,
        max_attempts=3,
        priority=100,
        errors=("RenderError: font not found", "MemoryError"),
    ),
    TaskProfile(
        name="ml-inference",
        share=0.10,
        median_s=40.0,
        sigma=0.9,
        failure_rate=0.020,
        max_attempts=3,
        priority=100,
        errors=("CUDA error: out of memory", "ModelNotReady: weights still loading"),
    ),
    TaskProfile(
        name="data-export",
        share=0.05,
        median_s=300.0,
        sigma=1.0,
        failure_rate=0.040,
        max_attempts=2,
        priority=200,
        errors=("statement timeout", "upload failed: SlowDown, please reduce your request rate"),
    ),
)


# -- ground truth -----------------------------------------------------------------------
@dataclass(frozen=True)
class Crash:
    """A worker that crashed while holding a task and never came back.

    Attributes
    ----------
    worker_id : str
    at : datetime
        Its last heartbeat, which named the task it held (UTC).
    task_id : int or None
        The task it held. None (and `at` is the end of the run) only if the worker never
        held a suitable task after the scripted time, so it never crashed.
    task_type : str or None
    requeued_at : datetime or None
        When ``requeue_orphans`` took the task back.
    completed_by : str or None
        The worker that then completed the task.
    completed_at : datetime or None
    """

    worker_id: str
    at: datetime
    task_id: int | None
    task_type: str | None
    requeued_at: datetime | None
    completed_by: str | None
    completed_at: datetime | None


@dataclass(frozen=True)
class Silence:
    """One silence of the flapping worker: from its last beat to the resuming beat.

    Attributes
    ----------
    start, end : datetime
        UTC.
    task_id : int or None
        The task it held when it went silent.
    requeued : bool
        Whether ``requeue_orphans`` took that task back during the silence.
    """

    start: datetime
    end: datetime
    task_id: int | None = None
    requeued: bool = False

    @property
    def duration_s(self) -> float:
        """Length of the silence, seconds."""
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Flapping:
    """A worker that went silent for a few minutes several times and resumed each time.

    Attributes
    ----------
    worker_id : str
    silences : tuple of Silence
    """

    worker_id: str
    silences: tuple[Silence, ...]


@dataclass(frozen=True)
class FailureIncident:
    """A deploy that raised one task type's failure rate for a while.

    Attributes
    ----------
    task_type : str
    start, end : datetime
        Attempts claimed in ``[start, end)`` fail at `failure_rate` (UTC).
    failure_rate : float
        Per-attempt failure probability inside the window.
    base_failure_rate : float
        Per-attempt failure probability outside it.
    error : str
        The error message of the incident's failures.
    """

    task_type: str
    start: datetime
    end: datetime
    failure_rate: float
    base_failure_rate: float
    error: str


@dataclass(frozen=True)
class ScaleUp:
    """Workers added mid-run.

    Attributes
    ----------
    at : datetime
        When the scale-up began (the first registration), UTC.
    workers : tuple of (str, datetime)
        Each new worker and when it registered.
    """

    at: datetime
    workers: tuple[tuple[str, datetime], ...]

    @property
    def worker_ids(self) -> tuple[str, ...]:
        """The new workers' ids."""
        return tuple(w for w, _ in self.workers)


@dataclass(frozen=True)
class Decommission:
    """A worker taken out of service: it stops claiming, finishes its task, is removed.

    Attributes
    ----------
    worker_id : str
    drain_at : datetime
        When it stopped claiming new tasks (UTC).
    removed_at : datetime or None
        When it was removed (None if its last task outlived the run).
    """

    worker_id: str
    drain_at: datetime
    removed_at: datetime | None


@dataclass(frozen=True)
class GroundTruth:
    """What the scripted incidents of a simulation really were.

    Attributes
    ----------
    crash : Crash
    flapping : Flapping
    failure_incident : FailureIncident
    scale_up : ScaleUp
    decommission : Decommission
    """

    crash: Crash
    flapping: Flapping
    failure_incident: FailureIncident
    scale_up: ScaleUp
    decommission: Decommission


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` wrote.

    Attributes
    ----------
    path : str
        The store's file, or ``":memory:"``.
    seed : int
    start, end : datetime
        The simulated period (UTC); the store's clock ends at `end`.
    workers : int
        The initial fleet size (the scale-up adds ``len(ground_truth.scale_up.workers)``).
    duration_s : float
    counts : dict of str to int
        ``workers`` (ever registered), ``tasks``, ``attempts``, ``heartbeats``,
        ``completed``, ``failed``, ``queued`` and ``processing`` (status at the end),
        ``retries`` (failed attempts queued again), ``requeued`` (tasks taken back by
        ``requeue_orphans``).
    ground_truth : GroundTruth
        The scripted incidents.
    task_profiles : tuple of TaskProfile
        The workload's task types.
    wall_time_s : float
        How long the run took in real time (not part of equality).
    """

    path: str
    seed: int
    start: datetime
    end: datetime
    workers: int
    duration_s: float
    counts: dict[str, int]
    ground_truth: GroundTruth
    task_profiles: tuple[TaskProfile, ...] = TASK_PROFILES
    wall_time_s: float = field(default=0.0, compare=False)

    def to_markdown(self) -> str:
        """The ground truth as a Markdown section, times in UTC ISO format.

        Returns
        -------
        str
        """
        gt = self.ground_truth
        c, fl, fi, su, de = (
            gt.crash,
            gt.flapping,
            gt.failure_incident,
            gt.scale_up,
            gt.decommission,
        )
        lines = [
            f"Simulated {_iso(self.start)} to {_iso(self.end)}, seed {self.seed}, "
            f"{self.workers} workers at the start.",
            "",
            f"- **Crash**: `{c.worker_id}` sent its last heartbeat at {_iso(c.at)} while "
            f"holding task {c.task_id} ({c.task_type}), and never came back. "
            f"`requeue_orphans` took the task back at {_iso(c.requeued_at)}; "
            f"`{c.completed_by}` completed it at {_iso(c.completed_at)}.",
            f"- **Flapping**: `{fl.worker_id}` went silent {len(fl.silences)} times and "
            "resumed each time (start = last beat, end = resuming beat):",
        ]
        for s in fl.silences:
            held = f", holding task {s.task_id}" if s.task_id is not None else ", idle"
            back = ", requeued during the silence" if s.requeued else ""
            lines.append(
                f"  - {_iso(s.start)} to {_iso(s.end)} ({s.duration_s / 60:g} min{held}{back})"
            )
        lines += [
            f"- **Failure incident**: `{fi.task_type}` attempts claimed from {_iso(fi.start)} "
            f"to {_iso(fi.end)} failed with probability {fi.failure_rate:g} (otherwise "
            f"{fi.base_failure_rate:g}), error `{fi.error}`.",
            f"- **Scale-up**: {len(su.workers)} workers registered from {_iso(su.at)}: "
            + ", ".join(f"`{w}` at {_iso(at)}" for w, at in su.workers)
            + ".",
            f"- **Decommission**: `{de.worker_id}` stopped claiming at {_iso(de.drain_at)} "
            f"and was removed at {_iso(de.removed_at)}.",
        ]
        return "\n".join(lines) + "\n"


def _iso(when: datetime | None) -> str:
    if when is None:
        return "never"
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(seconds: float) -> datetime:
    value = to_datetime(seconds)
    assert value is not None
    return value


def _utc_or_none(seconds: float | None) -> datetime | None:
    return None if seconds is None else to_datetime(seconds)


# -- the simulation ---------------------------------------------------------------------
_ARRIVAL, _RUNNABLE, _WAKE, _FINISH, _BEAT, _RESUME, _REQUEUE, _REGISTER = range(8)
_CRASH_ARM, _DECOMMISSION = 8, 9


class _Worker:
    __slots__ = (
        "attempt",
        "capabilities",
        "crash_armed",
        "draining",
        "fails",
        "finish_at",
        "gen",
        "id",
        "incident",
        "pauses",
        "profile",
        "remaining",
        "state",
        "task_id",
    )

    def __init__(self, worker_id: str, capabilities: dict[str, Any]) -> None:
        self.id = worker_id
        self.capabilities = capabilities
        self.state = "new"  # new, up, paused, crashed, removed
        self.task_id: int | None = None
        self.attempt = 0
        self.profile: TaskProfile | None = None
        self.fails = False
        self.incident = False
        self.finish_at = 0.0
        self.remaining = 0.0
        # A WAKE or FINISH event is only valid while the worker's generation is the one
        # it was scheduled in; pausing, crashing, removal and losing a task bump it.
        self.gen = 0
        self.crash_armed = False
        self.draining = False
        self.pauses: list[tuple[float, float]] = []


class _Simulation:
    def __init__(
        self,
        db: Store,
        clock: FakeClock,
        *,
        workers: int,
        start: float,
        duration: float,
        seed: int,
        progress: bool,
    ) -> None:
        self.db = db
        self.clock = clock
        self.rng = random.Random(seed)
        self.start = start
        self.end = start + duration
        self.duration = duration
        self.progress = progress
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.waiting: list[_Worker] = []
        self.holder: dict[int, _Worker] = {}
        self.attempts_of: dict[int, tuple[int, int]] = {}
        self.profiles = {p.name: p for p in TASK_PROFILES}
        self.pinned_success: set[int] = set()
        self.counts = dict.fromkeys(
            ("workers", "tasks", "attempts", "heartbeats", "retries", "requeued"), 0
        )
        mean_run = sum(p.share * p.mean_s for p in TASK_PROFILES)
        self.peak_rate = workers * PEAK_UTILIZATION / mean_run
        self.max_rate = self.peak_rate * (1.0 + GROWTH_PER_DAY * duration / 86400.0)
        self.type_names = [p.name for p in TASK_PROFILES]
        self.type_weights = [p.share for p in TASK_PROFILES]

        width = max(2, len(str(workers + self._scale_up_size(workers))))
        zones = ("a", "b", "c")
        self.fleet = [
            _Worker(
                f"worker-{i:0{width}d}",
                {"host": f"node-{(i - 1) // 4 + 1:02d}", "zone": zones[i % 3], "pool": "base"},
            )
            for i in range(1, workers + 1)
        ]
        extra = self._scale_up_size(workers)
        self.new_workers = [
            _Worker(
                f"worker-{i:0{width}d}",
                {"host": f"node-{(i - 1) // 4 + 1:02d}", "zone": zones[i % 3], "pool": "scaled"},
            )
            for i in range(workers + 1, workers + extra + 1)
        ]

        # Ground truth, filled in as the run unfolds.
        roles = self.rng.sample(self.fleet, 3)
        self.crash_worker, self.flap_worker, self.decom_worker = roles
        self.crash_at: float | None = None
        self.crash_task: int | None = None
        self.crash_type: str | None = None
        self.crash_requeued_at: float | None = None
        self.crash_completed: tuple[str, float] | None = None
        self.silences: list[list[Any]] = []  # [start, end, task_id, requeued]
        self.incident_start = self._at(_INCIDENT_AT)
        self.incident_end = self.incident_start + min(INCIDENT_LENGTH_S, 0.15 * duration)
        self.scaled: list[tuple[str, float]] = []
        self.drain_at = self._at(_DECOMMISSION_AT)
        self.removed_at: float | None = None

    @staticmethod
    def _scale_up_size(workers: int) -> int:
        return max(2, workers // 4)

    def _at(self, fraction: float) -> float:
        return self.start + round(fraction * self.duration / 60.0) * 60.0

    # -- scheduling ---------------------------------------------------------------------
    def push(self, at: float, kind: int, arg: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, kind, arg))

    def rate(self, t: float) -> float:
        """Arrivals per second at epoch `t`: daily cycle, weekend dip, slow growth."""
        hour = (t % 86400.0) / 3600.0
        bump = 0.5 * (1.0 - math.cos(2.0 * math.pi * (hour - PEAK_HOUR + 12.0) / 24.0))
        daily = NIGHT_FLOOR + (1.0 - NIGHT_FLOOR) * bump
        weekday = (int(t // 86400.0) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        if weekday >= 5:
            daily *= WEEKEND_FACTOR
        growth = 1.0 + GROWTH_PER_DAY * (t - self.start) / 86400.0
        return self.peak_rate * daily * growth

    def next_arrival(self, t: float) -> float:
        # Thinning (Lewis and Shedler): candidates at the maximum rate, each kept with
        # probability rate(t) / max_rate, give a Poisson process with rate(t).
        while True:
            t += self.rng.expovariate(self.max_rate)
            if t > self.end or self.rng.random() * self.max_rate < self.rate(t):
                return t

    def beat_delay(self) -> float:
        delay = HEARTBEAT_INTERVAL_S * (1.0 + self.rng.uniform(-HEARTBEAT_JITTER, HEARTBEAT_JITTER))
        if self.rng.random() < LATE_BEAT_PROBABILITY:
            delay += self.rng.uniform(*LATE_BEAT_EXTRA_S)
        return delay

    def wake_one(self, now: float) -> None:
        if self.waiting:
            w = self.waiting.pop(self.rng.randrange(len(self.waiting)))
            self.push(now + self.rng.uniform(0.0, POLL_S), _WAKE, (w, w.gen))

    # -- the run --------------------------------------------------------------------------
    def run(self) -> None:
        rng = self.rng
        for w in self.fleet:
            self.push(self.start + rng.uniform(0.0, 15.0), _REGISTER, w)
        at = self._at(_SCALE_UP_AT)
        for i, w in enumerate(self.new_workers):
            self.push(at + i * _SCALE_UP_STAGGER_S, _REGISTER, w)
        self.push(self._at(_CRASH_AT), _CRASH_ARM, self.crash_worker)
        self.push(self.drain_at, _DECOMMISSION, self.decom_worker)
        spacing = min(45 * 60.0, self.duration / 24.0)
        begin = self._at(_FLAP_AT)
        for minutes in FLAP_SILENCES_MIN:
            self.flap_worker.pauses.append((begin, minutes * 60.0))
            begin += minutes * 60.0 + spacing
        self.push(self.next_arrival(self.start), _ARRIVAL)
        self.push(self.start + REQUEUE_EVERY_S, _REQUEUE)

        handlers: dict[int, Callable[[float, Any], None]] = {
            _ARRIVAL: self.on_arrival,
            _RUNNABLE: self.on_runnable,
            _WAKE: self.on_wake,
            _FINISH: self.on_finish,
            _BEAT: self.on_beat,
            _RESUME: self.on_resume,
            _REQUEUE: self.on_requeue,
            _REGISTER: self.on_register,
            _CRASH_ARM: self.on_crash_arm,
            _DECOMMISSION: self.on_decommission,
        }
        heap, clock, db = self.heap, self.clock, self.db
        total_min = self.duration / 60.0
        tqdm = progress_class()
        with tqdm(
            total=round(total_min),
            unit="sim-min",
            desc="simulating",
            disable=not self.progress,
            leave=leave_bar(),
        ) as bar:
            batch_end = self.start
            shown = 0
            while heap and heap[0][0] <= self.end:
                batch_end = min(batch_end + _BATCH_S, self.end)
                # Nested write calls join this transaction: one commit per batch.
                with db.transaction("simulate"):
                    while heap and heap[0][0] <= batch_end:
                        at, _seq, kind, arg = heapq.heappop(heap)
                        clock.set(at)
                        handlers[kind](at, arg)
                done = round((batch_end - self.start) / 60.0)
                bar.update(done - shown)
                shown = done
        clock.set(self.end)

    # -- handlers -------------------------------------------------------------------------
    def on_register(self, now: float, w: _Worker) -> None:
        register_worker(self.db, w.id, w.capabilities)
        self.counts["workers"] += 1
        self.counts["heartbeats"] += 1
        w.state = "up"
        if w.capabilities["pool"] == "scaled":
            self.scaled.append((w.id, now))
        self.push(now + self.beat_delay(), _BEAT, w)
        self.push(now + self.rng.uniform(0.0, POLL_S), _WAKE, (w, w.gen))

    def on_arrival(self, now: float, _arg: Any) -> None:
        name = self.rng.choices(self.type_names, self.type_weights)[0]
        profile = self.profiles[name]
        enqueue(self.db, name, priority=profile.priority, max_attempts=profile.max_attempts)
        self.counts["tasks"] += 1
        self.wake_one(now)
        self.push(self.next_arrival(now), _ARRIVAL)

    def on_runnable(self, now: float, _arg: Any) -> None:
        self.wake_one(now)

    def on_wake(self, now: float, arg: tuple[_Worker, int]) -> None:
        w, gen = arg
        if gen != w.gen or w.state != "up" or w.task_id is not None:
            return
        if w.draining:
            self.remove(now, w)
            return
        task = claim(self.db, w.id, lease=LEASE_S)
        if task is None:
            self.waiting.append(w)
            return
        rng = self.rng
        profile = self.profiles[task.type]
        self.counts["attempts"] += 1
        self.attempts_of[task.id] = (task.attempts, profile.max_attempts)
        self.holder[task.id] = w
        run_s = min(rng.lognormvariate(math.log(profile.median_s), profile.sigma), MAX_RUN_S)
        incident = task.type == INCIDENT_TYPE and self.incident_start <= now < self.incident_end
        p_fail = INCIDENT_FAILURE_RATE if incident else profile.failure_rate
        fails = rng.random() < p_fail and task.id not in self.pinned_success
        if fails:
            # A failing attempt gives up part-way; the broken deploy fails right away.
            run_s *= rng.uniform(0.05, 0.3) if incident else rng.uniform(0.2, 1.0)
        w.task_id, w.attempt, w.profile = task.id, task.attempts, profile
        w.fails, w.incident = fails, incident
        w.finish_at = now + run_s
        self.push(w.finish_at, _FINISH, (w, w.gen))

    def on_finish(self, now: float, arg: tuple[_Worker, int]) -> None:
        w, gen = arg
        if gen != w.gen or w.state != "up" or w.task_id is None:
            return
        task_id = w.task_id
        self.holder.pop(task_id, None)
        if w.fails:
            assert w.profile is not None
            error = INCIDENT_ERROR if w.incident else self.rng.choice(w.profile.errors)
            delay = backoff_delay(w.attempt, base=RETRY_BACKOFF_BASE_S, rng=self.rng)
            status = fail(self.db, task_id, error, delay=delay, worker_id=w.id)
            if status == "queued":
                self.counts["retries"] += 1
                self.push(now + delay, _RUNNABLE)
        else:
            complete(self.db, task_id, worker_id=w.id)
            if task_id == self.crash_task:
                self.crash_completed = (w.id, now)
        w.task_id = None
        if w.draining:
            self.remove(now, w)
            return
        self.push(now + self.rng.uniform(0.05, 0.5), _WAKE, (w, w.gen))

    def on_beat(self, now: float, w: _Worker) -> None:
        if w.state != "up":
            return
        heartbeat(self.db, w.id, task_id=w.task_id)
        self.counts["heartbeats"] += 1
        if (
            w.crash_armed
            and w.task_id is not None
            and w.attempt == 1
            and w.profile is not None
            and w.profile.max_attempts >= 3
        ):
            # The crash: this beat, naming the task in hand, is the worker's last.
            w.state = "crashed"
            w.gen += 1
            self.crash_at, self.crash_task = now, w.task_id
            self.crash_type = w.profile.name if w.profile is not None else None
            self.pinned_success.add(w.task_id)
            return
        if w.pauses and now >= w.pauses[0][0]:
            _, length = w.pauses.pop(0)
            w.state = "paused"
            w.gen += 1
            if w in self.waiting:
                self.waiting.remove(w)
            if w.task_id is not None:
                w.remaining = w.finish_at - now
            self.silences.append([now, None, w.task_id, False])
            self.push(now + length, _RESUME, w)
            return
        self.push(now + self.beat_delay(), _BEAT, w)

    def on_resume(self, now: float, w: _Worker) -> None:
        w.state = "up"
        heartbeat(self.db, w.id, task_id=w.task_id)
        self.counts["heartbeats"] += 1
        self.silences[-1][1] = now
        self.push(now + self.beat_delay(), _BEAT, w)
        if w.task_id is not None:
            w.finish_at = now + w.remaining
            self.push(w.finish_at, _FINISH, (w, w.gen))
        else:
            self.push(now, _WAKE, (w, w.gen))

    def on_requeue(self, now: float, _arg: Any) -> None:
        for task_id in requeue_orphans(self.db, stale_after=STALE_AFTER_S):
            self.counts["requeued"] += 1
            w = self.holder.pop(task_id, None)
            if w is self.crash_worker and task_id == self.crash_task:
                self.crash_requeued_at = now
            if w is not None and w.task_id == task_id:
                w.task_id = None
                if w.state == "paused" and self.silences and self.silences[-1][2] == task_id:
                    self.silences[-1][3] = True
                elif w.state == "up":  # lost its lease while working: drop it, go on
                    w.gen += 1
                    self.push(now, _WAKE, (w, w.gen))
            attempts, limit = self.attempts_of.get(task_id, (1, 1))
            if attempts < limit:
                self.wake_one(now)
        self.push(now + REQUEUE_EVERY_S, _REQUEUE)

    def on_crash_arm(self, now: float, w: _Worker) -> None:
        w.crash_armed = True

    def on_decommission(self, now: float, w: _Worker) -> None:
        w.draining = True
        if w.state == "up" and w.task_id is None:
            self.remove(now, w)

    def remove(self, now: float, w: _Worker) -> None:
        remove_worker(self.db, w.id)
        w.state = "removed"
        w.gen += 1
        if w in self.waiting:
            self.waiting.remove(w)
        self.removed_at = now

    # -- results --------------------------------------------------------------------------
    def ground_truth(self) -> GroundTruth:
        profile = self.profiles[INCIDENT_TYPE]
        done = self.crash_completed
        return GroundTruth(
            crash=Crash(
                worker_id=self.crash_worker.id,
                at=_utc(self.crash_at if self.crash_at is not None else self.end),
                task_id=self.crash_task,
                task_type=self.crash_type,
                requeued_at=_utc_or_none(self.crash_requeued_at),
                completed_by=None if done is None else done[0],
                completed_at=None if done is None else _utc(done[1]),
            ),
            flapping=Flapping(
                worker_id=self.flap_worker.id,
                silences=tuple(
                    Silence(_utc(s), _utc(e if e is not None else self.end), t, bool(r))
                    for s, e, t, r in self.silences
                ),
            ),
            failure_incident=FailureIncident(
                task_type=INCIDENT_TYPE,
                start=_utc(self.incident_start),
                end=_utc(self.incident_end),
                failure_rate=INCIDENT_FAILURE_RATE,
                base_failure_rate=profile.failure_rate,
                error=INCIDENT_ERROR,
            ),
            scale_up=ScaleUp(
                at=_utc(self._at(_SCALE_UP_AT)),
                workers=tuple((w, _utc(t)) for w, t in self.scaled),
            ),
            decommission=Decommission(
                worker_id=self.decom_worker.id,
                drain_at=_utc(self.drain_at),
                removed_at=_utc_or_none(self.removed_at),
            ),
        )


# -- the public function ----------------------------------------------------------------
def _check_int(value: Any, name: str, *, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={value!r} must be {bound}")
    return value


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__} ({value!r})")
    return value


def _contents(db: Store) -> tuple[int, int]:
    workers, tasks = db.query(
        "SELECT (SELECT count(*) FROM workers), (SELECT count(*) FROM tasks)",
        action="check whether the store is empty",
    )[0]
    return int(workers), int(tasks)


def _clear(db: Store) -> None:
    # Child tables first: the history tables reference workers and tasks.
    with db.transaction("clear the store for a new simulation") as conn:
        for table in ("attempts", "heartbeats", "worker_events", "tasks", "workers"):
            conn.execute(f"DELETE FROM {table}")


def _finish_file(db: Store) -> None:
    # Compact the file, fold the WAL back into it, and leave it in rollback-journal
    # mode, so the file stands alone (no -wal/-shm beside it) and read-only openers
    # create nothing next to it. Writers switch it back to WAL when they connect.
    conn = db.conn
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")


def simulate(
    target: str | os.PathLike[str] | Store,
    *,
    workers: int = 24,
    duration: Any = "48h",
    seed: int = 0,
    start: Any = None,
    progress: bool = True,
    overwrite: bool = False,
) -> SimulationResult:
    """Write a realistic simulated fleet and workload into a store.

    A discrete-event simulation on a simulated clock (nothing sleeps) that writes through
    the public write API, as real workers and producers would:

    - **Arrivals** are Poisson with a rate that follows a daily cycle (peak at 16:00 UTC,
      trough at 04:00 at 12 % of the peak, half the load at weekends) and grows 12 % a
      day. At the first afternoon peak the initial fleet is about 78 % busy.
    - **Six task types** (:data:`TASK_PROFILES`) with lognormal run times (medians from
      2 s to 4 min, long tails) and their own failure rates, priorities and attempt
      limits. Failed attempts are retried after :func:`~qanalytics.backoff_delay`
      (15 s base, doubling, jittered) until the attempts run out.
    - **Workers** register, poll for work about once a second, heartbeat every 30 s
      (+-10 %, a rare beat up to 40 s late) naming the task in hand, and
      :func:`~qanalytics.requeue_orphans` runs every minute (stale after 5 minutes).

    Five incidents are scripted, placed relative to `duration` (times for the default 48
    hours in brackets) on workers chosen by the seed:

    1. **Crash** (15:30 on day one): at its first heartbeat from then on while holding a
       task on its first attempt (of a type allowed three or more), a worker dies and
       never returns; the task is orphaned until ``requeue_orphans`` takes it back, and
       its later attempts do not fail.
    2. **Flapping** (from 19:00 on day one): another worker goes silent for 3, 6, 4 and
       8 minutes (45 minutes apart), each silence starting right after a beat; it keeps
       its task through a silence unless ``requeue_orphans`` takes it back meanwhile.
    3. **Decommission** (05:00 on day two): a third worker stops claiming, finishes its
       task and is removed.
    4. **Scale-up** (12:00 on day two): a quarter more workers (at least 2) register,
       20 s apart.
    5. **Failure incident** (14:00 to 16:00 on day two, at most 15 % of the run):
       ``thumbnail`` attempts claimed in the window fail with probability 0.7 (a bad
       deploy) instead of 0.015.

    Parameters
    ----------
    target : str, os.PathLike or Store
        A file path (created if missing) or an open, writable :class:`~qanalytics.Store`.
    workers : int, default 24
        The initial fleet size, 4 to 1000.
    duration : float, str or timedelta, default "48h"
        Simulated time, at least 2 hours (seconds or a string such as ``"6h"``).
    seed : int, default 0
        Seeds every random choice: the same arguments give the same database, row for row.
    start : time-like, optional
        When the simulation starts (epoch seconds, ISO string or datetime; naive means
        UTC). Defaults to :data:`DEFAULT_START`, Monday 2026-01-05 00:00 UTC, never
        the wall clock.
    progress : bool, default True
        Show a progress bar over simulated time.
    overwrite : bool, default False
        Replace the contents of a store that already holds workers or tasks. Without
        it such a store is refused.

    Returns
    -------
    SimulationResult
        The path, counts of what was written, and the incidents' ground truth.

    Raises
    ------
    TypeError
        For an argument of the wrong type.
    ValueError
        For an argument out of range, ``":memory:"`` as a path (pass an open in-memory
        store instead), or a non-empty store without ``overwrite=True``.
    SchemaError
        If a path holds a file that is not a qanalytics store (it is never replaced).
    ReadOnlyError
        If `target` is a store opened read-only.

    Notes
    -----
    The store's clock is driven by the simulation: a store whose clock is a
    :class:`~qanalytics.FakeClock` is left at the end of the run; any other clock is put
    back afterwards. Events are written in batches of five simulated minutes, each in one
    transaction (the write calls join it), which makes a 48-hour, 24-worker run take well
    under a minute. A store created from a path is vacuumed and left in rollback-journal
    mode, with no ``-wal`` or ``-shm`` file beside it.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     result = qa.simulate(db, workers=6, duration="6h", progress=False)
    >>> result.ground_truth.failure_incident.task_type
    'thumbnail'
    """
    n_workers = _check_int(workers, "workers", minimum=MIN_WORKERS, maximum=MAX_WORKERS)
    duration_s = parse_duration(duration, name="duration", allow_zero=False)
    if duration_s < MIN_DURATION_S:
        raise ValueError(
            f"duration={duration!r} is too short; the scripted incidents need at least 2 hours"
        )
    seed = _check_int(seed, "seed", minimum=-(2**63))
    start_s = DEFAULT_START if start is None else to_epoch(start, name="start")
    _check_bool(progress, "progress")
    _check_bool(overwrite, "overwrite")

    owned = not isinstance(target, Store)
    if isinstance(target, Store):
        db = target
        db.require_writable("simulate into it")
    else:
        if isinstance(target, str) and target.strip().lower() in (":memory:", "sqlite://"):
            raise ValueError(
                f"target={target!r} would be lost when simulate() closes it; pass an open "
                "store instead: simulate(qa.connect(':memory:'), ...)"
            )
        if not isinstance(target, (str, os.PathLike)):
            raise TypeError(f"target must be a path or an open Store, not {type(target).__name__}")
        db = connect(target)
    try:
        n_existing_workers, n_existing_tasks = _contents(db)
        if n_existing_workers or n_existing_tasks:
            if not overwrite:
                raise ValueError(
                    f"target {db.path!r} already holds {n_existing_workers} workers and "
                    f"{n_existing_tasks} tasks; pass overwrite=True to replace them"
                )
            _clear(db)
        clock_before = db.clock
        clock = clock_before if isinstance(clock_before, FakeClock) else FakeClock(start_s)
        clock.set(start_s)
        db.clock = clock
        began = time.perf_counter()
        try:
            sim = _Simulation(
                db,
                clock,
                workers=n_workers,
                start=start_s,
                duration=duration_s,
                seed=seed,
                progress=progress,
            )
            sim.run()
        finally:
            if clock is not clock_before:
                db.clock = clock_before
        by_status = queue_metrics(db, now=start_s + duration_s)["queue_depth_by_status"]
        if owned and not db.in_memory:
            _finish_file(db)
        wall = time.perf_counter() - began
    finally:
        if owned:
            db.close()
    counts = dict(sim.counts)
    for status in ("completed", "failed", "queued", "processing"):
        counts[status] = int(by_status[status])
    return SimulationResult(
        path=db.path,
        seed=seed,
        start=_utc(start_s),
        end=_utc(start_s + duration_s),
        workers=n_workers,
        duration_s=duration_s,
        counts=counts,
        ground_truth=sim.ground_truth(),
        wall_time_s=wall,
    )
