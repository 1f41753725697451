"""Recorder coverage: when a recorder of another queue was listening, and when not.

A store written by a recorder (:mod:`qanalytics.record`) holds the periods it listened in
``recorder_coverage`` (written by :class:`qanalytics.write.events.EventWriter`). A silence
of a worker is evidence that it was down only for the part of it someone listened to;
:mod:`.liveness` uses :func:`unobserved_intervals` to say "not observed" instead of
calling such a silence an outage. Stores without coverage rows are fully observed.
"""

from __future__ import annotations

import math

import numpy as np

from ..store import Store

__all__ = ["LIVE_GRACE_S", "overlap_s", "unobserved_intervals"]


#: A period still open (its recorder running) counts up to ``now`` while it was extended
#: this recently; a recorder that died without closing it stops counting at its last flush.
LIVE_GRACE_S = 10.0


def unobserved_intervals(
    db: Store, *, since: float | None = None, now: float, grace: float = LIVE_GRACE_S
) -> list[tuple[float, float]]:
    """When no recorder was listening, between `since` and `now`, from ``recorder_coverage``.

    A store written through the qanalytics API directly has no coverage rows: its
    writers are the workers themselves, so everything is observed and the answer is
    empty. Once a recorder has written a period, the time outside every period is
    unobserved: before the first one, between them, and after the last one ended. A period
    without an end (its recorder is running, or died) counts up to `now` when it was last
    extended within `grace` seconds of `now`, else up to when it was last extended.

    Parameters
    ----------
    db : Store
    since : float or None
        Epoch seconds; None for the whole history.
    now : float
        Epoch seconds; periods are read as they stood then.
    grace : float, default LIVE_GRACE_S
        How stale an open period's last extension may be and still reach `now` (the
        recorder extends it at every flush, twice a second by default).

    Returns
    -------
    list of (float, float)
        Disjoint ``(start, end)`` epoch-second intervals in time order, clipped to
        ``[since, now]`` (``since`` None: the first starts at ``-inf``).
    """
    if db.layout != "native" or db.schema_version < 3:
        return []
    rows = db.query(
        "SELECT started_at, min(CASE WHEN ended_at IS NOT NULL AND ended_at <= ?1 THEN ended_at"
        " WHEN last_seen_at >= ?1 - ?2 THEN ?1 ELSE last_seen_at END, ?1)"
        " FROM recorder_coverage WHERE started_at <= ?1 ORDER BY started_at",
        (now, grace),
        action="read the recorder's coverage",
    )
    if not rows:
        return []
    lo = -math.inf if since is None else float(since)
    gaps: list[tuple[float, float]] = []
    cursor = lo
    for start, end in rows:
        start, end = float(start), float(end)
        if start > cursor:
            gaps.append((cursor, min(start, now)))
        cursor = max(cursor, end)
    if cursor < now:
        gaps.append((cursor, now))
    return [(a, b) for a, b in gaps if b > a and b > lo]


def overlap_s(start: np.ndarray, end: np.ndarray, gaps: list[tuple[float, float]]) -> np.ndarray:
    """Seconds of each ``[start, end]`` interval that fall inside `gaps`.

    Parameters
    ----------
    start, end : numpy.ndarray
        Epoch seconds, one interval per element.
    gaps : list of (float, float)
        Disjoint intervals, as :func:`unobserved_intervals` returns them.

    Returns
    -------
    numpy.ndarray
        float64, one value per interval.
    """
    total = np.zeros(len(start), dtype="float64")
    for a, b in gaps:
        total += np.clip(np.minimum(end, b) - np.maximum(start, a), 0.0, None)
    return total
