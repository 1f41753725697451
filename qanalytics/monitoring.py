"""The classic monitoring API: one method per question, over the modules of this package.

Existing users of ``QueueMonitoring`` keep their method names, arguments and defaults;
new code may call the module-level functions (``qa.register_worker(db, ...)``) directly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._time import parse_duration
from .errors import WorkerNotFound
from .read import snapshot
from .read.snapshot import queue_metrics
from .state import ACTIVE_WITHIN_S, STALE_AFTER_S
from .store import Store, connect
from .write import workers as registry

__all__ = ["QueueMonitoring"]


class QueueMonitoring:
    """Monitor workers and the queue of one store.

    Parameters
    ----------
    db : Store, str or os.PathLike
        An open store, or a path to open (read-write) with :func:`qanalytics.connect`.

    Examples
    --------
    >>> import qanalytics as qa
    >>> mon = qa.QueueMonitoring(qa.connect(":memory:"))
    >>> mon.register_worker("w1", {"gpu": True}).worker_id
    'w1'
    >>> mon.update_heartbeat("w1")
    True
    """

    def __init__(self, db: Store | str | os.PathLike[str]) -> None:
        self.db = db if isinstance(db, Store) else connect(db)

    def register_worker(
        self, worker_id: str, capabilities: Mapping[str, Any] | None = None
    ) -> registry.Worker:
        """Register (or update, or revive) a worker. See :func:`qanalytics.register_worker`.

        Parameters
        ----------
        worker_id : str
        capabilities : dict, optional

        Returns
        -------
        Worker
        """
        return registry.register_worker(self.db, worker_id, capabilities)

    def update_heartbeat(self, worker_id: str) -> bool:
        """Record a heartbeat. See :func:`qanalytics.heartbeat`.

        Parameters
        ----------
        worker_id : str

        Returns
        -------
        bool
            False for an unknown or removed worker.
        """
        return registry.heartbeat(self.db, worker_id)

    def get_worker(self, worker_id: str) -> registry.Worker | None:
        """Return a worker, or None if it was never registered.

        Parameters
        ----------
        worker_id : str

        Returns
        -------
        Worker or None
        """
        try:
            return registry.get_worker(self.db, worker_id)
        except WorkerNotFound:
            return None

    def get_all_workers(self) -> list[registry.Worker]:
        """All registered (not removed) workers, most recent heartbeat first.

        Returns
        -------
        list of Worker
        """
        return registry.list_workers(self.db)

    def get_active_workers(
        self, active_threshold_seconds: float | str = ACTIVE_WITHIN_S
    ) -> list[registry.Worker]:
        """Workers that beat within the last `active_threshold_seconds`.

        Parameters
        ----------
        active_threshold_seconds : float or str, default 60

        Returns
        -------
        list of Worker
        """
        within = parse_duration(active_threshold_seconds, name="active_threshold_seconds")
        return snapshot.active_workers(self.db, within)

    def get_stale_workers(
        self, stale_threshold_seconds: float | str = STALE_AFTER_S
    ) -> list[registry.Worker]:
        """Workers silent for more than `stale_threshold_seconds`.

        A worker between the active and the stale threshold is neither active nor stale.

        Parameters
        ----------
        stale_threshold_seconds : float or str, default 300

        Returns
        -------
        list of Worker
        """
        after = parse_duration(stale_threshold_seconds, name="stale_threshold_seconds")
        return snapshot.stale_workers(self.db, after)

    def remove_worker(self, worker_id: str) -> bool:
        """Remove a worker (softly). See :func:`qanalytics.remove_worker`.

        Parameters
        ----------
        worker_id : str

        Returns
        -------
        bool
        """
        return registry.remove_worker(self.db, worker_id)

    def get_queue_metrics(self) -> dict[str, Any]:
        """The queue's health at a glance. See :func:`qanalytics.queue_metrics`.

        Returns
        -------
        dict
            Keys ``queue_depth_by_status``, ``queue_depth_by_type``,
            ``oldest_queued_task_age_seconds``, ``task_statistics``, ``success_rate``,
            ``failure_rate``, ``total_workers``, ``active_workers``, ``stale_workers``.
        """
        # The classic API keeps its fixed thresholds: active within 60 s, stale after 300 s.
        return queue_metrics(
            self.db, active_within=ACTIVE_WITHIN_S, stale_after=STALE_AFTER_S
        )

    def get_worker_activity(self) -> list[dict[str, Any]]:
        """Every registered worker's last heartbeat, most recent first.

        Returns
        -------
        list of dict
            Keys ``worker_id``, ``capabilities``, ``last_heartbeat`` (UTC datetime) and
            ``seconds_since_heartbeat``.
        """
        now = self.db.now()
        return [
            {
                "worker_id": w.worker_id,
                "capabilities": w.capabilities,
                "last_heartbeat": w.last_heartbeat_at,
                "seconds_since_heartbeat": w.seconds_since_heartbeat(now),
            }
            for w in registry.list_workers(self.db)
        ]

    def close(self) -> None:
        """Close the underlying store."""
        self.db.close()
