"""Every liveness answer on random fleets equals one plain-Python recomputation.

Random fleets (declared and learned intervals, silences of every length, removals and
revivals, recorder gaps) are written through the public API; ``outages()`` (with the
model's thresholds and with fixed `min_gap`), ``workers()`` states and
``alive_intervals()`` are compared with :mod:`liveness_reference`, which works from the
raw beats alone. The same answers must hold after ``summarize`` and after ``prune``
(where a fixed `min_gap` finer than the tiers may instead be refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import liveness_reference as reference
import pytest
from conftest import store_for
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import qanalytics as qa
from qanalytics import maintenance as mt
from qanalytics.write.events import EventWriter

T0 = 1_700_000_000.0
MIN_GAPS = (None, 7.0, 45.0, 120.0, 900.0)


@dataclass
class Fleet:
    """What was written: every worker's lives (beats, removal) and the recorder's gaps."""

    declared: dict[str, float] = field(default_factory=dict)
    lives: dict[str, list[tuple[list[float], float | None]]] = field(default_factory=dict)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    unheard: list[tuple[float, float]] = field(default_factory=list)
    end: float = T0

    def beats(self) -> dict[str, list[float]]:
        return {w: sorted(t for life, _ in lives for t in life) for w, lives in self.lives.items()}

    def removals(self) -> dict[str, list[float]]:
        return {w: [r for _, r in lives if r is not None] for w, lives in self.lives.items()}


_PAUSES = st.sampled_from([1.0, 1.0, 1.0, 2.5, 4.0, 12.0, 40.0])


@st.composite
def fleets(draw: Any) -> Fleet:
    fleet = Fleet()
    for n in range(draw(st.integers(1, 3))):
        wid = f"w{n}"
        interval = draw(st.sampled_from([2.0, 5.0, 10.0, 30.0]))
        if draw(st.booleans()):
            fleet.declared[wid] = interval
        t = T0 + draw(st.integers(0, 300))
        fleet.lives[wid] = []
        for _life in range(draw(st.integers(1, 2))):
            fleet.events.append((t, "register", wid))
            beats = [t]  # registering stamps a first beat
            for _ in range(draw(st.integers(1, 40))):
                jitter = draw(st.integers(-2, 2)) * 0.25  # exact in binary: times compare exactly
                t += interval * draw(_PAUSES) + jitter
                beats.append(t)
                fleet.events.append((t, "beat", wid))
            removal = None
            if draw(st.booleans()):
                t += interval * draw(st.sampled_from([0.5, 2.0, 20.0]))
                removal = t
                fleet.events.append((t, "remove", wid))
                t += draw(st.sampled_from([5.0, 600.0]))
            fleet.lives[wid].append((beats, removal))
            if removal is None:
                break
    last = max(t for t, _, _ in fleet.events)
    fleet.end = last + draw(st.sampled_from([1.0, 25.0, 400.0, 4000.0]))
    if draw(st.booleans()):
        # A recorder listened, with one gap somewhere in the history.
        a = T0 + draw(st.integers(0, int(fleet.end - T0) - 1))
        fleet.unheard = [(a, min(fleet.end, a + draw(st.sampled_from([10.0, 100.0, 1000.0]))))]
    fleet.events.sort(key=lambda e: (e[0], e[1] != "register"))
    # One worker's beats must not share a moment (the store keeps one per instant).
    times = [(t, w) for t, _, w in fleet.events]
    assume(len(set(times)) == len(times))
    return fleet


def _write(db: qa.Store, clock: qa.FakeClock, fleet: Fleet) -> None:
    writer = EventWriter(db)
    if fleet.unheard:
        (a, b), = fleet.unheard
        writer.start_coverage("test recorder", T0 - 1)
        writer.end_coverage(a)
    for t, kind, wid in fleet.events:
        clock.set(t)
        if kind == "register":
            qa.register_worker(db, wid, interval=fleet.declared.get(wid))
        elif kind == "beat":
            assert qa.heartbeat(db, wid)
        else:
            assert qa.remove_worker(db, wid)
    clock.set(fleet.end)
    if fleet.unheard and b < fleet.end:
        writer.start_coverage("test recorder", b)
        writer.end_coverage(fleet.end)


def _expected(
    fleet: Fleet, min_gap: float | None
) -> tuple[set[tuple[str, float, float, str]], dict[str, str]]:
    """(outages, states) recomputed from the raw beats."""
    intervals = reference.intervals(
        fleet.beats(), declared=fleet.declared, removals=fleet.removals(), now=fleet.end
    )
    rows = set()
    states = {}
    for wid, lives in fleet.lives.items():
        thr = min_gap if min_gap is not None else reference.LATE * intervals[wid]
        for beats, removal in lives:
            ends = [*beats[1:], removal if removal is not None else fleet.end]
            kinds = ["resumed"] * (len(beats) - 1) + [
                "removed" if removal is not None else "still silent"
            ]
            for a, b, kind in zip(beats, ends, kinds, strict=True):
                if b - a <= thr:
                    continue
                unheard = sum(max(0.0, min(b, y) - max(a, x)) for x, y in fleet.unheard)
                if unheard > 0 and b - a - unheard <= thr:
                    continue  # not observed: no evidence of an outage
                rows.add((wid, a, b, kind))
        beats, removal = lives[-1]
        if removal is not None:
            states[wid] = "removed"
        else:
            age = fleet.end - beats[-1]
            states[wid] = (
                "active" if age <= reference.LATE * intervals[wid]
                else "late" if age <= reference.STALE * intervals[wid] else "stale"
            )
    return rows, states


def _alive(fleet: Fleet, min_gap: float | None) -> set[tuple[str, float, float]]:
    """Each life from its first beat to its removal (or the end) minus its outages."""
    outages, _states = _expected(fleet, min_gap)
    spans = set()
    for wid, lives in fleet.lives.items():
        for beats, removal in lives:
            end = removal if removal is not None else fleet.end
            cur = beats[0]
            inside = sorted((s, e) for w, s, e, _ in outages if w == wid and beats[0] <= s <= end)
            for s, e in inside:
                spans.add((wid, cur, s))
                cur = e
            if not inside or inside[-1][1] != end:
                spans.add((wid, cur, end))
    return spans


def _found(db: qa.Store, fleet: Fleet, min_gap: float | None) -> set[tuple[str, float, float, str]]:
    frame = qa.outages(db, now=fleet.end, min_gap=min_gap)
    return {
        (str(r.worker_id), r.start.timestamp(), r.end.timestamp(),
         str(r.ended_by))
        for r in frame.itertuples()
    }


def _compare(db: qa.Store, fleet: Fleet, stage: str, *, pruned: bool) -> None:
    for min_gap in MIN_GAPS:
        want, states = _expected(fleet, min_gap)
        try:
            got = _found(db, fleet, min_gap)
        except ValueError as exc:
            event("a fixed min_gap refused after prune")
            # Only a fixed threshold finer than what the tiers kept, once raw beats are gone.
            assert pruned and min_gap is not None and "finer than the summary tiers" in str(exc)
            continue
        assert got == want, (stage, min_gap, sorted(got ^ want))
        frame = qa.alive_intervals(db, now=fleet.end, min_gap=min_gap)
        alive = {
            (str(w), a.timestamp(), b.timestamp())
            for w, a, b in zip(frame["worker_id"], frame["start"], frame["end"], strict=True)
        }
        expected = _alive(fleet, min_gap)
        assert alive == expected, (stage, "alive", min_gap, sorted(alive ^ expected))
    frame = qa.workers(db, now=fleet.end, include_removed=True)
    got_states = {str(w): str(s) for w, s in zip(frame["worker_id"], frame["state"], strict=True)}
    assert got_states == states, stage


@settings(
    max_examples=40, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fleet=fleets())
def test_liveness_equals_the_plain_recomputation(backend: str, fleet: Fleet) -> None:
    clock = qa.FakeClock(T0 - 1)
    with store_for(backend, clock) as db:
        _write(db, clock, fleet)
        _compare(db, fleet, "raw", pruned=False)
        mt.summarize(db, lag=0, now=fleet.end)
        _compare(db, fleet, "summarized", pruned=False)
        pruned = mt.prune(db, keep="10min", now=fleet.end)
        event(f"prune rolled up beats: {pruned.heartbeats_rolled_up > 0}")
        event(f"outages found: {len(qa.outages(db, now=fleet.end)) > 0}")
        event(f"recorder gap: {bool(fleet.unheard)}")
        _compare(db, fleet, "pruned", pruned=True)


@pytest.mark.parametrize("min_gap", MIN_GAPS)
def test_reference_of_a_known_fleet(min_gap: float | None) -> None:
    """The reference itself, on a fleet worked out by hand."""
    fleet = Fleet(
        lives={"w": [([T0, T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60, T0 + 160], None)]},
        end=T0 + 500,
    )
    rows, states = _expected(fleet, min_gap)
    # Learned: the gaps after the registration gap are 10, 10, 10, 10, 100 -> median 10.
    by_gap = {
        None: {("w", T0 + 60, T0 + 160, "resumed"), ("w", T0 + 160, T0 + 500, "still silent")},
        7.0: {("w", T0 + t, T0 + t + 10, "resumed") for t in range(0, 60, 10)}
        | {("w", T0 + 60, T0 + 160, "resumed"), ("w", T0 + 160, T0 + 500, "still silent")},
        45.0: {("w", T0 + 60, T0 + 160, "resumed"), ("w", T0 + 160, T0 + 500, "still silent")},
        120.0: {("w", T0 + 160, T0 + 500, "still silent")},
        900.0: set(),
    }
    assert rows == by_gap[min_gap]
    assert states == {"w": "stale"}
