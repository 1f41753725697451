"""SQL dialect translation: the store's SQLite-flavoured SQL, spoken to PostgreSQL.

The queries in the package are written once, in the SQLite dialect. The PostgreSQL store
passes each statement through :func:`translate` (cached per statement text), which
rewrites the few constructs the two dialects spell differently:

* placeholders: ``?`` and ``?N`` become psycopg's ``%s`` (with a map from each ``%s`` to
  the parameter it binds, so a ``?1`` used twice is bound twice) or ADBC's ``$N``;
  literal ``%`` is doubled for psycopg;
* ``IFNULL(a, b)`` becomes ``COALESCE(a, b)``; scalar ``max(a, b, ...)`` and
  ``min(a, b, ...)`` become ``GREATEST`` and ``LEAST`` (one-argument ``max``/``min`` stay
  aggregates);
* ``sum(<condition>)``, which SQLite evaluates as 0/1, becomes
  ``sum(CASE WHEN <condition> THEN 1 ELSE 0 END)``;
* ``ORDER BY`` items get SQLite's NULL placement spelled out (``NULLS FIRST`` ascending,
  ``NULLS LAST`` descending); the PostgreSQL indexes are declared ``NULLS FIRST`` so that
  such orders still walk an index;
* SQLite's unary ``+`` (which keeps a column off an index) is dropped;
* ``BEGIN IMMEDIATE`` becomes ``BEGIN``; ``sqlite_master`` becomes a query of
  PostgreSQL's catalogue for the current schema.

String literals, quoted identifiers and comments are left alone. What cannot be
translated safely (PRAGMAs, DDL, row locking for claims) is not translated: the store
classes carry one method or attribute per such operation instead.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

__all__ = ["Translation", "translate"]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>"(?:[^"]|"")*")
  | (?P<param>\?\d*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
  | (?P<op><=|>=|<>|!=|==|\|\||::|.)
    """,
    re.VERBOSE | re.DOTALL,
)

_COMPARISON_OPS = {"=", "==", "<", ">", "<=", ">=", "<>", "!="}
_COMPARISON_WORDS = {"IS", "IN", "LIKE", "GLOB", "BETWEEN", "AND", "OR", "NOT", "EXISTS"}
# Words that end an ORDER BY list at depth zero.
_ORDER_END = {"LIMIT", "OFFSET", "FOR", "UNION", "EXCEPT", "INTERSECT", "RETURNING", "ON"}
# Words after which a "+" is a sign, not an addition.
_UNARY_AFTER = {
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "ON",
    "BY",
    "SELECT",
    "WHEN",
    "THEN",
    "ELSE",
    "SET",
    "HAVING",
    "RETURNING",
    "IN",
    "IS",
    "CASE",
}
# SQLite's catalogue of tables and indexes, from PostgreSQL's, for the current schema.
_SQLITE_MASTER = (
    "(SELECT 'table' AS type, c.relname AS name, c.relname AS tbl_name"
    " FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p')"
    " AND c.relnamespace = current_schema()::regnamespace"
    " UNION ALL SELECT 'index', i.relname, t.relname FROM pg_catalog.pg_index x"
    " JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid"
    " JOIN pg_catalog.pg_class t ON t.oid = x.indrelid"
    " WHERE i.relnamespace = current_schema()::regnamespace) AS sqlite_master"
)


class Translation:
    """A translated statement.

    Attributes
    ----------
    sql : str
        The statement in the target dialect.
    order : tuple of int
        For the ``%s`` style, the 0-based index of the parameter each placeholder binds,
        in order; empty when the statement has no parameters.
    uses_numbers : bool
        Whether the source used numbered (``?N``) placeholders.
    """

    __slots__ = ("order", "sql", "uses_numbers")

    def __init__(self, sql: str, order: tuple[int, ...], uses_numbers: bool) -> None:
        self.sql = sql
        self.order = order
        self.uses_numbers = uses_numbers

    def bind(self, params: tuple[object, ...] | list[object]) -> tuple[object, ...]:
        """The parameter tuple for the translated statement.

        Parameters
        ----------
        params : sequence
            The parameters as the SQLite statement would bind them.

        Returns
        -------
        tuple
        """
        if not self.uses_numbers:
            return tuple(params)
        return tuple(params[i] for i in self.order)


def _tokens(sql: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "op"
        out.append((kind, match.group()))
    return out


def _matching(tokens: list[tuple[str, str]], start: int) -> int:
    """Index of the ``)`` matching the ``(`` at `start`."""
    depth = 0
    for i in range(start, len(tokens)):
        text = tokens[i][1]
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses in SQL")


def _split_top(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    parts: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in tokens:
        text = token[1]
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        if text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _is_condition(tokens: list[tuple[str, str]]) -> bool:
    depth = 0
    for kind, text in tokens:
        # A comparison inside parentheses or a CASE ... END is not the argument's own.
        if text == "(" or (kind == "word" and text.upper() == "CASE"):
            depth += 1
        elif text == ")" or (kind == "word" and text.upper() == "END"):
            depth -= 1
        elif depth == 0 and (
            (kind == "op" and text in _COMPARISON_OPS)
            or (kind == "word" and text.upper() in _COMPARISON_WORDS)
        ):
            return True
    return False


def _unary(tokens: list[tuple[str, str]], i: int) -> bool:
    j = i - 1
    while j >= 0 and tokens[j][0] in ("ws", "comment"):
        j -= 1
    if j < 0:
        return True
    kind, text = tokens[j]
    if kind == "op":
        return text not in (")",)
    return kind == "word" and text.upper() in _UNARY_AFTER


def _next_significant(tokens: list[tuple[str, str]], i: int) -> int:
    while i < len(tokens) and tokens[i][0] in ("ws", "comment"):
        i += 1
    return i


class _Rewriter:
    def __init__(self, style: Literal["psycopg", "dollar"]) -> None:
        self.style = style
        self.order: list[int] = []
        self.highest = 0
        self.numbered = False

    def param(self, text: str) -> str:
        if len(text) > 1:
            number = int(text[1:])
            self.numbered = True
        else:
            number = self.highest + 1
        self.highest = max(self.highest, number)
        self.order.append(number - 1)
        return "%s" if self.style == "psycopg" else f"${number}"

    def run(self, tokens: list[tuple[str, str]]) -> str:
        out: list[str] = []
        i = 0
        n = len(tokens)
        while i < n:
            kind, text = tokens[i]
            upper = text.upper() if kind == "word" else ""
            if kind == "param":
                out.append(self.param(text))
                i += 1
                continue
            if kind == "op" and text == "+" and _unary(tokens, i):
                # SQLite's unary plus (it keeps a column off an index) has no text form
                # in PostgreSQL; the planner there chooses on its own.
                i += 1
                continue
            if kind == "op" and text == "%" and self.style == "psycopg":
                out.append("%%")
                i += 1
                continue
            if kind == "str" and self.style == "psycopg":
                out.append(text.replace("%", "%%"))
                i += 1
                continue
            if upper in ("IFNULL", "MAX", "MIN", "SUM"):
                j = _next_significant(tokens, i + 1)
                if j < n and tokens[j][1] == "(":
                    end = _matching(tokens, j)
                    inner = tokens[j + 1 : end]
                    args = _split_top(inner)
                    if upper == "IFNULL":
                        out.append("COALESCE(" + self.run(inner) + ")")
                    elif upper in ("MAX", "MIN") and len(args) > 1:
                        name = "GREATEST" if upper == "MAX" else "LEAST"
                        out.append(name + "(" + self.run(inner) + ")")
                    elif upper == "SUM" and _is_condition(inner):
                        out.append("sum(CASE WHEN " + self.run(inner) + " THEN 1 ELSE 0 END)")
                    else:
                        out.append(text + "(" + self.run(inner) + ")")
                    i = end + 1
                    continue
            if upper == "SQLITE_MASTER":
                out.append(_SQLITE_MASTER)
                i += 1
                continue
            if upper == "BEGIN":
                j = _next_significant(tokens, i + 1)
                if j < n and tokens[j][1].upper() in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
                    out.append("BEGIN")
                    i = j + 1
                    continue
            if upper == "ORDER":
                j = _next_significant(tokens, i + 1)
                if j < n and tokens[j][1].upper() == "BY":
                    i = self.order_by(tokens, j + 1, out, text + " " + tokens[j][1])
                    continue
            out.append(text)
            i += 1
        return "".join(out)

    def order_by(self, tokens: list[tuple[str, str]], start: int, out: list[str], head: str) -> int:
        # Collect the ORDER BY list up to its end at depth zero.
        depth = 0
        end = start
        while end < len(tokens):
            kind, text = tokens[end]
            if text == "(":
                depth += 1
            elif text == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and ((kind == "word" and text.upper() in _ORDER_END) or text == ";"):
                break
            end += 1
        items = _split_top(tokens[start:end])
        rendered: list[str] = []
        for item in items:
            words = [t[1].upper() for t in item if t[0] == "word"]
            body = self.run(item).rstrip()
            if "NULLS" not in words:
                last = words[-1] if words else ""
                body += " NULLS LAST" if last == "DESC" else " NULLS FIRST"
            rendered.append(body)
        trailing = " " if end < len(tokens) and tokens[end][0] != "ws" else ""
        out.append(head + " " + ", ".join(r.strip() for r in rendered) + trailing)
        return end


@functools.lru_cache(maxsize=1024)
def translate(sql: str, style: Literal["psycopg", "dollar"] = "psycopg") -> Translation:
    """Translate one SQLite-flavoured statement to PostgreSQL.

    Parameters
    ----------
    sql : str
        The statement, with ``?`` or ``?N`` placeholders.
    style : {"psycopg", "dollar"}
        ``"psycopg"`` for ``%s`` placeholders (psycopg), ``"dollar"`` for ``$N``
        (ADBC and server-side prepared statements).

    Returns
    -------
    Translation
    """
    rewriter = _Rewriter(style)
    text = rewriter.run(_tokens(sql))
    return Translation(text, tuple(rewriter.order), rewriter.numbered)
