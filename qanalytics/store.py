"""The SQLite queue store: opening, pragmas, transactions, read-only mode and migrations.

All connections to a store go through :func:`connect`. Writers get WAL mode,
``synchronous=NORMAL``, a busy timeout and foreign keys; readers opened with
``readonly=True`` use SQLite's ``mode=ro`` and never create or change the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from ._time import Clock, system_clock, to_epoch
from .errors import QAnalyticsError, ReadOnlyError, SchemaError, StoreError, UnsupportedError
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = ["BUSY_TIMEOUT_S", "LAYOUTS", "NATIVE_CAPABILITIES", "Store", "StoreNotFound", "connect"]

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

#: How long a writer waits for the write lock before giving up, in seconds.
BUSY_TIMEOUT_S = 30.0


class StoreNotFound(QAnalyticsError, FileNotFoundError):
    """The store file does not exist (and was opened read-only, so it is not created)."""


def _sqlite_message(exc: sqlite3.Error) -> str:
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def wrap_errors(action: str) -> Iterator[None]:
    """Turn ``sqlite3`` exceptions into :class:`QAnalyticsError` that say what was being done.

    Parameters
    ----------
    action : str
        What was being done, e.g. ``"heartbeat for worker 'w1'"``.

    Raises
    ------
    ReadOnlyError
        If SQLite refused a write because the database is read-only.
    StoreError
        For any other SQLite error.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise store_error(action, exc) from exc


def store_error(action: str, exc: sqlite3.Error) -> QAnalyticsError:
    """The :class:`QAnalyticsError` that :func:`wrap_errors` raises for a ``sqlite3`` error.

    For hot paths that catch ``sqlite3.Error`` themselves rather than pay for a context
    manager on every call.

    Parameters
    ----------
    action : str
        What was being done, e.g. ``"heartbeat for worker 'w1'"``.
    exc : sqlite3.Error
        The error SQLite raised.

    Returns
    -------
    ReadOnlyError or StoreError
        :class:`ReadOnlyError` if SQLite refused a write because the database is
        read-only, :class:`StoreError` otherwise. The caller raises it ``from exc``.
    """
    message = _sqlite_message(exc)
    if "readonly" in message or "read-only" in message:
        return ReadOnlyError(f"{action}: the store is read-only ({message})")
    return StoreError(f"{action} failed: {message}")


def _target_path(target: str | os.PathLike[str]) -> str:
    if isinstance(target, os.PathLike):
        return os.fspath(target)
    if not isinstance(target, str):
        raise TypeError(
            f"target must be a path, a pathlib.Path, a sqlite:/// URL or ':memory:', "
            f"not {type(target).__name__}"
        )
    if target == "":
        raise ValueError("target must not be empty; use ':memory:' for an in-memory store")
    lowered = target.lower()
    if lowered.startswith("sqlite:///"):
        return urllib.parse.unquote(target[len("sqlite:///") :]) or ":memory:"
    if lowered.startswith("sqlite://"):
        return ":memory:"
    return target


# The ADBC reader links its own copy of SQLite. POSIX advisory locks belong to a process,
# not to a file descriptor, so when one copy closes a descriptor on a database file it
# drops every lock this process holds on it, including those of the other copy's open
# connections; another process may then think nobody else has the file open and delete
# or reset its WAL under them (https://www.sqlite.org/howtocorrupt.html, section 2).
# So a reader is closed only once no Store of this process has the file open any more,
# and the file itself is never opened with plain file I/O while a Store might hold it.
_files_lock = threading.Lock()
_open_files: dict[tuple[int, int], int] = {}
_deferred_readers: dict[tuple[int, int], list[Any]] = {}
# Files whose -wal and -shm a read-only Store of this process created (see _open_readonly).
_created_wal: dict[tuple[int, int], bool] = {}


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)  # stat opens no descriptor, so it cannot drop locks
    except OSError:
        return None
    return (info.st_dev, info.st_ino)


def _in_use(path: str) -> bool:
    fid = _file_id(path)
    with _files_lock:
        return fid is not None and _open_files.get(fid, 0) > 0


class Store:
    """An open qanalytics queue store.

    Create one with :func:`connect`. A store is a context manager that closes its
    connection on exit.

    Attributes
    ----------
    path : str
        The database file, or ``":memory:"``.
    readonly : bool
        Whether the store was opened read-only.
    clock : callable
        Returns the current UTC time as epoch seconds; every write stamps time from it.
    conn : sqlite3.Connection
        The underlying connection (autocommit; use :meth:`transaction` to write).
    layout : {"native", "classic"}
        ``"native"`` for a qanalytics store. ``"classic"`` for a classic queue database
        (``task_queue`` and ``workers`` tables) opened read-only: the connection then holds
        TEMP views that present it in the native shape (see :mod:`qanalytics.classic`).
    capabilities : frozenset of str
        What the store records: ``"tasks"``, ``"last_heartbeat"``, ``"heartbeat_history"``,
        ``"attempt_history"``, ``"worker_events"``. Questions that need a missing one raise
        :class:`UnsupportedError` (:meth:`require`).
    """

    #: The SQL dialect: ``"sqlite"``, or ``"postgresql"`` for a PostgreSQL store.
    dialect = "sqlite"
    #: Appended to the claim's SELECT; SQLite's BEGIN IMMEDIATE already excludes claimers.
    claim_lock = ""
    #: Names the claim's index: without statistics SQLite's planner picks the (status,
    #: type) index and sorts every queued task on each claim (36 claims/s at 200k queued).
    claim_index = " INDEXED BY tasks_claim"

    def __init__(
        self,
        path: str,
        conn: sqlite3.Connection,
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
        #: The query of the side reader's URI: "mode=ro", or "mode=ro&immutable=1".
        self._reader_query = "mode=ro"
        self._fid = None if path == ":memory:" or "://" in path else _file_id(path)
        if self._fid is not None:
            with _files_lock:
                _open_files[self._fid] = _open_files.get(self._fid, 0) + 1

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
        tidy = False
        if self._fid is not None:
            with _files_lock:
                left = _open_files.get(self._fid, 1) - 1
                if left > 0:
                    # Another Store here still has the file open: closing the reader now
                    # would drop that Store's locks. Close it with the last one.
                    _open_files[self._fid] = left
                    _deferred_readers.setdefault(self._fid, []).extend(readers)
                    readers = []
                else:
                    _open_files.pop(self._fid, None)
                    readers += _deferred_readers.pop(self._fid, [])
                    tidy = _created_wal.pop(self._fid, False)
        for reader in readers:
            with contextlib.suppress(Exception):  # best effort on a side reader
                reader.close()
        self.conn.close()
        if tidy:
            _remove_reader_wal(self.path)

    @property
    def in_memory(self) -> bool:
        """Whether the store lives in memory rather than in a file."""
        return self.path == ":memory:"

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

    @contextlib.contextmanager
    def transaction(self, action: str = "write") -> Iterator[sqlite3.Connection]:
        """Run a block in one ``BEGIN IMMEDIATE`` transaction.

        Commits when the block ends normally and rolls back on any exception. Nested
        calls join the outer transaction.

        Parameters
        ----------
        action : str, default "write"
            What the transaction does, used in error messages.

        Yields
        ------
        sqlite3.Connection
            The connection to execute statements on.

        Raises
        ------
        ReadOnlyError
            If the store is read-only.
        StoreError
            If SQLite fails (for example the write lock could not be taken in time).
        """
        self.require_writable(action)
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        with wrap_errors(action):
            conn.execute("BEGIN IMMEDIATE")
        try:
            with wrap_errors(action):
                yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            with wrap_errors(action):
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
        with wrap_errors(action):
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

        File-backed stores are read through the Arrow-native ADBC SQLite driver on a
        separate read-only connection (3-4x faster than a ``sqlite3`` cursor on large
        results). In-memory stores, or a missing driver, use the ``sqlite3`` cursor.

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
        # are read through.
        if not self.in_memory and not self.conn.in_transaction and self.layout == "native":
            reader = self._adbc_connection()
            if reader is not None:
                return self._read_columns_adbc(reader, sql, params, columns, action)
        with wrap_errors(action):
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
        if self._adbc is None:
            try:
                from adbc_driver_sqlite import dbapi as adbc_dbapi
            except ImportError:  # pragma: no cover - the driver is a declared dependency
                self._adbc = False
                return None
            uri = _file_uri(self.path, self._reader_query)
            try:
                self._adbc = adbc_dbapi.connect(uri, autocommit=True)
            except Exception:
                self._adbc = False
        return self._adbc or None

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
                # The driver's default of 1,024 rows a batch means thousands of Python
                # round trips for a long history; larger batches stay a few MiB each.
                cursor.adbc_statement.set_options(**{_ADBC_BATCH_ROWS: str(_ADBC_BATCH_SIZE)})
                cursor.execute(sql, tuple(params) if params else None)
                raw = _collect_batches(cursor.fetch_record_batch(), columns, action)
            except StoreError:
                raise
            except Exception as exc:  # the driver raises its own error hierarchy
                raise StoreError(f"{action} failed: {exc}") from exc
        finally:
            cursor.close()
        return _finish_columns(raw, columns)

    def latest_event_at(self) -> float | None:
        """The time of the latest recorded event: a beat, registration, claim or finish.

        Returns
        -------
        float or None
            Epoch seconds; None for an empty store.
        """
        if self.layout != "native":
            row = self.query(
                "SELECT max(x) FROM ("
                " SELECT max(last_heartbeat_at) AS x FROM workers UNION ALL"
                " SELECT max(created_at) FROM tasks UNION ALL"
                " SELECT max(started_at) FROM tasks UNION ALL"
                " SELECT max(finished_at) FROM tasks) AS events",
                action="find the latest recorded event",
            )[0]
            return None if row[0] is None else float(row[0])
        row = self.query(
            "SELECT max(x) FROM ("
            " SELECT max(at) AS x FROM heartbeats UNION ALL"
            " SELECT max(at) FROM worker_events UNION ALL"
            " SELECT max(created_at) FROM tasks UNION ALL"
            " SELECT max(claimed_at) FROM attempts UNION ALL"
            " SELECT max(finished_at) FROM attempts) AS events",
            action="find the latest recorded event",
        )[0]
        return None if row[0] is None else float(row[0])

    # -- schema -------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        """The store's ``PRAGMA user_version``.

        Returns
        -------
        int
        """
        return int(self.query("PRAGMA user_version", action="read the schema version")[0][0])


#: The ADBC SQLite statement option that sets how many rows each Arrow batch holds.
_ADBC_BATCH_ROWS = "adbc.sqlite.query.batch_rows"
_ADBC_BATCH_SIZE = 1 << 16


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


# SQLITE_NOTADB and SQLITE_CORRUPT: the file's bytes are not a usable SQLite database.
_NOT_A_DATABASE = (26, 11)
_SQLITE_CORRUPT = 11


def _check_is_sqlite(conn: sqlite3.Connection, path: str) -> tuple[int, int, int]:
    try:
        # One read transaction, so all three come from the same snapshot even while
        # another process is creating the schema.
        conn.execute("BEGIN")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        # A lock or an I/O problem says nothing about what the file holds.
        code = getattr(exc, "sqlite_errorcode", None)
        if code == _SQLITE_CORRUPT:
            raise SchemaError(
                f"{path!r} is a damaged SQLite database ({_sqlite_message(exc)}); "
                "restore it from a copy"
            ) from None
        if code in _NOT_A_DATABASE:
            raise SchemaError(
                f"{path!r} is not a SQLite database ({_sqlite_message(exc)})"
            ) from None
        raise StoreError(f"reading the schema of {path!r} failed: {_sqlite_message(exc)}") from exc
    return int(version), int(app_id), int(tables)


def _migrate(conn: sqlite3.Connection, path: str, *, readonly: bool) -> None:
    version, app_id, tables = _check_is_sqlite(conn, path)
    if version > SCHEMA_VERSION and app_id == APPLICATION_ID:
        raise SchemaError(
            f"{path!r} has qanalytics schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}; upgrade qanalytics to open it"
        )
    if app_id != APPLICATION_ID:
        if readonly:
            raise SchemaError(
                f"{path!r} is a SQLite database but not a qanalytics store "
                "(no qanalytics schema found)"
            )
        if tables:
            from .classic import is_classic

            with contextlib.suppress(sqlite3.Error):
                if is_classic(conn):
                    raise SchemaError(
                        f"{path!r} is a classic queue database; qanalytics only reads it: "
                        "connect(path, readonly=True)"
                    )
            raise SchemaError(
                f"{path!r} is a SQLite database with other tables and no qanalytics "
                "schema; refusing to add one to it"
            )
    if readonly:
        return  # an older read-only store is read as it is; migrations need a writer
    if version == SCHEMA_VERSION:
        return
    try:
        if version == 0 and tables == 0:
            # Only a file without tables can take this; it lets maintenance.vacuum()
            # return free pages incrementally instead of rewriting the whole file.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("BEGIN IMMEDIATE")
        # Re-read under the lock: another process may have migrated meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            for statement in _split_sql(MIGRATIONS[step]):
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"creating or migrating the schema of {path!r} failed: {exc}") from exc


def _split_sql(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statements one by one instead.
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


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
        :mod:`qanalytics.classic`). A WAL-mode file with no ``-wal`` beside it (no
        writer has it open) is opened ``immutable`` so nothing is created next to it.

    Returns
    -------
    Store
        Usable as a context manager.

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
    >>> with qa.connect(":memory:") as db:
    ...     qa.register_worker(db, "w1", {"gpu": True})
    """
    latest = isinstance(clock, str) and clock == "latest"
    if clock is not None and not latest and not callable(clock):
        raise TypeError(
            f"clock must be a callable returning epoch seconds or 'latest', not {clock!r}"
        )
    if not isinstance(readonly, bool):
        raise TypeError(f"readonly must be a bool, not {type(readonly).__name__}")
    if isinstance(target, str) and target.lower().startswith(("postgresql://", "postgres://")):
        from .pgstore import connect_postgres

        pg = connect_postgres(target, readonly=readonly, clock=system_clock)
        return _set_clock(pg, clock, isinstance(clock, str) and clock == "latest")
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout={layout!r} must be 'auto', 'native' or 'classic'")
    if layout == "classic" and not readonly:
        raise ValueError("layout='classic' is read-only: pass readonly=True")
    path = _target_path(target)
    memory = path == ":memory:"
    if not memory:
        _check_file(path)
    reader_query, created = "mode=ro", False
    try:
        if readonly:
            if memory:
                conn = sqlite3.connect(":memory:", isolation_level=None)
            else:
                if not os.path.exists(path):
                    raise StoreNotFound(f"no store at {path!r} (opened read-only, so not created)")
                conn, reader_query, created = _open_readonly(path, layout)
        else:
            if not memory:
                parent = Path(path).resolve().parent
                if not parent.is_dir():
                    raise StoreError(
                        f"cannot create {path!r}: folder {str(parent)!r} does not exist"
                    )
            conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path!r}: {_sqlite_message(exc)}") from exc
    try:
        with wrap_errors(f"open {path!r}"):
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000):d}")
        classic = _classic_layout(conn, path, layout, readonly=readonly)
        if classic is not None:
            store = Store(
                path,
                conn,
                readonly=True,
                clock=system_clock,
                layout="classic",
                capabilities=classic,
            )
            _note_created(store, created)
            return _set_clock(store, clock, latest)
        _migrate(conn, path, readonly=readonly)
        with wrap_errors(f"set up the connection to {path!r}"):
            conn.execute("PRAGMA foreign_keys = ON")
            if not readonly and not memory:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":  # pragma: no cover - some network filesystems
                    raise StoreError(f"cannot switch {path!r} to WAL mode (got {mode!r})")
                conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        if created:
            _remove_reader_wal(path)
        raise
    store = Store(path, conn, readonly=readonly, clock=system_clock)
    store._reader_query = reader_query
    _note_created(store, created)
    return _set_clock(store, clock, latest)


def _note_created(store: Store, created: bool) -> None:
    """Remember that opening `store` created its -wal and -shm, to remove them at close."""
    if created and store._fid is not None:
        with _files_lock:
            _created_wal[store._fid] = True


def _set_clock(store: Store, clock: Any, latest: bool) -> Store:
    try:
        if latest:
            frozen = store.latest_event_at()
            store.clock = (lambda: frozen) if frozen is not None else system_clock
        elif clock is not None:
            store.clock = cast(Clock, clock)
    except BaseException:
        store.close()
        raise
    return store


def _file_uri(path: str, query: str) -> str:
    """A ``file:`` URI for `path`; names that are not valid UTF-8 keep their bytes."""
    return "file:" + urllib.parse.quote(os.fsencode(os.path.abspath(path))) + "?" + query


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_file(path: str) -> None:
    """Refuse a path that exists but is not a regular file (reading a FIFO would hang)."""
    try:
        mode = os.stat(path).st_mode  # stat opens no descriptor, so it cannot drop locks
    except FileNotFoundError:
        return  # a writer creates it; a reader says StoreNotFound
    except OSError as exc:
        raise StoreError(f"cannot open {path!r}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise StoreError(f"cannot open {path!r}: it is a directory, not a database file")
    for test, kind in _FILE_KINDS:
        if test(mode):
            raise StoreError(f"cannot open {path!r}: it is {kind}, not a database file")
    if not stat.S_ISREG(mode):
        raise StoreError(f"cannot open {path!r}: it is not a regular file")


def _is_wal_file(path: str) -> bool:
    """Whether the header of `path` says WAL mode. Opens the file: see :func:`_quiet_wal`."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[:16] == b"SQLite format 3\x00" and header[18] == 2


def _quiet_wal(path: str) -> bool:
    """Whether `path` is a WAL-mode file that no connection has open (no ``-wal`` beside it)."""
    # Reading the header opens and closes a descriptor, which would drop this process's
    # locks on the file: only do it when nothing here can hold any (see _open_files).
    if os.path.exists(path + "-wal") or os.path.exists(path + "-shm") or _in_use(path):
        return False
    return _is_wal_file(path)


def _can_write_beside(path: str) -> bool:
    """Whether this process may write `path` and create files in its folder.

    ``os.access`` answers for the real user and for read-only mounts (``EROFS``), so a
    read-only bind mount or a folder without write permission says False, as does a file
    owned by someone else without write permission.
    """
    folder = os.path.dirname(os.path.abspath(path))
    return os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)


def readonly_open_mode(path: str, *, writable: bool | None = None) -> Literal["ro", "immutable"]:
    """How a read-only connection opens `path`: SQLite ``mode=ro``, or ``immutable=1``.

    A read-only connection to a WAL-mode file needs its ``-wal`` and ``-shm`` files; when
    neither exists (no connection has the file open), it creates them, and cannot remove
    them when it closes. Where it cannot create them (a read-only mount or folder) the open
    fails, and where they would belong to a user who cannot write the database they would
    lock its owner's writers out. So a WAL-mode file with neither file beside it that this
    process cannot write (or create files next to) is opened ``immutable=1``: SQLite then
    reads the database file alone, takes no locks and creates nothing. The caveat: an
    immutable reader does not see a writer that starts while it reads (it may read a
    half-written page and report the file as damaged); re-run the read in that case.

    Parameters
    ----------
    path : str
        The database file.
    writable : bool, optional
        Whether this process can write the file and create files beside it; by default
        asked of the operating system (:func:`os.access`).

    Returns
    -------
    {"ro", "immutable"}
    """
    if not _quiet_wal(path):
        return "ro"
    if writable is None:
        writable = _can_write_beside(path)
    return "ro" if writable else "immutable"


def _remove_reader_wal(path: str) -> None:
    """Remove the ``-wal`` and ``-shm`` files that read-only connections created.

    A read-only connection cannot remove them; a read-write one that closes last
    checkpoints the (empty) log and deletes both, under SQLite's own exclusive lock, so
    nothing is removed while another process uses them. Reads nothing and writes no row.
    """
    if _in_use(path):
        return  # closing a descriptor here would drop the locks of this process's Stores
    with contextlib.suppress(sqlite3.Error, OSError):
        conn = sqlite3.connect(_file_uri(path, "mode=rw"), uri=True, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()


def _open_readonly(path: str, layout: str) -> tuple[sqlite3.Connection, str, bool]:
    """A read-only connection, the side reader's URI query, and whether it created a WAL."""
    mode = readonly_open_mode(path)
    if mode == "immutable":
        query = "mode=ro&immutable=1"
        return sqlite3.connect(_file_uri(path, query), uri=True, isolation_level=None), query, False
    quiet = _quiet_wal(path)
    if layout != "native" and quiet:
        # A read-only connection to a WAL file creates -wal and -shm files beside it (and
        # cannot remove them). Nobody has this one open, so read it as immutable unless it
        # turns out to be a qanalytics store, whose readers keep their usual behaviour.
        conn = sqlite3.connect(
            _file_uri(path, "mode=ro&immutable=1"), uri=True, isolation_level=None
        )
        try:
            from .classic import is_classic

            if layout == "classic" or is_classic(conn):
                return conn, "mode=ro&immutable=1", False
        except sqlite3.Error:
            pass  # not a database: the usual path says so
        conn.close()
    conn = sqlite3.connect(_file_uri(path, "mode=ro"), uri=True, isolation_level=None)
    return conn, "mode=ro", quiet


def _classic_layout(
    conn: sqlite3.Connection, path: str, layout: str, *, readonly: bool
) -> frozenset[str] | None:
    """The capabilities of a classic database opened as such, or None for the native path."""
    if path == ":memory:" or not readonly:
        return None  # writers refuse a classic file in _migrate
    from . import classic

    _version, app_id, _tables = _check_is_sqlite(conn, path)
    if app_id == APPLICATION_ID and layout != "classic":
        return None
    with wrap_errors(f"read the layout of {path!r}"):
        found = classic.is_classic(conn)
    if layout == "classic" and not found:
        raise SchemaError(
            f"{path!r} does not have the classic queue layout (tables task_queue and "
            "workers with a heartbeat_utc column, and no qanalytics schema)"
        )
    if not found:
        return None
    if layout == "native":
        raise SchemaError(
            f"{path!r} is a classic queue database, not a qanalytics store; open it with "
            "readonly=True and layout='auto' or 'classic' to read it"
        )
    with wrap_errors(f"present the classic queue database {path!r}"):
        return classic.install_views(conn)
