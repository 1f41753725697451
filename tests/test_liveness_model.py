"""The liveness model (qanalytics.history.intervals): one rule for every liveness answer.

Each test reproduces a wrong answer of the two-rule code (fixed 60 s / 300 s states beside
3x-median outages) and checks the library against the plain-Python statement of the model
in ``liveness_reference``.
"""

from __future__ import annotations

import liveness_reference as reference
import pandas as pd
import pytest

import qanalytics as qa
from qanalytics.maintenance import prune, summarize_heartbeats

T0 = 1_700_000_000.0  # the fake clock fixture starts here


def _beats(db: qa.Store) -> dict[str, list[float]]:
    rows = db.query(
        "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
        " ORDER BY w.worker_id, h.at"
    )
    out: dict[str, list[float]] = {}
    for wid, at in rows:
        out.setdefault(wid, []).append(float(at))
    return out


def _states_agree_with_outages(db: qa.Store) -> None:
    """No worker is active in an ongoing outage; every stale worker is in one."""
    w = qa.workers(db).set_index("worker_id")
    out = qa.outages(db)
    ongoing = set(out.loc[out["ongoing"], "worker_id"].astype(str))
    for wid, row in w.iterrows():
        if row["state"] == "active":
            assert wid not in ongoing, wid
        if row["state"] == "stale":
            assert wid in ongoing, wid


def test_a_young_worker_is_not_in_an_outage(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "young")
    clock.advance(0.005)
    qa.heartbeat(db, "young")
    clock.advance(20)
    # The registration gap does not count: too few gaps, no fleet, so the 30 s default.
    expected = reference.intervals(_beats(db), now=clock())
    assert expected == {"young": reference.DEFAULT}
    w = qa.workers(db).iloc[0]
    assert w["state"] == "active"
    assert w["interval_s"] == reference.DEFAULT and w["interval_source"] == "default"
    assert qa.outages(db).empty
    up = qa.uptime(db, freq="1min")
    assert up["alive_fraction"].tolist() == [1.0]
    _states_agree_with_outages(db)


def test_one_rule_for_a_celery_rhythm_and_a_30s_rhythm(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "celery", interval="2s")
    qa.register_worker(db, "slow")
    for i in range(1, 31):
        clock.advance(2)
        qa.heartbeat(db, "celery")
        if i % 15 == 0:
            qa.heartbeat(db, "slow")
    # Learned: 'slow' needs five gaps after its registration gap.
    for _ in range(6):
        clock.advance(30)
        qa.heartbeat(db, "slow")
    qa.heartbeat(db, "celery")
    clock.advance(21)  # a killed Celery worker, 21 s later
    expected = reference.intervals(_beats(db), declared={"celery": 2.0}, now=clock())
    w = qa.workers(db).set_index("worker_id")
    assert w.loc["celery", "interval_s"] == expected["celery"] == 2.0
    assert w.loc["celery", "interval_source"] == "declared"
    assert w.loc["slow", "interval_s"] == pytest.approx(expected["slow"]) == 30.0
    assert w.loc["slow", "interval_source"] == "learned"
    assert w.loc["celery", "state"] == "stale"  # silent 10 intervals or more
    assert w.loc["slow", "state"] == "active"  # a 30 s fleet keeps today's feel
    _states_agree_with_outages(db)
    metrics = qa.queue_metrics(db)
    assert (metrics["active_workers"], metrics["stale_workers"]) == (1, 1)
    # The classic API keeps its fixed seconds: both beat within 60 s.
    classic = qa.QueueMonitoring(db).get_queue_metrics()
    assert (classic["active_workers"], classic["stale_workers"]) == (2, 0)
    clock.advance(80)  # slow silent 101 s: late after 3 x 30 s
    assert qa.workers(db).set_index("worker_id").loc["slow", "state"] == "late"
    _states_agree_with_outages(db)


def _thirty_second_worker(db: qa.Store, clock: qa.FakeClock) -> float:
    """Beats every 30 s for three hours, one 50 s gap in the first hour; its start."""
    qa.register_worker(db, "w")
    gap_at = 0.0
    for i in range(360):
        clock.advance(50 if i == 40 else 30)
        if i == 40:
            gap_at = clock()
        qa.heartbeat(db, "w")
    return gap_at


def test_tiers_give_the_raw_answer_or_say_they_cannot(db: qa.Store, clock: qa.FakeClock) -> None:
    end = _thirty_second_worker(db, clock)
    raw = qa.outages(db, min_gap="45s")
    assert [(r.start.timestamp(), r.end.timestamp()) for r in raw.itertuples()] == [(end - 50, end)]
    default_raw = qa.outages(db)
    assert default_raw.empty  # 50 s is under 3 x 30 s
    until = T0 + 7200
    summarize_heartbeats(db, until=until)
    # Summarized, the raw beats are still there: the same answers.
    assert qa.outages(db, min_gap="45s")[["start", "end"]].equals(raw[["start", "end"]])
    assert qa.outages(db).empty
    prune(db, keep="10min", now=clock())
    # Pruned: the tiers kept every silence over 60 s (2 x 30 s): the model's own answer
    # and any min_gap of 60 s or more are exact; a finer one is refused, not answered.
    assert qa.outages(db).empty
    assert qa.outages(db, min_gap="1min").empty
    with pytest.raises(ValueError, match="finer than the summary tiers kept"):
        qa.outages(db, min_gap="45s")


def test_recorder_downtime_is_not_an_outage_per_worker(db: qa.Store) -> None:
    from qanalytics.write.events import EventWriter, RecordedEvent

    writer = EventWriter(db)
    names = [f"celery@w{i}" for i in range(5)]
    caps = {"freq": 2.0}
    writer.start_coverage("celery redis://h/0", T0)
    writer.apply([RecordedEvent("worker-online", T0, worker=n, capabilities=caps) for n in names])
    writer.apply(
        [
            RecordedEvent("worker-heartbeat", T0 + t, worker=n)
            for t in range(2, 21, 2)
            for n in names
        ]
    )
    writer.end_coverage(T0 + 21)
    writer.start_coverage("celery redis://h/0", T0 + 35)  # the recorder was down 14 s
    writer.apply(
        [
            RecordedEvent("worker-heartbeat", T0 + t, worker=n)
            for t in range(36, 61, 2)
            for n in names
        ]
    )
    writer.end_coverage(T0 + 60)
    assert len(qa.outages(db, now=T0 + 60)) == 0
    assert len(qa.outages(db, now=T0 + 60, include_unobserved=True)) == len(names)
    gaps = qa.unobserved(db, now=T0 + 60)
    assert [
        (a.timestamp(), b.timestamp()) for a, b in zip(gaps["start"], gaps["end"], strict=True)
    ] == [(T0 + 21, T0 + 35)]


def test_a_stale_worker_names_the_task_it_held(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "holder")
    qa.register_worker(db, "other")
    task = qa.enqueue(db, "email")
    claimed = qa.claim(db, "holder")
    assert claimed is not None and claimed.id == task
    qa.heartbeat(db, "holder", task_id=task)
    for _ in range(40):
        clock.advance(30)
        qa.heartbeat(db, "other")
    assert qa.requeue_orphans(db) == [task]
    w = qa.workers(db).set_index("worker_id")
    row = w.loc["holder"]
    assert row["state"] == "stale"
    assert row["held_task_id"] == task and row["held_task_status"] == "queued"
    assert pd.isna(w.loc["other", "held_task_id"])
    out = qa.outages(db)
    ongoing = out[out["ongoing"] & (out["worker_id"] == "holder")]
    assert ongoing["tasks_in_flight"].iloc[0] == [task]


def test_lists_and_orphans_follow_the_model(db: qa.Store, clock: qa.FakeClock) -> None:
    """active_workers, stale_workers, find_orphans and requeue_orphans judge by one rule."""
    qa.register_worker(db, "celery", interval=2)
    qa.register_worker(db, "slow", interval=30)
    task = qa.enqueue(db, "email")
    assert qa.claim(db, "celery", lease="1h") is not None
    clock.advance(25)  # over ten of celery's 2 s beats, under three of slow's 30 s
    assert [w.worker_id for w in qa.stale_workers(db)] == ["celery"]
    assert [w.worker_id for w in qa.active_workers(db)] == ["slow"]
    frame = qa.workers(db).set_index("worker_id")["state"].astype(str).to_dict()
    assert frame == {"celery": "stale", "slow": "active"}
    # A fixed threshold still means what it says, and the classic API keeps 60 s / 300 s.
    assert qa.stale_workers(db, stale_after=300) == []
    assert {w.worker_id for w in qa.active_workers(db, within=60)} == {"celery", "slow"}
    monitor = qa.QueueMonitoring(db)
    assert monitor.get_stale_workers() == []
    orphans = qa.find_orphans(db)
    assert [(o.task_id, o.worker_id, o.reason) for o in orphans] == [
        (task, "celery", "worker stale")
    ]
    assert qa.find_orphans(db, stale_after="5min") == []
    assert qa.requeue_orphans(db) == [task]
    assert qa.get_task(db, task).status == "queued"
