"""Open a store: a path, a ``sqlite:///`` or ``postgresql://`` URL, or ``":memory:"``."""

from __future__ import annotations

import os
import warnings
from typing import Literal, cast

from .._text import human_duration
from .._time import Clock, system_clock
from .base import LAYOUTS, Store
from .postgres import connect_postgres, is_postgres_url
from .sqlite import open_sqlite

__all__ = ["connect"]


def connect(
    target: str | os.PathLike[str] = ":memory:",
    *,
    readonly: bool = False,
    clock: Clock | Literal["latest"] | None = None,
    layout: Literal["auto", "native", "classic"] = "auto",
) -> Store:
    """Open (and if needed create) a qanalytics queue store.

    Parameters
    ----------
    target : str or os.PathLike, default ":memory:"
        A file path, a :class:`pathlib.Path`, a ``sqlite:///path`` URL, ``":memory:"``,
        or a ``postgresql://user@host:port/db`` URL for a PostgreSQL store (needs the
        ``postgres`` extra: ``pip install 'qanalytics[postgres]'``).
    readonly : bool, default False
        Open the file read-only (SQLite ``mode=ro``): never create it, never migrate
        it, and raise :class:`ReadOnlyError` on any write.
    clock : callable or "latest", optional
        Returns the current UTC time as epoch seconds; every write stamps time from it.
        Defaults to :func:`time.time`. Tests and simulations pass a fake clock.
        ``"latest"`` freezes "now" at the store's latest recorded event
        (:meth:`Store.latest_event_at`), so a historical file (``data/sample.db``, a copy
        taken during an incident) is read as it stood when its last event was written
        rather than as of today, when every worker would look stale.
    layout : {"auto", "native", "classic"}, default "auto"
        ``"auto"`` opens a qanalytics store, or (read-only) a classic queue database:
        tables ``task_queue`` and ``workers`` with ``heartbeat_utc``, no qanalytics
        schema. ``"classic"`` insists on the classic layout and ``"native"`` refuses it.
        A classic database is only read: the connection presents it in the native shape
        through TEMP views that live in the connection, never in the file, and questions
        its data cannot answer raise :class:`UnsupportedError` (see
        :mod:`qanalytics.store.classic`). A WAL-mode file with no ``-wal`` beside it (no
        writer has it open) is opened ``immutable`` so nothing is created next to it.

    Returns
    -------
    Store
        Usable as a context manager.

    Warns
    -----
    UserWarning
        When an existing store opened for writing had its last event more than a day
        before the clock's now (a copy, ``data/sample.db``): reading it as of today
        makes every worker stale, and writes land after a long silence.

    Raises
    ------
    StoreNotFound
        If `readonly` is set and the file does not exist.
    SchemaError
        If the file is not SQLite, is SQLite without the qanalytics schema (read-only, or
        with other tables), has a newer schema than this code, or does not have the
        `layout` asked for.
    StoreError
        If SQLite cannot open the file (for example, a directory).

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:", clock=qa.FakeClock("2024-01-01T00:00:00Z")) as db:
    ...     qa.register_worker(db, "w1", {"gpu": True}).registered_at
    datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    latest = isinstance(clock, str) and clock == "latest"
    if clock is not None and not latest and not callable(clock):
        raise TypeError(
            f"clock must be a callable returning epoch seconds or 'latest', not {clock!r}"
        )
    if not isinstance(readonly, bool):
        raise TypeError(f"readonly must be a bool, not {type(readonly).__name__}")
    store: Store
    if is_postgres_url(target):
        assert isinstance(target, str)
        store = connect_postgres(target, readonly=readonly, clock=system_clock)
    else:
        if layout not in ("auto", *LAYOUTS):
            raise ValueError(f"layout={layout!r} must be 'auto', 'native' or 'classic'")
        if layout == "classic" and not readonly:
            raise ValueError("layout='classic' is read-only: pass readonly=True")
        store = open_sqlite(target, readonly=readonly, clock=system_clock, layout=layout)
    try:
        if latest:
            frozen = store.latest_event_at()
            store.clock = (lambda: frozen) if frozen is not None else system_clock
        elif clock is not None:
            store.clock = cast(Clock, clock)
        if not readonly and not latest:
            _warn_if_old(store)
    except BaseException:
        store.close()
        raise
    return store


#: An existing store opened for writing warns when its last event is older than this.
OLD_STORE_AFTER_S = 86400.0


def _warn_if_old(store: Store) -> None:
    """Warn when a store opened for writing is a historical file (a copy, the sample)."""
    last = store.latest_event_at()
    if last is None:
        return
    age = store.now() - last
    if age > OLD_STORE_AFTER_S:
        warnings.warn(
            f"{store.path!r} is opened for writing, but its last event was "
            f"{human_duration(age)} ago: writes are stamped now, after a long silence, and "
            "every worker in it reads as stale. To only read it, pass readonly=True; to "
            "read it as it stood, clock='latest'.",
            UserWarning,
            stacklevel=3,
        )
