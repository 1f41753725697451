"""Frames and metrics as text for other tools: Prometheus exposition, JSON records, CSV."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .write.workers import MAX_JSON_DEPTH, json_depth

__all__ = [
    "frame_csv",
    "frame_records",
    "is_missing",
    "iso_text",
    "nested_text",
    "plain",
    "prometheus_text",
    "safe_text",
]


# C0 and C1 controls, DEL, line/paragraph separators and the bidirectional controls.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe_text(text: str) -> str:
    """Text with every character that could drive or reorder a terminal escaped.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        `text` with C0/C1 controls, DEL, U+2028/U+2029 and bidirectional controls shown
        as ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` or ``\\uNNNN``.
    """
    return _UNSAFE.sub(_escape_char, text)


#: What a value nested deeper than MAX_JSON_DEPTH is shown as.
_TOO_DEEP = f"<nested more than {MAX_JSON_DEPTH} levels deep>"


def is_missing(value: Any) -> bool:
    """Whether a cell is missing: None, NaT, NA or a float NaN.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def plain(value: Any) -> Any:
    """A cell (or a nested dict or list of them) as a JSON-serialisable Python value.

    Parameters
    ----------
    value : object

    Returns
    -------
    object
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return value


def nested_text(value: Any, *, table: bool) -> str:
    """A cell as text: lists comma-separated in tables, nested values as JSON otherwise.

    Parameters
    ----------
    value : object
    table : bool
        Whether the text goes into an aligned table.

    Returns
    -------
    str
    """
    if is_missing(value):
        return ""
    if json_depth(value) > MAX_JSON_DEPTH:
        return _TOO_DEEP
    if table and isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(plain(v)) for v in value)
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        return json.dumps(plain(value), sort_keys=True)
    return str(value)


def iso_text(series: pd.Series) -> pd.Series:
    """Timestamps as ISO 8601 text in UTC with milliseconds (``...Z``); None where missing.

    Parameters
    ----------
    series : pandas.Series of datetime64[..., UTC]

    Returns
    -------
    pandas.Series
    """
    text = series.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.where(series.notna(), None)


def _json_cell(value: Any) -> Any:
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        return _TOO_DEEP if json_depth(value) > MAX_JSON_DEPTH else plain(value)
    return None if is_missing(value) else plain(value)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records: ISO 8601 timestamps (UTC), None for missing values.

    Parameters
    ----------
    frame : pandas.DataFrame

    Returns
    -------
    list of dict
    """
    data = frame.copy()
    for name in data.columns:
        if isinstance(data[name].dtype, pd.DatetimeTZDtype):
            data[name] = iso_text(data[name])
    names = [str(name) for name in data.columns]
    return [
        {name: _json_cell(value) for name, value in zip(names, row, strict=True)}
        for row in data.astype(object).itertuples(index=False, name=None)
    ]


#: A CSV cell starting with one of these is a formula to a spreadsheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """A cell for CSV: text that a spreadsheet would run as a formula gets a leading ``'``.

    Booleans are ``true``/``false``; a list of plain values is its items joined by ``;``
    (``10770;10771``); mappings, nested lists and lists of text holding ``;`` stay JSON.
    """
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value  # a number, negative or not, is data: keep it a number
    if (
        isinstance(value, (list, tuple, np.ndarray))
        and json_depth(value) <= MAX_JSON_DEPTH
        and all(isinstance(v, (str, int, float, np.integer, np.floating)) for v in value)
        and not any(isinstance(v, (bool, np.bool_)) for v in value)
        and not any(isinstance(v, str) and ";" in v for v in value)
    ):
        text = ";".join(str(plain(v)) for v in value)
    else:
        text = value if isinstance(value, str) else nested_text(value, table=False)
    return "'" + text if text.startswith(_FORMULA_START) else text


def frame_csv(frame: pd.DataFrame) -> str:
    """A frame as CSV text for spreadsheets and other tools.

    Timestamps are ISO 8601 (UTC); numbers stay numbers; booleans are ``true`` and
    ``false``; a list of plain values (the task ids an outage held) is its items joined
    by ``;`` (``10770;10771``, empty for none); mappings and nested lists are JSON; text
    a spreadsheet would run as a formula starts with ``'``.

    Parameters
    ----------
    frame : pandas.DataFrame

    Returns
    -------
    str
    """
    data = frame.copy()
    bare_cr = False
    for name in data.columns:
        col = data[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            data[name] = iso_text(col)
        elif pd.api.types.is_bool_dtype(col.dtype):
            data[name] = pd.Series(
                [None if is_missing(v) else ("true" if v else "false") for v in col.astype(object)],
                index=col.index,
                dtype=object,
            )
        elif not pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(
            col.dtype
        ):
            # Text, categories and nested values; numeric columns are written as numbers.
            cells = [None if is_missing(v) else _csv_cell(v) for v in col.astype(object)]
            bare_cr = bare_cr or any(isinstance(c, str) and "\r" in c for c in cells)
            data[name] = pd.Series(cells, index=col.index, dtype=object)
    # The csv module quotes a field holding "\n" but not one holding a lone "\r", which
    # readers take for a line end: then quote every text field.
    if bare_cr:
        return str(data.to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC))
    return str(data.to_csv(index=False, lineterminator="\n"))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _sample_value(value: Any) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


def prometheus_text(metrics: Mapping[str, Any]) -> str:
    """Queue metrics in the Prometheus text exposition format (version 0.0.4).

    Every metric is a gauge named ``qanalytics_...`` with ``# HELP`` and ``# TYPE`` lines;
    label values are escaped (backslash, double quote, newline). No two samples of a
    metric share a label set: keys that print alike (the task type ``1`` stored as a
    number and ``"1"`` as text) are one sample, their counts added.

    Parameters
    ----------
    metrics : mapping
        The dict :func:`qanalytics.queue_metrics` returns.

    Returns
    -------
    str
        The exposition text, ending with a newline.
    """
    families: list[tuple[str, str, list[tuple[dict[str, str], Any]]]] = []
    by_status = metrics["queue_depth_by_status"]
    families.append(
        (
            "queue_depth",
            "Tasks in the store by status.",
            [({"status": str(s)}, n) for s, n in by_status.items()],
        )
    )
    families.append(
        (
            "queued_tasks",
            "Queued tasks by type.",
            [({"type": str(t)}, n) for t, n in metrics["queue_depth_by_type"].items()],
        )
    )
    stats = metrics["task_statistics"]
    families.append(
        ("runnable_tasks", "Queued tasks whose run_after has passed.", [({}, stats["runnable"])])
    )
    families.append(
        (
            "delayed_tasks",
            "Queued tasks waiting for their run_after (retry backoff or scheduled).",
            [({}, stats["delayed"])],
        )
    )
    oldest = metrics["oldest_queued_task_age_seconds"]
    families.append(
        (
            "oldest_queued_task_age_seconds",
            "Age of the oldest queued task in seconds; no sample when nothing is queued.",
            # No sample rather than 0: nothing queued has no age, and a 0 would read as a
            # task that was just enqueued (exporters leave an unknown value out).
            [] if oldest is None else [({}, oldest)],
        )
    )
    families.append(
        (
            "success_rate",
            "Completed over completed plus failed tasks; NaN when none has finished.",
            [({}, metrics["success_rate"])],
        )
    )
    families.append(
        (
            "failure_rate",
            "Failed over completed plus failed tasks; NaN when none has finished.",
            [({}, metrics["failure_rate"])],
        )
    )
    total = int(metrics["total_workers"])
    active = int(metrics["active_workers"])
    stale = int(metrics["stale_workers"])
    families.append(
        (
            "workers",
            "Registered (not removed) workers by heartbeat state; total counts them all.",
            [
                ({"state": "active"}, active),
                ({"state": "late"}, total - active - stale),
                ({"state": "stale"}, stale),
                ({"state": "total"}, total),
            ],
        )
    )
    lines: list[str] = []
    for short, help_text, samples in families:
        name = f"qanalytics_{short}"
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} gauge")
        # Keys that differ in the store can print alike (the type 1 and the type '1' in a
        # store written by other means): one sample per label set, counts added up.
        merged: dict[str, Any] = {}
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            merged[label_text] = value + merged[label_text] if label_text in merged else value
        for label_text, value in merged.items():
            suffix = "{" + label_text + "}" if label_text else ""
            lines.append(f"{name}{suffix} {_sample_value(value)}")
    return "\n".join(lines) + "\n"
