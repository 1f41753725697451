"""The Celery application of the sample fleet recorded by ``record_celery_sample.py``.

A small shop's background jobs: e-mails (fast), thumbnails (retried when the image store
times out), card charges (retried with backoff when the payment gateway is busy) and
reports (slow, sometimes fail). Workers import it with ``-A celery_sample_app``; the broker
is the Redis server the script started (``QA_SAMPLE_BROKER``).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from celery import Celery

broker = os.environ.get("QA_SAMPLE_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("shop", broker=broker, backend=broker)
app.conf.update(
    task_send_sent_event=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
)


@app.task(name="shop.send_email")
def send_email(to: str) -> str:
    time.sleep(random.uniform(0.02, 0.2))
    if random.random() < 0.02:
        raise ConnectionRefusedError("smtp relay refused the connection")
    return to


@app.task(name="shop.resize_image", bind=True, max_retries=3)
def resize_image(self: Any, image_id: int) -> int:
    time.sleep(random.uniform(0.2, 0.8))
    if random.random() < 0.2:
        raise self.retry(countdown=1.0, exc=TimeoutError("image store timed out"))
    return image_id


@app.task(name="shop.charge_card", bind=True, max_retries=4)
def charge_card(self: Any, order_id: int) -> int:
    time.sleep(random.uniform(0.1, 0.4))
    if random.random() < 0.3:
        raise self.retry(
            countdown=0.5 * 2**self.request.retries, exc=RuntimeError("gateway busy (HTTP 503)")
        )
    return order_id


@app.task(name="shop.build_report")
def build_report(day: str, marker: str | None = None, seconds: float | None = None) -> str:
    if marker:
        Path(marker).write_text(str(os.getpid()))
    time.sleep(seconds if seconds is not None else random.uniform(1.5, 4.0))
    if random.random() < 0.05:
        raise KeyError(f"no sales data for {day}")
    return day
