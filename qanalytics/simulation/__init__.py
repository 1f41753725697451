"""Synthetic but realistic fleets and workloads, written through the write API."""

from __future__ import annotations

from . import engine
from .engine import *  # noqa: F403
from .engine import FLAP_SILENCES_MIN, INCIDENT_ERROR

__all__ = [*engine.__all__, "FLAP_SILENCES_MIN", "INCIDENT_ERROR"]
