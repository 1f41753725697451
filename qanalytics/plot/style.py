"""What every plot shares: colours, labels, time axes, legends and the \"no data\" Axes."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from typing import Any, ParamSpec

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter

from .._time import parse_duration

__all__ = ["OUTCOME_COLORS", "STATE_COLORS", "STATUS_COLORS"]

# Okabe-Ito colours: distinguishable with the common forms of colour blindness.
_GREEN = "#009E73"
_ORANGE = "#E69F00"
_VERMILLION = "#D55E00"
_GREY = "#999999"
_BLUE = "#0072B2"
_PURPLE = "#CC79A7"
_SKY = "#56B4E9"

#: Colour of each worker state (``workers()["state"]``).
STATE_COLORS: dict[str, str] = {
    "active": _GREEN,
    "late": _ORANGE,
    "stale": _VERMILLION,
    "removed": _GREY,
}
#: Colour of each attempt outcome (``attempts()["outcome"]``, ``throughput()["outcome"]``).
OUTCOME_COLORS: dict[str, str] = {
    "completed": _GREEN,
    "failed": _VERMILLION,
    "abandoned": _ORANGE,
    "cancelled": _GREY,
}
#: Colour of each task status (``tasks()["status"]``, ``depth_timeline()`` columns).
STATUS_COLORS: dict[str, str] = {
    "queued": _BLUE,
    "processing": _PURPLE,
    "completed": _GREEN,
    "failed": _VERMILLION,
    "cancelled": _GREY,
}

_OTHER_COLOR = "#555555"
_NO_DATA = "no data"
_TIME_LABEL = "time (UTC)"
_HOUR_DAYS = 1.0 / 24.0
_SECONDS_PER_DAY = 86400.0


# --------------------------------------------------------------------------- helpers


def _literal(text: object) -> str:
    """`text` for a tick label: every ``$`` escaped, so mathtext never parses data."""
    return str(text).replace("$", r"\$")


def _literal_labels(ax: Axes) -> None:
    """Show the titles, axis labels, texts and legend entries of `ax` (and its twins) as written.

    Task types, worker ids and column names are data: ``$x^2$`` or an unbalanced ``$``
    would be parsed as mathtext, which renders something else or fails when the figure
    is drawn. Tick labels built from data are escaped where they are set (:func:`_literal`),
    since an axis may create new tick labels when it draws.
    """
    for axes in {ax, *ax.get_shared_x_axes().get_siblings(ax)}:
        texts = [axes.title, axes.xaxis.label, axes.yaxis.label, *axes.texts]
        legend = axes.get_legend()
        if legend is not None:
            texts += [*legend.get_texts(), legend.get_title()]
        for text in texts:
            text.set_parse_math(False)


_P = ParamSpec("_P")


def _literal_text(func: Callable[_P, Axes]) -> Callable[_P, Axes]:
    """Make the labels a plot function draws literal text (:func:`_literal_labels`)."""

    @functools.wraps(func)
    def plot(*args: _P.args, **kwargs: _P.kwargs) -> Axes:
        ax = func(*args, **kwargs)
        _literal_labels(ax)
        return ax

    return plot


def _check_frame(frame: Any, required: Iterable[str], *, name: str, func: str) -> pd.DataFrame:
    """Raise a clear error unless `frame` is a DataFrame with the `required` columns."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{func}() needs a pandas DataFrame as {name}, not {type(frame).__name__}")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{func}(): {name} is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {', '.join(map(repr, map(str, frame.columns))) or 'no columns'}"
        )
    return frame


def _resolve_by(
    frame: pd.DataFrame, by: str | Sequence[str] | None, known: Iterable[str], *, func: str
) -> list[str]:
    """The grouping columns: `by` when given, else every column the contract does not name."""
    if by is None:
        known_set = set(known)
        return [str(column) for column in frame.columns if column not in known_set]
    columns = [by] if isinstance(by, str) else list(by)
    for column in columns:
        if not isinstance(column, str):
            raise TypeError(f"{func}(): by must be a column name or a list of them, not {by!r}")
    _check_frame(frame, columns, name="frame", func=func)
    return columns


def _group_labels(frame: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """One string label per row naming its group (categories become plain strings)."""
    if not by:
        return pd.Series("all", index=frame.index, dtype=object)
    parts = [frame[column].astype(object).astype(str) for column in by]
    label = parts[0]
    for part in parts[1:]:
        label = label + " / " + part
    return label


def _ordered_levels(values: pd.Series) -> list[str]:
    """Distinct labels in category order when categorical, else in natural order."""
    present = set(values.dropna().astype(object).astype(str))
    if isinstance(values.dtype, pd.CategoricalDtype):
        ordered = [str(c) for c in values.cat.categories if str(c) in present]
        return ordered + sorted(present - set(ordered), key=_natural_key)
    return sorted(present, key=_natural_key)


def _natural_key(text: str) -> list[Any]:
    """Sort ``worker-2`` before ``worker-10``."""
    return [
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)
    ]


def _palette(levels: Sequence[str], fixed: dict[str, str] | None = None) -> dict[str, Any]:
    """A colour per level: the fixed palette where it names the level, else a qualitative map."""
    fixed = fixed or {}
    free = [level for level in levels if level not in fixed]
    cmap = plt.get_cmap("tab10" if len(free) <= 10 else "tab20")
    n_colors = getattr(cmap, "N", 10)
    colors: dict[str, Any] = {}
    for level in levels:
        colors[level] = fixed[level] if level in fixed else cmap(free.index(level) % n_colors)
    return colors


def _dates(values: Any) -> np.ndarray:
    """Timestamps (tz-aware, naive-as-UTC, or strings) as matplotlib date numbers; NaT -> NaN."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    naive = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    return np.asarray(mdates.date2num(naive), dtype=float)


def _floats(values: Any) -> np.ndarray:
    """Numbers (including nullable Int64 with NA) as a float array with NaN for missing."""
    return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce").astype("float64"))


def _setup_time_axis(ax: Axes) -> None:
    """Declare the x axis as UTC dates before drawing, so later datetime plots agree."""
    ax.xaxis_date(tz=UTC)


def _format_time_axis(ax: Axes) -> None:
    """A concise UTC date axis (``ConciseDateFormatter`` on an ``AutoDateLocator``).

    The formatter's offset text (a date such as ``2026-Jan-07`` at the axis's lower right)
    is switched off: the ticks already name the days, and the offset read as a stray label.
    """
    lo, hi = ax.dataLim.intervalx
    if np.isfinite(lo) and np.isfinite(hi) and hi - lo < _MIN_TIME_SPAN_DAYS:
        # One bucket: matplotlib would pad a zero-width range to years (2025 to 2029).
        middle = (lo + hi) / 2.0
        ax.set_xlim(middle - _MIN_TIME_SPAN_DAYS / 2.0, middle + _MIN_TIME_SPAN_DAYS / 2.0)
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False))
    ax.set_xlabel(_TIME_LABEL)


#: The narrowest time axis, in days: a single bucket is shown over two hours around it.
_MIN_TIME_SPAN_DAYS = 2.0 / 24.0


def _log_number(value: float, _: object = None) -> str:
    """A log-axis tick as a plain number: ``0.05``, ``2``, ``1,000``."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _log_axis(axis: Any, values: Any) -> None:
    """A readable logarithmic axis for positive `values`, ticks written as plain numbers.

    Over less than three decades the ticks fall at 1, 2 and 5 of each decade: matplotlib
    would otherwise label only the powers of ten (``1``, ``10``), which leaves most of the
    axis unread. Wider ranges keep one tick per decade.
    """
    positive = np.asarray(values, dtype=float)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    decades = np.log10(positive.max() / positive.min()) if positive.size else 0.0
    subs = (1.0, 2.0, 5.0) if decades < 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(_log_number))
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(np.arange(2.0, 10.0))))
    axis.set_minor_formatter(NullFormatter())


def _fit_figure(ax: Axes) -> None:
    """Let the figure make room for legends and colorbars outside the Axes.

    A figure without a layout engine gets matplotlib's constrained layout, so a legend
    beside the Axes is not cut off when the figure is saved without
    ``bbox_inches="tight"``. A figure that already has a layout engine (or colorbars
    made without one, which constrained layout cannot take over) is left as it is.
    """
    figure = ax.get_figure(root=True)
    if not isinstance(figure, Figure) or figure.get_layout_engine() is not None:
        return
    try:
        figure.set_layout_engine("constrained")
    except RuntimeError:  # a colorbar was made for the old (absent) layout engine
        return


def _no_data(ax: Axes, *, title: str, xlabel: str, ylabel: str) -> Axes:
    """An empty, labelled Axes with a centred note instead of a plot."""
    ax.text(
        0.5,
        0.5,
        _NO_DATA,
        transform=ax.transAxes,
        ha="center",
        va="center",
        color=_OTHER_COLOR,
        fontsize="large",
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def _bucket_width(frame: pd.DataFrame, x: np.ndarray) -> float:
    """Width of one bucket in days: ``frame.attrs["freq"]`` when set, else the smallest step."""
    freq = frame.attrs.get("freq")
    if freq is not None:
        return parse_duration(freq, name="frame.attrs['freq']", allow_zero=False) / _SECONDS_PER_DAY
    steps = np.diff(np.unique(x[~np.isnan(x)]))
    steps = steps[steps > 0]
    return float(steps.min()) if steps.size else _HOUR_DAYS


def _duration_text(days: float) -> str:
    """A bucket width as words: ``"hour"``, ``"15 min"``, ``"day"``."""
    seconds = round(days * _SECONDS_PER_DAY)
    for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            if count == 1:
                return "minute" if unit == "min" else unit
            return f"{count} {unit}" if unit == "min" else f"{count} {unit}s"
    return f"{seconds} s"


def _legend(ax: Axes, handles: Sequence[Any] | None = None, *, outside: bool | None = None) -> None:
    """A legend that does not cover the data: outside on the right when it has many entries."""
    if handles is None:
        handles, _ = ax.get_legend_handles_labels()
    if not handles:
        return
    if outside is None:
        outside = len(handles) > 4
    if outside:
        _fit_figure(ax)
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            frameon=False,
            fontsize="small",
        )
    else:
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.85)


def _heatmap(
    ax: Axes,
    frame: pd.DataFrame,
    value: str,
    *,
    title: str,
    colorbar_label: str,
    kwargs: dict[str, Any],
) -> Axes:
    """Worker rows x time-bucket columns of a [0, 1] fraction, with a percent colorbar."""
    x = _dates(frame["bucket"])
    width = _bucket_width(frame, x)
    workers = _ordered_levels(frame["worker_id"].astype(object).astype(str))
    row_of = {worker: i for i, worker in enumerate(workers)}
    start = float(np.nanmin(x))
    n_cols = round((float(np.nanmax(x)) - start) / width) + 1
    grid = np.full((len(workers), n_cols), np.nan)
    rows = frame["worker_id"].astype(object).astype(str).map(row_of).to_numpy()
    cols = np.rint((x - start) / width).astype(int)
    grid[rows, cols] = _floats(frame[value])
    x_edges = start + width * np.arange(n_cols + 1)
    y_edges = np.arange(len(workers) + 1) - 0.5
    options: dict[str, Any] = {"cmap": "viridis", "shading": "flat"}
    if kwargs.get("norm") is None:
        options.update(vmin=0.0, vmax=1.0)
    options.update(kwargs)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), **options)
    if isinstance(mesh.norm, BoundaryNorm):
        # Equal-sized blocks, a tick at every boundary: "99.9 %" must not round to "100 %".
        colorbar = ax.figure.colorbar(
            mesh,
            ax=ax,
            pad=0.02,
            spacing="uniform",
            ticks=list(mesh.norm.boundaries),
            format=FuncFormatter(lambda value, _: f"{value * 100:g} %"),
        )
    else:
        colorbar = ax.figure.colorbar(mesh, ax=ax, pad=0.02, format=PercentFormatter(xmax=1.0))
    colorbar.set_label(colorbar_label)
    _worker_ticks(ax, workers)
    ax.set_ylim(len(workers) - 0.5, -0.5)
    _format_time_axis(ax)
    ax.set_ylabel("worker")
    ax.set_title(title)
    return ax


#: Uptime bins: the boundaries (alive share of a bucket) and each bin's colour. Anything short
#: of ~100 % must stand out from a fully alive bucket; red marks a worker down for most of it.
UPTIME_BINS: tuple[float, ...] = (0.0, 0.8, 0.95, 0.99, 0.999, 1.0)
UPTIME_COLORS: tuple[str, ...] = ("#C0392B", _ORANGE, "#F0E442", "#A6DBA0", "#1B7837")


def _uptime_norm() -> tuple[Colormap, BoundaryNorm]:
    """The colormap and norm of the uptime heatmap (:data:`UPTIME_BINS`)."""
    cmap = ListedColormap(list(UPTIME_COLORS), name="qanalytics_uptime").with_extremes(bad="white")
    return cmap, BoundaryNorm(list(UPTIME_BINS), cmap.N)


def _worker_ticks(ax: Axes, workers: Sequence[str], max_labels: int = 40) -> None:
    """Worker names on the y axis, thinned so that they never overlap."""
    step = max(1, int(np.ceil(len(workers) / max_labels)))
    positions = list(range(0, len(workers), step))
    ax.set_yticks(positions, [_literal(workers[i]) for i in positions])
    ax.tick_params(axis="y", labelsize="small" if len(workers) > 12 else "medium")


def _quantile_label(q: float) -> str:
    return f"p{q * 100:g}"
