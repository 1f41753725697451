"""A small Celery application for the recorder tests (workers import it with ``-A``).

The broker (and result backend) is the Redis server the test started, named by the
``QA_TEST_BROKER`` environment variable.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery

broker = os.environ.get("QA_TEST_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("fleet", broker=broker, backend=broker)
app.conf.update(
    task_send_sent_event=True,  # producers announce tasks, so waits start at publication
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=600,
    worker_hijack_root_logger=False,
    result_extended=True,  # the backend keeps the worker and retries: a reference
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def boom(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True, max_retries=2)
def flaky(self: Any, fail_times: int) -> int:
    # Fails its first `fail_times` tries; after max_retries retries the failure is final.
    if self.request.retries < fail_times:
        raise self.retry(countdown=0.2, exc=RuntimeError(f"try {self.request.retries} failed"))
    return int(self.request.retries)


@app.task
def sleepy(marker: str, seconds: float, release: str | None = None) -> float:
    # Says it started (the marker file), then runs until `release` exists or for `seconds`.
    Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (release and Path(release).exists()):
        time.sleep(0.05)
    return seconds


@app.task(bind=True, autoretry_for=(ValueError,), max_retries=3, default_retry_delay=0)
def auto(self: Any, fail_times: int) -> int:
    # Raises until it has been retried `fail_times` times; Celery retries it at once.
    if self.request.retries < fail_times:
        raise ValueError(f"auto try {self.request.retries}")
    return int(self.request.retries)


@app.task(bind=True, max_retries=3)
def again(self: Any, fail_times: int) -> int:
    # Like flaky, with retry(countdown=0): the retry may run before this try is reported.
    if self.request.retries < fail_times:
        raise self.retry(countdown=0, exc=RuntimeError(f"again try {self.request.retries}"))
    return int(self.request.retries)
