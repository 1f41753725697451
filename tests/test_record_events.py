"""Celery events -> store rows, with synthetic event dicts (no broker, no workers).

Each test feeds the dicts Celery's EventReceiver hands over through ``from_celery`` and
``EventWriter`` and checks the rows against what the events say, worked out by hand.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import qanalytics as qa
from qanalytics.cli import main
from qanalytics.read.coverage import unobserved_intervals
from qanalytics.record.celery import from_celery, redact_url
from qanalytics.write.events import EventWriter, RecordedEvent

T0 = 1_700_000_000.0  # the fake clock fixture starts here

W1 = "celery@w1"
W2 = "celery@w2"
NOW = T0 + 1000


def ev(kind: str, t: float, hostname: str | None = W1, **fields: Any) -> dict[str, Any]:
    event = {"type": kind, "timestamp": T0 + t, "utcoffset": 0, "pid": 4242, "clock": 1}
    if hostname is not None:
        event["hostname"] = hostname
    event.update(fields)
    return event


def online(t: float, hostname: str = W1) -> dict[str, Any]:
    return ev(
        "worker-online",
        t,
        hostname,
        freq=2.0,
        sw_ident="py-celery",
        sw_ver="5.4.0",
        sw_sys="Linux",
        active=0,
        processed=0,
    )


def beat(t: float, hostname: str = W1) -> dict[str, Any]:
    return ev("worker-heartbeat", t, hostname, freq=2.0, sw_ident="py-celery", sw_ver="5.4.0",
              sw_sys="Linux", active=1, processed=3, loadavg=[0.1, 0.1, 0.1])


def apply(db: qa.Store, events: list[dict[str, Any]], *, batches: int = 1) -> EventWriter:
    writer = EventWriter(db)
    mapped = [from_celery(e) for e in events]
    assert all(m is not None for m in mapped)
    size = max(1, math.ceil(len(mapped) / batches))
    for i in range(0, len(mapped), size):
        writer.apply([m for m in mapped[i : i + size] if m is not None])
    return writer


def _iso(t: float) -> str:
    return pd.Timestamp(T0 + t, unit="s", tz="UTC").isoformat()


def utc(t: float) -> pd.Timestamp:
    return pd.Timestamp(T0 + t, unit="s", tz="UTC")


def test_from_celery_keeps_what_the_store_needs() -> None:
    e = from_celery(online(0.0))
    assert e == RecordedEvent(
        kind="worker-online",
        at=T0,
        worker=W1,
        capabilities={
            "hostname": W1,
            "pid": 4242,
            "freq": 2.0,
            "sw_ident": "py-celery",
            "sw_ver": "5.4.0",
            "sw_sys": "Linux",
        },
    )
    received = from_celery(
        ev("task-received", 5, uuid="u-1", name="app.add", retries=2, eta=_iso(30))
    )
    assert received is not None
    assert (received.task, received.name, received.retries) == ("u-1", "app.add", 2)
    assert received.eta == pytest.approx(T0 + 30)
    naive = from_celery(ev("task-received", 5, uuid="u", name="n", eta="2023-11-14T22:13:50"))
    assert naive is not None and naive.eta == pytest.approx(T0 + 30)  # naive means UTC
    revoked = from_celery(ev("task-revoked", 1, uuid="u", terminated=True, signum=15))
    assert revoked is not None and revoked.error == "revoked: terminated by signal 15"
    retried = from_celery(
        ev("task-retried", 1, uuid="u", exception="Retry(Retry(...), KeyError('a, b'), 0.2)")
    )
    assert retried is not None and retried.error == "KeyError('a, b')"  # the reason inside
    # What the recorder does not keep, or cannot place.
    assert from_celery(ev("task-progress", 1, uuid="u")) is None
    assert from_celery(ev("task-started", 1)) is None  # no uuid
    assert from_celery(ev("worker-heartbeat", 1, hostname=None)) is None
    assert from_celery({"type": "task-started", "uuid": "u", "timestamp": "soon"}) is None
    assert from_celery({"type": "worker-heartbeat", "hostname": W1}) is None
    assert from_celery("not a dict") is None  # type: ignore[arg-type]


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("amqp://user:pw@host//") == "amqp://user:***@host//"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
    assert redact_url("redis://host/0?password=pw") == "redis://host/0?password=***"


def test_a_task_from_receipt_to_success(db: qa.Store) -> None:
    apply(
        db,
        [
            online(0),
            ev("task-received", 1, uuid="u-1", name="app.add", retries=0),
            ev("task-started", 1.5, uuid="u-1"),
            beat(2),
            ev("task-succeeded", 3, uuid="u-1", runtime=1.4, result="3"),
            beat(4),
            ev("worker-offline", 6),
        ],
    )
    w = qa.workers(db, now=NOW, include_removed=True)
    assert w["worker_id"].tolist() == [W1] and w["state"].tolist() == ["removed"]
    assert w["removed_at"].iloc[0] == utc(6)
    assert w["cap_sw_ident"].iloc[0] == "py-celery" and w["cap_pid"].iloc[0] == 4242
    assert w["cap_freq"].iloc[0] == 2.0 and w["cap_sw_sys"].iloc[0] == "Linux"
    assert w["tasks_completed"].iloc[0] == 1
    h = qa.heartbeats(db, now=NOW)
    assert h["at"].tolist() == [utc(0), utc(2), utc(4)]  # the online event is a beat too
    t = qa.tasks(db, now=NOW)
    assert len(t) == 1
    row = t.iloc[0]
    assert (row["external_id"], row["type"], row["status"]) == ("u-1", "app.add", "completed")
    assert row["attempts"] == 1 and row["worker_id"] == W1
    assert (row["created_at"], row["finished_at"]) == (utc(1), utc(3))
    # run_s is Celery's runtime, measured where the task ran: the attempt starts that long
    # before the worker reported the success (its main process announced the start at 1.5).
    assert row["run_s"] == pytest.approx(1.4, abs=1e-6)
    assert row["started_at"].timestamp() == pytest.approx(T0 + 1.6, abs=1e-6)
    assert row["wait_s"] == pytest.approx(0.6, abs=1e-6)
    # The beat during the task says what the worker held.
    assert h["task_id"].tolist()[1] == row["id"] and pd.isna(h["task_id"].tolist()[2])
    events = qa.worker_events(db, now=NOW)
    assert events["event"].tolist() == ["registered", "removed"]
    assert events["at"].tolist() == [utc(0), utc(6)]


def _retry_stream() -> list[dict[str, Any]]:
    return [
        online(0),
        online(0, W2),
        ev("task-sent", 0.5, hostname="producer", uuid="u-r", name="app.flaky", retries=0),
        ev("task-received", 1, uuid="u-r", name="app.flaky", retries=0),
        ev("task-started", 2, uuid="u-r"),
        ev("task-retried", 4, uuid="u-r", exception="ConnectionError('down')"),
        ev("task-received", 4.2, W2, uuid="u-r", name="app.flaky", retries=1, eta=_iso(10)),
        ev("task-started", 10, W2, uuid="u-r"),
        ev("task-retried", 12, W2, uuid="u-r", exception="ConnectionError('still down')"),
        ev("task-received", 12.2, uuid="u-r", name="app.flaky", retries=2, eta=_iso(20)),
        ev("task-started", 20, uuid="u-r"),
        ev("task-failed", 23, uuid="u-r", exception="ConnectionError('gave up')"),
        ev("task-received", 30, uuid="u-ok", name="app.add", retries=0),
        ev("task-started", 31, uuid="u-ok"),
        ev("task-succeeded", 33, uuid="u-ok", runtime=1.9),
        ev("task-received", 40, uuid="u-rev", name="app.slow", retries=0),
        ev("task-started", 41, W2, uuid="u-rev"),
        ev("task-revoked", 45, W2, uuid="u-rev", terminated=True, signum=15),
        ev("task-received", 50, uuid="u-q", name="app.add", retries=0),
        ev("task-revoked", 51, uuid="u-q"),
    ]


def test_retries_are_attempts_and_the_last_failure_is_final(db: qa.Store) -> None:
    apply(db, _retry_stream())
    t = qa.tasks(db, now=NOW).set_index("external_id")
    flaky = t.loc["u-r"]
    assert flaky["status"] == "failed" and flaky["attempts"] == 3
    assert flaky["type"] == "app.flaky" and flaky["error"] == "ConnectionError('gave up')"
    assert flaky["created_at"] == utc(0.5)  # task-sent is the creation
    a = qa.attempts(db, now=NOW)
    mine = a[a["task_id"] == flaky["id"]]
    assert mine["attempt"].tolist() == [1, 2, 3]
    assert mine["outcome"].tolist() == ["failed", "failed", "failed"]
    assert mine["worker_id"].tolist() == [W1, W2, W1]
    assert mine["claimed_at"].tolist() == [utc(2), utc(10), utc(20)]
    assert mine["finished_at"].tolist() == [utc(4), utc(12), utc(23)]
    assert mine["error"].tolist()[0] == "ConnectionError('down')"
    # Between a retry and the next start the task is queued, and not before its eta.
    between = qa.tasks(db, now=T0 + 8).set_index("external_id").loc["u-r"]
    assert between["status"] == "queued" and between["attempts"] == 1
    assert qa.get_task(db, int(flaky["id"])).run_after == utc(20).to_pydatetime()
    assert t.loc["u-ok", "status"] == "completed"
    assert t.loc["u-rev", "status"] == "cancelled"
    assert t.loc["u-rev", "error"] == "revoked: terminated by signal 15"
    rev = a[a["task_id"] == t.loc["u-rev", "id"]]
    assert rev["outcome"].tolist() == ["cancelled"]
    assert t.loc["u-q", "status"] == "cancelled" and t.loc["u-q", "attempts"] == 0
    retry = qa.retry_outcomes(db, now=NOW).set_index("attempt")
    assert retry.loc[1, "reached"] == 3 and retry.loc[3, "failed"] == 1


def _dump(db: qa.Store) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "workers": "SELECT worker_id, capabilities, registered_at, last_heartbeat_at,"
        " removed_at FROM workers ORDER BY worker_id",
        "worker_events": "SELECT w.worker_id, e.at, e.event FROM worker_events e"
        " JOIN workers w USING (worker_key) ORDER BY w.worker_id, e.at, e.event",
        "heartbeats": "SELECT w.worker_id, h.at, t.external_id FROM heartbeats h"
        " JOIN workers w USING (worker_key) LEFT JOIN tasks t ON t.id = h.task_id"
        " ORDER BY w.worker_id, h.at",
        "tasks": "SELECT external_id, type, status, attempts, created_at, run_after,"
        " finished_at, error FROM tasks ORDER BY external_id",
        "attempts": "SELECT t.external_id, a.attempt, w.worker_id, a.claimed_at,"
        " a.finished_at, a.outcome, a.error FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " JOIN workers w ON w.worker_key = a.worker_key ORDER BY t.external_id, a.attempt",
    }
    dump = {name: [tuple(r) for r in db.query(sql)] for name, sql in queries.items()}
    # Capabilities as values: PostgreSQL's jsonb orders keys its own way.
    dump["workers"] = [(r[0], json.loads(r[1]), *r[2:]) for r in dump["workers"]]
    return dump


def assert_counters_match_history(db: qa.Store) -> None:
    """The workers' counters equal a plain count of the rows they count."""
    counted = db.query(
        "SELECT w.worker_id, w.heartbeats, w.tasks_completed, w.tasks_failed,"
        " (SELECT count(*) FROM heartbeats h WHERE h.worker_key = w.worker_key),"
        " (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "  AND a.outcome = 'completed'),"
        " (SELECT count(*) FROM attempts a WHERE a.worker_key = w.worker_key"
        "  AND a.outcome = 'failed')"
        " FROM workers w ORDER BY w.worker_id"
    )
    assert counted, "no workers recorded"
    for row in counted:
        assert tuple(row[1:4]) == tuple(row[4:7]), row[0]


def test_duplicated_events_change_nothing(db: qa.Store) -> None:
    stream = [*_retry_stream(), beat(60), beat(62), ev("worker-offline", 70, W2)]
    once = qa.connect(":memory:")
    apply(once, stream)
    expected = _dump(once)
    writer = apply(db, [e for e in stream for _ in range(2)])  # each event twice, one batch
    assert _dump(db) == expected
    assert writer.totals.applied == apply(qa.connect(":memory:"), stream).totals.applied
    assert writer.totals.applied + writer.totals.unchanged == 2 * len(stream)
    writer = apply(db, stream, batches=5)  # the whole stream again, later
    assert _dump(db) == expected
    assert writer.totals.applied == 0 and writer.totals.unchanged == len(stream)
    assert_counters_match_history(db)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shuffled_within_batches_is_applied_in_time_order(db: qa.Store, seed: int) -> None:
    stream = [*_retry_stream(), beat(60), ev("worker-offline", 70, W2)]
    once = qa.connect(":memory:")
    apply(once, stream)
    shuffled = stream[:]
    random.Random(seed).shuffle(shuffled)
    apply(db, shuffled, batches=1)
    assert _dump(db) == _dump(once)
    assert_counters_match_history(db)


def test_task_events_arriving_late_across_batches(db: qa.Store) -> None:
    workers = [online(0), online(0, W2)]
    tasks = [e for e in _retry_stream() if e["type"].startswith("task-")]
    once = qa.connect(":memory:")
    apply(once, workers + tasks)
    # Every task event in a batch of its own, newest first.
    apply(db, workers + tasks[::-1], batches=len(workers) + len(tasks))
    got, expected = _dump(db), _dump(once)
    assert got["attempts"] == expected["attempts"]
    assert_counters_match_history(db)
    # run_after (the last countdown) is not rebuilt from receipts that arrive after the
    # task ended; every other column is.
    assert [r[:5] + r[6:] for r in got["tasks"]] == [r[:5] + r[6:] for r in expected["tasks"]]


def test_a_task_first_seen_mid_flight(db: qa.Store) -> None:
    # The recorder started after the worker came online and after the task started.
    apply(
        db,
        [
            beat(10),
            ev("task-succeeded", 11, uuid="u-mid", runtime=4.0),
            ev("task-failed", 12, uuid="u-mid2", exception="KeyError('x')"),
            ev("task-started", 13, W2, uuid="u-open"),
        ],
    )
    t = qa.tasks(db, now=NOW).set_index("external_id")
    assert t.loc["u-mid", "type"] == "unknown" and t.loc["u-mid", "status"] == "completed"
    assert t.loc["u-mid", "started_at"] == utc(7)  # dated from the runtime
    assert t.loc["u-mid", "created_at"] == utc(7)
    assert t.loc["u-mid2", "status"] == "failed" and t.loc["u-mid2", "attempts"] == 1
    assert t.loc["u-open", "status"] == "processing" and t.loc["u-open", "worker_id"] == W2
    # The worker first seen by a beat is registered there; W2 only through a task event,
    # which is no beat.
    w = qa.workers(db, now=T0 + 13).set_index("worker_id")
    assert w.loc[W1, "registered_at"] == utc(10) and w.loc[W1, "heartbeats"] == 1
    assert w.loc[W2, "heartbeats"] == 0
    # A name arriving later fills in the type; the start arriving late keeps the start
    # dated from the runtime (run_s stays Celery's runtime), and replaces a start that
    # nothing dated (a failure carries no runtime).
    apply(db, [ev("task-received", 6, uuid="u-mid", name="app.late"),
               ev("task-started", 6.5, uuid="u-mid"),
               ev("task-started", 11.5, uuid="u-mid2")])
    t = qa.tasks(db, now=NOW).set_index("external_id")
    row = t.loc["u-mid"]
    assert row["type"] == "app.late" and row["attempts"] == 1
    assert row["created_at"] == utc(6) and row["started_at"] == utc(7)
    assert row["run_s"] == 4.0
    assert t.loc["u-mid2", "started_at"] == utc(11.5) and t.loc["u-mid2", "attempts"] == 1


def test_offline_then_online_revives_and_killed_worker_holds_its_task(db: qa.Store) -> None:
    apply(
        db,
        [
            online(0),
            beat(2),
            ev("worker-offline", 3),
            online(10),
            beat(12),
            ev("task-received", 12.5, uuid="u-k", name="app.long"),
            ev("task-started", 13, uuid="u-k"),
            beat(14),
            beat(16),  # then SIGKILL: no goodbye, no more beats
        ],
    )
    events = qa.worker_events(db, now=NOW)["event"].tolist()
    assert events == ["registered", "removed", "registered"]
    w = qa.workers(db, now=T0 + 60, active_within="5s", stale_after="10s").iloc[0]
    assert w["state"] == "stale" and w["last_heartbeat_at"] == utc(16)
    out = qa.outages(db, now=T0 + 60)
    ongoing = out[out["ongoing"]]
    assert len(ongoing) == 1 and ongoing["start"].iloc[0] == utc(16)
    task_id = int(qa.tasks(db, now=NOW)["id"].iloc[0])
    assert ongoing["tasks_in_flight"].iloc[0] == [task_id]
    assert w["current_task_id"] == task_id
    # The silence between goodbye and return is no outage.
    assert not ((out["start"] >= utc(2)) & (out["start"] < utc(10))).any()


def test_a_late_goodbye_after_the_return(db: qa.Store) -> None:
    apply(db, [online(0), beat(2), online(10), beat(12)])
    apply(db, [ev("worker-offline", 3)])  # arrives after the worker came back
    w = qa.workers(db, now=T0 + 13, include_removed=True).iloc[0]
    assert w["state"] == "active"
    events = qa.worker_events(db, now=NOW)
    assert events["event"].tolist() == ["registered", "removed", "updated", "registered"]
    assert qa.workers(db, now=T0 + 5, include_removed=True)["state"].tolist() == ["removed"]


def test_unknown_kinds_and_bad_input(db: qa.Store) -> None:
    writer = EventWriter(db)
    result = writer.apply([RecordedEvent(kind="task-progress", at=T0, task="u")])
    assert result.ignored == 1 and result.applied == 0
    result = writer.apply([RecordedEvent(kind="task-started", at=math.nan, task="u", worker=W1)])
    assert result.ignored == 1
    with pytest.raises(TypeError, match="RecordedEvent"):
        writer.apply([{"type": "task-started"}])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="worker"):
        writer.apply([RecordedEvent(kind="worker-heartbeat", at=T0, worker="x" * 500)])
    # The failed batch wrote nothing and the writer still works.
    assert db.query("SELECT count(*) FROM workers")[0][0] == 0
    writer.apply([from_celery(beat(1))])  # type: ignore[list-item]
    assert db.query("SELECT count(*) FROM heartbeats")[0][0] == 1
    with pytest.raises(ValueError, match="source"):
        writer.start_coverage("", T0)


def test_readonly_store_is_refused(file_db: qa.Store) -> None:
    path = file_db.path
    with qa.connect(path, readonly=True) as ro, pytest.raises(qa.ReadOnlyError):
        EventWriter(ro)


def test_coverage_periods_and_unobserved_intervals(db: qa.Store) -> None:
    assert unobserved_intervals(db, now=NOW) == []  # no recorder: everything observed
    writer = EventWriter(db)
    writer.start_coverage("celery redis://h/0", T0 + 10)
    writer.apply([], seen_at=T0 + 20)
    writer.apply([], seen_at=T0 + 15)  # the clock never moves a period back
    writer.end_coverage(T0 + 30)
    writer.start_coverage("celery redis://h/0", T0 + 50)
    writer.apply([], seen_at=T0 + 60)  # then the recorder died without closing it
    rows = db.query("SELECT started_at, last_seen_at, ended_at FROM recorder_coverage ORDER BY id")
    assert [tuple(r) for r in rows] == [(T0 + 10, T0 + 30, T0 + 30), (T0 + 50, T0 + 60, None)]
    assert unobserved_intervals(db, since=T0, now=T0 + 100) == [
        (T0, T0 + 10),
        (T0 + 30, T0 + 50),
        (T0 + 60, T0 + 100),
    ]
    # As of a moment inside the second period, only what lay before it.
    assert unobserved_intervals(db, since=T0 + 20, now=T0 + 55) == [(T0 + 30, T0 + 50)]


def _two_periods(db: qa.Store, *, coverage: bool) -> None:
    """w1 beats every 2 s from 0 to 200 s; w2 too until it dies after its beat at 80 s.

    With `coverage`, the recorder listened over [0, 21] and [59, 100] only, so it recorded
    the beats in those periods; without it, the same beats were written by other means.
    """
    heard = [t for t in range(0, 201, 2) if t <= 21 or 59 <= t <= 100]
    events = [online(0), online(0, W2)]
    events += [beat(t) for t in heard if t > 0]
    events += [beat(t, W2) for t in heard if 0 < t <= 80]
    writer = EventWriter(db)
    if coverage:
        writer.start_coverage("celery redis://h/0", T0)
        writer.apply([e for e in map(from_celery, events) if e and e.at <= T0 + 21])
        writer.end_coverage(T0 + 21)
        writer.start_coverage("celery redis://h/0", T0 + 59)
        writer.apply([e for e in map(from_celery, events) if e and e.at >= T0 + 59])
        writer.end_coverage(T0 + 100)
    else:
        writer.apply([e for e in map(from_celery, events) if e])


def test_a_silence_while_nobody_listened_is_not_an_outage(db: qa.Store) -> None:
    _two_periods(db, coverage=True)
    # By default only silences that were heard are outages: w2's death.
    heard = qa.outages(db, now=T0 + 100)
    assert heard["worker_id"].astype(str).tolist() == [W2]
    assert heard["ended_by"].astype(str).tolist() == ["still silent"]
    # The stretch itself is a frame of its own.
    gap = qa.unobserved(db, now=T0 + 100)
    assert list(zip(gap["start"], gap["end"], strict=True)) == [(utc(21), utc(59))]
    out = qa.outages(db, now=T0 + 100, include_unobserved=True).set_index("worker_id")
    # The recorder's own downtime: each worker's silence from 20 s to 60 s is not observed.
    assert out.loc[W1, "ended_by"] == "not observed"
    assert (out.loc[W1, "start"], out.loc[W1, "end"]) == (utc(20), utc(60))
    w2 = out.loc[[W2]]
    assert w2["ended_by"].astype(str).tolist() == ["not observed", "still silent"]
    # w2's death was heard (20 s of silence while listening): an ongoing outage from its
    # last beat, also when read long after the recorder stopped.
    later = qa.outages(db, now=T0 + 500)
    dead = later[later["worker_id"] == W2].iloc[-1]
    assert dead["start"] == utc(80) and dead["ended_by"] == "still silent" and dead["ongoing"]
    # Uptime leaves the unobserved 21..59 out: w1 was alive whenever anyone listened.
    up = qa.uptime(db, freq="100s", since=T0, until=T0 + 100, now=T0 + 100)
    frac = up.set_index("worker_id")["alive_fraction"]
    assert frac[W1] == pytest.approx(1.0)
    # w2: alive from 0 to its last beat at 80 (through the unobserved silence), of which
    # 21 + 21 s were observed, out of 21 + 41 observed seconds.
    assert frac[W2] == pytest.approx((21 + 21) / (21 + 41))
    # A bucket nobody listened to at all is NaN, not 0.
    mid = qa.uptime(db, freq="10s", since=T0 + 30, until=T0 + 50, now=T0 + 100)
    assert mid["alive_fraction"].isna().all() and len(mid) == 4


def test_not_observed_silences_keep_the_window_edge_rules(db: qa.Store) -> None:
    _two_periods(db, coverage=True)
    # A window starting inside the unobserved silence: it is reported whole (true start
    # before `since`) and still as not observed; w2's death after the window starts too.
    out = qa.outages(db, since=T0 + 40, until=T0 + 100, now=T0 + 100, include_unobserved=True)
    rows = [
        (str(r.worker_id), r.start, r.end, str(r.ended_by)) for r in out.itertuples()
    ]
    assert rows == [
        (W1, utc(20), utc(60), "not observed"),
        (W2, utc(20), utc(60), "not observed"),
        (W2, utc(80), utc(100), "still silent"),
    ]
    # A window after both silences began: only w2's ongoing outage, reported whole from
    # its last beat, with thresholds measured from the beats before the window.
    late = qa.outages(db, since=T0 + 90, until=T0 + 100, now=T0 + 100)
    assert [(str(r.worker_id), r.start, str(r.ended_by)) for r in late.itertuples()] == [
        (W2, utc(80), "still silent")
    ]
    # Uptime of a window that starts inside the unobserved silence: 40..59 is left out,
    # so w1 was alive for all of the 41 observed seconds and w2 for 21 of them.
    up = qa.uptime(db, freq="100s", since=T0 + 40, until=T0 + 100, now=T0 + 100)
    frac = up.set_index("worker_id")["alive_fraction"]
    assert frac[W1] == pytest.approx(1.0)
    assert frac[W2] == pytest.approx(21 / 41)


def test_alive_intervals_span_a_silence_nobody_heard(db: qa.Store) -> None:
    _two_periods(db, coverage=True)
    spans = qa.alive_intervals(db, since=T0, until=T0 + 100, now=T0 + 100)
    got = [
        (str(r.worker_id), r.start.timestamp() - T0, r.end.timestamp() - T0)
        for r in spans.itertuples()
    ]
    # w1 alive throughout (the unheard 20..60 is no evidence of death); w2 up to its
    # last beat at 80, after which a silence was heard.
    assert got == [(W1, 0.0, 100.0), (W2, 0.0, 80.0)]


def test_without_coverage_rows_the_same_silence_is_an_outage(db: qa.Store) -> None:
    _two_periods(db, coverage=False)
    out = qa.outages(db, now=T0 + 100)
    w1 = out[out["worker_id"] == W1]
    assert w1["ended_by"].astype(str).tolist() == ["resumed"]
    up = qa.uptime(db, freq="100s", since=T0, until=T0 + 100, now=T0 + 100)
    assert up.set_index("worker_id")["alive_fraction"][W1] == pytest.approx(0.6)



@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker", "redis://h:1/0", "--db", "{db}", "--flush-interval", "0"],
         "Error: --flush-interval must be more than 0 seconds\n"),
        (["--broker", "redis://h:1/0"],
         "Error: no queue store given: pass --db PATH or set QANALYTICS_DB\n"),
    ],
)
def test_record_celery_command_refuses_bad_options(
    tmp_path: Path, args: list[str], message: str
) -> None:
    path = tmp_path / "x.db"
    result = CliRunner().invoke(
        main,
        ["record", "celery", *(a.replace("{db}", str(path)) for a in args)],
        env={"QANALYTICS_DB": None, "CELERY_BROKER_URL": None},
    )
    assert (result.exit_code, result.output) == (2, message)
    assert not path.exists()  # refused before any store was created


def test_recorder_keeps_the_summary_tiers_fresh(db: qa.Store) -> None:
    from qanalytics.record.celery import CeleryRecorder

    # Two hours of 2 s beats from one worker, with a silence of five minutes.
    beats = [t for t in range(0, 7200, 2) if not 3000 <= t < 3300]
    writer = apply(db, [online(0), *[beat(t) for t in beats]])
    expected = qa.outages(db, now=T0 + 7200, min_gap=30)
    clock_at = [T0 + 7200.0]
    rec = CeleryRecorder("redis://localhost:6379/0", db, clock=lambda: clock_at[0],
                         summarize_every=600, summarize_lag=1800)
    assert rec._maybe_summarize(writer, 100.0)
    mark = db.query("SELECT value FROM meta WHERE key = 'heartbeats_summarized_until'")
    assert float(mark[0][0]) == T0 + 7200 - 1800
    got = qa.outages(db, now=T0 + 7200, min_gap=30)  # the silence is read from the tiers
    assert list(got["resolution"].astype(str)) == ["summary"]
    pd.testing.assert_frame_equal(got.drop(columns="resolution"),
                                  expected.drop(columns="resolution"))
    clock_at[0] += 3600
    assert not rec._maybe_summarize(writer, 650.0)  # not due yet
    assert rec._maybe_summarize(writer, 701.0)
    mark = db.query("SELECT value FROM meta WHERE key = 'heartbeats_summarized_until'")
    assert float(mark[0][0]) == T0 + 7200 + 3600 - 1800
    with pytest.raises(ValueError, match="summarize_every"):
        CeleryRecorder("redis://localhost:6379/0", db, summarize_every=0)
    never = CeleryRecorder("redis://localhost:6379/0", db, summarize_every=None)
    assert not never._maybe_summarize(writer, 1e9)


# -- a retry reported late: every order a prefork fleet delivers ---------------------------
#
# With ``self.retry(countdown=0)`` the pool process of W1 publishes the retry (and its
# task-sent) while the task runs; W2 receives, runs and finishes it before W1's main process
# gets the result and sends task-retried. Events from one process arrive in the order it
# sent them; events from different processes interleave in any order.


def _late_retry_senders(final: str) -> list[list[dict[str, Any]]]:
    end = (
        ev("task-succeeded", 3.5, W2, uuid="u-x", runtime=0.5, result="1")
        if final == "succeeded"
        else ev("task-failed", 3.5, W2, uuid="u-x", exception="ValueError('final')")
    )
    return [
        [ev("task-sent", 0.5, hostname="producer", uuid="u-x", name="app.flaky", retries=0)],
        [  # W1's main process: the retry is reported last, after W2 finished it
            ev("task-received", 1, uuid="u-x", name="app.flaky", retries=0),
            ev("task-started", 2, uuid="u-x"),
            ev("task-retried", 4, uuid="u-x", exception="ValueError('try 0')"),
        ],
        # W1's pool process publishes the retry (with task_send_sent_event).
        [ev("task-sent", 2.5, uuid="u-x", name="app.flaky", retries=1, eta=_iso(2.5))],
        [  # W2's main process
            ev("task-received", 2.6, W2, uuid="u-x", name="app.flaky", retries=1, eta=_iso(2.5)),
            ev("task-started", 2.8, W2, uuid="u-x"),
            end,
        ],
    ]


def _interleavings(senders: list[list[Any]]) -> Any:
    """Every merge of the senders' sequences that keeps each sender's own order."""
    if all(not s for s in senders):
        yield []
        return
    for i, seq in enumerate(senders):
        if seq:
            rest = [*senders[:i], seq[1:], *senders[i + 1 :]]
            for tail in _interleavings(rest):
                yield [seq[0], *tail]


def _as(events: list[dict[str, Any]], uuid: str) -> list[dict[str, Any]]:
    return [{**e, "uuid": uuid} for e in events]


def _task_story(db: qa.Store, uuid: str) -> tuple[Any, ...]:
    """What the store says about one task and its attempts, for comparison."""
    # run_after is the last countdown seen while the task was queued: which receipt found
    # it queued depends on the order, so it is left out.
    task = db.query(
        "SELECT t.type, t.status, t.attempts, t.max_attempts, t.created_at, t.started_at,"
        " t.finished_at, w.worker_id, t.error FROM tasks t"
        " LEFT JOIN workers w ON w.worker_key = t.worker_key WHERE t.external_id = ?",
        (uuid,),
    )
    attempts = db.query(
        "SELECT a.attempt, w.worker_id, a.claimed_at, a.finished_at, a.outcome, a.error"
        " FROM attempts a JOIN tasks t ON t.id = a.task_id"
        " JOIN workers w ON w.worker_key = a.worker_key WHERE t.external_id = ?"
        " ORDER BY a.attempt",
        (uuid,),
    )
    return tuple(task[0]), [tuple(r) for r in attempts]


@pytest.mark.parametrize("final", ["succeeded", "failed"])
def test_a_late_retry_in_every_order_a_prefork_fleet_delivers(
    db: qa.Store, final: str
) -> None:
    senders = _late_retry_senders(final)
    orders = list(_interleavings(senders))
    assert len(orders) == math.factorial(8) // (6 * 6) == 1120  # 8! / (1! 3! 1! 3!)
    writer = apply(db, [online(0), online(0, W2)])
    # The first order is the stamps' order: check it by hand.
    writer.apply([e for e in map(from_celery, orders[0]) if e])
    t = qa.tasks(db, now=NOW).iloc[0]
    assert t["status"] == ("completed" if final == "succeeded" else "failed")
    assert t["worker_id"] == W2 and t["attempts"] == 2
    assert t["error"] == (None if final == "succeeded" else "ValueError('final')")
    a = qa.attempts(db, now=NOW)
    assert a["worker_id"].tolist() == [W1, W2]
    assert a["outcome"].tolist() == ["failed", "completed" if final == "succeeded" else "failed"]
    assert a["error"].tolist()[0] == "ValueError('try 0')"
    assert a["finished_at"].tolist() == [utc(4), utc(3.5)]
    if final == "succeeded":
        assert a["run_s"].tolist()[1] == pytest.approx(0.5, abs=1e-6)
    else:
        assert a["claimed_at"].tolist()[1].timestamp() == pytest.approx(T0 + 2.8)
    done = int(final == "succeeded")
    w = qa.workers(db, now=NOW).set_index("worker_id")
    assert w.loc[W1, ["tasks_completed", "tasks_failed"]].tolist() == [0, 1]
    assert w.loc[W2, ["tasks_completed", "tasks_failed"]].tolist() == [done, 1 - done]
    m = qa.queue_metrics(db, now=NOW)
    assert m["queue_depth_by_status"].get("queued", 0) == 0
    assert m["success_rate"] == float(done)  # a fraction
    expected = _task_story(db, "u-x")
    # Every other order, each event in a batch of its own: applied in the order it arrived.
    for i, order in enumerate(orders[1:], start=1):
        for event in _as(order, f"u-x-{i}"):
            writer.apply([from_celery(event)])  # type: ignore[list-item]
        assert _task_story(db, f"u-x-{i}") == expected, [
            f"{e['type']}@{e['hostname']}" for e in order
        ]
    assert_counters_match_history(db)
    w = qa.workers(db, now=NOW).set_index("worker_id")
    assert w.loc[W1, "tasks_failed"] == len(orders)
    assert w.loc[W2, "tasks_completed"] == done * len(orders)
    assert qa.queue_metrics(db, now=NOW)["queue_depth_by_status"].get("queued", 0) == 0


def test_a_late_retry_reported_while_the_next_attempt_runs(db: qa.Store) -> None:
    # The retry's report arrives while W2 still runs the task: the task stays processing
    # on W2, and W1's attempt is failed, not abandoned.
    senders = _late_retry_senders("succeeded")
    events = [online(0), online(0, W2), *senders[0], *senders[1][:2], *senders[3][:2]]
    apply(db, [*events, senders[1][2]], batches=len(events) + 1)
    t = qa.tasks(db, now=T0 + 5).iloc[0]
    assert t["status"] == "processing" and t["worker_id"] == W2
    assert t["started_at"].timestamp() == pytest.approx(T0 + 2.8) and pd.isna(t["error"])
    a = qa.attempts(db, now=T0 + 5)
    assert a["outcome"].tolist()[0] == "failed" and pd.isna(a["outcome"].tolist()[1])
    # Read as of a moment before the report: W1's attempt was still open then.
    early = qa.attempts(db, now=T0 + 3)
    assert early["outcome"].isna().all()


def test_a_chain_of_late_retries_on_three_workers(db: qa.Store) -> None:
    # autoretry_for on three workers: W1 and W2 each report their retry after the next
    # attempt started; W3 (a solo worker, reporting in order) succeeds.
    w3 = "celery@w3"
    senders = [
        [ev("task-received", 1, uuid="u-c", name="app.auto", retries=0),
         ev("task-started", 1.1, uuid="u-c"),
         ev("task-retried", 2.5, uuid="u-c", exception="KeyError('a')")],
        [ev("task-received", 1.3, W2, uuid="u-c", name="app.auto", retries=1),
         ev("task-started", 1.4, W2, uuid="u-c"),
         ev("task-retried", 2.6, W2, uuid="u-c", exception="KeyError('b')")],
        [ev("task-received", 1.6, w3, uuid="u-c", name="app.auto", retries=2),
         ev("task-started", 1.7, w3, uuid="u-c"),
         ev("task-succeeded", 1.9, w3, uuid="u-c", runtime=0.15)],
    ]
    orders = list(_interleavings(senders))
    assert len(orders) == 1680  # 9! / (3! 3! 3!)
    writer = apply(db, [online(0), online(0, W2), online(0, w3), *orders[0]])
    t = qa.tasks(db, now=NOW).iloc[0]
    assert (t["status"], t["worker_id"], t["attempts"]) == ("completed", w3, 3)
    a = qa.attempts(db, now=NOW)
    assert a["worker_id"].tolist() == [W1, W2, w3]
    assert a["outcome"].tolist() == ["failed", "failed", "completed"]
    assert a["error"].tolist()[:2] == ["KeyError('a')", "KeyError('b')"]
    expected = _task_story(db, "u-c")
    for i, order in enumerate([*random.Random(22).sample(orders, 300), orders[-1]]):
        for event in _as(order, f"u-c-{i}"):
            writer.apply([from_celery(event)])  # type: ignore[list-item]
        assert _task_story(db, f"u-c-{i}") == expected, [
            f"{e['type']}@{e['hostname']}" for e in order
        ]
    assert_counters_match_history(db)
