"""Plots of the read-side frames, one function per frame.

Each function takes the frame its namesake read function returns (filter it first if you
like), draws on `ax` (the current Axes when None) and returns that Axes, in the manner of
seaborn's axes-level functions::

    import matplotlib.pyplot as plt
    import qanalytics as qa

    fig, ax = plt.subplots(figsize=(10, 4))
    qa.plot.success_rate(qa.success_rate(db, by="type"), ax=ax)

Nothing here calls ``plt.show()``. Times are drawn in UTC with a concise date axis; an empty
frame draws an empty, labelled Axes that says "no data"; a frame missing a required column
raises ``ValueError`` naming the columns. Colours are consistent across plots: see
:data:`STATE_COLORS`, :data:`OUTCOME_COLORS` and :data:`STATUS_COLORS`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any, ParamSpec

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from ._time import parse_duration

__all__ = [
    "OUTCOME_COLORS",
    "STATE_COLORS",
    "STATUS_COLORS",
    "capacity",
    "heartbeat_timeline",
    "latency",
    "littles_law",
    "queue_depth",
    "retry_outcomes",
    "success_rate",
    "throughput",
    "uptime",
    "utilization",
    "what_if",
    "worker_states",
]

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
    """A concise UTC date axis (``ConciseDateFormatter`` on an ``AutoDateLocator``)."""
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel(_TIME_LABEL)


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
    options: dict[str, Any] = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0, "shading": "flat"}
    options.update(kwargs)
    mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(grid), **options)
    colorbar = ax.figure.colorbar(mesh, ax=ax, pad=0.02, format=PercentFormatter(xmax=1.0))
    colorbar.set_label(colorbar_label)
    _worker_ticks(ax, workers)
    ax.set_ylim(len(workers) - 0.5, -0.5)
    _format_time_axis(ax)
    ax.set_ylabel("worker")
    ax.set_title(title)
    return ax


def _worker_ticks(ax: Axes, workers: Sequence[str], max_labels: int = 40) -> None:
    """Worker names on the y axis, thinned so that they never overlap."""
    step = max(1, int(np.ceil(len(workers) / max_labels)))
    positions = list(range(0, len(workers), step))
    ax.set_yticks(positions, [_literal(workers[i]) for i in positions])
    ax.tick_params(axis="y", labelsize="small" if len(workers) > 12 else "medium")


def _quantile_label(q: float) -> str:
    return f"p{q * 100:g}"


# --------------------------------------------------------------------------- liveness


@_literal_text
def heartbeat_timeline(
    heartbeats: pd.DataFrame,
    outages: pd.DataFrame | None = None,
    workers: pd.DataFrame | None = None,
    *,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Every worker's heartbeats along time, with outages shaded on the worker's row.

    Parameters
    ----------
    heartbeats : DataFrame
        From :func:`qanalytics.heartbeats`: ``worker_id`` and ``at``.
    outages : DataFrame, optional
        From :func:`qanalytics.outages`: ``worker_id``, ``start`` and ``end`` (``ongoing``
        or ``ended_by`` tell ongoing silences apart; they are hatched).
    workers : DataFrame, optional
        From :func:`qanalytics.workers` (``include_removed=True`` to see removals):
        ``worker_id``, plus ``state`` and ``removed_at`` when present. Adds rows for workers
        without beats, marks removals with an ``x`` on the worker's row and colours the
        names of late, stale and removed workers.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the beat marks
        (``color``, ``markersize``, ...).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If a frame is not a DataFrame.
    ValueError
        If a frame lacks a required column.

    Examples
    --------
    >>> qa.plot.heartbeat_timeline(
    ...     qa.heartbeats(db), qa.outages(db), qa.workers(db, include_removed=True)
    ... )  # doctest: +SKIP
    """
    func = "heartbeat_timeline"
    _check_frame(heartbeats, ["worker_id", "at"], name="heartbeats", func=func)
    if outages is not None:
        _check_frame(outages, ["worker_id", "start", "end"], name="outages", func=func)
    if workers is not None:
        _check_frame(workers, ["worker_id"], name="workers", func=func)
    ax = ax or plt.gca()
    title = "Heartbeats and outages"
    names = [heartbeats["worker_id"]]
    if outages is not None:
        names.append(outages["worker_id"])
    if workers is not None:
        names.append(workers["worker_id"])
    all_names = pd.concat([n.astype(object).astype(str) for n in names], ignore_index=True)
    rows = sorted(set(all_names), key=_natural_key)
    has_events = len(heartbeats) or (outages is not None and len(outages))
    if not rows or not has_events:
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel="worker")
    row_of = {worker: i for i, worker in enumerate(rows)}
    _setup_time_axis(ax)
    legend: list[Any] = []

    beat_x = _dates(heartbeats["at"])
    beat_y = heartbeats["worker_id"].astype(object).astype(str).map(row_of).to_numpy(float)
    height_pt = ax.get_window_extent().height * 72.0 / ax.figure.dpi
    options: dict[str, Any] = {
        "linestyle": "none",
        "marker": "|",
        "markersize": float(np.clip(0.6 * height_pt / len(rows), 3.0, 14.0)),
        "markeredgewidth": 0.8,
        "color": _SKY,
        "label": "heartbeat",
    }
    options.update(kwargs)
    if len(heartbeats):
        (beats,) = ax.plot(beat_x, beat_y, **options)
        legend.append(beats)

    if outages is not None and len(outages):
        start = _dates(outages["start"])
        end = _dates(outages["end"])
        if "ongoing" in outages.columns:
            ongoing = outages["ongoing"].fillna(False).astype(bool).to_numpy()
        elif "ended_by" in outages.columns:
            ongoing = (outages["ended_by"].astype(object) == "still silent").to_numpy()
        else:
            ongoing = np.zeros(len(outages), dtype=bool)
        out_rows = outages["worker_id"].astype(object).astype(str).map(row_of).to_numpy(float)
        for is_ongoing, label in ((False, "outage"), (True, "ongoing outage")):
            pick = ongoing == is_ongoing
            if not pick.any():
                continue
            # Drawn over the beats, with an edge of the face colour, so that outages shorter
            # than a pixel still show.
            bars = ax.barh(
                out_rows[pick],
                end[pick] - start[pick],
                left=start[pick],
                height=0.8,
                color=_VERMILLION,
                alpha=0.6 if is_ongoing else 0.85,
                edgecolor=_VERMILLION,
                linewidth=1.2,
                hatch="///" if is_ongoing else None,
                label=label,
                zorder=2.5,
            )
            legend.append(bars)

    label_colors: dict[str, str] = {}
    if workers is not None and len(workers):
        names_w = workers["worker_id"].astype(object).astype(str)
        if "state" in workers.columns:
            for worker, state in zip(names_w, workers["state"].astype(object), strict=True):
                if isinstance(state, str) and state != "active":
                    label_colors[worker] = STATE_COLORS.get(state, _OTHER_COLOR)
        if "removed_at" in workers.columns:
            removed_x = _dates(workers["removed_at"])
            keep = ~np.isnan(removed_x)
            if keep.any():
                removed_y = names_w[keep].map(row_of).to_numpy(float)
                (marks,) = ax.plot(
                    removed_x[keep],
                    removed_y,
                    linestyle="none",
                    marker="X",
                    markersize=8,
                    color="black",
                    label="removed",
                    zorder=3,
                )
                legend.append(marks)
                for worker in names_w[keep]:
                    label_colors[worker] = STATE_COLORS["removed"]

    _worker_ticks(ax, rows)
    tick_colors = {_literal(worker): color for worker, color in label_colors.items()}
    for tick in ax.get_yticklabels():
        if tick.get_text() in tick_colors:
            tick.set_color(tick_colors[tick.get_text()])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    _format_time_axis(ax)
    ax.set_ylabel("worker")
    ax.set_title(title)
    _legend(ax, legend, outside=True)
    return ax


@_literal_text
def uptime(frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """A worker x time heatmap of the fraction of each bucket a worker was alive.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.uptime`: ``worker_id``, ``bucket`` (bucket start) and
        ``alive_fraction`` in [0, 1]. Missing cells are left blank.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None. A colorbar is added beside it.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh` (``cmap``, ...).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column.
    """
    _check_frame(frame, ["worker_id", "bucket", "alive_fraction"], name="frame", func="uptime")
    ax = ax or plt.gca()
    title = "Uptime"
    if frame.empty or frame["bucket"].isna().all():
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel="worker")
    _setup_time_axis(ax)
    options = {"cmap": "RdYlGn"}
    options.update(kwargs)
    return _heatmap(
        ax,
        frame.dropna(subset=["bucket"]),
        "alive_fraction",
        title=title,
        colorbar_label="alive (% of bucket)",
        kwargs=options,
    )


@_literal_text
def worker_states(workers_frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """How many workers are active, late, stale and removed, as bars.

    Parameters
    ----------
    workers_frame : DataFrame
        From :func:`qanalytics.workers`: a ``state`` column. Every standard state gets a
        bar (zero included) so plots compare at a glance; other states follow.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `workers_frame` is not a DataFrame.
    ValueError
        If `workers_frame` lacks the ``state`` column.
    """
    _check_frame(workers_frame, ["state"], name="workers_frame", func="worker_states")
    ax = ax or plt.gca()
    title = "Workers by state"
    if workers_frame.empty:
        return _no_data(ax, title=title, xlabel="state", ylabel="workers")
    states = workers_frame["state"].dropna().astype(object).astype(str)
    counts = states.value_counts()
    levels = list(STATE_COLORS) + sorted(set(counts.index) - set(STATE_COLORS), key=_natural_key)
    heights = [int(counts.get(level, 0)) for level in levels]
    options: dict[str, Any] = {
        "color": [STATE_COLORS.get(level, _OTHER_COLOR) for level in levels],
        "width": 0.7,
    }
    options.update(kwargs)
    bars = ax.bar(levels, heights, **options)
    ax.bar_label(bars, padding=2)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(max(heights), 1) * 1.15)
    ax.set_xlabel("state")
    ax.set_ylabel("workers")
    ax.set_title(title)
    return ax


# --------------------------------------------------------------------------- metrics


@_literal_text
def queue_depth(
    frame: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    value: str | None = None,
    stacked: bool = False,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Queued and processing tasks over time.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.depth_timeline`: ``bucket``, ``queued``, ``processing``,
        and the ``by`` columns when it was grouped.
    by : str or list of str, optional
        Grouping columns; by default every column beyond the contract's (so a frame from
        ``depth_timeline(db, by="type")`` draws one line per type).
    value : {"both", "queued", "processing"}, optional
        What to draw. Default: ``"both"``, except ``"queued"`` for a stacked grouped plot.
    stacked : bool, default False
        Stack areas instead of drawing lines: queued on processing (the tasks in the system)
        without groups, or the groups' `value` on each other with groups.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` or
        :meth:`~matplotlib.axes.Axes.stackplot`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column, `value` is unknown, or a grouped stacked plot
        is asked for both values.
    """
    func = "queue_depth"
    known = ["bucket", "queued", "processing"]
    _check_frame(frame, known, name="frame", func=func)
    groups = _resolve_by(frame, by, known, func=func)
    if value is None:
        value = "queued" if stacked and groups else "both"
    if value not in ("both", "queued", "processing"):
        raise ValueError(f"{func}(): value must be 'both', 'queued' or 'processing', not {value!r}")
    if stacked and groups and value == "both":
        raise ValueError(
            f"{func}(): a stacked plot by group shows one value; pass value='queued' or "
            "value='processing'"
        )
    ax = ax or plt.gca()
    measures = ["queued", "processing"] if value == "both" else [value]
    title = "Queue depth" if not groups else f"Queue depth by {' / '.join(groups)}"
    frame = frame.dropna(subset=["bucket"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel="tasks")
    _setup_time_axis(ax)
    frame = frame.sort_values("bucket")
    if not groups:
        x = _dates(frame["bucket"])
        if stacked:
            ax.stackplot(
                x,
                *[_floats(frame[m]) for m in measures],
                labels=measures,
                colors=[STATUS_COLORS[m] for m in measures],
                alpha=0.8,
                **kwargs,
            )
        else:
            for measure in measures:
                options: dict[str, Any] = {
                    "color": STATUS_COLORS[measure],
                    "label": measure,
                    "linewidth": 1.2,
                }
                options.update(kwargs)
                ax.plot(x, _floats(frame[measure]), **options)
        _legend(ax)
    else:
        labels = _group_labels(frame, groups)
        levels = _ordered_levels(labels)
        colors = _palette(levels)
        if stacked:
            (measure,) = measures
            wide = (
                frame.assign(_group=labels.to_numpy())
                .pivot_table(
                    index="bucket", columns="_group", values=measure, aggfunc="sum", fill_value=0
                )
                .reindex(columns=levels, fill_value=0)
                .sort_index()
            )
            ax.stackplot(
                _dates(wide.index.to_series()),
                *[wide[level].to_numpy(float) for level in levels],
                labels=levels,
                colors=[colors[level] for level in levels],
                alpha=0.85,
                **kwargs,
            )
            _legend(ax, outside=True)
        else:
            styles: dict[str, Any] = {"queued": "-", "processing": "--"}
            for level in levels:
                part = frame[(labels == level).to_numpy()]
                x = _dates(part["bucket"])
                for measure in measures:
                    line_options: dict[str, Any] = {
                        "color": colors[level],
                        "linestyle": styles[measure],
                        "linewidth": 1.3,
                        "label": level if len(measures) == 1 else f"{level} · {measure}",
                    }
                    line_options.update(kwargs)
                    ax.plot(x, _floats(part[measure]), **line_options)
            _legend(ax, outside=True)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _format_time_axis(ax)
    ax.set_ylabel("tasks" if value == "both" else f"{value} tasks")
    ax.set_title(title)
    return ax


@_literal_text
def success_rate(
    frame: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    band: bool = True,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """The success rate over time, one line per group with its confidence band.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.success_rate`: ``bucket``, ``rate``, ``ci_low``, ``ci_high``
        and the ``by`` columns when it was grouped. Buckets where nothing finished (NaN
        rate) leave a gap.
    by : str or list of str, optional
        Grouping columns; by default every column beyond the contract's.
    band : bool, default True
        Shade the Wilson interval between ``ci_low`` and ``ci_high``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
        The y axis runs from 0 to 100 %; zoom in with ``ax.set_ylim(0.9, 1.0)`` when every
        group stays near the top.

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column.
    """
    func = "success_rate"
    known = ["bucket", "completed", "failed", "total", "rate", "ci_low", "ci_high"]
    _check_frame(frame, ["bucket", "rate", "ci_low", "ci_high"], name="frame", func=func)
    groups = _resolve_by(frame, by, known, func=func)
    ax = ax or plt.gca()
    title = "Success rate" if not groups else f"Success rate by {' / '.join(groups)}"
    frame = frame.dropna(subset=["bucket"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel="success rate (%)")
    _setup_time_axis(ax)
    frame = frame.sort_values("bucket")
    labels = _group_labels(frame, groups)
    levels = _ordered_levels(labels)
    colors = _palette(levels) if groups else {"all": _GREEN}
    for level in levels:
        part = frame[(labels == level).to_numpy()]
        x = _dates(part["bucket"])
        options: dict[str, Any] = {
            "color": colors[level],
            "label": level if groups else "success rate",
            "linewidth": 1.5,
            "marker": "o" if len(part) <= 30 else None,
            "markersize": 3,
            "zorder": 2.5,
        }
        options.update(kwargs)
        (line,) = ax.plot(x, _floats(part["rate"]), **options)
        if band:
            ax.fill_between(
                x,
                _floats(part["ci_low"]),
                _floats(part["ci_high"]),
                color=line.get_color(),
                alpha=0.25 if len(levels) == 1 else 0.18 if len(levels) <= 3 else 0.1,
                linewidth=0,
                label="_nolegend_",
                zorder=1,  # under every group's line, not only its own
            )
    if band:
        handles, _ = ax.get_legend_handles_labels()
        note = Patch(facecolor=_OTHER_COLOR, alpha=0.25, label="confidence band")
        _legend(ax, [*handles, note], outside=len(levels) > 3)
    else:
        _legend(ax, outside=len(levels) > 3)
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    _format_time_axis(ax)
    ax.set_ylabel("success rate (%)")
    ax.set_title(title)
    return ax


@_literal_text
def throughput(
    frame: pd.DataFrame,
    *,
    hue: str = "outcome",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Tasks finished per bucket, stacked by outcome (or another column).

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.throughput`: ``bucket``, ``outcome``, ``count`` and any
        ``by`` columns (summed over unless `hue` names one).
    hue : str, default "outcome"
        The column whose levels are stacked, e.g. ``"type"`` for a frame made with
        ``by="type"``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column.
    """
    func = "throughput"
    _check_frame(frame, ["bucket", "count", hue], name="frame", func=func)
    ax = ax or plt.gca()
    title = "Throughput" if hue == "outcome" else f"Throughput by {hue}"
    frame = frame.dropna(subset=["bucket"])
    x_all = _dates(frame["bucket"]) if len(frame) else np.array([])
    width = _bucket_width(frame, x_all)
    ylabel = f"tasks finished per {_duration_text(width)}"
    if frame.empty or not (_floats(frame["count"]) > 0).any():
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel=ylabel)
    _setup_time_axis(ax)
    labels = frame[hue].astype(object).astype(str)
    levels = _ordered_levels(frame[hue])
    wide = (
        frame.assign(_level=labels.to_numpy(), _count=_floats(frame["count"]))
        .pivot_table(index="bucket", columns="_level", values="_count", aggfunc="sum", fill_value=0)
        .sort_index()
    )
    levels = [level for level in levels if level in wide.columns and wide[level].sum() > 0]
    colors = _palette(levels, OUTCOME_COLORS if hue == "outcome" else None)
    x = _dates(wide.index.to_series())
    bottom = np.zeros(len(wide))
    for level in levels:
        heights = wide[level].to_numpy(float)
        options: dict[str, Any] = {
            "width": width * 0.9,
            "align": "edge",
            "color": colors[level],
            "label": level,
            "linewidth": 0,
        }
        options.update(kwargs)
        ax.bar(x, heights, bottom=bottom, **options)
        bottom = bottom + heights
    ax.set_xlim(x.min() - width * 0.25, x.max() + width * 1.25)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(ax, outside=True)
    _format_time_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


@_literal_text
def latency(
    frame: pd.DataFrame,
    *,
    measure: str = "run_s",
    by: str | Sequence[str] | None = None,
    quantiles: Iterable[float] | None = None,
    log: bool | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Latency quantiles: lines over time per group, or bars per group without buckets.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.latency`: ``quantile``, ``wait_s``, ``run_s``, an optional
        ``bucket`` (lines when present, grouped bars otherwise) and the ``by`` columns.
    measure : {"run_s", "wait_s"}, default "run_s"
        Run time (claim to finish) or wait time (enqueue to first claim).
    by : str or list of str, optional
        Grouping columns; by default every column beyond the contract's.
    quantiles : iterable of float, optional
        Draw only these quantiles (default: all in the frame).
    log : bool, optional
        Logarithmic seconds axis. Default: when the positive values span a factor of 100.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` or :meth:`~matplotlib.axes.Axes.bar`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column or `measure` is unknown.
    """
    func = "latency"
    if measure not in ("run_s", "wait_s"):
        raise ValueError(f"{func}(): measure must be 'run_s' or 'wait_s', not {measure!r}")
    _check_frame(frame, ["quantile", measure], name="frame", func=func)
    known = ["bucket", "quantile", "wait_s", "run_s", "count"]
    groups = _resolve_by(frame, by, known, func=func)
    ax = ax or plt.gca()
    what = "Run time" if measure == "run_s" else "Wait time"
    ylabel = f"{what.lower()} (s)"
    title = f"{what} quantiles" + (f" by {' / '.join(groups)}" if groups else "")
    if quantiles is not None:
        wanted = np.asarray(list(quantiles), dtype=float)
        frame = frame[np.isin(_floats(frame["quantile"]), wanted)]
    timed = "bucket" in frame.columns
    if timed:
        frame = frame.dropna(subset=["bucket"])
    values = _floats(frame[measure])
    if frame.empty or np.isnan(values).all():
        return _no_data(ax, title=title, xlabel=_TIME_LABEL if timed else "", ylabel=ylabel)
    qs = sorted(set(_floats(frame["quantile"])[~np.isnan(_floats(frame["quantile"]))]))
    labels = _group_labels(frame, groups)
    levels = _ordered_levels(labels)
    if timed:
        _setup_time_axis(ax)
        colors = _palette(levels) if groups else {"all": _BLUE}
        styles: list[Any] = ["-", "--", ":", "-."]
        frame = frame.assign(_group=labels.to_numpy()).sort_values("bucket")
        q_col = _floats(frame["quantile"])
        for level in levels:
            for i, q in enumerate(qs):
                part = frame[((frame["_group"] == level).to_numpy()) & (q_col == q)]
                options: dict[str, Any] = {
                    "color": colors[level],
                    "linestyle": styles[i % len(styles)],
                    "linewidth": 1.4,
                    "label": f"{level} {_quantile_label(q)}" if groups else _quantile_label(q),
                }
                options.update(kwargs)
                ax.plot(_dates(part["bucket"]), _floats(part[measure]), **options)
        if groups:
            handles: list[Any] = [
                Line2D([], [], color=colors[level], label=level) for level in levels
            ]
            handles += [
                Line2D(
                    [],
                    [],
                    color="black",
                    linestyle=styles[i % len(styles)],
                    label=_quantile_label(q),
                )
                for i, q in enumerate(qs)
            ]
            _legend(ax, handles, outside=True)
        else:
            _legend(ax)
        _format_time_axis(ax)
    else:
        shades = plt.get_cmap("Blues")(np.linspace(0.45, 0.9, len(qs)))
        slot = 0.8 / len(qs)
        centres = np.arange(len(levels), dtype=float)
        frame = frame.assign(_group=labels.to_numpy(), _q=_floats(frame["quantile"]))
        table = frame.pivot_table(index="_group", columns="_q", values=measure, aggfunc="mean")
        table = table.reindex(index=levels, columns=qs)
        for i, q in enumerate(qs):
            options = {"width": slot, "color": shades[i], "label": _quantile_label(q)}
            options.update(kwargs)
            ax.bar(centres - 0.4 + slot * (i + 0.5), table[q].to_numpy(float), **options)
        ax.set_xticks(centres, [_literal(level) for level in levels])
        if len(levels) > 6:
            ax.tick_params(axis="x", labelrotation=30)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("right")
        ax.set_xlabel(" / ".join(groups) if groups else "")
        _legend(ax, outside=False)
    positive = values[values > 0]
    if log is None:
        log = positive.size > 0 and float(positive.max()) >= 100.0 * float(positive.min())
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


@_literal_text
def utilization(
    frame: pd.DataFrame,
    *,
    kind: str = "heatmap",
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """How busy workers were: a worker x time heatmap, or the fleet's busy share over time.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.utilization`: ``worker_id``, ``bucket``, ``busy_s``,
        ``alive_s`` and ``utilization`` (busy share of alive time; NaN when not alive).
    kind : {"heatmap", "line"}, default "heatmap"
        ``"heatmap"`` shows every worker's utilization per bucket (blank while not alive);
        ``"line"`` shows the fleet's busy share, total busy over total alive time.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None. The heatmap adds a colorbar beside it.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh` or
        :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column or `kind` is unknown.
    """
    func = "utilization"
    if kind not in ("heatmap", "line"):
        raise ValueError(f"{func}(): kind must be 'heatmap' or 'line', not {kind!r}")
    required = ["worker_id", "bucket", "utilization"]
    if kind == "line":
        required = ["bucket", "busy_s", "alive_s"]
    _check_frame(frame, required, name="frame", func=func)
    ax = ax or plt.gca()
    title = "Utilization" if kind == "heatmap" else "Fleet utilization"
    ylabel = "worker" if kind == "heatmap" else "busy (% of alive time)"
    frame = frame.dropna(subset=["bucket"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel=ylabel)
    _setup_time_axis(ax)
    if kind == "heatmap":
        return _heatmap(
            ax,
            frame,
            "utilization",
            title=title,
            colorbar_label="busy (% of alive time)",
            kwargs=kwargs,
        )
    sums = (
        frame.assign(_busy=_floats(frame["busy_s"]), _alive=_floats(frame["alive_s"]))
        .groupby("bucket", sort=True)[["_busy", "_alive"]]
        .sum()
    )
    alive = sums["_alive"].to_numpy(float)
    share = np.divide(
        sums["_busy"].to_numpy(float), alive, out=np.full(len(alive), np.nan), where=alive > 0
    )
    options: dict[str, Any] = {"color": _PURPLE, "linewidth": 1.5, "label": "fleet"}
    options.update(kwargs)
    ax.plot(_dates(sums.index.to_series()), share, **options)
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    _format_time_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


@_literal_text
def retry_outcomes(frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Tasks reaching each attempt and how that attempt ended, with eventual success.

    Each attempt number gets a pale bar of the tasks that reached it and, inside it, the
    attempts that completed, failed or were abandoned, stacked. The chance that a task still
    failing at attempt *k* eventually succeeds is a line on a twin percent axis on the right
    (find it in ``ax.figure.axes``).

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.retry_outcomes`: ``attempt``, ``reached``, ``succeeded``,
        ``failed``, ``abandoned`` and ``eventual_success``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.bar` for the outcome bars.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes with the bars (not the twin).

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column.
    """
    func = "retry_outcomes"
    required = ["attempt", "reached", "succeeded", "failed", "abandoned", "eventual_success"]
    _check_frame(frame, required, name="frame", func=func)
    ax = ax or plt.gca()
    title = "Outcome by attempt"
    frame = frame.dropna(subset=["attempt"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel="attempt", ylabel="tasks")
    frame = frame.sort_values("attempt")
    x = _floats(frame["attempt"])
    reached = np.nan_to_num(_floats(frame["reached"]))
    ax.bar(
        x,
        reached,
        width=0.8,
        color="#E8E8E8",
        edgecolor="#AAAAAA",
        linewidth=0.8,
        label="reached",
    )
    bottom = np.zeros(len(frame))
    for column, outcome in (
        ("succeeded", "completed"),
        ("failed", "failed"),
        ("abandoned", "abandoned"),
    ):
        heights = np.nan_to_num(_floats(frame[column]))
        options: dict[str, Any] = {
            "width": 0.5,
            "color": OUTCOME_COLORS[outcome],
            "label": column,
            "linewidth": 0,
        }
        options.update(kwargs)
        ax.bar(x, heights, bottom=bottom, **options)
        bottom = bottom + heights
    # Later attempts are small beside the first: the tick labels carry their counts, where
    # no bar or line can cover them.
    ax.set_xticks(x, [f"{a:.0f}\n({n:,.0f})" for a, n in zip(x, reached, strict=True)])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("attempt (tasks reaching it)")
    ax.set_ylabel("tasks")
    ax.set_ylim(0, float(reached.max()) * 1.05 or 1.0)
    # Room above the axes for a one-row legend: inside it would cover bars or the line.
    ax.set_title(title, pad=26)
    right = ax.twinx()
    (line,) = right.plot(
        x,
        _floats(frame["eventual_success"]),
        color="black",
        marker="o",
        markersize=4,
        linewidth=1.3,
        label="eventual success",
    )
    right.set_ylim(-0.02, 1.02)
    right.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    right.set_ylabel("P(eventually succeeds) (%)")
    handles, _ = ax.get_legend_handles_labels()
    entries = len(handles) + 1
    # One row of entries when the axes are wide enough, else rows of three, so the labels
    # never run into each other; the title moves up to make room.
    figure = ax.get_figure(root=True)
    width_in = (
        float(figure.get_size_inches()[0]) * ax.get_position().width
        if isinstance(figure, Figure)
        else 8.0
    )
    ncols = entries if width_in >= 6.5 else min(3, entries)
    rows = -(-entries // ncols)
    ax.set_title(title, pad=12 + 14 * rows)
    ax.legend(
        handles=[*handles, line],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01, 1.0, 0.1),
        mode="expand",
        ncols=ncols,
        borderaxespad=0.0,
        frameon=False,
        fontsize="small",
    )
    return ax


# --------------------------------------------------------------------------- capacity

_HOUR_LABEL = "hour of day (UTC)"


def _seconds_text(seconds: float) -> str:
    """A wait as short words: ``"30 s"``, ``"2 min"``, ``"1.5 h"``."""
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if seconds >= size and seconds % (size / 10) == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _plan_title(attrs: Mapping[Any, Any], base: str) -> str:
    """The title of a plan plot, with the target and growth from ``plan.attrs`` when known."""
    parts = [base]
    target = attrs.get("target_wait_s")
    if target is not None:
        percentile = attrs.get("percentile")
        if percentile is None:
            parts.append(f"mean wait ≤ {_seconds_text(float(target))}")
        else:
            parts.append(
                f"{float(percentile) * 100:g} % of tasks wait ≤ {_seconds_text(float(target))}"
            )
    growth = attrs.get("growth")
    if growth is not None and float(growth) != 1.0:
        parts.append(f"at {float(growth):g}× today's load")
    if len(parts) == 1:
        return base
    return f"{parts[0]}: " + ", ".join(parts[1:])


@_literal_text
def capacity(plan_frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Recommended against alive workers across the day, or per task type.

    With a plan by hour of day, ``recommended_workers`` and ``workers_alive`` are step
    lines over the 24 UTC hours (each hour's value holds from its start to the next hour),
    the offered load (busy workers needed on average, at the plan's growth) is a dashed
    step line on the same scale, and hours where today's fleet could not carry the load
    (``stable`` False) are shaded. With a plan by type, each type gets a bar of the
    workers a dedicated pool would need beside a bar of its offered load.

    Parameters
    ----------
    plan_frame : DataFrame
        From :func:`qanalytics.capacity.plan`: ``hour_of_day`` (or ``type``),
        ``recommended_workers`` and, by hour, ``workers_alive``; ``offered_load`` and
        ``stable`` are drawn when present. ``attrs`` (``target_wait_s``, ``percentile``,
        ``growth``) go into the title; ``offered_load`` is multiplied by ``growth`` so it
        compares with the recommendation.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the recommended line (by hour)
        or :meth:`~matplotlib.axes.Axes.bar` for the recommended bars (by type).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `plan_frame` is not a DataFrame.
    ValueError
        If `plan_frame` has neither ``hour_of_day`` nor ``type``, or lacks another
        required column.

    Examples
    --------
    >>> qa.plot.capacity(qa.capacity.plan(db, growth=1.5))  # doctest: +SKIP
    """
    func = "capacity"
    if not isinstance(plan_frame, pd.DataFrame):
        raise TypeError(
            f"{func}() needs a pandas DataFrame as plan_frame, not {type(plan_frame).__name__}"
        )
    if "hour_of_day" in plan_frame.columns:
        return _capacity_by_hour(plan_frame, ax=ax, kwargs=kwargs)
    if "type" in plan_frame.columns:
        return _capacity_by_type(plan_frame, ax=ax, kwargs=kwargs)
    raise ValueError(
        f"{func}(): plan_frame is missing column(s) 'hour_of_day' or 'type' (a plan made "
        f"by hour of day or by type); it has "
        f"{', '.join(map(repr, map(str, plan_frame.columns))) or 'no columns'}"
    )


def _growth(frame: pd.DataFrame) -> float:
    growth = frame.attrs.get("growth")
    return 1.0 if growth is None else float(growth)


def _capacity_by_hour(frame: pd.DataFrame, *, ax: Axes | None, kwargs: dict[str, Any]) -> Axes:
    func = "capacity"
    required = ["hour_of_day", "recommended_workers", "workers_alive"]
    _check_frame(frame, required, name="plan_frame", func=func)
    ax = ax or plt.gca()
    title = _plan_title(frame.attrs, "Workers needed by hour of day")
    frame = frame.dropna(subset=["hour_of_day"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel=_HOUR_LABEL, ylabel="workers")
    frame = frame.sort_values("hour_of_day")
    hours = _floats(frame["hour_of_day"])
    # Each hour's value holds over the hour: repeat the last value at its end.
    edges = np.append(hours, hours[-1] + 1.0)

    def steps(values: np.ndarray) -> np.ndarray:
        return np.append(values, values[-1])

    growth = _growth(frame)
    if "stable" in frame.columns:
        unstable = ~frame["stable"].fillna(False).astype(bool).to_numpy()
        for hour in hours[unstable]:
            ax.axvspan(hour, hour + 1.0, color=_VERMILLION, alpha=0.12, linewidth=0, zorder=0)
    alive = _floats(frame["workers_alive"])
    ax.plot(
        edges,
        steps(alive),
        drawstyle="steps-post",
        color=_GREEN,
        linewidth=1.8,
        label="workers alive (observed average)",
    )
    recommended = _floats(frame["recommended_workers"])
    options: dict[str, Any] = {"color": _BLUE, "linewidth": 2.2, "label": "recommended workers"}
    options.update(kwargs)
    ax.plot(edges, steps(recommended), drawstyle="steps-post", **options)
    if "offered_load" in frame.columns:
        load = _floats(frame["offered_load"]) * growth
        ax.plot(
            edges,
            steps(load),
            drawstyle="steps-post",
            color=_PURPLE,
            linewidth=1.2,
            linestyle="--",
            label="offered load (busy workers on average)"
            + (f", {growth:g}× today" if growth != 1.0 else ""),
        )
    handles, _ = ax.get_legend_handles_labels()
    if "stable" in frame.columns and unstable.any():
        handles.append(
            Patch(color=_VERMILLION, alpha=0.25, label="today's fleet cannot carry the load")
        )
    if not np.isnan(recommended).all():
        peak = int(np.nanargmax(recommended))
        ax.annotate(
            f"peak {recommended[peak]:.0f} at {hours[peak]:02.0f}:00",
            xy=(hours[peak] + 0.5, recommended[peak]),
            xytext=(0, 6),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize="small",
            color=_BLUE,
        )
    top = np.nanmax(np.concatenate([recommended, alive, [1.0]]))
    ax.set_ylim(0, top * 1.25)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xticks(np.arange(edges[0], edges[-1] + 1, 3 if len(edges) > 12 else 1))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(_HOUR_LABEL)
    ax.set_ylabel("workers")
    ax.set_title(title)
    ax.legend(handles=handles, loc="upper left", fontsize="small", framealpha=0.85)
    return ax


def _capacity_by_type(frame: pd.DataFrame, *, ax: Axes | None, kwargs: dict[str, Any]) -> Axes:
    func = "capacity"
    _check_frame(frame, ["type", "recommended_workers"], name="plan_frame", func=func)
    ax = ax or plt.gca()
    title = _plan_title(frame.attrs, "Dedicated workers per task type")
    frame = frame.dropna(subset=["type"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel="task type", ylabel="workers")
    levels = _ordered_levels(frame["type"])
    labels = frame["type"].astype(object).astype(str)
    frame = frame.assign(_type=labels.to_numpy()).set_index("_type").reindex(levels)
    centres = np.arange(len(levels), dtype=float)
    recommended = _floats(frame["recommended_workers"])
    has_load = "offered_load" in frame.columns
    width = 0.4 if has_load else 0.7
    options: dict[str, Any] = {"width": width, "color": _BLUE, "label": "recommended workers"}
    options.update(kwargs)
    bars = ax.bar(centres + (width / 2 if has_load else 0.0), recommended, **options)
    ax.bar_label(
        bars, labels=[f"{v:.0f}" if np.isfinite(v) else "" for v in recommended], padding=2
    )
    if has_load:
        growth = _growth(frame)
        ax.bar(
            centres - width / 2,
            _floats(frame["offered_load"]) * growth,
            width=width,
            color=_PURPLE,
            alpha=0.6,
            label="offered load (busy workers on average)"
            + (f", {growth:g}× today" if growth != 1.0 else ""),
        )
    total = np.nansum(recommended)
    note = f"dedicated pools in all: {total:.0f} workers"
    if "workers_alive" in frame.columns and np.isfinite(_floats(frame["workers_alive"])).any():
        note += f"\nshared fleet alive today: {np.nanmean(_floats(frame['workers_alive'])):.1f}"
    ax.text(
        0.99,
        0.97,
        note,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize="small",
        color=_OTHER_COLOR,
    )
    ax.set_xticks(centres, [_literal(level) for level in levels])
    if len(levels) > 6:
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    top = np.nanmax(np.append(recommended, 1.0))
    ax.set_ylim(0, top * 1.35)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("task type")
    ax.set_ylabel("workers")
    ax.set_title(title)
    _legend(ax, outside=False)
    legend = ax.get_legend()
    if legend is not None:
        legend.set_loc("upper left")
    return ax


@_literal_text
def what_if(
    frame: pd.DataFrame,
    *,
    target_wait: Any = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Expected wait against the number of workers, on a logarithmic seconds axis.

    The mean wait is a line with markers; the wait at the frame's percentile (when the
    frame has ``percentile_wait_s``) a second line. Worker counts that cannot carry the
    load (``stable`` False, infinite waits) are left out. A percentile wait of 0 (that
    share of tasks never waits) cannot sit on a log axis: the line stops there and the
    legend says from how many workers it is 0.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.capacity.what_if`: ``servers`` and ``mean_wait_s``;
        ``percentile_wait_s``, ``percentile`` and ``stable`` are used when present.
    target_wait : float or str, optional
        Seconds or a duration string (``"30s"``): a horizontal target line, and the first
        worker count that meets it is marked (by the percentile wait when drawn, else
        the mean).
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the mean-wait line.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column or `target_wait` is not a valid duration.

    Examples
    --------
    >>> frame = qa.capacity.what_if(0.5, 1 / 40, range(20, 40), cs2=12)
    >>> qa.plot.what_if(frame, target_wait="30s")  # doctest: +SKIP
    """
    func = "what_if"
    _check_frame(frame, ["servers", "mean_wait_s"], name="frame", func=func)
    target = None if target_wait is None else parse_duration(target_wait, name="target_wait")
    ax = ax or plt.gca()
    title = "Wait against the number of workers"
    ylabel = "wait (s, log scale)"
    xlabel = "workers"
    frame = frame.dropna(subset=["servers"]).sort_values("servers")
    mean = _floats(frame["mean_wait_s"])
    keep = np.isfinite(mean)
    if "stable" in frame.columns:
        keep &= frame["stable"].fillna(False).astype(bool).to_numpy()
    frame, mean = frame[keep], mean[keep]
    if frame.empty:
        return _no_data(ax, title=title, xlabel=xlabel, ylabel=ylabel)
    servers = _floats(frame["servers"])
    positive = mean > 0
    options: dict[str, Any] = {
        "color": _BLUE,
        "marker": "o",
        "markersize": 3.5,
        "linewidth": 1.6,
        "label": "mean wait",
    }
    options.update(kwargs)
    ax.plot(servers[positive], mean[positive], **options)
    drawn = [mean[positive]]
    measure, measure_servers = mean, servers
    if "percentile_wait_s" in frame.columns:
        pct = _floats(frame["percentile_wait_s"])
        name = "percentile"
        if "percentile" in frame.columns and np.isfinite(_floats(frame["percentile"])).any():
            name = _quantile_label(float(np.nanmax(_floats(frame["percentile"]))))
        label = f"{name} wait"
        zero = np.flatnonzero(pct == 0)
        if zero.size:
            label += f" (0 from {servers[zero[0]]:.0f} workers)"
        shown = pct > 0
        ax.plot(
            servers[shown],
            pct[shown],
            color=_PURPLE,
            marker="s",
            markersize=3.5,
            linewidth=1.6,
            label=label,
        )
        drawn.append(pct[shown])
        measure = pct
    if target is not None:
        ax.axhline(
            target,
            color=_VERMILLION,
            linestyle="--",
            linewidth=1.2,
            label=f"target {_seconds_text(target)}",
        )
        meets = np.flatnonzero(measure <= target)
        if meets.size:
            first = measure_servers[meets[0]]
            ax.axvline(first, color=_OTHER_COLOR, linestyle=":", linewidth=1.0)
            ax.annotate(
                f"{first:.0f} workers meet it",
                xy=(first, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(4, -4),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize="small",
                color=_OTHER_COLOR,
            )
        drawn.append(np.array([target]) if target > 0 else np.array([]))
    values = np.concatenate(drawn)
    values = values[values > 0]
    if values.size:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    else:
        ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax, outside=False)
    legend = ax.get_legend()
    if legend is not None:
        # Waits fall from upper left to lower right, leaving the lower left free.
        legend.set_loc("lower left")
    return ax


@_literal_text
def littles_law(frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """Observed mean backlog against Little's law's prediction, per time bucket.

    ``mean_backlog`` (the time-averaged number of queued tasks) is a solid line and
    ``predicted_backlog`` (arrival rate x mean wait) a dashed one over it: where the data
    are consistent the two lie on each other. The largest relative difference is noted
    in a corner when the frame has ``relative_difference``.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.capacity.littles_law`: ``bucket``, ``mean_backlog`` and
        ``predicted_backlog``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; the current Axes when None.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot` for the observed line.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame.
    ValueError
        If `frame` lacks a required column.
    """
    func = "littles_law"
    _check_frame(frame, ["bucket", "mean_backlog", "predicted_backlog"], name="frame", func=func)
    ax = ax or plt.gca()
    title = "Little's law check: queued tasks, observed and L = λW"
    ylabel = "queued tasks (time average)"
    frame = frame.dropna(subset=["bucket"])
    if frame.empty:
        return _no_data(ax, title=title, xlabel=_TIME_LABEL, ylabel=ylabel)
    _setup_time_axis(ax)
    frame = frame.sort_values("bucket")
    x = _dates(frame["bucket"])
    options: dict[str, Any] = {
        "color": STATUS_COLORS["queued"],
        "linewidth": 2.4,
        "alpha": 0.7,
        "label": "observed mean backlog",
    }
    options.update(kwargs)
    ax.plot(x, _floats(frame["mean_backlog"]), **options)
    ax.plot(
        x,
        _floats(frame["predicted_backlog"]),
        color="black",
        linewidth=1.1,
        linestyle="--",
        label="predicted: arrival rate × mean wait",
    )
    if "relative_difference" in frame.columns:
        diff = _floats(frame["relative_difference"])
        if np.isfinite(diff).any():
            worst = float(np.nanmax(np.abs(diff)))
            ax.text(
                0.99,
                0.97,
                f"largest difference: {worst * 100:.1f} %",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize="small",
                color=_OTHER_COLOR,
            )
    ax.set_ylim(bottom=0)
    _format_time_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax, outside=False)
    legend = ax.get_legend()
    if legend is not None:
        legend.set_loc("upper left")
    return ax
