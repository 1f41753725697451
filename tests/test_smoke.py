from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from conftest import skip_reasons

import qanalytics as qa


def test_round_trip(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1", {"gpu": True})
    task_id = qa.enqueue(db, "email", {"to": "x"})
    task = qa.claim(db, "w1")
    assert task is not None and task.id == task_id and task.status == "processing"
    clock.advance(5)
    qa.complete(db, task_id)
    assert qa.get_task(db, task_id).status == "completed"
    assert qa.queue_metrics(db)["success_rate"] == 1.0


def test_skips_are_summarised_once_per_reason() -> None:
    reports: list[Any] = [
        SimpleNamespace(longrepr=("a.py", 1, "Skipped: no PostgreSQL server")),
        SimpleNamespace(longrepr=("b.py", 9, "Skipped: no PostgreSQL server")),
        SimpleNamespace(longrepr=("b.py", 9, "SQLite-specific test")),
    ]
    assert skip_reasons(reports) == {"no PostgreSQL server": 2, "SQLite-specific test": 1}
