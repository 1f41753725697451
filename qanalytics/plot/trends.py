"""Plots of the queue over time: depth, success rate, throughput, latency, utilisation, retries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from .._docstrings import share_docs
from .style import (
    _BLUE,
    _GREEN,
    _OTHER_COLOR,
    _PURPLE,
    _TIME_LABEL,
    OUTCOME_COLORS,
    STATUS_COLORS,
    _bucket_width,
    _check_frame,
    _dates,
    _duration_text,
    _floats,
    _format_time_axis,
    _group_labels,
    _heatmap,
    _legend,
    _literal,
    _literal_text,
    _no_data,
    _ordered_levels,
    _palette,
    _quantile_label,
    _resolve_by,
    _setup_time_axis,
)

__all__ = ["latency", "queue_depth", "retry_outcomes", "success_rate", "throughput", "utilization"]


# --------------------------------------------------------------------------- metrics


@share_docs
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
    {ax}
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


@share_docs
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
    {ax}
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


@share_docs
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
    {ax}
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


@share_docs
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
    {ax}
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


@share_docs
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
    {ax}
        The heatmap adds a colorbar beside it.
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


@share_docs
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
    {ax}
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


