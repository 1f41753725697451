"""What every store offers the rest of the package, whichever database holds it.

A store wraps one connection that speaks the package's SQL (written in SQLite's dialect;
see :mod:`qanalytics.store.dialect`), plus what cannot be shared: the DDL and migrations,
row locking for claims, the Arrow reader, and the mapping of the driver's errors to
:class:`~qanalytics.errors.QAnalyticsError`. Backends subclass :class:`Store`:
:class:`~qanalytics.store.sqlite.SQLiteStore` and :class:`~qanalytics.store.postgres.PgStore`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .._time import Clock, to_epoch
from ..errors import QAnalyticsError, ReadOnlyError, StoreError, UnsupportedError

__all__ = ["LAYOUTS", "NATIVE_CAPABILITIES", "Connection", "Store"]

#: The layouts :func:`connect` can read: a qanalytics store, or the classic queue layout.
LAYOUTS = ("native", "classic")

#: What a native store records. Other layouts record a subset (:attr:`Store.capabilities`).
NATIVE_CAPABILITIES = frozenset(
    {"tasks", "last_heartbeat", "heartbeat_history", "attempt_history", "worker_events"}
)

# What each capability holds, and what still works without it, for UnsupportedError.
_CAPABILITY_TEXT = {
    "heartbeat_history": (
        "a heartbeat history (every beat, not only the last one)",
        "workers() gives each worker's last heartbeat and staleness",
    ),
    "attempt_history": (
        "per-attempt rows (every claim of a task with its outcome)",
        "tasks(), success_rate(level='task'), throughput(), latency() and depth_timeline() "
        "work from each task's final state",
    ),
    "worker_events": (
        "worker registration and removal events",
        "workers() lists the registered workers and their last heartbeat",
    ),
}


class Connection(Protocol):
    """The part of a DB-API connection the package uses (``sqlite3.Connection`` has it).

    Autocommit: ``BEGIN`` and ``COMMIT`` are explicit statements.
    """

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any:
        """Run one statement with ``?`` placeholders; return its cursor."""
        ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        """Run one statement once per row of parameters; return its cursor."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class Store:
    """An open qanalytics queue store: what every backend offers the rest of the package.

    Create one with :func:`qanalytics.connect`, which picks the backend
    (:class:`~qanalytics.store.sqlite.SQLiteStore` or
    :class:`~qanalytics.store.postgres.PgStore`). A store is a context manager that closes its
    connection on exit.

    Attributes
    ----------
    path : str
        The database file, or ``":memory:"``.
    readonly : bool
        Whether the store was opened read-only.
    clock : callable
        Returns the current UTC time as epoch seconds; every write stamps time from it.
    conn : Connection
        The underlying connection (autocommit; use :meth:`transaction` to write).
    layout : {"native", "classic"}
        ``"native"`` for a qanalytics store. ``"classic"`` for a classic queue database
        (``task_queue`` and ``workers`` tables) opened read-only: the connection then holds
        TEMP views that present it in the native shape (see :mod:`qanalytics.store.classic`).
    capabilities : frozenset of str
        What the store records: ``"tasks"``, ``"last_heartbeat"``, ``"heartbeat_history"``,
        ``"attempt_history"``, ``"worker_events"``. Questions that need a missing one raise
        :class:`UnsupportedError` (:meth:`require`).
    """

    #: The SQL dialect: ``"sqlite"`` or ``"postgresql"``.
    dialect = "sqlite"
    #: Appended to the claim's SELECT (row locks, where the backend needs them).
    claim_lock = ""
    #: Inserted after ``FROM tasks`` in the claim's SELECT (an index hint, where needed).
    claim_index = ""
    #: Whether setting the store up for writing (a schema migration, the journal mode) is
    #: left for the first write, so that opening an existing store and reading changes
    #: nothing. Hot write paths that skip :meth:`require_writable` test it.
    write_setup_pending = False

    def __init__(
        self,
        path: str,
        conn: Connection,
        *,
        readonly: bool,
        clock: Clock,
        layout: str = "native",
        capabilities: frozenset[str] = NATIVE_CAPABILITIES,
    ) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.clock = clock
        self.layout = layout
        self.capabilities = capabilities
        self._adbc: Any = None
        self._closed = False

    # -- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "readonly" if self.readonly else "readwrite"
        if self.layout != "native":
            mode += f", {self.layout} layout"
        state = ", closed" if self._closed else ""
        return f"<qanalytics.Store {self.path!r} ({mode}{state})>"

    def require(self, capability: str, question: str) -> None:
        """Raise :class:`UnsupportedError` unless the store records `capability`.

        Parameters
        ----------
        capability : str
            One of :data:`NATIVE_CAPABILITIES`.
        question : str
            What the caller answers, e.g. ``"outages()"``, for the message.

        Raises
        ------
        UnsupportedError
            If the store's layout lacks the data; the message says what is missing and
            what works instead.
        """
        if capability in self.capabilities:
            return
        needs, instead = _CAPABILITY_TEXT.get(capability, (capability, ""))
        message = (
            f"{question} needs {needs}, which the {self.layout} queue layout of "
            f"{self.path!r} does not record"
        )
        raise UnsupportedError(message + (f"; {instead}" if instead else ""))

    def close(self) -> None:
        """Close the store's connections. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        readers = [self._adbc] if self._adbc else []
        self._adbc = None
        self._close_readers(readers)
        self.conn.close()

    def _close_readers(self, readers: list[Any]) -> None:
        for reader in readers:
            with contextlib.suppress(Exception):  # best effort on a side reader
                reader.close()

    @property
    def in_memory(self) -> bool:
        """Whether the store lives in memory rather than in a file or on a server."""
        return False

    # -- errors -------------------------------------------------------------------------
    @property
    def driver_errors(self) -> tuple[type[Exception], ...]:
        """The exception classes the backend's driver raises.

        For hot paths that catch them and raise :meth:`map_error` themselves.
        """
        raise NotImplementedError

    def map_error(self, action: str, exc: Exception) -> QAnalyticsError:
        """The :class:`QAnalyticsError` for a driver error (the caller raises it ``from exc``).

        Parameters
        ----------
        action : str
            What was being done, e.g. ``"heartbeat for worker 'w1'"``.
        exc : Exception
            One of :attr:`driver_errors`.

        Returns
        -------
        ReadOnlyError or StoreError
        """
        raise NotImplementedError

    @contextlib.contextmanager
    def wrap_errors(self, action: str) -> Iterator[None]:
        """Turn the driver's exceptions into :class:`QAnalyticsError` that say what was done.

        Parameters
        ----------
        action : str
            What is being done, for the message.

        Raises
        ------
        ReadOnlyError
            If the backend refused a write because the store is read-only.
        StoreError
            For any other error of the backend.
        """
        try:
            yield
        except self.driver_errors as exc:
            raise self.map_error(action, exc) from exc

    def now(self) -> float:
        """The store clock's current time, epoch seconds.

        Returns
        -------
        float
        """
        return float(self.clock())

    def resolve_now(self, now: Any = None) -> float:
        """Resolve a ``now=`` argument to epoch seconds.

        Parameters
        ----------
        now : time-like, "latest" or None
            None means the store clock; ``"latest"`` the latest recorded event
            (:meth:`latest_event_at`); anything else an absolute time (epoch seconds,
            ISO 8601 string, datetime).

        Returns
        -------
        float
        """
        if now is None:
            return self.now()
        if isinstance(now, str) and now.strip().lower() == "latest":
            latest = self.latest_event_at()
            return self.now() if latest is None else latest
        return to_epoch(now, name="now")

    # -- writing ------------------------------------------------------------------------
    def require_writable(self, action: str) -> None:
        """Raise :class:`ReadOnlyError` if the store was opened read-only.

        Parameters
        ----------
        action : str
            What the caller was about to do, for the message.
        """
        if self.readonly:
            raise ReadOnlyError(f"cannot {action}: the store {self.path!r} is open read-only")
        if self.write_setup_pending:
            self.prepare_writes()

    def prepare_writes(self) -> bool:
        """Set the store up for writing now: migrate its schema, switch its journal mode.

        A store opened for writing does this on its first write, so that opening an
        existing file and only reading leaves it byte for byte as it was. Calling this
        (or ``qanalytics migrate``) does it at once.

        Returns
        -------
        bool
            Whether anything was left to do.

        Raises
        ------
        ReadOnlyError
            If the store was opened read-only.
        StoreError
            If the migration or the journal-mode switch fails.
        """
        if self.readonly:
            raise ReadOnlyError(
                f"cannot migrate {self.path!r}: the store is open read-only"
            )
        return False

    @contextlib.contextmanager
    def transaction(self, action: str = "write") -> Iterator[Connection]:
        """Run a block in one ``BEGIN IMMEDIATE`` transaction.

        Commits when the block ends normally and rolls back on any exception. Nested
        calls join the outer transaction.

        Parameters
        ----------
        action : str, default "write"
            What the transaction does, used in error messages.

        Yields
        ------
        Connection
            The connection to execute statements on.

        Raises
        ------
        ReadOnlyError
            If the store is read-only.
        StoreError
            If the backend fails (for example the write lock could not be taken in time).
        """
        self.require_writable(action)
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        with self.wrap_errors(action):
            conn.execute("BEGIN IMMEDIATE")
        try:
            with self.wrap_errors(action):
                yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            with self.wrap_errors(action):
                conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open; later calls would join it.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- reading ------------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = (), *, action: str = "query") -> list[Any]:
        """Run a read query on the main connection and return all rows.

        Parameters
        ----------
        sql : str
            The statement, with ``?`` placeholders.
        params : sequence
            Bound parameters.
        action : str
            What the query is for, used in error messages.

        Returns
        -------
        list of tuple
        """
        with self.wrap_errors(action):
            return self.conn.execute(sql, tuple(params)).fetchall()

    def read_frame(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        columns: dict[str, str],
        action: str = "read",
    ) -> pd.DataFrame:
        """Run a query and return its rows as a DataFrame, quickly.

        Backends with an Arrow-native ADBC driver read through it on a separate read-only
        connection (3-4x faster than a cursor on large results); in-memory stores, or a
        missing driver, use the store's own connection.

        The ADBC driver infers column types from the first rows and fails on a column
        that starts with NULLs, so nullable columns are read through a sentinel: write
        them as ``IFNULL(x, -1.0)`` (kind ``"time?"``: negative becomes NaN) or
        ``IFNULL(x, -1)`` (kind ``"int?"``: negative becomes ``<NA>`` in an ``Int64``
        column), or ``IFNULL(x, '')`` for text (kind ``"str?"``: empty becomes None).

        Parameters
        ----------
        sql : str
            The statement, with ``?`` placeholders.
        params : sequence
            Bound parameters.
        columns : dict of str to str
            The result's column names in order and their kinds: ``"float64"``,
            ``"int64"``, ``"str"``, or the sentinel-mapped ``"time?"``, ``"int?"``,
            ``"str?"``.
        action : str
            What the read is for, used in error messages.

        Returns
        -------
        pandas.DataFrame
            One column per entry of `columns`, with those dtypes (``"str"`` columns are
            object arrays of Python strings).

        See Also
        --------
        read_columns : The same read as column arrays, without building a frame.
        """
        data = self.read_columns(sql, params, columns=columns, action=action)
        for name, kind in columns.items():
            if kind in ("str", "str?"):
                # Keep Python strings and None: pandas would otherwise infer its string
                # dtype, where a missing value becomes NaN.
                data[name] = pd.Series(data[name], dtype=object, copy=False)
        # The arrays are fresh and owned by nobody else, so the frame may keep them.
        return pd.DataFrame(data, columns=list(columns), copy=False)

    def read_columns(
        self,
        sql: str,
        params: Sequence[Any] = (),
        *,
        columns: dict[str, str],
        action: str = "read",
    ) -> dict[str, Any]:
        """Run a query and return its columns as arrays, for callers that build their own frame.

        Reads as :meth:`read_frame` does (same kinds, sentinels and dtypes) but skips the
        intermediate DataFrame, so a caller that converts the columns anyway (codes to a
        categorical, epoch seconds to timestamps) holds each column only once.

        Parameters
        ----------
        sql : str
            The statement, with ``?`` placeholders.
        params : sequence
            Bound parameters.
        columns : dict of str to str
            The result's column names in order and their kinds, as for :meth:`read_frame`.
        action : str
            What the read is for, used in error messages.

        Returns
        -------
        dict of str to array
            One entry per entry of `columns`, in order: numpy arrays (``float64``,
            ``int64`` or object), or an ``Int64`` :class:`pandas.arrays.IntegerArray` for
            kind ``"int?"``.
        """
        names = list(columns)
        # The side reader cannot see this connection's TEMP views, which other layouts
        # are read through, nor a transaction this connection has open.
        if not self.in_memory and not self.conn.in_transaction and self.layout == "native":
            reader = self._adbc_connection()
            if reader is not None:
                return self._read_columns_adbc(reader, sql, params, columns, action)
        with self.wrap_errors(action):
            rows = self.conn.execute(sql, tuple(params)).fetchall()
        raw: dict[str, Any] = {}
        for i, name in enumerate(names):
            kind = columns[name]
            values = [row[i] for row in rows]
            if kind in ("str", "str?"):
                raw[name] = np.array(values, dtype=object)
            elif kind == "int?" or kind == "int64":
                raw[name] = np.array(values, dtype="int64")
            else:
                raw[name] = np.array(values, dtype="float64")
        return _finish_columns(raw, columns)

    def _adbc_connection(self) -> Any:
        """The Arrow reader, opened on first use; None when the backend has none."""
        return None

    def _read_columns_adbc(
        self,
        reader: Any,
        sql: str,
        params: Sequence[Any],
        columns: dict[str, str],
        action: str,
    ) -> dict[str, Any]:
        cursor = reader.cursor()
        try:
            try:
                self._prepare_cursor(cursor)
                cursor.execute(self._reader_sql(sql), tuple(params) if params else None)
                raw = _collect_batches(cursor.fetch_record_batch(), columns, action)
            except StoreError:
                raise
            except Exception as exc:  # the driver raises its own error hierarchy
                raise StoreError(f"{action} failed: {exc}") from exc
        finally:
            cursor.close()
        return _finish_columns(raw, columns)

    def _prepare_cursor(self, cursor: Any) -> None:
        """Set driver options on an Arrow reader's cursor before it runs a query."""

    def _reader_sql(self, sql: str) -> str:
        """The statement as the Arrow reader's driver takes it."""
        return sql

    def latest_event_at(self) -> float | None:
        """The time of the latest recorded event: a beat, registration, claim or finish.

        Returns
        -------
        float or None
            Epoch seconds; None for an empty store.
        """
        # A damaged row (a text time, a blob) is skipped here, as `check` reports it:
        # SQLite's max() would rank text above every number.
        def m(col: str) -> str:
            if self.dialect == "sqlite":
                return f"max(CASE WHEN typeof({col}) IN ('integer', 'real') THEN {col} END)"
            return f"max({col})"

        if self.layout != "native":
            row = self.query(
                "SELECT max(x) FROM ("
                f" SELECT {m('last_heartbeat_at')} AS x FROM workers UNION ALL"
                f" SELECT {m('created_at')} FROM tasks UNION ALL"
                f" SELECT {m('started_at')} FROM tasks UNION ALL"
                f" SELECT {m('finished_at')} FROM tasks) AS events",
                action="find the latest recorded event",
            )[0]
            return None if row[0] is None else float(row[0])
        row = self.query(
            "SELECT max(x) FROM ("
            f" SELECT {m('at')} AS x FROM heartbeats UNION ALL"
            f" SELECT {m('at')} FROM worker_events UNION ALL"
            f" SELECT {m('created_at')} FROM tasks UNION ALL"
            f" SELECT {m('claimed_at')} FROM attempts UNION ALL"
            f" SELECT {m('finished_at')} FROM attempts) AS events",
            action="find the latest recorded event",
        )[0]
        return None if row[0] is None else float(row[0])

    # -- schema -------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The store's schema version.

        Returns
        -------
        int
        """
        raise NotImplementedError


def _collect_batches(batches: Any, columns: dict[str, str], action: str) -> dict[str, Any]:
    # Copy each Arrow batch straight into one growing numpy array per column and drop the
    # batch: keeping the whole Arrow table next to numpy copies doubled the peak memory.
    # ndarray.resize reallocates in place (large blocks are remapped, not copied), and
    # growing by half keeps the touched-but-unused tail small; it is trimmed at the end.
    names = list(columns)
    numeric: dict[str, np.ndarray] = {}
    text: dict[str, list[list[Any]]] = {}
    for name, kind in columns.items():
        if kind in ("str", "str?"):
            text[name] = []
        else:
            numeric[name] = np.empty(0, dtype="float64" if kind in _FLOAT_KINDS else "int64")
    size = capacity = 0
    for batch in batches:
        rows = batch.num_rows
        if size + rows > capacity:
            capacity = max(size + rows, capacity + capacity // 2)
            for array in numeric.values():
                array.resize(capacity, refcheck=False)
        for i, name in enumerate(names):
            column = batch.column(i)
            if name in text:
                text[name].append(column.to_pylist())
            elif column.null_count:
                raise StoreError(f"{action}: column {name!r} holds NULLs; read it via IFNULL")
            else:
                numeric[name][size : size + rows] = column.to_numpy(zero_copy_only=False)
        size += rows
    raw: dict[str, Any] = {}
    for name in names:
        if name in text:
            values = np.empty(size, dtype=object)
            values[:] = [item for part in text[name] for item in part]
            raw[name] = values
        else:
            array = numeric[name]
            array.resize(size, refcheck=False)
            raw[name] = array
    return raw


_FLOAT_KINDS = ("float64", "time?")


def _finish_columns(raw: dict[str, Any], columns: dict[str, str]) -> dict[str, Any]:
    # Sentinels are replaced in place: the arrays are fresh, and copies would cost a
    # full column each on a long history.
    data: dict[str, Any] = {}
    for name, kind in columns.items():
        values = raw[name]
        if kind == "time?":
            values[values < 0] = np.nan
        elif kind == "int?":
            values = pd.arrays.IntegerArray(values, values < 0)
        elif kind == "str?":
            values[values == ""] = None
        data[name] = values
    return data
