"""The SQLite queue store: opening, pragmas, transactions, read-only mode and migrations.

All connections to a store go through :func:`connect`. Writers get WAL mode,
``synchronous=NORMAL``, a busy timeout and foreign keys; readers opened with
``readonly=True`` use SQLite's ``mode=ro`` and never create or change the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from ._time import Clock, system_clock, to_epoch
from .errors import QAnalyticsError, ReadOnlyError, SchemaError, StoreError
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = ["BUSY_TIMEOUT_S", "Store", "StoreNotFound", "connect"]

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
        message = _sqlite_message(exc)
        if "readonly" in message or "read-only" in message:
            raise ReadOnlyError(f"{action}: the store is read-only ({message})") from exc
        raise StoreError(f"{action} failed: {message}") from exc


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
    if lowered.startswith(("postgresql://", "postgres://")):
        raise StoreError("PostgreSQL stores are not supported yet; use a SQLite file path")
    if lowered.startswith("sqlite:///"):
        return urllib.parse.unquote(target[len("sqlite:///") :]) or ":memory:"
    if lowered.startswith("sqlite://"):
        return ":memory:"
    return target


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
    """

    def __init__(
        self, path: str, conn: sqlite3.Connection, *, readonly: bool, clock: Clock
    ) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.clock = clock
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
        state = ", closed" if self._closed else ""
        return f"<qanalytics.Store {self.path!r} ({mode}{state})>"

    def close(self) -> None:
        """Close the store's connections. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self._adbc is not None:
            with contextlib.suppress(Exception):  # best effort on a side reader
                self._adbc.close()
            self._adbc = None
        self.conn.close()

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
        """
        names = list(columns)
        if not self.in_memory and not self.conn.in_transaction:
            reader = self._adbc_connection()
            if reader is not None:
                return self._read_frame_adbc(reader, sql, params, columns, action)
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
        return _finish_frame(raw, columns)

    def _adbc_connection(self) -> Any:
        if self._adbc is None:
            try:
                from adbc_driver_sqlite import dbapi as adbc_dbapi
            except ImportError:  # pragma: no cover - the driver is a declared dependency
                self._adbc = False
                return None
            uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
            try:
                self._adbc = adbc_dbapi.connect(uri, autocommit=True)
            except Exception:
                self._adbc = False
        return self._adbc or None

    def _read_frame_adbc(
        self,
        reader: Any,
        sql: str,
        params: Sequence[Any],
        columns: dict[str, str],
        action: str,
    ) -> pd.DataFrame:
        names = list(columns)
        cursor = reader.cursor()
        try:
            try:
                cursor.execute(sql, tuple(params) if params else None)
                table = cursor.fetch_arrow_table()
            except Exception as exc:  # the driver raises its own error hierarchy
                raise StoreError(f"{action} failed: {exc}") from exc
        finally:
            cursor.close()
        raw: dict[str, Any] = {}
        for i, name in enumerate(names):
            kind = columns[name]
            col = table.column(i)
            if kind in ("str", "str?"):
                raw[name] = np.asarray(col.to_pylist(), dtype=object)
            elif col.null_count:
                raise StoreError(f"{action}: column {name!r} holds NULLs; read it via IFNULL")
            else:
                dtype = "int64" if kind in ("int64", "int?") else "float64"
                raw[name] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)
        return _finish_frame(raw, columns)

    def latest_event_at(self) -> float | None:
        """The time of the latest recorded event: a beat, registration, claim or finish.

        Returns
        -------
        float or None
            Epoch seconds; None for an empty store.
        """
        row = self.query(
            "SELECT max(x) FROM ("
            " SELECT max(at) AS x FROM heartbeats UNION ALL"
            " SELECT max(at) FROM worker_events UNION ALL"
            " SELECT max(created_at) FROM tasks UNION ALL"
            " SELECT max(claimed_at) FROM attempts UNION ALL"
            " SELECT max(finished_at) FROM attempts)",
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


def _finish_frame(raw: dict[str, Any], columns: dict[str, str]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for name, kind in columns.items():
        values = raw[name]
        if kind == "time?":
            values = np.where(values < 0, np.nan, values)
        elif kind == "int?":
            values = pd.array(values, dtype="Int64")
            values[values < 0] = pd.NA
        elif kind == "str?":
            values = np.where(values == "", None, values)
        data[name] = values
    return pd.DataFrame(data, columns=list(columns))


# SQLITE_NOTADB and SQLITE_CORRUPT: the file's bytes are not a usable SQLite database.
_NOT_A_DATABASE = (26, 11)


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
        if getattr(exc, "sqlite_errorcode", None) in _NOT_A_DATABASE:
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
            raise SchemaError(
                f"{path!r} is a SQLite database with other tables and no qanalytics "
                "schema; refusing to add one to it"
            )
    if readonly:
        return  # an older read-only store is read as it is; migrations need a writer
    if version == SCHEMA_VERSION:
        return
    try:
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
) -> Store:
    """Open (and if needed create) a qanalytics queue store.

    Parameters
    ----------
    target : str or os.PathLike, default ":memory:"
        A file path, a :class:`pathlib.Path`, a ``sqlite:///path`` URL, or ``":memory:"``.
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
        with other tables), or has a newer schema than this code.
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
    path = _target_path(target)
    memory = path == ":memory:"
    if not memory and os.path.isdir(path):
        raise StoreError(f"cannot open {path!r}: it is a directory, not a database file")
    try:
        if readonly:
            if memory:
                conn = sqlite3.connect(":memory:", isolation_level=None)
            else:
                if not os.path.exists(path):
                    raise StoreNotFound(f"no store at {path!r} (opened read-only, so not created)")
                uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, isolation_level=None)
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
        raise
    store = Store(path, conn, readonly=readonly, clock=system_clock)
    if latest:
        frozen = store.latest_event_at()
        store.clock = (lambda: frozen) if frozen is not None else system_clock
    elif clock is not None:
        store.clock = cast(Clock, clock)
    return store
