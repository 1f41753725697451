"""The qanalytics schema: DDL and the ordered list of migrations.

The schema version lives in ``PRAGMA user_version``; ``PRAGMA application_id`` marks a
file as a qanalytics store. Migration *n* (1-based) takes a store from version *n - 1* to
*n*; a new store runs them all. Timestamps are REAL unix epoch seconds, UTC.
"""

from __future__ import annotations

__all__ = [
    "APPLICATION_ID",
    "COUNTERS_VERSION",
    "INTERVALS_VERSION",
    "MIGRATIONS",
    "OUTCOMES",
    "SCHEMA_VERSION",
    "TASK_STATUSES",
    "TIERS_VERSION",
]

#: ``PRAGMA application_id`` of a qanalytics store: "QANA" in ASCII.
APPLICATION_ID = 0x51414E41

TASK_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
OUTCOMES = ("completed", "failed", "abandoned", "cancelled")
WORKER_EVENTS = ("registered", "updated", "removed")

_V1 = """
CREATE TABLE workers (
    -- The integer key is what the large history tables store; the text id appears once.
    worker_key        INTEGER PRIMARY KEY,
    worker_id         TEXT NOT NULL UNIQUE,
    capabilities      TEXT NOT NULL DEFAULT '{}',
    registered_at     REAL NOT NULL,
    last_heartbeat_at REAL,
    removed_at        REAL
);

CREATE TABLE worker_events (
    id           INTEGER PRIMARY KEY,
    worker_key   INTEGER NOT NULL REFERENCES workers (worker_key),
    at           REAL NOT NULL,
    event        TEXT NOT NULL CHECK (event IN ('registered', 'updated', 'removed')),
    capabilities TEXT
);
CREATE INDEX worker_events_worker_at ON worker_events (worker_key, at);

CREATE TABLE heartbeats (
    worker_key INTEGER NOT NULL REFERENCES workers (worker_key),
    at         REAL NOT NULL,
    task_id    INTEGER
);
CREATE INDEX heartbeats_worker_at ON heartbeats (worker_key, at);
CREATE INDEX heartbeats_at ON heartbeats (at);

CREATE TABLE tasks (
    id           INTEGER PRIMARY KEY,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    priority     INTEGER NOT NULL DEFAULT 100,
    payload      TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    created_at   REAL NOT NULL,
    run_after    REAL NOT NULL,
    started_at   REAL,
    finished_at  REAL,
    lease_until  REAL,
    worker_key   INTEGER REFERENCES workers (worker_key),
    error        TEXT
);
-- Claiming: the next runnable queued task, lowest priority number first, then oldest.
CREATE INDEX tasks_claim ON tasks (priority, created_at, id, run_after, type)
    WHERE status = 'queued';
-- Counts by status and type, and the oldest queued task.
CREATE INDEX tasks_status_type ON tasks (status, type, created_at);
-- What each worker holds, and expired leases.
CREATE INDEX tasks_held ON tasks (worker_key, lease_until) WHERE status = 'processing';
CREATE INDEX tasks_created ON tasks (created_at);

CREATE TABLE attempts (
    task_id     INTEGER NOT NULL REFERENCES tasks (id),
    attempt     INTEGER NOT NULL CHECK (attempt >= 1),
    worker_key  INTEGER NOT NULL REFERENCES workers (worker_key),
    claimed_at  REAL NOT NULL,
    finished_at REAL,
    outcome     TEXT CHECK (outcome IN ('completed', 'failed', 'abandoned', 'cancelled')),
    error       TEXT,
    PRIMARY KEY (task_id, attempt)
);
CREATE INDEX attempts_worker ON attempts (worker_key, claimed_at);
CREATE INDEX attempts_claimed ON attempts (claimed_at);
"""

# Version 2: retention. Heartbeats older than the retention horizon are rolled up into
# one row per worker and minute (maintenance.prune), and small facts about the store, such
# as the moment before which raw heartbeats were pruned, live in a key/value table.
_V2 = """
CREATE TABLE heartbeat_rollups (
    worker_key   INTEGER NOT NULL REFERENCES workers (worker_key),
    minute       INTEGER NOT NULL,
    beats        INTEGER NOT NULL CHECK (beats >= 1),
    first_at     REAL NOT NULL,
    last_at      REAL NOT NULL CHECK (last_at >= first_at),
    last_task_id INTEGER,
    PRIMARY KEY (worker_key, minute)
) WITHOUT ROWID;
CREATE INDEX heartbeat_rollups_minute ON heartbeat_rollups (minute);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) WITHOUT ROWID;
"""

# Version 3: recording external queues (qanalytics.record). A task recorded from another
# queue keeps that queue's own id (Celery's task UUID) in ``external_id``, unique where set;
# ``recorder_coverage`` holds the periods a recorder was listening, so a silence outside
# them reads as "not observed" rather than as an outage of the workers.
_V3 = """
ALTER TABLE tasks ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX tasks_external_id ON tasks (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE recorder_coverage (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    started_at   REAL NOT NULL,
    last_seen_at REAL NOT NULL CHECK (last_seen_at >= started_at),
    ended_at     REAL CHECK (ended_at IS NULL OR ended_at >= started_at)
);
CREATE INDEX recorder_coverage_started ON recorder_coverage (started_at);
"""

# Version 4: counters. Each worker row counts its heartbeats (raw and rolled up) and its
# completed and failed attempts, kept by the write path and by prune in the same
# transaction as the rows they count, so workers() reads them instead of counting the
# history; the migration fills them once. attempts_finished finds what finished after a
# past `now` (subtracted from the counters; it covers that count) and the attempts still open.
_V4 = """
ALTER TABLE workers ADD COLUMN heartbeats INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN tasks_completed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN tasks_failed INTEGER NOT NULL DEFAULT 0;
UPDATE workers SET
  heartbeats = (SELECT count(*) FROM heartbeats h WHERE h.worker_key = workers.worker_key)
    + (SELECT IFNULL(sum(r.beats), 0) FROM heartbeat_rollups r
       WHERE r.worker_key = workers.worker_key),
  tasks_completed = (SELECT count(*) FROM attempts a WHERE a.worker_key = workers.worker_key
    AND a.outcome = 'completed'),
  tasks_failed = (SELECT count(*) FROM attempts a WHERE a.worker_key = workers.worker_key
    AND a.outcome = 'failed');
CREATE INDEX attempts_finished ON attempts
    (finished_at, worker_key, outcome, claimed_at, task_id);
"""

# Version 5: summary tiers, so that a year of history answers in seconds. prune() (or
# upkeep.summarize) folds each hour of raw heartbeats into one row per worker and day
# and keeps every silence worth knowing (longer than twice the hour's median interval,
# and any longer than a minute, or spanning a removal) with its exact start and end; the
# liveness reads take history before ``meta['heartbeats_summarized_until']`` from here.
# task_hours / attempt_hours count finishes per hour, type and outcome before
# ``meta['tasks_summarized_until']``; tasks_finished serves the finishes after it.
_V5 = """
CREATE TABLE heartbeat_days (
    worker_key   INTEGER NOT NULL REFERENCES workers (worker_key),
    day          INTEGER NOT NULL,
    beats        INTEGER NOT NULL CHECK (beats >= 1),
    first_at     REAL NOT NULL,
    last_at      REAL NOT NULL CHECK (last_at >= first_at),
    last_task_id INTEGER,
    median_gap_s REAL CHECK (median_gap_s IS NULL OR median_gap_s >= 0),
    PRIMARY KEY (worker_key, day)
) WITHOUT ROWID;
CREATE INDEX heartbeat_days_day ON heartbeat_days (day);

CREATE TABLE heartbeat_silences (
    worker_key INTEGER NOT NULL REFERENCES workers (worker_key),
    start_at   REAL NOT NULL,
    end_at     REAL NOT NULL CHECK (end_at > start_at),
    task_id    INTEGER,
    PRIMARY KEY (worker_key, start_at)
) WITHOUT ROWID;
CREATE INDEX heartbeat_silences_end ON heartbeat_silences (end_at);

CREATE TABLE task_hours (
    hour   INTEGER NOT NULL,
    type   TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    tasks  INTEGER NOT NULL CHECK (tasks >= 0),
    PRIMARY KEY (hour, type, status)
) WITHOUT ROWID;

CREATE TABLE attempt_hours (
    hour     INTEGER NOT NULL,
    type     TEXT NOT NULL,
    outcome  TEXT NOT NULL CHECK (outcome IN ('completed', 'failed', 'abandoned', 'cancelled')),
    attempts INTEGER NOT NULL CHECK (attempts >= 0),
    PRIMARY KEY (hour, type, outcome)
) WITHOUT ROWID;

-- By status and type first: one (status, type)'s finishes in a time range are one stretch
-- of the index, so a bucket's count is a seek and a count (success_rate, throughput).
CREATE INDEX tasks_finished ON tasks (status, type, finished_at) WHERE finished_at IS NOT NULL;

-- The longest attempt, in one lookup: bounds outages()' probes for tasks held.
CREATE INDEX attempts_duration ON attempts ((finished_at - claimed_at))
    WHERE finished_at IS NOT NULL;
"""

# Version 6: the liveness model (qanalytics.history.intervals). A registration may declare
# the worker's beat interval (worker_events.interval_s); the interval learned from a
# worker's first gaps is remembered on its row before prune can delete those beats; each
# summarized day says the gap above which every silence was kept (silences_over_s), so a
# read knows whether the tiers answer its threshold exactly.
_V6 = """
ALTER TABLE worker_events ADD COLUMN interval_s REAL CHECK (interval_s IS NULL OR interval_s > 0);
ALTER TABLE workers ADD COLUMN learned_interval_s REAL;
ALTER TABLE workers ADD COLUMN learned_at REAL;
ALTER TABLE heartbeat_days ADD COLUMN silences_over_s REAL;
UPDATE heartbeat_days SET silences_over_s = 60.0;
"""

#: Ordered migrations; entry ``i`` takes the schema from version ``i`` to ``i + 1``.
MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6]

#: The first schema version with the worker counters (``workers.heartbeats``,
#: ``tasks_completed``, ``tasks_failed``) and the ``attempts_finished`` index.
COUNTERS_VERSION = MIGRATIONS.index(_V4) + 1

#: The first schema version with the summary tiers (``heartbeat_days``,
#: ``heartbeat_silences``, ``task_hours``, ``attempt_hours``).
TIERS_VERSION = MIGRATIONS.index(_V5) + 1

#: The first schema version with declared and remembered beat intervals.
INTERVALS_VERSION = MIGRATIONS.index(_V6) + 1

#: The schema version this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)
