"""Plots of the fleet: heartbeats and outages, uptime, worker states."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .._docstrings import share_docs
from .style import (
    _OTHER_COLOR,
    _SKY,
    _TIME_LABEL,
    _VERMILLION,
    STATE_COLORS,
    _check_frame,
    _dates,
    _format_time_axis,
    _heatmap,
    _legend,
    _literal,
    _literal_text,
    _natural_key,
    _no_data,
    _setup_time_axis,
    _uptime_norm,
    _worker_ticks,
)

__all__ = ["heartbeat_timeline", "uptime", "worker_states"]


# --------------------------------------------------------------------------- liveness


@share_docs
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
    {ax}
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


@share_docs
@_literal_text
def uptime(frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """A worker x time heatmap of the fraction of each bucket a worker was alive.

    The colours are bins, not a gradient, so that a worker alive 90 % of an hour stands
    out from one alive all of it: dark green from 99.9 %, light green from 99 %, yellow
    from 95 %, orange from 80 % and red below (a worker down for most of the bucket).
    Buckets before a worker registered (or after it was removed) are blank.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.uptime`: ``worker_id``, ``bucket`` (bucket start) and
        ``alive_fraction`` in [0, 1]. Missing cells are left blank.
    {ax}
        A colorbar is added beside it.
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.pcolormesh`; a ``cmap``, ``norm``,
        ``vmin`` or ``vmax`` replaces the binned colour scale.

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
    cmap, norm = _uptime_norm()
    options: dict[str, Any] = {"cmap": cmap, "norm": norm}
    if {"cmap", "norm", "vmin", "vmax"} & set(kwargs):
        options = {}  # the caller's own colour scale
    options.update(kwargs)
    return _heatmap(
        ax,
        frame.dropna(subset=["bucket"]),
        "alive_fraction",
        title=title,
        colorbar_label="alive (% of bucket); blank: not registered",
        kwargs=options,
    )


@share_docs
@_literal_text
def worker_states(workers_frame: pd.DataFrame, *, ax: Axes | None = None, **kwargs: Any) -> Axes:
    """How many workers are active, late, stale and removed, as bars.

    Parameters
    ----------
    workers_frame : DataFrame
        From :func:`qanalytics.workers`: a ``state`` column. Every standard state gets a
        bar (zero included) so plots compare at a glance; other states follow.
    {ax}
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
