"""The exceptions qanalytics raises.

Every error the library raises on purpose derives from :class:`QAnalyticsError`, so a
caller can catch them all in one place. Bad arguments raise the built-in ``ValueError``
or ``TypeError`` instead, with a message that names the argument and the value.
"""

from __future__ import annotations

__all__ = [
    "InvalidTransition",
    "QAnalyticsError",
    "ReadOnlyError",
    "ReportError",
    "SchemaError",
    "StoreError",
    "StoreNotFound",
    "TaskNotFound",
    "UnsupportedError",
    "WorkerNotFound",
]


class QAnalyticsError(Exception):
    """Base class of every error qanalytics raises on purpose."""


class SchemaError(QAnalyticsError):
    """The file is not a qanalytics store, or its schema is newer than this code."""


class ReadOnlyError(QAnalyticsError):
    """A write was attempted on a store opened read-only."""


class StoreError(QAnalyticsError):
    """The database refused an operation; the message says which one and why."""


class WorkerNotFound(QAnalyticsError, KeyError):
    """No worker with that id is registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the plain message
        return str(self.args[0]) if self.args else ""


class TaskNotFound(QAnalyticsError, KeyError):
    """No task with that id exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidTransition(QAnalyticsError):
    """A task cannot move from its current status to the one asked for."""


class UnsupportedError(QAnalyticsError):
    """The store lacks the data a question needs (for example, no heartbeat history)."""


class StoreNotFound(QAnalyticsError, FileNotFoundError):
    """The store file does not exist (and was opened read-only, so it is not created)."""
class ReportError(QAnalyticsError):
    """A cell of the report's template notebook failed while the report was written.

    Parameters
    ----------
    message : str
        The whole message.
    section : str, optional
        The report section the cell belongs to.
    ename, evalue : str, optional
        The cell's exception class name and message.
    """

    def __init__(
        self, message: str, *, section: str = "", ename: str = "", evalue: str = ""
    ) -> None:
        super().__init__(message)
        self.section = section
        self.ename = ename
        self.evalue = evalue
