"""The one rule that says whether a worker is active, late or stale, and its defaults.

A worker whose last heartbeat is at most ``active_within`` seconds old is *active*; more
than ``stale_after`` seconds old (or that never beat) is *stale*; in between it is *late*.
A removed worker is *removed* whatever its beats say. Every reader (frames, metrics, the
classic API) and every SQL query that counts or selects workers by state takes the rule
from here, so the edges of the rule cannot drift apart: the boundary ages themselves
belong to the younger state (exactly ``active_within`` old is active, exactly
``stale_after`` old is late).

This module sits below the store, write and read layers: it knows no database, only ages
and the SQL terms that test them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from ._time import parse_duration

__all__ = [
    "ACTIVE_WITHIN_S",
    "STALE_AFTER_S",
    "STATES",
    "StateName",
    "check_thresholds",
    "classify",
    "classify_ages",
    "state_sql",
]

#: Default ``active_within``: a worker that beat at most this many seconds ago is active.
ACTIVE_WITHIN_S = 60.0
#: Default ``stale_after``: a worker silent for longer than this many seconds is stale.
STALE_AFTER_S = 300.0

#: The states, in the order frames list them (``state`` categories).
STATES = ("active", "late", "stale", "removed")

StateName = Literal["active", "late", "stale", "removed"]


def check_thresholds(active_within: Any, stale_after: Any) -> tuple[float, float]:
    """Parse both thresholds and check that they are in order.

    Parameters
    ----------
    active_within, stale_after : float or str
        Seconds or duration strings (``"60s"``, ``"5min"``).

    Returns
    -------
    (active_s, stale_s) : tuple of float

    Raises
    ------
    ValueError
        If either is not a duration, or `active_within` exceeds `stale_after`.
    """
    active_s = parse_duration(active_within, name="active_within")
    stale_s = parse_duration(stale_after, name="stale_after")
    if active_s > stale_s:
        raise ValueError(
            f"active_within={active_within!r} must not exceed stale_after={stale_after!r}"
        )
    return active_s, stale_s


def classify_ages(
    since_s: Any,
    active_s: Any,
    stale_s: Any,
    *,
    removed: Any = None,
) -> np.ndarray:
    """The state of each worker from the age of its last heartbeat (vectorised).

    Parameters
    ----------
    since_s : array-like of float
        Seconds since each worker's last heartbeat; NaN for a worker that never beat.
    active_s, stale_s : float or array-like of float
        The thresholds, seconds (see :func:`check_thresholds`), one for all workers or
        one per worker.
    removed : array-like of bool, optional
        Workers removed at the moment asked about.

    Returns
    -------
    numpy.ndarray of object
        ``"active"``, ``"late"``, ``"stale"`` or ``"removed"`` per worker.
    """
    since = np.asarray(since_s, dtype="float64")
    state = np.where(
        np.isnan(since) | (since > stale_s),
        "stale",
        np.where(since <= active_s, "active", "late"),
    ).astype(object)
    if removed is not None:
        state[np.asarray(removed, dtype=bool)] = "removed"
    return state


def classify(since_heartbeat_s: float, active_within: float, stale_after: float) -> StateName:
    """Classify one worker by the age of its last heartbeat.

    Parameters
    ----------
    since_heartbeat_s : float
        Seconds since the last heartbeat (NaN means never beat: stale).
    active_within : float
        At most this old is active.
    stale_after : float
        More than this old is stale; in between is late.

    Returns
    -------
    {"active", "late", "stale"}
    """
    if math.isnan(since_heartbeat_s) or since_heartbeat_s > stale_after:
        return "stale"
    if since_heartbeat_s <= active_within:
        return "active"
    return "late"


def state_sql(
    state: Literal["active", "stale"], column: str, at: float, threshold_s: float
) -> tuple[str, list[float]]:
    """A SQL term true for a worker that `column` (its last beat) puts in `state` at `at`.

    The age is computed as :func:`classify_ages` computes it (``at - last``), so SQL and
    pandas agree to the last bit at the edges. A worker that never beat (`column` NULL)
    is stale and not active.

    Parameters
    ----------
    state : {"active", "stale"}
    column : str
        The last-heartbeat column, chosen by the library (never by the user).
    at : float
        The moment asked about, epoch seconds.
    threshold_s : float
        ``active_within`` for "active", ``stale_after`` for "stale", in seconds.

    Returns
    -------
    (sql, params) : tuple
        The term, with ``?`` placeholders, and its parameters in order.
    """
    if state == "active":
        return f"(? - {column} <= ?)", [at, threshold_s]
    if state == "stale":
        return f"({column} IS NULL OR ? - {column} > ?)", [at, threshold_s]
    raise ValueError(f"state={state!r} must be 'active' or 'stale'")
