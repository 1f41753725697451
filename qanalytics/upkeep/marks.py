"""The ``meta`` marks upkeep moves: horizons and watermarks that only move forward.

Every batch of :func:`~qanalytics.upkeep.prune` and of the summaries records how far
it got in the same transaction as its rows, through these two statements.
"""

from __future__ import annotations

from ..history.marks import advance_mark, count_heartbeat_batch

__all__ = ["advance_mark", "count_heartbeat_batch"]
