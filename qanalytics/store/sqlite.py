"""The SQLite queue store: opening, pragmas, transactions, read-only mode and migrations.

All connections to a store go through :func:`qanalytics.connect`. Writers get WAL mode,
``synchronous=NORMAL``, a busy timeout and foreign keys; readers opened with
``readonly=True`` use SQLite's ``mode=ro`` and never create or change the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .._time import Clock
from ..errors import QAnalyticsError, ReadOnlyError, SchemaError, StoreError, StoreNotFound
from . import classic
from .base import NATIVE_CAPABILITIES, Store
from .schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

__all__ = ["BUSY_TIMEOUT_S", "SQLiteStore", "open_sqlite", "store_error", "wrap_errors"]

#: How long a writer waits for the write lock before giving up, in seconds.
BUSY_TIMEOUT_S = 30.0


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


class SQLiteStore(Store):
    """A qanalytics store in a SQLite file (or in memory).

    Created by :func:`qanalytics.connect` for a path, a ``sqlite:///`` URL or
    ``":memory:"``. Large reads of a file go through the ADBC SQLite driver.
    """

    dialect = "sqlite"
    #: Names the claim's index: without statistics SQLite's planner picks the (status,
    #: type) index and sorts every queued task on each claim (36 claims/s at 200k queued).
    #: SQLite's BEGIN IMMEDIATE already excludes other claimers, so no row lock is needed.
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
        super().__init__(
            path, conn, readonly=readonly, clock=clock, layout=layout, capabilities=capabilities
        )
        #: The query of the side reader's URI: "mode=ro", or "mode=ro&immutable=1".
        self._reader_query = "mode=ro"
        self._tidy = False
        self._fid = None if path == ":memory:" else _file_id(path)
        if self._fid is not None:
            with _files_lock:
                _open_files[self._fid] = _open_files.get(self._fid, 0) + 1

    def close(self) -> None:
        """Close the store's connections. Closing twice is harmless.

        The last Store of this process on a file whose ``-wal`` and ``-shm`` a read-only
        open created removes them again (see :func:`_remove_reader_wal`).
        """
        if self._closed:
            return
        super().close()
        if self._tidy:
            _remove_reader_wal(self.path)

    def _close_readers(self, readers: list[Any]) -> None:
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
                    self._tidy = _created_wal.pop(self._fid, False)
        super()._close_readers(readers)

    @property
    def in_memory(self) -> bool:
        """Whether the store lives in memory rather than in a file."""
        return self.path == ":memory:"

    def prepare_writes(self) -> bool:
        """Migrate an older schema and switch the file to WAL mode, if not done yet.

        An existing file opened for writing is only read until its first write, which
        does this first (see :meth:`Store.prepare_writes`).

        Returns
        -------
        bool
            Whether anything was left to do.

        Raises
        ------
        ReadOnlyError
            If the store was opened read-only.
        StoreError
            If the migration or the journal-mode switch fails, or a transaction is open.
        """
        super().prepare_writes()
        if not self.write_setup_pending:
            return False
        if self.conn.in_transaction:
            raise StoreError(
                f"cannot set {self.path!r} up for writing inside a transaction; write once "
                "outside it first (or call prepare_writes())"
            )
        assert isinstance(self.conn, sqlite3.Connection)
        _set_up_for_writing(self.conn, self.path)
        self.write_setup_pending = False
        return True

    @property
    def driver_errors(self) -> tuple[type[Exception], ...]:
        """``(sqlite3.Error,)``."""
        return (sqlite3.Error,)

    def map_error(self, action: str, exc: Exception) -> QAnalyticsError:
        """See :meth:`Store.map_error` and :func:`store_error`."""
        assert isinstance(exc, sqlite3.Error)
        return store_error(action, exc)

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

    def _prepare_cursor(self, cursor: Any) -> None:
        # The driver's default of 1,024 rows a batch means thousands of Python round
        # trips for a long history; larger batches stay a few MiB each.
        cursor.adbc_statement.set_options(**{_ADBC_BATCH_ROWS: str(_ADBC_BATCH_SIZE)})

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


def _migrate(
    conn: sqlite3.Connection, path: str, *, readonly: bool, defer: bool = False
) -> bool:
    """Check the file holds a qanalytics store (or nothing) and bring its schema up to date.

    With `defer`, an existing store with an older schema is left as it is and True is
    returned: the caller migrates it on the first write. A file without tables is always
    set up at once (creating a store is a write).
    """
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
            with contextlib.suppress(sqlite3.Error):
                if classic.is_classic(conn):
                    raise SchemaError(
                        f"{path!r} is a classic queue database; qanalytics only reads it: "
                        "connect(path, readonly=True)"
                    )
            raise SchemaError(
                f"{path!r} is a SQLite database with other tables and no qanalytics "
                "schema; refusing to add one to it"
            )
    if readonly:
        return False  # an older read-only store is read as it is; migrations need a writer
    if version == SCHEMA_VERSION:
        return False
    if defer and tables:
        return True  # read as it is until the first write
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
    return False


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


def open_sqlite(
    target: str | os.PathLike[str], *, readonly: bool, clock: Clock, layout: str
) -> SQLiteStore:
    """Open (and if needed create and migrate) a SQLite store; see :func:`qanalytics.connect`.

    Parameters
    ----------
    target : str or os.PathLike
        A path, a ``sqlite:///`` URL or ``":memory:"``.
    readonly : bool
    clock : callable
    layout : {"auto", "native", "classic"}
        Already checked by :func:`qanalytics.connect`.

    Returns
    -------
    SQLiteStore
    """
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
            store = SQLiteStore(
                path, conn, readonly=True, clock=clock, layout="classic", capabilities=classic
            )
            _note_created(store, created)
            return store
        # An existing file is only read until the first write: opening it for writing and
        # reading must leave it byte for byte as it was (no migration, no journal switch).
        # A new (empty) file is a write anyway: it is set up at once.
        fresh = not readonly and not memory and _check_is_sqlite(conn, path)[2] == 0
        pending = _migrate(conn, path, readonly=readonly, defer=not memory)
        with wrap_errors(f"set up the connection to {path!r}"):
            conn.execute("PRAGMA foreign_keys = ON")
            if fresh:
                _set_up_for_writing(conn, path)
            elif not readonly and not memory:
                conn.execute("PRAGMA synchronous = NORMAL")
                journal = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                pending = pending or journal != "wal"
    except BaseException:
        conn.close()
        if created:
            _remove_reader_wal(path)
        raise
    store = SQLiteStore(path, conn, readonly=readonly, clock=clock)
    store._reader_query = reader_query
    store.write_setup_pending = not readonly and not memory and pending
    _note_created(store, created)
    return store


def _set_up_for_writing(conn: sqlite3.Connection, path: str) -> None:
    """Migrate the schema of `path` if it is older, and switch the file to WAL mode."""
    _migrate(conn, path, readonly=False)
    with wrap_errors(f"set up {path!r} for writing"):
        mode = _switch_to_wal(conn)
        if str(mode).lower() != "wal":  # pragma: no cover - some network filesystems
            raise StoreError(f"cannot switch {path!r} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")


def _switch_to_wal(conn: sqlite3.Connection) -> str:
    """``PRAGMA journal_mode = WAL``, retried while other connections hold the file.

    Leaving rollback-journal mode needs an exclusive lock, and SQLite answers "database is
    locked" at once, without its busy handler, when another process holds a shared lock on
    a file still in that mode (several processes opening a new store together). The switch
    is retried for up to the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _note_created(store: SQLiteStore, created: bool) -> None:
    """Remember that opening `store` created its -wal and -shm, to remove them at close."""
    if created and store._fid is not None:
        with _files_lock:
            _created_wal[store._fid] = True



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
            if layout == "classic" or classic.is_classic(conn):
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
