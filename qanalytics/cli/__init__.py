"""The ``qanalytics`` command; ``python -m qanalytics`` runs it too."""

from __future__ import annotations

from .commands import (
    EXIT_PROBLEMS,
    EXIT_STALE,
    EXIT_USER_ERROR,
    CLIError,
    emit_frame,
    main,
    prometheus_text,
)

__all__ = [
    "EXIT_PROBLEMS",
    "EXIT_STALE",
    "EXIT_USER_ERROR",
    "CLIError",
    "emit_frame",
    "main",
    "prometheus_text",
]
