"""The one worker-state rule: every reader and every SQL term classify a worker alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

import qanalytics as qa
from qanalytics.state import (
    ACTIVE_WITHIN_S,
    STALE_AFTER_S,
    check_thresholds,
    classify,
    classify_ages,
    state_sql,
)

T0 = 1_700_000_000.0  # the start of the `clock` fixture


def _edge_case(at: float) -> tuple[float, float]:
    """A last beat and a threshold where `last >= at - t` and `at - last <= t` disagree.

    ``at - t`` rounds, while ``at - last`` is exact for close values (Sterbenz), so a
    rule written one way in SQL and the other in pandas splits workers at the edge.
    """
    step = math.ulp(at)
    for tenths in range(1, 200):
        threshold = tenths / 10 + 0.05
        for k in range(-3, 4):
            last = at - threshold + k * step
            if (last >= at - threshold) != (at - last <= threshold):
                return last, threshold
    raise AssertionError("no edge case found")  # pragma: no cover


def test_edge_case_exists() -> None:
    last, threshold = _edge_case(T0 + 1000)
    assert (last >= T0 + 1000 - threshold) != (T0 + 1000 - last <= threshold)


def test_every_reader_agrees_at_the_edge(db: qa.Store, clock: qa.FakeClock) -> None:
    at = T0 + 1000
    last, threshold = _edge_case(at)
    qa.register_worker(db, "edge")
    clock.set(last)
    qa.heartbeat(db, "edge")
    clock.set(at)
    expected = classify(at - last, threshold, threshold)  # the rule by hand, in Python
    frame = qa.workers(db, active_within=threshold, stale_after=threshold)
    assert frame["state"].tolist() == [expected]
    metrics = qa.queue_metrics(db, active_within=threshold, stale_after=threshold)
    assert metrics["active_workers"] == int(expected == "active")
    assert metrics["stale_workers"] == int(expected == "stale")
    active = [w.worker_id for w in qa.active_workers(db, threshold)]
    stale = [w.worker_id for w in qa.stale_workers(db, threshold)]
    assert active == (["edge"] if expected == "active" else [])
    assert stale == (["edge"] if expected == "stale" else [])
    mon = qa.QueueMonitoring(db)
    assert [w.worker_id for w in mon.get_active_workers(threshold)] == active
    assert [w.worker_id for w in mon.get_stale_workers(threshold)] == stale


def test_vectorised_rule_matches_the_scalar_rule() -> None:
    ages = np.array([np.nan, -1.0, 0.0, 59.9, 60.0, 60.1, 299.9, 300.0, 300.1, 1e9])
    got = classify_ages(ages, 60.0, 300.0)
    assert got.tolist() == [classify(float(a), 60.0, 300.0) for a in ages]
    assert got.tolist() == [
        "stale", "active", "active", "active", "active", "late", "late", "late", "stale",
        "stale",
    ]  # fmt: skip
    removed = classify_ages(ages, 60.0, 300.0, removed=ages == 0.0)
    assert removed[2] == "removed" and removed[3] == "active"


def test_defaults_and_threshold_checks() -> None:
    assert (ACTIVE_WITHIN_S, STALE_AFTER_S) == (60.0, 300.0)
    assert check_thresholds("1min", "5min") == (60.0, 300.0)
    with pytest.raises(ValueError, match="must not exceed"):
        check_thresholds(600, 60)
    with pytest.raises(ValueError, match="'active' or 'stale'"):
        state_sql("late", "x", 0.0, 1.0)  # type: ignore[arg-type]
