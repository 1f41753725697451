"""How the ``qanalytics`` command prints: aligned tables, JSON and CSV on stdout.

Tables are for people: a duration (a ``*_s`` column, an age) reads ``45 s``, ``5 h 26 min``
or ``3 d 4 h``; columns line up by display width (an East Asian wide character takes two
columns, a combining mark none); and a cell wider than :data:`MAX_CELL_WIDTH` columns is cut
with ``…``. JSON and CSV keep every value whole, durations as seconds.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import click

from .._lazy import lazy_function, lazy_module
from .._text import human_duration as _human_duration

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ..export import (
        frame_csv,
        frame_records,
        is_missing,
        iso_text,
        nested_text,
        plain,
        safe_text,
    )
else:  # loaded when something is printed, not for --help
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    frame_csv = lazy_function("qanalytics.export", "frame_csv")
    frame_records = lazy_function("qanalytics.export", "frame_records")
    is_missing = lazy_function("qanalytics.export", "is_missing")
    iso_text = lazy_function("qanalytics.export", "iso_text")
    nested_text = lazy_function("qanalytics.export", "nested_text")
    plain = lazy_function("qanalytics.export", "plain")
    safe_text = lazy_function("qanalytics.export", "safe_text")

__all__ = [
    "MAX_CELL_WIDTH",
    "display_width",
    "emit_frame",
    "emit_result",
    "epoch_text",
    "flatten",
    "human_duration",
    "metric_text",
    "record_table",
    "render_table",
]

#: The widest a table cell is shown, in terminal columns; longer text ends in ``…``.
MAX_CELL_WIDTH = 60

def human_duration(seconds: float | None) -> str:
    """A duration as short text for people; see :func:`qanalytics._text.human_duration`.

    Parameters
    ----------
    seconds : float or None

    Returns
    -------
    str
    """
    return _human_duration(seconds)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """How many terminal columns `text` takes: wide East Asian characters count two.

    Parameters
    ----------
    text : str

    Returns
    -------
    int
    """
    if text.isascii():
        return len(text)
    return sum(_char_width(c) for c in text)


def _fit(text: str, width: int) -> str:
    """`text` cut to at most `width` columns, ending in ``…`` when cut."""
    if display_width(text) <= width:
        return text
    out: list[str] = []
    used = 0
    for char in text:
        w = _char_width(char)
        if used + w > width - 1:
            break
        out.append(char)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def _table_cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    cells: dict[str, list[str]] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            text = col.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
            cells[str(name)] = text.where(col.notna(), "").tolist()
        elif pd.api.types.is_numeric_dtype(col.dtype) and str(name).endswith("_s"):
            values = col.to_numpy(dtype=float, na_value=np.nan)
            cells[str(name)] = [human_duration(v) for v in values]
        elif pd.api.types.is_float_dtype(col.dtype):
            values = col.to_numpy(dtype=float, na_value=np.nan)
            cells[str(name)] = ["" if math.isnan(v) else f"{v:.3f}" for v in values]
        elif col.dtype == object:
            cells[str(name)] = [nested_text(v, table=True) for v in col]
        else:
            cells[str(name)] = ["" if is_missing(v) else str(v) for v in col.astype(object)]
    return cells


def render_table(
    cells: Mapping[str, list[str]], right: Iterable[str] = (), *, max_width: int = MAX_CELL_WIDTH
) -> str:
    """Columns of text as an aligned table: numbers flush right, everything else left.

    Parameters
    ----------
    cells : mapping of str to list of str
        Column title to the column's cells, all columns the same length.
    right : iterable of str
        Columns aligned flush right.
    max_width : int, default MAX_CELL_WIDTH
        A cell wider than this many terminal columns is cut and ends in ``…``.

    Returns
    -------
    str
        The table, columns aligned by display width, without a final newline.
    """
    flush_right = set(right)
    columns = []
    for name, raw in cells.items():
        # A newline or an escape sequence inside a cell (task types may hold one) would
        # break the rows apart or drive the terminal.
        values = [_fit(safe_text(text), max_width) for text in raw]
        title = safe_text(name)
        width = max([display_width(title), *(display_width(v) for v in values)])
        columns.append([_pad(text, width, name in flush_right) for text in [title, *values]])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns, strict=True))


def record_table(frame: pd.DataFrame) -> str:
    """The first row of a frame as a two-column ``field  value`` table, cells as in tables.

    Parameters
    ----------
    frame : pandas.DataFrame
        At least one row; missing values show as empty cells.

    Returns
    -------
    str
    """
    cells = _table_cells(frame.iloc[:1])
    return render_table({"field": list(cells), "value": [c[0] for c in cells.values()]})


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [
        str(name)
        for name in frame.columns
        if pd.api.types.is_numeric_dtype(frame[name].dtype)
        and not pd.api.types.is_bool_dtype(frame[name].dtype)
    ]


def emit_frame(frame: pd.DataFrame, fmt: str, *, empty: str = "(no rows)") -> None:
    """Write a frame to stdout as an aligned table, JSON records or CSV.

    Parameters
    ----------
    frame : pandas.DataFrame
    fmt : {"table", "json", "csv"}
    empty : str, default "(no rows)"
        What the table format prints when the frame has no rows.
    """
    if fmt == "json":
        click.echo(json.dumps(frame_records(frame)))
    elif fmt == "csv":
        click.echo(frame_csv(frame), nl=False)
    elif frame.empty:
        click.echo(empty)
    else:
        click.echo(render_table(_table_cells(frame), right=_numeric_columns(frame)))


def metric_text(value: Any, name: str = "") -> str:
    """One metric's value as table text; a duration (``*_s``, ``*_seconds``) reads as one."""
    if value is None:
        return "none"
    duration = name.endswith(("_s", "_seconds"))
    if duration and isinstance(value, (int, float)) and not isinstance(value, bool):
        return human_duration(float(value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows.extend(flatten(value, prefix=f"{name}."))
        else:
            rows.append((name, value))
    return rows


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return iso_text(pd.Series([value])).iloc[0]
    return plain(value)


def emit_result(result: Mapping[str, Any], fmt: str) -> None:
    """A flat or nested dict as JSON, or as an aligned ``name  value`` table."""
    if fmt == "json":
        click.echo(json.dumps(plain(result), indent=2, default=_json_default))
        return
    rows = flatten(result)
    cells = {
        "name": [name for name, _ in rows],
        "value": [
            value.strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(value, pd.Timestamp)
            else metric_text(value, name)
            for name, value in rows
        ],
    }
    click.echo(render_table(cells, right=["value"]))


def epoch_text(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
