"""How the ``qanalytics`` command prints: aligned tables, JSON and CSV on stdout.

Tables are for people: a duration (a ``*_s`` column, an age) reads ``45 s``, ``5 h 26 min``
or ``3 d 4 h``; columns line up by display width (an East Asian wide character takes two
columns, a combining mark none); and a cell wider than :data:`MAX_CELL_WIDTH` columns is cut
with ``…``. JSON and CSV keep every value whole, durations as seconds.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
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
    "COLUMNS_KEY",
    "MAX_CELL_WIDTH",
    "NOTES_KEY",
    "column_title",
    "display_width",
    "emit_frame",
    "emit_result",
    "epoch_text",
    "fit_columns",
    "flatten",
    "human_duration",
    "metric_text",
    "rate_text",
    "record_table",
    "render_table",
    "terminal_width",
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


#: Float columns that hold a share (0 to 1): tables show them as percentages.
RATE_COLUMNS = frozenset(
    {"rate", "ci_low", "ci_high", "success_rate", "failure_rate", "utilization", "busy_share"}
)


def _rate_digits(value: float) -> int:
    """The decimals a percentage needs so that it rounds to 0 % or 100 % only when exact."""
    if math.isnan(value) or value in (0.0, 1.0):
        return 1
    for digits in range(1, 7):
        if float(f"{value * 100:.{digits}f}") not in (0.0, 100.0):
            return digits
    return 6


def rate_text(value: float, digits: int | None = None) -> str:
    """A share (0 to 1) as a percentage that never rounds to 0 % or 100 % unless exact.

    Parameters
    ----------
    value : float
        NaN gives an empty string.
    digits : int, optional
        Decimals to show (a table column uses the most any of its cells needs); by
        default as few as keep an inexact share off 0 % and 100 % (at least one).

    Returns
    -------
    str
        ``"100.0 %"``, ``"98.9 %"``, ``"99.97 %"`` (3145 of 3146, not ``1.000``).
    """
    if math.isnan(value):
        return ""
    shown = _rate_digits(value) if digits is None else max(digits, _rate_digits(value))
    return f"{value * 100:.{shown}f} %"


def column_title(name: str, frame: pd.DataFrame | None = None) -> str:
    """The table title of a column: a duration (``*_s``) shown as text loses its unit suffix.

    Parameters
    ----------
    name : str
    frame : pandas.DataFrame, optional
        When given, only a numeric ``*_s`` column is renamed.

    Returns
    -------
    str
        ``"since_heartbeat"`` for ``"since_heartbeat_s"``, whose cells read ``32 h 26 min``.
    """
    if not name.endswith("_s") or len(name) <= 2:
        return name
    if frame is not None and not pd.api.types.is_numeric_dtype(frame[name].dtype):
        return name
    return name[:-2]


def _table_cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    cells: dict[str, list[str]] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            text = col.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
            cells[str(name)] = text.where(col.notna(), "").tolist()
        elif pd.api.types.is_numeric_dtype(col.dtype) and str(name).endswith("_s"):
            values = col.to_numpy(dtype=float, na_value=np.nan)
            cells[column_title(str(name))] = [human_duration(v) for v in values]
        elif pd.api.types.is_float_dtype(col.dtype) and str(name) in RATE_COLUMNS:
            values = col.to_numpy(dtype=float, na_value=np.nan)
            digits = max((_rate_digits(v) for v in values), default=1)
            cells[str(name)] = [rate_text(v, digits) for v in values]
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
        column_title(str(name), frame)
        for name in frame.columns
        if pd.api.types.is_numeric_dtype(frame[name].dtype)
        and not pd.api.types.is_bool_dtype(frame[name].dtype)
    ]


#: Where a command's ``--columns`` choice is kept for :func:`emit_frame` (click's ctx.meta).
COLUMNS_KEY = "qanalytics.columns"
#: Notes a command prints on stderr after its output (see commands._flush_warnings).
NOTES_KEY = "qanalytics.notes"


def terminal_width() -> int | None:
    """The width tables fit: the terminal's, or ``COLUMNS``; None when writing to a pipe.

    Returns
    -------
    int or None
    """
    if os.environ.get("COLUMNS", "").strip().isdigit():
        return max(int(os.environ["COLUMNS"]), 20)
    if not sys.stdout.isatty():
        return None  # a file or a pipe gets every column; --format csv for a spreadsheet
    return max(shutil.get_terminal_size().columns, 20)


def _table_width(cells: Mapping[str, list[str]]) -> int:
    widths = [
        max([display_width(name), *(min(display_width(v), MAX_CELL_WIDTH) for v in values)])
        for name, values in cells.items()
    ]
    return sum(widths) + 2 * max(len(widths) - 1, 0)


#: Columns a narrow table leaves out before others (after empty ones).
_DETAIL_COLUMNS = (
    "registered_at",
    "removed_at",
    "resolution",
    "ended_by",
    "run_after",
    "priority",
    "max_attempts",
    "heartbeats",
    "tasks_completed",
    "tasks_failed",
    "end",
    "attempts",
)


def fit_columns(
    cells: dict[str, list[str]], width: int | None
) -> tuple[dict[str, list[str]], list[str]]:
    """Drop columns until the table fits `width` terminal columns.

    Empty columns go first, then columns from the right; the first column always stays.

    Parameters
    ----------
    cells : dict of str to list of str
        Column title to cells, in display order.
    width : int or None
        None keeps every column.

    Returns
    -------
    (dict, list of str)
        The columns kept, and the titles of those hidden.
    """
    if width is None or _table_width(cells) <= width:
        return cells, []
    kept = dict(cells)
    hidden: list[str] = []
    rest = list(kept)[1:]
    # Empty columns first, then details (capabilities, registration, how an outage was
    # read), then from the right.
    empty = [n for n in rest if not any(v.strip() for v in kept[n])]
    details = [n for n in reversed(rest) if n.startswith("cap_")]
    details += [n for n in _DETAIL_COLUMNS if n in kept]
    order = list(dict.fromkeys([*empty, *details, *reversed(rest)]))
    for name in order:
        if _table_width(kept) <= width:
            break
        if name not in details and name not in empty and _shrink_last(kept, width):
            break  # a long last column (an error message) is cut rather than left out
        hidden.append(name)
        del kept[name]
    return kept, hidden


#: The narrowest a long last column is cut to before it is left out instead.
_MIN_SHRUNK = 16


def _shrink_last(kept: dict[str, list[str]], width: int) -> bool:
    """Cut the cells of the last column so the table fits, if it can stay readable."""
    last = list(kept)[-1]
    others = {k: v for k, v in kept.items() if k != last}
    room = width - _table_width(others) - 2
    if room < max(_MIN_SHRUNK, display_width(last)):
        return False
    kept[last] = [_fit(v, room) for v in kept[last]]
    return True


def _chosen_columns(frame: pd.DataFrame) -> pd.DataFrame | None:
    """The frame's columns a ``--columns`` option chose, in its order (None: not given)."""
    ctx = click.get_current_context(silent=True)
    chosen = None if ctx is None else ctx.meta.get(COLUMNS_KEY)
    if not chosen:
        return None
    by_title = {column_title(str(c), frame): c for c in frame.columns}
    by_title.update({str(c): c for c in frame.columns})
    unknown = [c for c in chosen if c not in by_title]
    if unknown:
        names = ", ".join(column_title(str(c), frame) for c in frame.columns)
        raise click.UsageError(
            f"--columns: no column {', '.join(repr(c) for c in unknown)}; "
            f"this table has {names}"
        )
    return frame[[by_title[c] for c in chosen]]


def _note(text: str) -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        click.echo(f"Note: {text}", err=True)
    else:
        ctx.meta.setdefault(NOTES_KEY, []).append(text)


def emit_frame(frame: pd.DataFrame, fmt: str, *, empty: str = "(no rows)") -> None:
    """Write a frame to stdout as an aligned table, JSON records or CSV.

    Parameters
    ----------
    frame : pandas.DataFrame
    fmt : {"table", "json", "csv"}
    empty : str, default "(no rows)"
        What the table format prints when the frame has no rows.
    """
    chosen = _chosen_columns(frame)
    if chosen is not None:
        frame = chosen
    if fmt == "json":
        click.echo(json.dumps(frame_records(frame)))
    elif fmt == "csv":
        click.echo(frame_csv(frame), nl=False)
    elif frame.empty:
        click.echo(empty)
    else:
        cells = _table_cells(frame)
        width = None if chosen is not None else terminal_width()
        cells, hidden = fit_columns(cells, width)
        click.echo(render_table(cells, right=_numeric_columns(frame)))
        if hidden:
            _note(
                f"{len(hidden)} column(s) left out to fit {width} columns: "
                f"{', '.join(hidden)} (choose with --columns, or --format json for all)."
            )


def metric_text(value: Any, name: str = "") -> str:
    """One metric's value as table text; a duration (``*_s``, ``*_seconds``) reads as one."""
    if value is None:
        return "n/a"
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
        return "n/a"
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
