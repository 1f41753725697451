"""Upkeep: retention and rollups, checkpoint, vacuum, integrity check and statistics.

Also importable as ``qanalytics.maintenance`` (``qa.maintenance.prune``), its name before
the package was split by layer. The rollup readers live with the read side
(:mod:`qanalytics.read.rollups`) and are re-exported here.
"""

from __future__ import annotations

from ..history.marks import ROLLUP_SECONDS, history_horizon
from ..read.rollups import heartbeat_rollups, raw_history_starts_at, rollup_columns, rollup_totals
from .retention import PruneResult, prune
from .storage import (
    CHECKPOINT_MODES,
    CheckpointResult,
    VacuumResult,
    checkpoint,
    integrity_check,
    stats,
    vacuum,
)
from .task_tiers import TaskSummary, summarize_tasks
from .tiers import SummaryResult, summarize, summarize_heartbeats

__all__ = [
    "CHECKPOINT_MODES",
    "ROLLUP_SECONDS",
    "CheckpointResult",
    "PruneResult",
    "SummaryResult",
    "TaskSummary",
    "VacuumResult",
    "checkpoint",
    "heartbeat_rollups",
    "history_horizon",
    "integrity_check",
    "prune",
    "raw_history_starts_at",
    "rollup_columns",
    "rollup_totals",
    "stats",
    "summarize",
    "summarize_heartbeats",
    "summarize_tasks",
    "vacuum",
]
