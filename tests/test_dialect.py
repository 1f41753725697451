"""The SQLite-to-PostgreSQL translation, as text: runs without a PostgreSQL server."""

from __future__ import annotations

import pytest

from qanalytics.store.dialect import translate

CASES = [
    # (SQLite statement, PostgreSQL statement for psycopg)
    ("SELECT a FROM t WHERE x = ? AND y = ?", "SELECT a FROM t WHERE x = %s AND y = %s"),
    ("SELECT IFNULL(a, -1.0) FROM t", "SELECT COALESCE(a, -1.0) FROM t"),
    (
        "SELECT max(a, b), min(a, b), max(c) FROM t",
        "SELECT GREATEST(a, b), LEAST(a, b), max(c) FROM t",
    ),
    ("SELECT sum(a > 1) FROM t", "SELECT sum(CASE WHEN a > 1 THEN 1 ELSE 0 END) FROM t"),
    # A comparison inside CASE ... END is not a condition to count.
    (
        "SELECT sum(CASE WHEN a <= 1 THEN b ELSE 0 END) FROM t",
        "SELECT sum(CASE WHEN a <= 1 THEN b ELSE 0 END) FROM t",
    ),
    ("SELECT sum((a > 1)) FROM t", "SELECT sum((a > 1)) FROM t"),
    ("SELECT 'x%y', a % 2 FROM t", "SELECT 'x%%y', a %% 2 FROM t"),
]


@pytest.mark.parametrize(("sqlite", "postgres"), CASES)
def test_translation(sqlite: str, postgres: str) -> None:
    assert translate(sqlite).sql == postgres


def test_numbered_placeholders_bind_in_order() -> None:
    t = translate("SELECT a FROM t WHERE x < ?2 AND y > ?1 AND z = ?2")
    assert t.sql == "SELECT a FROM t WHERE x < %s AND y > %s AND z = %s"
    assert t.bind(("one", "two")) == ("two", "one", "two")
    assert translate("SELECT ?1", style="dollar").sql == "SELECT $1"
