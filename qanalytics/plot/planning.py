"""Plots of capacity plans: recommended workers, what-if tables, Little's law."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .._docstrings import share_docs
from .._time import parse_duration
from .style import (
    _BLUE,
    _GREEN,
    _OTHER_COLOR,
    _PURPLE,
    _TIME_LABEL,
    _VERMILLION,
    STATUS_COLORS,
    _check_frame,
    _dates,
    _floats,
    _format_time_axis,
    _legend,
    _literal,
    _literal_text,
    _log_axis,
    _no_data,
    _ordered_levels,
    _quantile_label,
    _setup_time_axis,
)

__all__ = ["capacity", "littles_law", "what_if"]


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


@share_docs
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
    {ax}
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
        # Hours without observations (no recommendation) are not shaded as overloaded.
        unstable = ~frame["stable"].fillna(False).astype(bool).to_numpy()
        unstable &= np.isfinite(_floats(frame["recommended_workers"]))
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


@share_docs
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
    {ax}
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
    >>> import qanalytics as qa
    >>> frame = qa.capacity.what_if(0.5, 1 / 40, range(20, 40), cs2=12)
    >>> ax = qa.plot.what_if(frame, target_wait="30s")
    >>> type(ax).__name__
    'Axes'
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
        _log_axis(ax.yaxis, values)
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


@share_docs
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
    {ax}
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
    if ax.texts:  # headroom, so the peak does not run into the note in the corner
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    _format_time_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend(ax, outside=False)
    legend = ax.get_legend()
    if legend is not None:
        legend.set_loc("upper left")
    return ax
