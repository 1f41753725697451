"""Retention and rollups, checkpoint, vacuum, integrity check and statistics."""

from __future__ import annotations

from .retention import (
    CHECKPOINT_MODES,
    ROLLUP_SECONDS,
    CheckpointResult,
    PruneResult,
    VacuumResult,
    checkpoint,
    heartbeat_rollups,
    history_horizon,
    integrity_check,
    prune,
    raw_history_starts_at,
    rollup_columns,
    rollup_totals,
    stats,
    vacuum,
)

__all__ = [
    "CHECKPOINT_MODES",
    "ROLLUP_SECONDS",
    "CheckpointResult",
    "PruneResult",
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
    "vacuum",
]
