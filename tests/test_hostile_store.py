"""Hostile stores and targets: secrets in URLs, mathtext in ids, odd files, read-only WALs."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pytest
from click.testing import CliRunner
from conftest import postgres_schema
from matplotlib import cbook
from matplotlib.axes import Axes
from matplotlib.text import Text

import qanalytics as qa
from qanalytics import plot
from qanalytics.cli import main
from qanalytics.store import sqlite as store_module
from qanalytics.store.postgres import redact, scrub

matplotlib.use("Agg")

T0 = 1_700_000_000.0

SECRET = "s3cr3t-Pw"

# -- PostgreSQL URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://qa@db/queue", "postgresql://qa@db/queue"),
        ("postgresql://qa:s3cr3t-Pw@db:5432/queue", "postgresql://qa:***@db:5432/queue"),
        (
            "postgresql://qa@db/queue?password=s3cr3t-Pw&sslmode=require",
            "postgresql://qa@db/queue?password=***&sslmode=require",
        ),
        (
            "postgres://qa:s3cr3t-Pw@db/queue?sslmode=require&password=s3cr3t-Pw",
            "postgres://qa:***@db/queue?sslmode=require&password=***",
        ),
        # A password holding '@' and ':' (percent-encoded or not), and an encoded key.
        ("postgresql://qa:p%40ss:w@db/queue", "postgresql://qa:***@db/queue"),
        ("postgresql://qa:p@ss@db/queue", "postgresql://qa:***@db/queue"),
        ("postgresql://db/queue?pass%77ord=x&a=1", "postgresql://db/queue?pass%77ord=***&a=1"),
        ("postgresql://qa:pw@h1:5432,h2:5433/queue", "postgresql://qa:***@h1:5432,h2:5433/queue"),
        ("postgresql://qa@db/queue?password=", "postgresql://qa@db/queue?password=***"),
    ],
)
def test_redact_masks_every_password(url: str, expected: str) -> None:
    assert redact(url) == expected


def test_redact_replaces_an_unparsable_url_whole() -> None:
    shown = redact(f"postgresql://qa:{SECRET}@[::1/queue")
    assert SECRET not in shown and shown.startswith("postgresql://***")


def test_scrub_masks_passwords_as_written_and_decoded() -> None:
    url = "postgresql://qa:a%2Fb@db/queue?password=c+d"
    message = "bad conninfo 'a%2Fb', 'a/b', 'c+d', 'c d' near host"
    assert scrub(message, url) == "bad conninfo '***', '***', '***', '***' near host"


def _unreachable(secret_in: str) -> str:
    # Port 1 on localhost refuses connections at once: no server needed.
    if secret_in == "userinfo":
        return f"postgresql://qa:{SECRET}@127.0.0.1:1/queue?connect_timeout=2"
    return f"postgresql://qa@127.0.0.1:1/queue?password={SECRET}&connect_timeout=2"


@pytest.mark.parametrize("secret_in", ["userinfo", "query"])
def test_connection_errors_never_show_the_password(secret_in: str) -> None:
    pytest.importorskip("psycopg")
    url = _unreachable(secret_in)
    with pytest.raises(qa.StoreError) as info:
        qa.connect(url, readonly=True)
    assert "cannot connect to" in str(info.value)
    assert SECRET not in str(info.value)
    chained = info.value.__cause__
    assert chained is None or SECRET not in str(chained)


def test_malformed_conninfo_errors_never_show_the_password() -> None:
    psycopg = pytest.importorskip("psycopg")
    for url in (
        f"postgresql://qa:{SECRET}@[::1/queue?password={SECRET}",  # quoted whole
        f"postgresql://qa:{SECRET}%zz@127.0.0.1:1/queue",  # the bad token is the password
    ):
        with pytest.raises(psycopg.Error) as raw:  # the driver's own message quotes it
            psycopg.connect(url)
        assert SECRET in str(raw.value)
        with pytest.raises(qa.StoreError) as info:
            qa.connect(url, readonly=True)
        assert SECRET not in str(info.value) and info.value.__cause__ is None


@pytest.mark.parametrize("secret_in", ["userinfo", "query"])
def test_cli_errors_never_show_the_password(secret_in: str) -> None:
    pytest.importorskip("psycopg")
    result = CliRunner().invoke(main, ["workers", "--db", _unreachable(secret_in)])
    assert result.exit_code == 2
    assert "Error: cannot connect" in result.output
    assert SECRET not in result.output


def _visible(document: str) -> str:
    """The text a reader of an HTML report sees."""
    body = document[document.index("<body") :]
    body = re.sub(r"<style.*?</style>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture
def pg_url_with_password() -> Iterator[str]:
    """A store on the test server, its URL carrying a password in both places.

    The test server trusts every connection, so any password is accepted.
    """
    with postgres_schema() as url:
        head, rest = url.split("://", 1)
        userinfo, at, hosts = rest.rpartition("@")
        user = userinfo.split(":", 1)[0] if at else "postgres"
        sep = "&" if "?" in hosts else "?"
        yield f"{head}://{user}:{SECRET}@{hosts}{sep}password={SECRET}"


def test_postgres_store_repr_and_path_hide_the_password(pg_url_with_password: str) -> None:
    with qa.connect(pg_url_with_password) as db:
        qa.register_worker(db, "w1")
        assert SECRET not in repr(db) and SECRET not in db.path
        assert db.path == redact(pg_url_with_password)
        with pytest.raises(qa.ReadOnlyError) as info:
            qa.connect(pg_url_with_password, readonly=True).require_writable("write")
        assert SECRET not in str(info.value)


def test_postgres_schema_errors_hide_the_password(pg_url_with_password: str) -> None:
    with pytest.raises(qa.SchemaError) as info:  # an empty schema, opened read-only
        qa.connect(pg_url_with_password, readonly=True)
    assert SECRET not in str(info.value) and "***" in str(info.value)


def test_postgres_report_opens_the_real_url_and_shows_none_of_it(
    pg_url_with_password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qanalytics.report import notebook as rpt

    # The test server trusts any password, so check the kernel is handed the real URL.
    kernel_envs: list[dict[str, str]] = []
    execute = rpt._execute

    def spy(nb: Any, workdir: str, *, progress: bool, env: dict[str, str]) -> None:
        kernel_envs.append(dict(env))
        execute(nb, workdir, progress=progress, env=env)

    monkeypatch.setattr(rpt, "_execute", spy)
    clock = qa.FakeClock(T0)
    with qa.connect(pg_url_with_password, clock=clock) as db:
        qa.register_worker(db, "w1")
        for _ in range(10):
            qa.heartbeat(db, "w1")
            clock.advance(30)
        qa.enqueue(db, "email", {})
        task = qa.claim(db, "w1")
        assert task is not None
        qa.complete(db, task.id)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        main,
        ["report", "--db", pg_url_with_password, "--now", "latest", "-o", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    document = out.read_text(encoding="utf-8")
    assert SECRET not in document and SECRET not in result.output
    assert [env[rpt.TARGET_ENV] for env in kernel_envs] == [pg_url_with_password]
    shown = _visible(document)
    assert "Traceback" not in shown and "Error" not in shown
    assert "1 alive" in shown  # the kernel really read the store


def test_report_kernel_gets_the_target_only_through_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qanalytics.report import notebook as rpt

    # A stale value in the caller's environment never reaches the kernel.
    monkeypatch.setenv(rpt.TARGET_ENV, "postgresql://someone:else@elsewhere/db")
    seen: dict[str, Any] = {}

    def fake_execute(nb: Any, workdir: str, *, progress: bool, env: dict[str, str]) -> None:
        seen["env"] = dict(env)
        seen["source"] = "\n".join(str(c.source) for c in nb.cells)

    monkeypatch.setattr(rpt, "_execute", fake_execute)
    path = tmp_path / "q.db"
    with qa.connect(path) as db:
        qa.register_worker(db, "w1")
    rpt.write_report(path, tmp_path / "r.html", now="latest", progress=False)
    assert rpt.TARGET_ENV not in seen["env"]
    assert f"db_path = {str(path.resolve())!r}" in seen["source"]

    class FakePg:
        path = redact(f"postgresql://qa:{SECRET}@db/queue")
        url = f"postgresql://qa:{SECRET}@db/queue"

    assert rpt._target_of(FakePg()) == (FakePg.url, FakePg.path)  # type: ignore[arg-type]


# -- mathtext in ids and types -------------------------------------------------------------------

HOSTILE = [r"$\foo$", "$x^2$", "cost $5", r"a\$b$"]


def test_the_hostile_names_do_break_mathtext() -> None:
    # The point of the plot tests below: each name fails, or renders as something else.
    fig = plt.figure()
    fig.text(0, 0, HOSTILE[0])
    with pytest.raises(ValueError):
        fig.canvas.draw()
    assert cbook.is_math_text(HOSTILE[1])
    assert _shown(Text(text=HOSTILE[3])) != HOSTILE[3]  # shown as "a$b$"


def _shown(text: Text) -> str:
    """What matplotlib displays for `text`: its logic, without mathtext."""
    raw = text.get_text()
    if not text.get_parse_math():
        return raw
    assert not cbook.is_math_text(raw), f"{raw!r} would be parsed as mathtext"
    return raw.replace(r"\$", "$")


def _all_shown(ax: Axes) -> set[str]:
    texts: list[Text] = []
    for axes in ax.figure.axes:
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label, *axes.texts]
        texts += [*axes.get_xticklabels(), *axes.get_yticklabels()]
        legend = axes.get_legend()
        if legend is not None:
            texts += legend.get_texts()
    return {_shown(t) for t in texts}


@pytest.fixture
def hostile_db() -> Iterator[qa.Store]:
    """Four workers and four task types named with mathtext, over two hours."""
    clock = qa.FakeClock(T0)
    with qa.connect(":memory:", clock=clock) as db:
        for name in HOSTILE:
            qa.register_worker(db, name)
        for minute in range(120):
            for i, name in enumerate(HOSTILE):
                if not (i == 1 and 30 <= minute < 60):
                    qa.heartbeat(db, name)
            if minute % 5 == 0:
                kind = HOSTILE[(minute // 5) % len(HOSTILE)]
                qa.enqueue(db, kind, {"n": minute})
                task = qa.claim(db, HOSTILE[minute % len(HOSTILE)])
                if task is not None:
                    clock.advance(5)
                    if minute % 15 == 0:
                        qa.fail(db, task.id, "boom")
                    else:
                        qa.complete(db, task.id)
            clock.advance(55 if minute % 5 == 0 else 60)
        yield db


def _frames(db: qa.Store) -> dict[str, Callable[[], Axes]]:
    beats = qa.heartbeats(db)
    workers = qa.workers(db, include_removed=True)
    outs = qa.outages(db)
    ax = lambda: plt.figure().add_subplot()  # noqa: E731
    return {
        "heartbeat_timeline": lambda: plot.heartbeat_timeline(beats, outs, workers, ax=ax()),
        "uptime": lambda: plot.uptime(qa.uptime(db), ax=ax()),
        "worker_states": lambda: plot.worker_states(workers, ax=ax()),
        "queue_depth": lambda: plot.queue_depth(qa.depth_timeline(db, by="type"), ax=ax()),
        "success_rate": lambda: plot.success_rate(qa.success_rate(db, by="type"), ax=ax()),
        "throughput": lambda: plot.throughput(qa.throughput(db, by="type"), hue="type", ax=ax()),
        "latency": lambda: plot.latency(qa.latency(db, by="type"), ax=ax()),
        "latency_over_time": lambda: plot.latency(qa.latency(db, by="type", freq="1h"), ax=ax()),
        "utilization": lambda: plot.utilization(qa.utilization(db), ax=ax()),
        "retry_outcomes": lambda: plot.retry_outcomes(qa.retry_outcomes(db), ax=ax()),
        "capacity": lambda: plot.capacity(qa.capacity.plan(db, since=None), ax=ax()),
        "capacity_by_type": lambda: plot.capacity(
            qa.capacity.plan(db, by="type", since=None), ax=ax()
        ),
        "littles_law": lambda: plot.littles_law(qa.capacity.littles_law(db, since=None), ax=ax()),
    }


# Which hostile names each plot shows (as tick labels, legend entries or in its title).
_SHOWS_NAMES = {
    "heartbeat_timeline",
    "uptime",
    "queue_depth",
    "success_rate",
    "throughput",
    "latency",
    "latency_over_time",
    "utilization",
    "capacity_by_type",
}


@pytest.mark.parametrize(
    "name",
    [
        "heartbeat_timeline",
        "uptime",
        "worker_states",
        "queue_depth",
        "success_rate",
        "throughput",
        "latency",
        "latency_over_time",
        "utilization",
        "retry_outcomes",
        "capacity",
        "capacity_by_type",
        "littles_law",
    ],
)
def test_plots_show_mathtext_names_literally(hostile_db: qa.Store, name: str) -> None:
    ax = _frames(hostile_db)[name]()
    ax.figure.canvas.draw()  # raises on bad mathtext
    shown = _all_shown(ax)
    joined = "\n".join(shown)
    if name in _SHOWS_NAMES:
        assert any(h in joined for h in HOSTILE), shown
    # Every name displays as written: never escaped twice, never half-parsed.
    for text in shown:
        for hostile in HOSTILE:
            assert hostile.replace("$", r"\$") not in text
    if name in ("uptime", "heartbeat_timeline"):
        assert set(HOSTILE) <= shown  # the worker rows, one tick label each


def test_every_public_plot_function_is_covered() -> None:
    drawn = {name.removesuffix("_over_time").removesuffix("_by_type") for name in _SHOWS_NAMES}
    drawn |= {"worker_states", "retry_outcomes", "capacity", "littles_law", "what_if"}
    assert set(plot.__all__) - {"STATE_COLORS", "STATUS_COLORS", "OUTCOME_COLORS"} <= drawn


def test_what_if_title_from_attrs_is_literal() -> None:
    frame = qa.capacity.what_if(1.0, 0.5, range(3, 6))
    ax = plot.what_if(frame, ax=plt.figure().add_subplot())
    ax.set_title(HOSTILE[0])  # a title set afterwards on the same Text stays literal
    ax.figure.canvas.draw()
    assert _shown(ax.title) == HOSTILE[0]


def test_timeline_colours_hostile_worker_ticks(hostile_db: qa.Store) -> None:
    clock_now = hostile_db.now() + 3600
    workers = qa.workers(hostile_db, include_removed=True, now=clock_now)
    ax = plot.heartbeat_timeline(qa.heartbeats(hostile_db), None, workers)
    ax.figure.canvas.draw()
    colours = {_shown(t): t.get_color() for t in ax.get_yticklabels()}
    assert set(colours) == set(HOSTILE)
    assert colours[HOSTILE[0]] == plot.STATE_COLORS["stale"]


def test_report_on_a_store_with_mathtext_names(tmp_path: Path) -> None:
    from qanalytics.report import notebook as rpt

    path = tmp_path / "hostile.db"
    qa.simulate(path, workers=4, duration="3h", progress=False)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        keys = [row[0] for row in conn.execute("SELECT worker_key FROM workers ORDER BY 1")]
        for key, name in zip(keys, HOSTILE, strict=False):
            conn.execute("UPDATE workers SET worker_id = ? WHERE worker_key = ?", (name, key))
        types = [row[0] for row in conn.execute("SELECT DISTINCT type FROM tasks ORDER BY 1")]
        for kind, name in zip(types, HOSTILE, strict=False):
            conn.execute("UPDATE tasks SET type = ? WHERE type = ?", (name, kind))
    out = rpt.write_report(path, tmp_path / "r.html", now="latest", progress=False)
    document = out.read_text(encoding="utf-8")
    shown = _visible(document)
    assert "Traceback" not in shown and "Error" not in shown
    assert "$x^2$" in shown  # the names are shown, as written


# -- odd files -------------------------------------------------------------------------------------


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "queue.db"
    os.mkfifo(fifo)
    for readonly in (True, False):
        with pytest.raises(qa.StoreError, match="named pipe") as info:
            qa.connect(fifo, readonly=readonly)
        assert repr(str(fifo)) in str(info.value)
    result = CliRunner().invoke(main, ["workers", "--db", str(fifo)])
    assert result.exit_code == 2 and "named pipe" in result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # untouched


def test_a_character_device_is_refused() -> None:
    with pytest.raises(qa.StoreError, match="character device"):
        qa.connect(os.devnull, readonly=True)


def test_a_file_name_with_undecodable_bytes(tmp_path: Path) -> None:
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/q\xff.db")
    with qa.connect(name) as db:
        qa.register_worker(db, "w1")
    with qa.connect(name, readonly=True) as db:  # was UnicodeEncodeError
        assert list(qa.workers(db)["worker_id"]) == ["w1"]
        assert "\\udcff" in repr(db)  # a safe repr names the file
    missing = os.fsdecode(os.fsencode(str(tmp_path)) + b"/none\xfe.db")
    with pytest.raises(qa.StoreNotFound) as info:
        qa.connect(missing, readonly=True)
    assert "none\\udcfe.db" in str(info.value)
    result = CliRunner().invoke(main, ["workers", "--db", missing])
    assert result.exit_code == 2 and "none\\udcfe.db" in result.output


# -- WAL stores read without leaving files ---------------------------------------------------------


def _wal_store(path: Path, rows: int = 25) -> None:
    """A closed WAL-mode store with `rows` workers and no -wal or -shm beside it."""
    clock = qa.FakeClock(T0)
    with qa.connect(path, clock=clock) as db:
        for i in range(rows):
            qa.register_worker(db, f"w{i}")
    with open(path, "rb") as handle:
        assert handle.read(20)[18] == 2  # WAL mode, in the header
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def test_a_reader_leaves_no_wal_files_and_a_writer_can_write(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    _wal_store(path)
    # What a plain read-only SQLite connection leaves behind: this is what is avoided.
    plain = tmp_path / "plain.db"
    shutil.copy(path, plain)
    conn = sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
    conn.execute("SELECT count(*) FROM workers").fetchone()
    conn.close()
    assert Path(f"{plain}-wal").exists() and Path(f"{plain}-shm").exists()

    with qa.connect(path, readonly=True) as db:
        assert len(qa.workers(db)) == 25
        with qa.connect(path, readonly=True) as other:  # two Stores, one file
            assert len(qa.workers(other)) == 25
        assert Path(f"{path}-shm").exists()  # in use: still there
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    with qa.connect(path, clock=qa.FakeClock(T0 + 60)) as db:
        qa.register_worker(db, "new")
    with qa.connect(path, readonly=True) as db:
        assert len(qa.workers(db)) == 26


def test_a_reader_does_not_remove_a_writers_wal(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    _wal_store(path)
    with qa.connect(path, clock=qa.FakeClock(T0 + 60)) as writer:
        with qa.connect(path, readonly=True) as reader:
            assert len(qa.workers(reader)) == 25
        qa.register_worker(writer, "during")  # the writer's WAL still works
        assert Path(f"{path}-wal").exists()
    with qa.connect(path, readonly=True) as db:
        assert "during" in set(qa.workers(db)["worker_id"])


def test_readonly_open_mode_decision(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    _wal_store(path)
    mode = store_module.readonly_open_mode
    assert mode(str(path), writable=True) == "ro"
    assert mode(str(path), writable=False) == "immutable"
    rollback = tmp_path / "rollback.db"
    with contextlib.closing(sqlite3.connect(rollback)) as conn:
        conn.execute("CREATE TABLE t (x)")
    assert mode(str(rollback), writable=False) == "ro"  # no WAL: nothing to create
    Path(f"{path}-wal").write_bytes(b"")  # a writer has it open: never immutable
    assert mode(str(path), writable=False) == "ro"


def test_an_unwritable_wal_store_is_read_immutable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root, permissions stop nothing: simulate what os.access says for another user.
    path = tmp_path / "q.db"
    _wal_store(path)
    monkeypatch.setattr(store_module, "_can_write_beside", lambda _path: False)
    with qa.connect(path, readonly=True) as db:
        assert len(qa.workers(db)) == 25  # also through the side reader
        assert db._reader_query == "mode=ro&immutable=1"
        with pytest.raises(qa.ReadOnlyError):
            qa.register_worker(db, "x")
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


_READ_SCRIPT = (
    "import os, sys, qanalytics as qa\n"
    "p = sys.argv[1]\n"
    "with qa.connect(p, readonly=True) as db:\n"
    "    print(len(qa.workers(db)), len(qa.heartbeats(db)) > 0)\n"
    "print(sorted(os.listdir(os.path.dirname(p))))\n"
)


def _run_reader(copy: Path, wrapper: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [*wrapper, sys.executable, "-c", _READ_SCRIPT, str(copy / "q.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_a_wal_store_in_a_read_only_folder_is_read(tmp_path: Path) -> None:
    source = tmp_path / "src" / "q.db"
    source.parent.mkdir()
    _wal_store(source)
    copy = tmp_path / "copy"
    shutil.copytree(source.parent, copy)
    if os.geteuid() != 0:
        copy.chmod(0o555)
        try:
            result = _run_reader(copy, [])
        finally:
            copy.chmod(0o755)
    else:
        # Root writes through chmod 0555; a read-only bind mount stops even root. It
        # lives in a private mount namespace, so nothing outside the test sees it.
        script = f'mount --bind -o ro "{copy}" "{copy}" && exec "$@"'
        wrapper = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
        probe = subprocess.run([*wrapper, "true"], capture_output=True, check=False)
        if probe.returncode != 0 or shutil.which("unshare") is None:
            pytest.skip("running as root without mount namespaces: cannot make a read-only folder")
        result = _run_reader(copy, wrapper)
    assert result.returncode == 0, result.stderr
    counts, listing = result.stdout.strip().splitlines()
    assert counts == "25 True"
    assert listing == "['q.db']"  # no -wal or -shm could be, or were, created
