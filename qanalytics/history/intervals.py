"""The liveness model: each worker's expected beat interval, and the one rule built on it.

Every worker has an *expected interval*, found in this order:

1. **declared**: the interval given at registration (``register_worker(...,
   interval=...)``), or by a recorder from the queue's own setting (Celery's heartbeat
   ``freq``); the latest declaration at or before the moment asked about holds;
2. **learned**: the median of the worker's first :data:`LEARN_GAPS` gaps between beats,
   once it has had that many, never counting the gap after a registration (a worker's
   first beat is its registration, and the next beat follows at the worker's whim), nor a
   gap across a removal; at least :data:`MIN_INTERVAL_S`;
3. **fleet**: the median of the other workers' declared or learned intervals;
4. **default**: :data:`DEFAULT_INTERVAL_S`.

From the interval ``I`` one rule derives everything: a silence longer than
``OUTAGE_FACTOR * I`` is an outage (the worker is *late*), and one longer than
``STALE_FACTOR * I`` makes the worker *stale*. So, with default arguments, no worker is
active while an outage of it is ongoing, and every stale worker has an ongoing outage.
A fleet beating every 30 s is late after 90 s and stale after 300 s; a Celery fleet
(2 s beats) is late after 6 s and stale after 20 s.

A learned interval is remembered on the worker row (``learned_interval_s``,
``learned_at``) by :func:`remember_learned`, which the summaries run before the raw
beats it was learned from can be pruned, so the answer does not change when history
moves from raw beats to the tiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._time import parse_duration
from ..store import Store
from ..store.schema import INTERVALS_VERSION

__all__ = [
    "DEFAULT_INTERVAL_S",
    "LEARN_GAPS",
    "MIN_INTERVAL_S",
    "OUTAGE_FACTOR",
    "SOURCES",
    "STALE_FACTOR",
    "Intervals",
    "check_interval",
    "expected_intervals",
    "learn_interval",
    "remember_learned",
    "removal_times",
]

#: A silence longer than this many expected intervals is an outage (the worker is late).
OUTAGE_FACTOR = 3.0
#: A silence longer than this many expected intervals makes the worker stale.
STALE_FACTOR = 10.0
#: The expected interval (seconds) of a worker when nothing else says: no declaration,
#: too few gaps of its own and no other worker to go by.
DEFAULT_INTERVAL_S = 30.0
#: The shortest learned interval (seconds): a burst of beats does not make a hair trigger.
MIN_INTERVAL_S = 1.0
#: How many gaps a worker needs before its own interval is learned.
LEARN_GAPS = 5
#: How many of a worker's first beats are read to learn its interval (removals between
#: them end lives, and each life's first gap does not count).
LEARN_BEATS = 24
#: Where an interval comes from, in order of precedence.
SOURCES = ("declared", "learned", "fleet", "default")

_KEYS_PER_QUERY = 500


def check_interval(value: Any, *, name: str = "interval") -> float | None:
    """Validate a declared beat interval (seconds or a duration string; None: none).

    Parameters
    ----------
    value : float, str or None
    name : str, default "interval"

    Returns
    -------
    float or None

    Raises
    ------
    TypeError, ValueError
        For a value that is not a positive duration.
    """
    if value is None:
        return None
    return parse_duration(value, name=name, allow_zero=False)


def learn_interval(at: np.ndarray, removals: np.ndarray) -> tuple[float, float] | None:
    """A worker's learned interval from its beats, and the moment it became known.

    Parameters
    ----------
    at : numpy.ndarray of float
        The worker's first beats, sorted (epoch seconds).
    removals : numpy.ndarray of float
        Its removals, sorted.

    Returns
    -------
    (interval_s, learned_at) or None
        None while fewer than :data:`LEARN_GAPS` gaps count.
    """
    at = np.asarray(at, dtype="float64")
    if len(at) < 2:
        return None
    life = np.searchsorted(np.asarray(removals, dtype="float64"), at, side="left")
    first = np.ones(len(at), dtype=bool)
    first[1:] = life[1:] != life[:-1]
    gap = np.diff(at)
    # The gap ending at beat i counts when i is in the same life as i - 1 and i - 1 is
    # not the life's first beat (the registration).
    counts = ~first[1:] & ~first[:-1] & (gap > 0)
    idx = np.flatnonzero(counts)[:LEARN_GAPS]
    if len(idx) < LEARN_GAPS:
        return None
    interval = max(MIN_INTERVAL_S, float(np.median(gap[idx])))
    return interval, float(at[idx[-1] + 1])


def removal_times(db: Store, now: float) -> dict[int, np.ndarray]:
    """Each worker's removals at or before `now` (epoch seconds, sorted), by worker key.

    Parameters
    ----------
    db : Store
    now : float

    Returns
    -------
    dict of int to numpy.ndarray
    """
    rows = db.query(
        "SELECT worker_key, at FROM worker_events WHERE event = 'removed' AND at <= ?"
        " ORDER BY worker_key, at",
        (now,),
        action="read worker removals",
    )
    out: dict[int, list[float]] = {}
    for key, at in rows:
        out.setdefault(int(key), []).append(float(at))
    return {k: np.asarray(v, dtype="float64") for k, v in out.items()}


@dataclass(frozen=True)
class Intervals:
    """The expected interval of each worker as of a moment.

    Attributes
    ----------
    keys : numpy.ndarray of int64
        Worker keys, sorted.
    interval_s : numpy.ndarray of float64
        Each worker's expected interval, seconds.
    source : numpy.ndarray of object
        Where it comes from: one of :data:`SOURCES`.
    fleet_s : float
        The interval of a worker not in `keys` (the fleet's, or the default).
    """

    keys: np.ndarray
    interval_s: np.ndarray
    source: np.ndarray
    fleet_s: float

    def of(self, keys: Any) -> np.ndarray:
        """The expected interval for each key of an array (the fleet's for unknown keys).

        Parameters
        ----------
        keys : array-like of int

        Returns
        -------
        numpy.ndarray of float64
        """
        keys = np.asarray(keys, dtype="int64")
        if len(self.keys) == 0:
            return np.full(len(keys), self.fleet_s)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[pos] == keys
        return np.where(found, self.interval_s[pos], self.fleet_s)

    def late_after(self, keys: Any) -> np.ndarray:
        """The outage threshold of each key: ``OUTAGE_FACTOR`` expected intervals.

        Parameters
        ----------
        keys : array-like of int

        Returns
        -------
        numpy.ndarray of float64
        """
        return OUTAGE_FACTOR * self.of(keys)

    def stale_after(self, keys: Any) -> np.ndarray:
        """The stale threshold of each key: ``STALE_FACTOR`` expected intervals.

        Parameters
        ----------
        keys : array-like of int

        Returns
        -------
        numpy.ndarray of float64
        """
        return STALE_FACTOR * self.of(keys)


def _declared(db: Store, now: float) -> dict[int, float]:
    if db.schema_version < INTERVALS_VERSION:
        return {}
    rows = db.query(
        "SELECT worker_key, interval_s FROM worker_events WHERE interval_s IS NOT NULL"
        " AND at <= ? ORDER BY worker_key, at, id",
        (now,),
        action="read declared beat intervals",
    )
    return {int(k): float(v) for k, v in rows}  # the latest declaration wins


def _first_beats(db: Store, now: float, keys: list[int]) -> dict[int, np.ndarray]:
    out: dict[int, list[float]] = {}
    for i in range(0, len(keys), _KEYS_PER_QUERY):
        part = keys[i : i + _KEYS_PER_QUERY]
        marks = ", ".join("?" for _ in part)
        # Each worker's first beats through the (worker_key, at) index: a correlated
        # LIMIT per worker (SQLite by rowid, PostgreSQL by a lateral join).
        if db.dialect == "postgresql":
            sql = (
                "SELECT w.worker_key, h.at FROM workers w CROSS JOIN LATERAL"
                " (SELECT h2.at FROM heartbeats h2 WHERE h2.worker_key = w.worker_key"
                " AND h2.at <= ? ORDER BY h2.at LIMIT ?) h"
                f" WHERE w.worker_key IN ({marks})"
            )
        else:
            sql = (
                "SELECT w.worker_key, h.at FROM workers w JOIN heartbeats h ON h.rowid IN"
                " (SELECT h2.rowid FROM heartbeats h2 WHERE h2.worker_key = w.worker_key"
                " AND h2.at <= ? ORDER BY h2.at LIMIT ?)"
                f" WHERE w.worker_key IN ({marks})"
            )
        rows = db.query(sql, [now, LEARN_BEATS, *part], action="read each worker's first beats")
        for key, at in rows:
            out.setdefault(int(key), []).append(float(at))
    return {k: np.sort(np.asarray(v, dtype="float64")) for k, v in out.items()}


def _learned(
    db: Store, now: float, keys: list[int], removals: dict[int, np.ndarray]
) -> dict[int, float]:
    found: dict[int, float] = {}
    todo = keys
    if db.schema_version >= INTERVALS_VERSION:
        rows = db.query(
            "SELECT worker_key, learned_interval_s, learned_at FROM workers"
            " WHERE learned_at IS NOT NULL",
            action="read learned beat intervals",
        )
        remembered = {int(k): (float(v), float(t)) for k, v, t in rows}
        todo = []
        for key in keys:
            if key in remembered:
                value, known_at = remembered[key]
                if known_at <= now:
                    found[key] = value
                # Learned after `now`: as of `now` the worker had too few gaps.
            else:
                todo.append(key)
    empty = np.array([], dtype="float64")
    for key, beats in _first_beats(db, now, todo).items():
        learned = learn_interval(beats, removals.get(key, empty))
        if learned is not None:
            found[key] = learned[0]
    return found


def expected_intervals(
    db: Store,
    now: float,
    *,
    keys: Iterable[int] | None = None,
    removals: dict[int, np.ndarray] | None = None,
) -> Intervals:
    """Every worker's expected beat interval as of `now` (see the module docstring).

    Parameters
    ----------
    db : Store
    now : float
        Epoch seconds; declarations and beats after it are ignored.
    keys : iterable of int, optional
        Only these workers (the fleet's interval still comes from every worker).
    removals : dict, optional
        :func:`removal_times` as of `now`, when the caller has them.

    Returns
    -------
    Intervals
    """
    rows = db.query(
        "SELECT w.worker_key FROM workers w WHERE EXISTS (SELECT 1 FROM worker_events e"
        " WHERE e.worker_key = w.worker_key AND e.at <= ?) ORDER BY w.worker_key",
        (now,),
        action="read worker keys",
    )
    every = [int(r[0]) for r in rows]
    if removals is None:
        removals = removal_times(db, now)
    declared = _declared(db, now)
    learned = _learned(db, now, [k for k in every if k not in declared], removals)
    own = {**learned, **declared}
    fleet = float(np.median(list(own.values()))) if own else DEFAULT_INTERVAL_S
    fleet_source = "fleet" if own else "default"
    chosen = every if keys is None else sorted(set(keys))
    interval = np.array([own.get(k, fleet) for k in chosen], dtype="float64")
    source = np.array(
        [
            "declared" if k in declared else "learned" if k in learned else fleet_source
            for k in chosen
        ],
        dtype=object,
    )
    return Intervals(np.asarray(chosen, dtype="int64"), interval, source, fleet)


def remember_learned(db: Store, until: float) -> int:
    """Store the intervals learned by `until` on the worker rows; how many were stored.

    The summaries call this before they fold beats into the tiers, so that a learned
    interval outlives the raw beats it was learned from (``prune``).

    Parameters
    ----------
    db : Store
        A writable store of schema version 6 or later.
    until : float
        Epoch seconds: only beats at or before it are used.

    Returns
    -------
    int
    """
    if db.schema_version < INTERVALS_VERSION:
        return 0
    rows = db.query(
        "SELECT worker_key FROM workers WHERE learned_at IS NULL ORDER BY worker_key",
        action="read workers without a learned interval",
    )
    keys = [int(r[0]) for r in rows]
    if not keys:
        return 0
    removals = removal_times(db, until)
    empty = np.array([], dtype="float64")
    found = []
    for key, at in _first_beats(db, until, keys).items():
        learned = learn_interval(at, removals.get(key, empty))
        if learned is not None:
            found.append((learned[0], learned[1], key))
    if found:
        with db.transaction("remember learned beat intervals") as conn:
            conn.executemany(
                "UPDATE workers SET learned_interval_s = ?, learned_at = ?"
                " WHERE worker_key = ? AND learned_at IS NULL",
                found,
            )
    return len(found)
