"""The store: open a path or URL, transactions, reads, schema and migrations."""

from __future__ import annotations

from .sqlite import (
    BUSY_TIMEOUT_S,
    LAYOUTS,
    NATIVE_CAPABILITIES,
    Store,
    StoreNotFound,
    connect,
)

__all__ = [
    "BUSY_TIMEOUT_S",
    "LAYOUTS",
    "NATIVE_CAPABILITIES",
    "Store",
    "StoreNotFound",
    "connect",
]
