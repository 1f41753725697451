"""Plots of the read-side frames, one function per frame.

Each function takes the frame its namesake read function returns (filter it first if you
like), draws on `ax` (the current Axes when None) and returns that Axes, in the manner of
seaborn's axes-level functions::

    import matplotlib.pyplot as plt
    import qanalytics as qa

    fig, ax = plt.subplots(figsize=(10, 4))
    qa.plot.success_rate(qa.success_rate(db, by="type"), ax=ax)

Nothing here calls ``plt.show()``. Times are drawn in UTC with a concise date axis; an empty
frame draws an empty, labelled Axes that says "no data"; a frame missing a required column
raises ``ValueError`` naming the columns. Colours are consistent across plots: see
:data:`STATE_COLORS`, :data:`OUTCOME_COLORS` and :data:`STATUS_COLORS`.


The plots live in :mod:`.fleet`, :mod:`.trends` and :mod:`.planning`; what they share
(colours, time axes, labels) in :mod:`.style`.
"""

from __future__ import annotations

from .fleet import heartbeat_timeline, uptime, worker_states
from .planning import capacity, littles_law, what_if
from .style import OUTCOME_COLORS, STATE_COLORS, STATUS_COLORS
from .trends import latency, queue_depth, retry_outcomes, success_rate, throughput, utilization

__all__ = [
    "OUTCOME_COLORS",
    "STATE_COLORS",
    "STATUS_COLORS",
    "capacity",
    "heartbeat_timeline",
    "latency",
    "littles_law",
    "queue_depth",
    "retry_outcomes",
    "success_rate",
    "throughput",
    "uptime",
    "utilization",
    "what_if",
    "worker_states",
]
