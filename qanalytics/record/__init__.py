"""Recording other task queues into a qanalytics store.

A recorder listens to a queue's own event stream and writes what it sees through
:class:`~qanalytics.write.events.EventWriter`: workers, heartbeats, tasks and attempts,
each row stamped with the event's own time, plus the periods the recorder was listening
(``recorder_coverage``, read back by :mod:`qanalytics.read.coverage`). Every frame, plot,
notebook and CLI command then reads the recording like any other store.

- :class:`CeleryRecorder` (and :func:`qanalytics.record.celery.record`): Celery's event
  stream (needs the ``celery`` extra: ``pip install 'qanalytics[celery]'``).
- :class:`RecordedEvent`, :class:`EventWriter`: the queue-independent part, for writing
  another queue's events.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..read.coverage import unobserved_intervals
from ..write.events import EVENT_KINDS, ApplyResult, EventWriter, RecordedEvent

__all__ = [
    "EVENT_KINDS",
    "ApplyResult",
    "CeleryRecorder",
    "EventWriter",
    "RecordedEvent",
    "from_celery",
    "unobserved_intervals",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use, so `import qanalytics` stays light (the Celery module imports
    # celery itself only when a recorder runs).
    if name in ("CeleryRecorder", "celery", "from_celery"):
        celery_module = importlib.import_module(".celery", __name__)
        return celery_module if name == "celery" else getattr(celery_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
