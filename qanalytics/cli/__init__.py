"""The ``qanalytics`` command (:mod:`.commands`, drill-down in :mod:`.drill`) and how it
prints (:mod:`.output`).

``python -m qanalytics`` runs it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import drill as drill  # registers task, worker and failed on main
from .commands import EXIT_PROBLEMS, EXIT_STALE, EXIT_USER_ERROR, CLIError, main, prometheus_text
from .output import emit_frame, safe_text

if TYPE_CHECKING:
    from ..export import prometheus_text, safe_text

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
