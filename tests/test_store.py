"""The store: opening, schema and migrations, pragmas, transactions, read-only mode."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import qanalytics as qa
import qanalytics.store.sqlite as store_module
from qanalytics.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

TABLES = {"workers", "worker_events", "heartbeats", "tasks", "attempts"}


# A missing table, as SQLite and PostgreSQL word it.
_NO_TABLE = r"(no such table|relation .* does not exist)"


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def raw(db_path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to the store file, for looking under the hood."""
    qa.connect(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    yield conn
    conn.close()


# -- opening ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["str", "path", "url"])
def test_connect_creates_schema(db_path: Path, kind: str) -> None:
    targets: dict[str, str | Path] = {
        "str": str(db_path),
        "path": db_path,
        "url": f"sqlite:///{db_path}",
    }
    target = targets[kind]
    with qa.connect(target) as db:
        assert db.path == str(db_path)
        assert not db.in_memory and not db.readonly
        assert db.schema_version == SCHEMA_VERSION
        assert _tables(db.conn) >= TABLES
    assert db_path.exists()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.close()


def test_connect_url_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with qa.connect("sqlite:///rel%20name.db") as db:
        assert db.path == "rel name.db"
    assert (tmp_path / "rel name.db").exists()


@pytest.mark.parametrize("target", [":memory:", "sqlite://", "sqlite:///:memory:"])
def test_connect_memory(target: str, clock: qa.FakeClock) -> None:
    with qa.connect(target, clock=clock) as db:
        assert db.in_memory and db.path == ":memory:"
        assert db.schema_version == SCHEMA_VERSION
        assert _tables(db.conn) >= TABLES
        assert db.now() == clock()


def test_connect_default_is_memory_with_system_clock() -> None:
    with qa.connect() as db:
        assert db.in_memory
        assert db.now() > 1_600_000_000


def test_store_is_a_context_manager_and_close_is_idempotent(db_path: Path) -> None:
    with qa.connect(db_path) as db:
        assert "readwrite" in repr(db)
    assert "closed" in repr(db)
    db.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.conn.execute("SELECT 1")


@pytest.mark.sqlite_only
def test_pragmas(file_db: qa.Store) -> None:
    conn = file_db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    busy = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    assert busy == int(store_module.BUSY_TIMEOUT_S * 1000) and busy > 0


def test_foreign_keys_are_enforced(db: qa.Store) -> None:
    with pytest.raises(qa.StoreError, match=r"(?i)foreign key"), db.transaction("bad insert") as c:
        c.execute("INSERT INTO heartbeats (worker_key, at) VALUES (999, 1.0)")


def test_status_check_constraint(db: qa.Store) -> None:
    task_id = qa.enqueue(db, "email")
    with pytest.raises(qa.StoreError, match=r"(?i)check"), db.transaction("bad status") as c:
        c.execute("UPDATE tasks SET status = 'lost' WHERE id = ?", (task_id,))
    assert qa.get_task(db, task_id).status == "queued"


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (123, TypeError, "target must be a path"),
        (None, TypeError, "target must be a path"),
        ("", ValueError, "must not be empty"),
        ("postgresql://nobody@127.0.0.1:1/db", qa.StoreError, "(?i)postgres"),
    ],
)
def test_connect_rejects_bad_targets(target: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        qa.connect(target)  # type: ignore[arg-type]


def test_connect_rejects_bad_options(db_path: Path) -> None:
    with pytest.raises(TypeError, match="readonly must be a bool"):
        qa.connect(db_path, readonly="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock must be a callable"):
        qa.connect(db_path, clock=5.0)  # type: ignore[arg-type]
    assert not db_path.exists()


def test_connect_directory_is_a_store_error(tmp_path: Path) -> None:
    for readonly in (False, True):
        with pytest.raises(qa.StoreError, match="is a directory"):
            qa.connect(tmp_path, readonly=readonly)


def test_connect_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(qa.StoreError, match="does not exist"):
        qa.connect(tmp_path / "nope" / "queue.db")


# -- foreign and newer files -------------------------------------------------------------
@pytest.mark.parametrize("readonly", [False, True])
def test_not_a_sqlite_file(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a database, just some text that is long enough " * 20)
    before = _digest(path)
    with pytest.raises(qa.SchemaError, match="is not a SQLite database"):
        qa.connect(path, readonly=readonly)
    assert _digest(path) == before


def test_sqlite_without_schema_readonly(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # creates an empty file
    sqlite3.connect(path).execute("PRAGMA user_version = 0").connection.close()
    with pytest.raises(qa.SchemaError, match="not a qanalytics store"):
        qa.connect(path, readonly=True)


def test_sqlite_with_other_tables_is_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE task_queue (id INTEGER PRIMARY KEY, status TEXT)")
    conn.execute("INSERT INTO task_queue (status) VALUES ('pending')")
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(qa.SchemaError, match="other tables") as info:
        qa.connect(path)
    assert "refusing" in str(info.value)
    assert _digest(path) == before
    assert not (tmp_path / "other.db-wal").exists()
    with pytest.raises(qa.SchemaError, match="not a qanalytics store"):
        qa.connect(path, readonly=True)
    assert _digest(path) == before


def test_empty_sqlite_file_gets_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    path.write_bytes(b"")
    with qa.connect(path) as db:
        assert db.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("readonly", [False, True])
def test_newer_schema(db_path: Path, readonly: bool) -> None:
    qa.connect(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(qa.SchemaError, match=r"newer than this code") as info:
        qa.connect(db_path, readonly=readonly)
    assert f"version {SCHEMA_VERSION + 1}" in str(info.value)


# -- migrations --------------------------------------------------------------------------
def _two_step(monkeypatch: pytest.MonkeyPatch, second: str) -> None:
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, second])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(MIGRATIONS) + 1)


def test_migrates_an_older_store(
    db_path: Path, clock: qa.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with qa.connect(db_path, clock=clock) as db:
        qa.register_worker(db, "w1", {"gpu": True})
        assert db.schema_version == SCHEMA_VERSION
    _two_step(
        monkeypatch,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
        "-- a comment between statements\n"
        "CREATE INDEX notes_body ON notes (body);",
    )
    # An older store opened read-only is read as it is, not migrated.
    with qa.connect(db_path, readonly=True) as ro:
        assert ro.schema_version == SCHEMA_VERSION
        assert qa.get_worker(ro, "w1").capabilities == {"gpu": True}
    # Opened for writing, it is read as it is too, and migrated on the first write.
    with qa.connect(db_path, clock=clock) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert qa.get_worker(db, "w1").capabilities == {"gpu": True}
        qa.heartbeat(db, "w1")
        assert db.schema_version == SCHEMA_VERSION + 1
        assert "notes" in _tables(db.conn)
        assert qa.get_worker(db, "w1").capabilities == {"gpu": True}
    with qa.connect(db_path) as db:  # opening again is a no-op
        assert db.schema_version == SCHEMA_VERSION + 1


def test_failed_migration_rolls_back(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    qa.connect(db_path).close()
    _two_step(monkeypatch, "CREATE TABLE half (x);\nCREATE TABLE workers (x);")
    with pytest.raises(qa.StoreError, match="migrating the schema") as info:  # noqa: SIM117
        with qa.connect(db_path) as db:
            db.prepare_writes()
    assert "already exists" in str(info.value)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "half" not in _tables(conn)
    conn.close()


def test_v0_store_with_our_application_id_is_migrated(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()
    with qa.connect(db_path) as db:
        assert db.schema_version == SCHEMA_VERSION
        assert _tables(db.conn) >= TABLES


# -- transactions ------------------------------------------------------------------------
@pytest.mark.sqlite_only
def test_transaction_commits(file_db: qa.Store, db_path: Path) -> None:
    with file_db.transaction("insert") as conn:
        conn.execute("INSERT INTO tasks (type, created_at, run_after) VALUES ('t', 1.0, 1.0)")
        assert conn.in_transaction
    assert not file_db.conn.in_transaction
    other = sqlite3.connect(db_path)
    assert other.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
    other.close()


def test_transaction_rolls_back_on_error(file_db: qa.Store) -> None:
    with pytest.raises(RuntimeError, match="boom"), file_db.transaction("insert") as conn:
        conn.execute("INSERT INTO tasks (type, created_at, run_after) VALUES ('t', 1.0, 1.0)")
        raise RuntimeError("boom")
    assert not file_db.conn.in_transaction
    assert file_db.query("SELECT count(*) FROM tasks") == [(0,)]


def test_transaction_wraps_sqlite_errors_and_rolls_back(file_db: qa.Store) -> None:
    expected = pytest.raises(qa.StoreError, match=rf"my action failed: {_NO_TABLE}")
    with expected as info, file_db.transaction("my action") as conn:
        conn.execute("INSERT INTO tasks (type, created_at, run_after) VALUES ('t', 1, 1)")
        conn.execute("INSERT INTO nowhere VALUES (1)")
    # The driver's own error is kept as the cause; no backend dresses up as sqlite3.
    assert isinstance(info.value.__cause__, file_db.driver_errors)
    if file_db.dialect == "sqlite":
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert file_db.query("SELECT count(*) FROM tasks") == [(0,)]


def test_nested_transactions_join_the_outer_one(file_db: qa.Store) -> None:
    with pytest.raises(RuntimeError), file_db.transaction("outer") as conn:
        qa.enqueue(file_db, "inner")
        assert conn.in_transaction
        raise RuntimeError("undo both")
    assert file_db.query("SELECT count(*) FROM tasks") == [(0,)]


@pytest.mark.sqlite_only
def test_transaction_is_immediate(file_db: qa.Store, db_path: Path) -> None:
    other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
    with file_db.transaction("hold the lock"):
        # IMMEDIATE takes the write lock at BEGIN, before any statement ran.
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        # Readers are not blocked (WAL).
        assert other.execute("SELECT count(*) FROM workers").fetchone() == (0,)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


@pytest.mark.sqlite_only
def test_transaction_recovers_after_failed_commit(file_db: qa.Store) -> None:
    # A deferred foreign key makes COMMIT itself fail, which leaves SQLite's transaction open.
    expected = pytest.raises(qa.StoreError, match="deferred insert failed: FOREIGN KEY")
    with expected, file_db.transaction("deferred insert") as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")
        conn.execute("INSERT INTO heartbeats (worker_key, at) VALUES (42, 1.0)")
    assert not file_db.conn.in_transaction
    assert qa.heartbeat(file_db, "nobody") is False
    qa.register_worker(file_db, "w1")
    assert file_db.query("SELECT count(*) FROM heartbeats") == [(1,)]


# -- locking -----------------------------------------------------------------------------
@pytest.fixture
def locked(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[qa.Store]:
    """A store whose file another connection holds the write lock on."""
    with qa.connect(db_path) as setup:
        qa.register_worker(setup, "w1")
        task_id = qa.enqueue(setup, "email")
        assert task_id == 1
        qa.claim(setup, "w1")
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.01)
    db = qa.connect(db_path)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield db
    holder.execute("ROLLBACK")
    holder.close()
    db.close()


@pytest.mark.parametrize(
    ("call", "action"),
    [
        (lambda db: qa.register_worker(db, "w2"), "register worker 'w2'"),
        (lambda db: qa.heartbeat(db, "w1"), "heartbeat for worker 'w1'"),
        (lambda db: qa.remove_worker(db, "w1"), "remove worker 'w1'"),
        (lambda db: qa.enqueue(db, "email"), "enqueue a 'email' task"),
        (lambda db: qa.claim(db, "w1"), "claim a task for worker 'w1'"),
        (lambda db: qa.complete(db, 1), "complete task 1"),
        (lambda db: qa.fail(db, 1, "x"), "fail task 1"),
        (lambda db: qa.cancel(db, 1), "cancel task 1"),
        (lambda db: qa.requeue_orphans(db), "requeue orphaned tasks"),
    ],
)
def test_locked_database_is_a_store_error(locked: qa.Store, call: object, action: str) -> None:
    with pytest.raises(qa.StoreError) as info:
        call(locked)  # type: ignore[operator]
    message = str(info.value)
    assert message.startswith(action) and "database is locked" in message
    assert isinstance(info.value, qa.QAnalyticsError)
    assert not locked.conn.in_transaction


def test_locked_database_reads_still_work(locked: qa.Store) -> None:
    assert qa.get_worker(locked, "w1").worker_id == "w1"
    assert qa.get_task(locked, 1).status == "processing"


def test_connect_while_a_rollback_journal_file_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.01)
    try:
        with pytest.raises(qa.StoreError, match="database is locked") as info:
            qa.connect(path)
        # A lock says nothing about what the file holds.
        assert not isinstance(info.value, qa.SchemaError)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


# -- read-only ---------------------------------------------------------------------------
def test_readonly_never_creates_a_file(db_path: Path) -> None:
    with pytest.raises(qa.StoreNotFound, match="not created") as info:
        qa.connect(db_path, readonly=True)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, qa.QAnalyticsError)
    assert not db_path.exists()


@pytest.mark.sqlite_only
def test_readonly_uses_mode_ro(file_db: qa.Store, db_path: Path) -> None:
    qa.register_worker(file_db, "w1")
    with qa.connect(db_path, readonly=True) as ro:
        assert ro.readonly and "readonly" in repr(ro)
        # SQLite itself refuses writes, not only our guard.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.conn.execute("DELETE FROM workers")
        with pytest.raises(qa.ReadOnlyError, match="read-only"):
            ro.query("DELETE FROM workers", action="sneak a write")
    assert qa.get_worker(file_db, "w1").worker_id == "w1"


@pytest.mark.parametrize(
    "write",
    [
        lambda db: qa.register_worker(db, "w2"),
        lambda db: qa.heartbeat(db, "w1"),
        lambda db: qa.remove_worker(db, "w1"),
        lambda db: qa.enqueue(db, "email"),
        lambda db: qa.claim(db, "w1"),
        lambda db: qa.complete(db, 1),
        lambda db: qa.fail(db, 1, "x"),
        lambda db: qa.cancel(db, 1),
        lambda db: qa.requeue_orphans(db),
        lambda db: db.transaction("anything").__enter__(),
    ],
)
def test_readonly_writes_raise(file_db: qa.Store, store_target: str, write: object) -> None:
    qa.register_worker(file_db, "w1")
    qa.enqueue(file_db, "email")
    on_file = file_db.dialect == "sqlite"
    before = _digest(Path(store_target)) if on_file else None
    with (
        qa.connect(store_target, readonly=True) as ro,
        pytest.raises(qa.ReadOnlyError, match="only"),
    ):
        write(ro)  # type: ignore[operator]
    assert qa.get_task(file_db, 1).status == "queued"
    if on_file:
        assert _digest(Path(store_target)) == before


def test_readonly_reads_while_a_writer_is_open(
    file_db: qa.Store, store_target: str, clock: qa.FakeClock
) -> None:
    qa.register_worker(file_db, "w1", {"zone": "a"})
    with qa.connect(store_target, readonly=True) as ro:
        assert qa.get_worker(ro, "w1").capabilities == {"zone": "a"}
        clock.advance(10)
        assert qa.heartbeat(file_db, "w1")
        # The reader sees the writer's committed changes.
        assert qa.get_worker(ro, "w1").last_heartbeat_at.timestamp() == clock()  # type: ignore[union-attr]
        with file_db.transaction("pending write"):
            qa.enqueue(file_db, "email")
            assert ro.query("SELECT count(*) FROM tasks") == [(0,)]
        assert ro.query("SELECT count(*) FROM tasks") == [(1,)]


def test_query_wraps_errors(db: qa.Store) -> None:
    with pytest.raises(qa.StoreError, match=rf"look around failed: {_NO_TABLE}"):
        db.query("SELECT * FROM nowhere", action="look around")


# -- the clock -----------------------------------------------------------------------------
def test_clock_stamps_every_write(db: qa.Store, clock: qa.FakeClock) -> None:
    qa.register_worker(db, "w1")
    clock.advance(10)
    qa.heartbeat(db, "w1")
    clock.advance(10)
    task_id = qa.enqueue(db, "email")
    clock.advance(10)
    qa.claim(db, "w1")
    clock.advance(10)
    qa.complete(db, task_id)
    clock.advance(10)
    qa.remove_worker(db, "w1")
    t0 = clock() - 50
    times = set()
    for sql in [
        "SELECT registered_at FROM workers",
        "SELECT last_heartbeat_at FROM workers",
        "SELECT removed_at FROM workers",
        "SELECT at FROM worker_events",
        "SELECT at FROM heartbeats",
        "SELECT created_at FROM tasks",
        "SELECT run_after FROM tasks",
        "SELECT started_at FROM tasks",
        "SELECT finished_at FROM tasks",
        "SELECT claimed_at FROM attempts",
        "SELECT finished_at FROM attempts",
    ]:
        times |= {row[0] for row in db.query(sql)}
    assert times == {t0, t0 + 10, t0 + 20, t0 + 30, t0 + 40, t0 + 50}


def test_clock_latest_freezes_now_at_the_last_event(db_path: Path) -> None:
    clock = qa.FakeClock(1_000.0)
    with qa.connect(db_path, clock=clock) as db:
        qa.register_worker(db, "w1")
        clock.advance(30)
        qa.heartbeat(db, "w1")
        clock.advance(5)
        task_id = qa.enqueue(db, "t")
        qa.claim(db, "w1")
        clock.advance(7)
        qa.complete(db, task_id)
        assert db.latest_event_at() == 1_042.0
    with qa.connect(db_path, readonly=True, clock="latest") as ro:
        assert ro.now() == 1_042.0
        assert qa.workers(ro)["state"].tolist() == ["active"]
    with qa.connect(":memory:", clock="latest") as empty:
        assert empty.latest_event_at() is None
        assert abs(empty.now() - time.time()) < 60


def test_clock_rejects_other_strings() -> None:
    with pytest.raises(TypeError, match="clock"):
        qa.connect(":memory:", clock="earliest")  # type: ignore[arg-type]


# -- column reads and the heartbeat hot path -------------------------------------------
_MIXED = {"n": "int64", "x": "float64", "t": "time?", "k": "int?", "s": "str?"}
_MIXED_SQL = (
    "SELECT worker_key, at, IFNULL(CASE WHEN worker_key % 3 = 0 THEN NULL ELSE at END, -1.0),"
    " IFNULL(task_id, -1), IFNULL(CASE WHEN task_id IS NULL THEN NULL ELSE 'x' END, '')"
    " FROM heartbeats WHERE at >= ? ORDER BY at"
)


def _fill_beats(store: qa.Store, rows: int) -> None:
    for i in range(7):
        qa.register_worker(store, f"w{i}")
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO heartbeats (worker_key, at, task_id) VALUES (?, ?, ?)",
            ((1 + i % 7, 1_700_000_000.0 + i, None if i % 5 else i) for i in range(rows)),
        )


@pytest.mark.parametrize("rows", [0, 1, 70_000 * 3 + 17])
def test_read_columns_matches_the_cursor_path(db_path: Path, rows: int) -> None:
    # Enough rows for several Arrow batches, so the growing arrays are exercised.
    with qa.connect(db_path) as writer:
        _fill_beats(writer, rows)
    with qa.connect(db_path, readonly=True) as db:
        arrow = db.read_frame(_MIXED_SQL, (0.0,), columns=_MIXED)
        assert db._adbc, "the ADBC driver should have been used"
        db.conn.execute("BEGIN")  # a transaction forces the sqlite3 cursor path
        try:
            cursor = db.read_frame(_MIXED_SQL, (0.0,), columns=_MIXED)
        finally:
            db.conn.execute("ROLLBACK")
        columns = db.read_columns(_MIXED_SQL, (0.0,), columns=_MIXED)
    import pandas as pd

    pd.testing.assert_frame_equal(arrow, cursor)
    assert len(arrow) == rows + 7  # with the registration beats
    assert [str(t) for t in arrow.dtypes[:4]] == ["int64", "float64", "float64", "Int64"]
    assert list(columns) == list(_MIXED)
    assert isinstance(columns["k"], pd.arrays.IntegerArray)
    # read_frame keeps text as Python objects (None for missing), not pandas' str dtype.
    as_frame = pd.DataFrame(
        {k: pd.Series(v, dtype=object) if k == "s" else v for k, v in columns.items()}
    )
    pd.testing.assert_frame_equal(as_frame, arrow)
    if rows:
        assert arrow["t"].isna().any() and arrow["k"].isna().any()
        assert arrow["s"].isna().any() and (arrow["s"] == "x").any()


def test_store_error_matches_wrap_errors() -> None:
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    other = sqlite3.OperationalError("database is locked")
    assert isinstance(store_module.store_error("beat", readonly), qa.ReadOnlyError)
    error = store_module.store_error("beat", other)
    assert type(error) is qa.StoreError and str(error) == "beat failed: database is locked"
    for exc in (readonly, other):
        expected = type(store_module.store_error("beat", exc))
        with pytest.raises(expected) as info, store_module.wrap_errors("beat"):
            raise exc
        assert str(info.value) == str(store_module.store_error("beat", exc))


def test_heartbeat_read_only(db_path: Path) -> None:
    with qa.connect(db_path) as writer:
        qa.register_worker(writer, "w1")
    with (
        qa.connect(db_path, readonly=True) as db,
        pytest.raises(qa.ReadOnlyError, match="cannot heartbeat for worker 'w1'"),
    ):
        qa.heartbeat(db, "w1")


def test_heartbeat_joins_an_outer_transaction(file_db: qa.Store) -> None:
    qa.register_worker(file_db, "w1")
    with pytest.raises(RuntimeError), file_db.transaction():
        assert qa.heartbeat(file_db, "w1") is True
        assert file_db.conn.in_transaction  # joined, not committed
        raise RuntimeError("undo")
    assert file_db.query("SELECT count(*) FROM heartbeats") == [(1,)]
    with file_db.transaction():
        assert qa.heartbeat(file_db, "w1", task_id=3) is True
        assert qa.heartbeat(file_db, "ghost") is False
    assert file_db.query("SELECT count(*) FROM heartbeats") == [(2,)]
    assert not file_db.conn.in_transaction


def test_heartbeat_wraps_and_rolls_back_sqlite_errors(db_path: Path) -> None:
    with qa.connect(db_path) as db:
        qa.register_worker(db, "w1")
        db.conn.execute("PRAGMA busy_timeout = 0")
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(qa.StoreError, match=r"heartbeat for worker 'w1' failed: .*lock"):
                qa.heartbeat(db, "w1")
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert not db.conn.in_transaction
        db.conn.execute("DROP TABLE heartbeats")  # the INSERT now fails after the UPDATE
        with pytest.raises(qa.StoreError, match="no such table"):
            qa.heartbeat(db, "w1")
        assert not db.conn.in_transaction
        last = db.query("SELECT last_heartbeat_at FROM workers")[0][0]
        assert last == db.query("SELECT registered_at FROM workers")[0][0]


def test_no_plain_file_io_on_a_database_a_store_holds(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing any descriptor on the file would drop the SQLite locks this process holds.
    with qa.connect(db_path) as db:
        qa.register_worker(db, "w1")
        opened: list[str] = []
        real_open = open

        def spy(file: object, *args: object, **kwargs: object) -> object:
            opened.append(str(file))
            return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

        monkeypatch.setattr("builtins.open", spy)
        assert store_module._quiet_wal(str(db_path)) is False
        with qa.connect(db_path, readonly=True) as ro:
            assert qa.get_worker(ro, "w1").worker_id == "w1"
        assert str(db_path) not in opened


def test_arrow_reader_closes_with_the_last_store_on_the_file(db_path: Path) -> None:
    with qa.connect(db_path) as writer:
        qa.register_worker(writer, "w1")
    a = qa.connect(db_path, readonly=True)
    b = qa.connect(db_path)
    assert len(qa.heartbeats(a)) == 1
    reader = a._adbc
    assert reader, "the Arrow reader should have been used"
    fid = store_module._file_id(str(db_path))
    a.close()
    # b still has the file open: closing a's reader would drop b's locks, so it waits.
    assert reader in store_module._deferred_readers[fid]
    assert store_module._open_files[fid] == 1
    qa.heartbeat(b, "w1")
    b.close()
    assert fid not in store_module._deferred_readers and fid not in store_module._open_files


def test_latest_event_on_every_backend(db: qa.Store, clock: qa.FakeClock) -> None:
    assert db.latest_event_at() is None
    qa.register_worker(db, "w1")
    clock.advance(30)
    qa.heartbeat(db, "w1")
    clock.advance(5)
    assert db.latest_event_at() == pytest.approx(clock() - 5)
    assert db.resolve_now("latest") == pytest.approx(clock() - 5)


def test_switch_to_wal_retries_while_another_process_holds_the_file() -> None:
    """A new file's switch to WAL answers "locked" without the busy handler; it is retried."""
    from qanalytics.store.sqlite import _switch_to_wal

    class Busy:
        def __init__(self, failures: int, message: str = "database is locked") -> None:
            self.failures, self.message, self.calls = failures, message, 0

        def execute(self, sql: str) -> Busy:
            assert sql == "PRAGMA journal_mode = WAL"
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError(self.message)
            return self

        def fetchone(self) -> tuple[str]:
            return ("wal",)

    conn = Busy(failures=3)
    assert _switch_to_wal(conn) == "wal"  # type: ignore[arg-type]
    assert conn.calls == 4
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _switch_to_wal(Busy(failures=1, message="disk I/O error"))  # type: ignore[arg-type]
