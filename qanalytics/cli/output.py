"""How the ``qanalytics`` command prints: aligned tables, JSON and CSV on stdout."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import click
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

__all__ = ["emit_frame", "emit_result", "epoch_text", "flatten", "metric_text", "render_table"]


def _table_cells(frame: pd.DataFrame) -> dict[str, list[str]]:
    cells: dict[str, list[str]] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            text = col.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S")
            cells[str(name)] = text.where(col.notna(), "").tolist()
        elif pd.api.types.is_float_dtype(col.dtype):
            spec = "{:.1f}" if str(name).endswith("_s") else "{:.3f}"
            values = col.to_numpy(dtype=float, na_value=np.nan)
            cells[str(name)] = ["" if math.isnan(v) else spec.format(v) for v in values]
        elif col.dtype == object:
            cells[str(name)] = [nested_text(v, table=True) for v in col]
        else:
            cells[str(name)] = ["" if is_missing(v) else str(v) for v in col.astype(object)]
    return cells


def render_table(cells: Mapping[str, list[str]], right: Iterable[str] = ()) -> str:
    """Columns of text as an aligned table: numbers flush right, everything else left."""
    flush_right = set(right)
    columns = []
    for name, raw in cells.items():
        # A newline or an escape sequence inside a cell (task types may hold one) would
        # break the rows apart or drive the terminal.
        values = [safe_text(text) for text in raw]
        title = safe_text(name)
        width = max([len(title), *(len(v) for v in values)])
        align = str.rjust if name in flush_right else str.ljust
        columns.append([align(text, width) for text in [title, *values]])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns, strict=True))


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


def metric_text(value: Any) -> str:
    if value is None:
        return "none"
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
            else metric_text(value)
            for _, value in rows
        ],
    }
    click.echo(render_table(cells, right=["value"]))


def epoch_text(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    return pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
