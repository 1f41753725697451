"""The HTML report: :func:`write_report`, and the toolbox its template notebook uses."""

from __future__ import annotations

from .notebook import (
    INJECTED_TAG,
    PARAMETERS_TAG,
    ReportWindow,
    Table,
    callout,
    fmt_count,
    fmt_duration,
    fmt_freq,
    fmt_rate,
    fmt_time,
    layout_notice,
    missing_data,
    report_window,
    summary_table,
    table,
    window_success,
    write_report,
)
from .notebook import _inject_parameters as _inject_parameters
from .notebook import _load_template as _load_template

__all__ = [
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "ReportWindow",
    "Table",
    "callout",
    "fmt_count",
    "fmt_duration",
    "fmt_freq",
    "fmt_rate",
    "fmt_time",
    "layout_notice",
    "missing_data",
    "report_window",
    "summary_table",
    "table",
    "window_success",
    "write_report",
]
