"""Synthetic but realistic fleets and workloads, written through the write API."""

from __future__ import annotations

from .engine import (
    DEFAULT_START,
    FLAP_SILENCES_MIN,
    INCIDENT_ERROR,
    TASK_PROFILES,
    Crash,
    Decommission,
    FailureIncident,
    Flapping,
    GroundTruth,
    ScaleUp,
    Silence,
    SimulationResult,
    TaskProfile,
    simulate,
)

__all__ = [
    "DEFAULT_START",
    "FLAP_SILENCES_MIN",
    "INCIDENT_ERROR",
    "TASK_PROFILES",
    "Crash",
    "Decommission",
    "FailureIncident",
    "Flapping",
    "GroundTruth",
    "ScaleUp",
    "Silence",
    "SimulationResult",
    "TaskProfile",
    "simulate",
]
