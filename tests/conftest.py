"""Shared fixtures: a fresh store with a fake clock, on each backend.

``db`` and ``file_db`` run every test that uses them twice: on SQLite (in memory and in
a file) and on PostgreSQL, in a schema created for the test and dropped after it. The
PostgreSQL server is the one ``QANALYTICS_TEST_PG`` names (a ``postgresql://`` URL; see
``.ci/postgres.sh``); without it, a local server on the default socket or port is tried,
and without one the PostgreSQL variants are skipped, saying why. Tests that exercise
SQLite-only behaviour (PRAGMAs, files) are marked ``sqlite_only``.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import pytest

import qanalytics as qa

matplotlib.use("Agg")

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

BACKENDS = ["sqlite", "postgresql"]
_LOCAL_URLS = ("postgresql:///postgres", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: the test checks SQLite-specific behaviour (files, PRAGMAs)"
    )


def skip_reasons(reports: list[pytest.TestReport]) -> collections.Counter[str]:
    """How many skipped tests give each reason."""
    reasons: collections.Counter[str] = collections.Counter()
    for report in reports:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    return reasons


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per skip reason, instead of one per skipping test (see addopts' -r)."""
    if "s" in terminalreporter.reportchars:  # -rs / -ra asked for every skip: already shown
        return
    reasons = skip_reasons(terminalreporter.stats.get("skipped", []))
    for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
        terminalreporter.write_line(f"SKIPPED {count} test(s): {reason}", yellow=True)


@functools.cache
def postgres_server() -> tuple[str | None, str]:
    """The URL of a reachable PostgreSQL server for tests, or None and why not."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'qanalytics[postgres]')"
    env = os.environ.get("QANALYTICS_TEST_PG")
    candidates = [env] if env else list(_LOCAL_URLS)
    last = ""
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True):
                return url, ""
        except psycopg.Error as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    if env:
        return None, f"QANALYTICS_TEST_PG={env} is not reachable: {last}"
    return None, (
        "no PostgreSQL server: QANALYTICS_TEST_PG is unset and no local server answers "
        "(run `make test-pg` to start a throwaway one)"
    )


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test server for one test; yields a URL that selects it."""
    import psycopg

    server, reason = postgres_server()
    if server is None:
        pytest.skip(reason)
    schema = "qa_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    parts = urllib.parse.urlsplit(server)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    url = urllib.parse.urlunsplit(
        parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote))
    )
    try:
        yield url
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend a test runs on: "sqlite" or "postgresql"."""
    name: str = request.param
    if name == "postgresql":
        if request.node.get_closest_marker("sqlite_only"):
            pytest.skip("SQLite-specific test")
        server, reason = postgres_server()
        if server is None:
            pytest.skip(reason)
    return name


@pytest.fixture
def clock() -> qa.FakeClock:
    return qa.FakeClock(T0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def store_target(backend: str, db_path: Path) -> Iterator[str]:
    """Where a persistent store lives: a file path, or a PostgreSQL URL (fresh schema)."""
    if backend == "postgresql":
        with postgres_schema() as url:
            yield url
    else:
        yield str(db_path)


@contextlib.contextmanager
def store_for(backend: str, clock: qa.FakeClock) -> Iterator[qa.Store]:
    """A fresh store on `backend`: in memory, or a new PostgreSQL schema."""
    if backend == "postgresql":
        with postgres_schema() as url, qa.connect(url, clock=clock) as store:
            yield store
    else:
        with qa.connect(":memory:", clock=clock) as store:
            yield store


@pytest.fixture
def db(backend: str, clock: qa.FakeClock) -> Iterator[qa.Store]:
    with store_for(backend, clock) as store:
        yield store


@pytest.fixture
def file_db(store_target: str, clock: qa.FakeClock) -> Iterator[qa.Store]:
    with qa.connect(store_target, clock=clock) as store:
        yield store


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
