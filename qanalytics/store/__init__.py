"""The store: open a path or URL, transactions, reads, schema and migrations.

:func:`connect` opens a :class:`Store`: a :class:`~qanalytics.store.sqlite.SQLiteStore`
for a path or ``":memory:"``, a :class:`~qanalytics.store.postgres.PgStore` for a
``postgresql://`` URL. Each backend owns its DDL, its claim locking and its error mapping.
"""

from __future__ import annotations

from ..errors import StoreNotFound
from .base import LAYOUTS, NATIVE_CAPABILITIES, Store
from .opener import connect
from .sqlite import BUSY_TIMEOUT_S

__all__ = [
    "BUSY_TIMEOUT_S",
    "LAYOUTS",
    "NATIVE_CAPABILITIES",
    "Store",
    "StoreNotFound",
    "connect",
]
