"""The model both sides of the store share: workers, ids, JSON, statuses and states.

This layer sits above :mod:`qanalytics.store` and below :mod:`qanalytics.write` and
:mod:`qanalytics.read`, so the two sides speak one vocabulary without importing each
other. Statuses, outcomes, worker events and worker states are ``str`` enums: each
member *is* its text (``TaskStatus.QUEUED == "queued"``), as stored in the database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .._time import to_datetime

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "OUTCOMES",
    "STATES",
    "TASK_STATUSES",
    "WORKER_COLUMNS",
    "WORKER_EVENTS",
    "Outcome",
    "TaskStatus",
    "Worker",
    "WorkerEvent",
    "WorkerState",
    "check_worker_id",
    "decode_capabilities",
    "decode_json",
    "encode_json",
    "json_depth",
    "worker_from_row",
]


class TaskStatus(StrEnum):
    """A task's status, as stored in ``tasks.status``."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """How an attempt ended, as stored in ``attempts.outcome``."""

    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    CANCELLED = "cancelled"


class WorkerEvent(StrEnum):
    """A row of ``worker_events``."""

    REGISTERED = "registered"
    UPDATED = "updated"
    REMOVED = "removed"


class WorkerState(StrEnum):
    """A worker's liveness state (see :mod:`qanalytics.history.intervals`)."""

    ACTIVE = "active"
    LATE = "late"
    STALE = "stale"
    REMOVED = "removed"


#: The statuses, in the order frames list them (``status`` categories).
TASK_STATUSES: tuple[str, ...] = tuple(s.value for s in TaskStatus)
#: The attempt outcomes, in order.
OUTCOMES: tuple[str, ...] = tuple(o.value for o in Outcome)
#: The worker events, in order.
WORKER_EVENTS: tuple[str, ...] = tuple(e.value for e in WorkerEvent)
#: The worker states, in the order frames list them (``state`` categories).
STATES: tuple[str, ...] = tuple(s.value for s in WorkerState)

#: The longest worker id or task type accepted, in characters.
MAX_ID_LENGTH = 200
#: The deepest nesting of dicts and lists accepted in capabilities and payloads.
MAX_JSON_DEPTH = 64



@dataclass(frozen=True)
class Worker:
    """A registered worker, as stored.

    Attributes
    ----------
    worker_id : str
    capabilities : dict
        What the worker declared it can do (decoded JSON).
    registered_at : datetime
        When the worker was last registered (or revived), UTC.
    last_heartbeat_at : datetime or None
        Its most recent heartbeat, UTC.
    removed_at : datetime or None
        When it was removed; None while registered.
    """

    worker_id: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    registered_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    removed_at: datetime | None = None

    @property
    def last_heartbeat(self) -> datetime | None:
        """Alias of :attr:`last_heartbeat_at`, the classic name."""
        return self.last_heartbeat_at

    @property
    def removed(self) -> bool:
        """Whether the worker has been removed."""
        return self.removed_at is not None

    def seconds_since_heartbeat(self, now: float) -> float | None:
        """Seconds from the last heartbeat to `now` (epoch seconds), or None if none.

        Parameters
        ----------
        now : float
            Epoch seconds.

        Returns
        -------
        float or None
        """
        if self.last_heartbeat_at is None:
            return None
        return now - self.last_heartbeat_at.timestamp()


def check_worker_id(value: Any, *, name: str = "worker_id") -> str:
    """Validate a worker id (or another identifier such as a task type).

    Parameters
    ----------
    value : Any
        The candidate id.
    name : str, default "worker_id"
        The argument's name, for messages.

    Returns
    -------
    str
        The id, unchanged.

    Raises
    ------
    TypeError
        If it is not a string.
    ValueError
        If it is empty or blank, longer than :data:`MAX_ID_LENGTH`, or holds NUL
        characters or text that is not valid Unicode.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty or blank, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(
            f"{name} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed"
        )
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL characters, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name}={value!r} is not valid Unicode text") from None
    return value


def json_depth(value: Any, *, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply dicts, lists and tuples nest in `value`, without recursion.

    Parameters
    ----------
    value : Any
    limit : int, default MAX_JSON_DEPTH
        Stop counting once the depth exceeds this (so the walk stays short).

    Returns
    -------
    int
        0 for a scalar, 1 for a flat container, ...; at most ``limit + 1``. A container
        that contains itself is not followed into again.
    """
    if not isinstance(value, (Mapping, list, tuple)):
        return 0

    def children(container: Any) -> Any:
        return iter(container.values() if isinstance(container, Mapping) else container)

    stack = [children(value)]
    path = [id(value)]
    deepest = 1
    while stack:
        child = next(stack[-1], stack)  # the stack itself marks the end
        if child is stack:
            stack.pop()
            path.pop()
        elif isinstance(child, (Mapping, list, tuple)) and id(child) not in path:
            stack.append(children(child))
            path.append(id(child))
            deepest = max(deepest, len(stack))
            if deepest > limit:
                break
    return deepest


def decode_json(text: str) -> Any:
    """Parse stored JSON text; text that cannot be parsed is returned as it is.

    A store written by qanalytics holds only valid JSON no deeper than
    :data:`MAX_JSON_DEPTH`, but a file written by other means may hold anything: a value
    malformed or nested too deeply for the parser reads as its text instead of failing.

    Parameters
    ----------
    text : str

    Returns
    -------
    Any
    """
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return text


def encode_json(value: Any, *, name: str, require_dict: bool = False) -> str:
    """Serialise a value as JSON text, or raise a clear error.

    Parameters
    ----------
    value : Any
        The value; NaN and infinities are refused.
    name : str
        The argument's name, for messages.
    require_dict : bool
        Whether only a dict (with string keys) is acceptable.

    Returns
    -------
    str
    """
    if require_dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict, not {type(value).__name__}")
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be strings, got {key!r}")
        value = dict(value)
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(
            f"{name} is nested more than {MAX_JSON_DEPTH} levels deep; at most "
            f"{MAX_JSON_DEPTH} levels of dicts and lists are allowed"
        )
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False, sort_keys=require_dict)
        text.encode("utf-8")
    except UnicodeEncodeError:  # a ValueError subclass, so it must come first
        raise ValueError(f"{name} holds text that is not valid Unicode") from None
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable: {exc}") from None
    return text


def decode_capabilities(text: str | None) -> dict[str, Any]:
    """Stored capabilities text as a dict (a non-dict value becomes ``{"value": ...}``).

    Parameters
    ----------
    text : str or None

    Returns
    -------
    dict
    """
    if not text:
        return {}
    value = decode_json(text)
    return value if isinstance(value, dict) else {"value": value}


def worker_from_row(row: tuple[Any, ...]) -> Worker:
    """A :class:`Worker` from a row of :data:`WORKER_COLUMNS`.

    Parameters
    ----------
    row : tuple

    Returns
    -------
    Worker
    """
    worker_id, capabilities, registered_at, last_heartbeat_at, removed_at = row
    return Worker(
        worker_id=worker_id,
        capabilities=decode_capabilities(capabilities),
        registered_at=to_datetime(registered_at),
        last_heartbeat_at=to_datetime(last_heartbeat_at),
        removed_at=to_datetime(removed_at),
    )


#: The worker columns :func:`worker_from_row` reads, in order.
WORKER_COLUMNS = "worker_id, capabilities, registered_at, last_heartbeat_at, removed_at"
