"""The ``qanalytics`` command (:mod:`.commands`) and how it prints (:mod:`.output`).

``python -m qanalytics`` runs it too.
"""

from __future__ import annotations

from ..export import prometheus_text, safe_text
from .commands import EXIT_PROBLEMS, EXIT_STALE, EXIT_USER_ERROR, CLIError, main
from .output import emit_frame

__all__ = [
    "EXIT_PROBLEMS",
    "EXIT_STALE",
    "EXIT_USER_ERROR",
    "CLIError",
    "emit_frame",
    "main",
    "prometheus_text",
    "safe_text",
]
