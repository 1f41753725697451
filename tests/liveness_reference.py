"""A plain-Python statement of the liveness model, for tests to compare the library with.

It is written from the model's rules as the README states them, not from the library's
code: a worker's expected interval is the one it declared, else the median of its first
five gaps (never a life's first gap, the one after its registration; at least 1 s), else
the median of the fleet's, else 30 s. Late after three intervals, stale after ten.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

LATE = 3.0
STALE = 10.0
DEFAULT = 30.0
FIRST_BEATS = 24


def learned(
    times: Sequence[float], removals: Sequence[float] = (), now: float = float("inf")
) -> float | None:
    """The interval learned from a worker's first beats at or before `now`, or None."""
    beats = sorted(t for t in times if t <= now)[:FIRST_BEATS]
    gaps = []
    for i in range(2, len(beats)):
        prev2, prev, cur = beats[i - 2], beats[i - 1], beats[i]
        # cur and prev in one life, and prev is not that life's first beat
        life = lambda t: sum(1 for r in removals if r < t)  # noqa: E731
        if life(cur) != life(prev) or life(prev) != life(prev2):
            continue
        if cur > prev:
            gaps.append(cur - prev)
    if len(gaps) < 5:
        return None
    return max(1.0, statistics.median(gaps[:5]))


def intervals(
    beats: Mapping[str, Sequence[float]],
    *,
    declared: Mapping[str, float] | None = None,
    removals: Mapping[str, Sequence[float]] | None = None,
    now: float = float("inf"),
) -> dict[str, float]:
    """Every worker's expected interval as of `now`."""
    declared = dict(declared or {})
    removals = removals or {}
    own: dict[str, float] = {}
    for wid, times in beats.items():
        if wid in declared:
            own[wid] = declared[wid]
            continue
        value = learned(times, removals.get(wid, ()), now)
        if value is not None:
            own[wid] = value
    fleet = statistics.median(own.values()) if own else DEFAULT
    return {wid: own.get(wid, fleet) for wid in beats}
