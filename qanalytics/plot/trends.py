"""Plots of the queue over time: depth, success rate, throughput, latency, utilisation, retries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .._docstrings import share_docs
from .style import (
    _BLUE,
    _GREEN,
    _PURPLE,
    _SECONDS_PER_DAY,
    _TIME_LABEL,
    OUTCOME_COLORS,
    STATUS_COLORS,
    _bucket_width,
    _check_frame,
    _dates,
    _duration_text,
    _fit_figure,
    _floats,
    _format_time_axis,
    _group_labels,
    _heatmap,
    _legend,
    _literal,
    _literal_text,
    _log_axis,
    _no_data,
    _ordered_levels,
    _palette,
    _quantile_label,
    _resolve_by,
    _setup_time_axis,
)

__all__ = ["latency", "queue_depth", "retry_outcomes", "success_rate", "throughput", "utilization"]


# --------------------------------------------------------------------------- metrics


def _legend_columns(ax: Axes, names: Sequence[str], n: int) -> int:
    """How many legend columns fit under the axes at the figure's width (1 to 3)."""
    fig = ax.get_figure(root=True)
    dpi = float(fig.dpi) if fig is not None else 100.0
    width_px = float(fig.bbox.width) if fig is not None else 640.0
    # "small" text is about 6 px a character at 100 dpi, plus the swatch and the gap.
    longest = max((len(name) for name in names), default=10)
    per_column = (longest * 6.0 + 60.0) * dpi / 100.0
    return max(1, min(3, n, int(0.9 * width_px // per_column)))


def _percent_text(share: float) -> str:
    """A share as a short percentage: ``100 %``, ``99.2 %``, ``58 %``."""
    percent = share * 100.0
    return f"{percent:.0f} %" if percent >= 99.95 or percent < 90 else f"{percent:.1f} %"


@share_docs
@_literal_text
def queue_depth(
    frame: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    value: str | None = None,
    stacked: bool = False,
    max_buckets: int | None = 240,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """Queued and processing tasks over time.

    A frame with more than `max_buckets` buckets (two days at one minute has 2,880) is
    drawn at a wider bucket, the shortest of 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h or 1 day
    that is a multiple of the frame's and gives at most `max_buckets`: each wide bucket
    shows the mean of the depths in it, and the y label says so. At one pixel or less per
    bucket the depth would otherwise be hair-thin spikes.

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
    max_buckets : int or None, default 240
        Resample to a wider bucket when the frame has more buckets than this; None draws
        every bucket as it is.
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
        If `frame` lacks a required column, `value` is unknown, a grouped stacked plot
        is asked for both values, or `max_buckets` is not a positive integer.
    """
    func = "queue_depth"
    known = ["bucket", "queued", "processing"]
    _check_frame(frame, known, name="frame", func=func)
    groups = _resolve_by(frame, by, known, func=func)
    if max_buckets is not None and (
        isinstance(max_buckets, bool) or not isinstance(max_buckets, int) or max_buckets < 1
    ):
        raise ValueError(
            f"{func}(): max_buckets must be a positive integer or None, not {max_buckets!r}"
        )
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
    frame, width, averaged = _resample_depth(frame, groups, measures, max_buckets)
    frame = frame.sort_values("bucket")
    if not groups:
        x = _step_edges(_dates(frame["bucket"]), width)
        if stacked:
            ax.stackplot(
                x,
                *[_step_values(_floats(frame[m])) for m in measures],
                labels=measures,
                colors=[STATUS_COLORS[m] for m in measures],
                alpha=0.8,
                step="post",
                **kwargs,
            )
        else:
            for measure in measures:
                options: dict[str, Any] = {
                    "color": STATUS_COLORS[measure],
                    "label": measure,
                    "linewidth": 1.2,
                    "drawstyle": "steps-post",
                }
                options.update(kwargs)
                ax.plot(x, _step_values(_floats(frame[measure])), **options)
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
                _step_edges(_dates(wide.index.to_series()), width),
                *[_step_values(wide[level].to_numpy(float)) for level in levels],
                labels=levels,
                colors=[colors[level] for level in levels],
                alpha=0.85,
                step="post",
                **kwargs,
            )
            _legend(ax, outside=True)
        else:
            styles: dict[str, Any] = {"queued": "-", "processing": "--"}
            for level in levels:
                part = frame[(labels == level).to_numpy()]
                x = _step_edges(_dates(part["bucket"]), width)
                for measure in measures:
                    line_options: dict[str, Any] = {
                        "color": colors[level],
                        "linestyle": styles[measure],
                        "linewidth": 1.3,
                        "drawstyle": "steps-post",
                        "label": level if len(measures) == 1 else f"{level} · {measure}",
                    }
                    line_options.update(kwargs)
                    ax.plot(x, _step_values(_floats(part[measure])), **line_options)
            _legend(ax, outside=True)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _format_time_axis(ax)
    ylabel = "tasks" if value == "both" else f"{value} tasks"
    if averaged:
        ylabel += f" (mean per {_duration_text(width)})"
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


#: Bucket widths (seconds) :func:`queue_depth` resamples to, shortest first.
_DEPTH_WIDTHS = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _resample_depth(
    frame: pd.DataFrame, groups: Sequence[str], measures: Sequence[str], max_buckets: int | None
) -> tuple[pd.DataFrame, float, bool]:
    """`frame` at a bucket wide enough for `max_buckets`, its width (days), resampled or not.

    The new width is the shortest of :data:`_DEPTH_WIDTHS` that is a whole multiple of the
    frame's width and leaves at most `max_buckets` buckets; each wide bucket takes the mean
    of the depths in it, per group.
    """
    x = _dates(frame["bucket"])
    width = _bucket_width(frame, x)
    if max_buckets is None:
        return frame, width, False
    step_s = round(width * _SECONDS_PER_DAY)
    span_s = (float(np.nanmax(x)) - float(np.nanmin(x))) * _SECONDS_PER_DAY + step_s
    if span_s / step_s <= max_buckets:
        return frame, width, False
    fits = [w for w in _DEPTH_WIDTHS if w % step_s == 0 and span_s / w <= max_buckets]
    multiples = [w for w in _DEPTH_WIDTHS if w % step_s == 0]
    if not fits and not multiples:
        return frame, width, False
    new_s = fits[0] if fits else multiples[-1]
    buckets = pd.to_datetime(frame["bucket"], utc=True).dt.floor(f"{new_s}s")
    means = (
        frame.assign(bucket=buckets, **{m: _floats(frame[m]) for m in measures})
        .groupby(["bucket", *groups], observed=True, sort=True)[list(measures)]
        .mean()
        .reset_index()
    )
    return means, new_s / _SECONDS_PER_DAY, True


def _step_edges(x: np.ndarray, width: float) -> np.ndarray:
    """Bucket starts plus the end of the last bucket, for a ``steps-post`` drawing."""
    return np.append(x, x[-1] + width) if x.size else x


def _step_values(values: np.ndarray) -> np.ndarray:
    """Values with the last repeated, so the last bucket is drawn its full width."""
    return np.append(values, values[-1]) if values.size else values


@share_docs
@_literal_text
def success_rate(
    frame: pd.DataFrame,
    *,
    by: str | Sequence[str] | None = None,
    band: bool | None = None,
    band_min_total: int = 10,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes:
    """The success rate over time, one line per group with its confidence band.

    The y axis is zoomed to the rates (down to a round percentage below the lowest) so
    that dips show, and each group's legend entry flags its worst bucket by the interval,
    not the point: "dipped below 23 %" is the lowest upper bound (``ci_high``), so a
    3-of-4 bucket says "below 95 %" while a real incident says far less. Groups are drawn
    lowest-on-top, so a group that dips is never hidden under steady ones. A bucket where
    all of fewer than `band_min_total` finished tasks succeeded gets no band: its interval
    spans most of the axis and would read as a dip while the rate stays 100 %.

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.success_rate`: ``bucket``, ``rate``, ``ci_low``, ``ci_high``
        and the ``by`` columns when it was grouped. Buckets where nothing finished (NaN
        rate) leave a gap.
    by : str or list of str, optional
        Grouping columns; by default every column beyond the contract's.
    band : bool, optional
        Shade the Wilson interval between ``ci_low`` and ``ci_high`` in the line's colour
        (the legend swatch shows line and band). Default: with up to three groups; more
        bands overlap into a blur.
    band_min_total : int, default 10
        A bucket with fewer finished tasks (``total``, when the frame has it), all of
        which succeeded, is drawn without a band.
    {ax}
    **kwargs
        Passed to :meth:`~matplotlib.axes.Axes.plot`.

    Returns
    -------
    matplotlib.axes.Axes
        Set ``ax.set_ylim(0, 1)`` to see the whole 0-100 % range.

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
    if band is None:
        band = len(levels) <= 3
    band_alpha = 0.25 if len(levels) == 1 else 0.18
    rates = _floats(frame["rate"])
    lowest = {
        level: float(np.nanmin(rates[(labels == level).to_numpy()]))
        if np.isfinite(rates[(labels == level).to_numpy()]).any()
        else np.nan
        for level in levels
    }
    highs = _floats(frame["ci_high"])
    # The flag is the interval's: the lowest upper bound is what the data are sure of.
    worst = {
        level: float(np.nanmin(highs[(labels == level).to_numpy()]))
        if np.isfinite(highs[(labels == level).to_numpy()]).any()
        else np.nan
        for level in levels
    }
    totals = (
        _floats(frame["total"]) if "total" in frame.columns else np.full(len(frame), np.inf)
    )
    # Few tasks and none failed: the interval reaches far below a rate that stayed 100 %.
    thin_all = (totals < band_min_total) & (rates >= 1.0)
    # The lowest group on top: a dip is never hidden under a steady line.
    ranked = sorted(levels, key=lambda level: -lowest[level] if np.isfinite(lowest[level]) else 0)
    entries: list[Any] = []
    names: list[str] = []
    for level in levels:
        part = frame[(labels == level).to_numpy()]
        x = _dates(part["bucket"])
        options: dict[str, Any] = {
            "color": colors[level],
            "label": level if groups else "success rate",
            "linewidth": 1.5,
            "marker": "o" if len(part) <= 30 else None,
            "markersize": 3,
            "zorder": 2.5 + ranked.index(level) / len(levels),
        }
        options.update(kwargs)
        (line,) = ax.plot(x, _floats(part["rate"]), **options)
        thin = thin_all[(labels == level).to_numpy()]
        name = str(line.get_label())
        if groups and np.isfinite(worst[level]) and worst[level] < 1.0:
            name += f" (dipped below {_percent_text(worst[level])})"
        swatch = Patch(facecolor=line.get_color(), alpha=band_alpha, linewidth=0)
        entries.append((swatch, line) if band and groups else line)
        names.append(name)
        if band:
            ax.fill_between(
                x,
                np.where(thin, np.nan, _floats(part["ci_low"])),
                np.where(thin, np.nan, _floats(part["ci_high"])),
                color=line.get_color(),
                alpha=band_alpha,
                linewidth=0,
                label="_nolegend_",
                zorder=1,  # under every group's line, not only its own
            )
    if band and not groups:
        entries.append(swatch)
        names.append("confidence band")
    outside = len(levels) > 3
    if outside:
        # Below the axes in columns: on the right, long names took a third of the width.
        _fit_figure(ax)
        placement: dict[str, Any] = {
            "loc": "upper center",
            "bbox_to_anchor": (0.5, -0.14),
            "ncol": _legend_columns(ax, names, len(levels)),
            "borderaxespad": 0.0,
            "frameon": False,
        }
    else:
        placement = {"loc": "best", "framealpha": 0.85}
    legend = ax.legend(entries, names, fontsize="small", **placement)
    if band and groups:
        legend.set_title("shade: confidence band", prop=FontProperties(size="small"))
    finite = rates[np.isfinite(rates)]
    low = float(finite.min()) if finite.size else 0.0
    # Down to a round percentage below the lowest rate, with room for the dip to show.
    step = 0.01 if low >= 0.95 else 0.05 if low >= 0.5 else 0.1
    bottom = max(0.0, np.floor((low - max(0.1 * (1.0 - low), 0.005)) / step) * step)
    shared = [other for other in ax.get_shared_y_axes().get_siblings(ax) if other is not ax]
    if any(other.lines for other in shared):
        # A y axis shared with plots already drawn keeps their lowest rates in view too.
        bottom = min(bottom, float(ax.get_ylim()[0]))
    ax.set_ylim(bottom, 1.0 + 0.03 * (1.0 - bottom))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))
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
        _log_axis(ax.yaxis, positive)
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
def retry_outcomes(
    frame: pd.DataFrame, *, log: bool = True, ax: Axes | None = None, **kwargs: Any
) -> Axes:
    """Tasks reaching each attempt and how that attempt ended, with eventual success.

    Each attempt number gets a pale bar of the tasks that reached it and, inside it, bars
    side by side of the attempts that completed, failed or were abandoned. The counts axis
    is logarithmic, since the first attempt dwarfs the retries (``log=False`` for a linear
    one, where the outcomes are stacked). The chance that a task still failing at attempt
    *k* eventually succeeds is a line on a twin percent axis on the right (find it in
    ``ax.figure.axes``).

    Parameters
    ----------
    frame : DataFrame
        From :func:`qanalytics.retry_outcomes`: ``attempt``, ``reached``, ``succeeded``,
        ``failed``, ``abandoned`` and ``eventual_success``.
    log : bool, default True
        A logarithmic counts axis with the outcomes side by side; False for a linear axis
        with the outcomes stacked.
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
    outcomes = (("succeeded", "completed"), ("failed", "failed"), ("abandoned", "abandoned"))
    bottom = np.zeros(len(frame))
    slot = 0.7 / len(outcomes)
    for i, (column, outcome) in enumerate(outcomes):
        heights = np.nan_to_num(_floats(frame[column]))
        options: dict[str, Any] = {
            "width": slot if log else 0.5,
            "color": OUTCOME_COLORS[outcome],
            "label": column,
            "linewidth": 0,
        }
        options.update(kwargs)
        if log:  # side by side: on a log axis a stacked segment's length means nothing
            ax.bar(x - 0.35 + slot * (i + 0.5), heights, **options)
        else:
            ax.bar(x, heights, bottom=bottom, **options)
            bottom = bottom + heights
    # The tick labels carry the counts reaching each attempt, where no bar or line can
    # cover them.
    ax.set_xticks(x, [f"{a:.0f}\n({n:,.0f})" for a, n in zip(x, reached, strict=True)])
    ax.set_xlabel("attempt (tasks reaching it)")
    top = float(reached.max()) or 1.0
    if log:
        ax.set_yscale("log")
        ax.set_ylim(0.7, top * 1.6)
        _log_axis(ax.yaxis, [1.0, top])
        ax.set_ylabel("tasks (log scale)")
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, top * 1.05)
        ax.set_ylabel("tasks")
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
    right.set_ylabel("succeed later after failing here (%)")
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
    _fit_figure(ax)
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
