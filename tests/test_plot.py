"""Plots: the drawn artists and their data, never pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection, QuadMesh
from matplotlib.patches import Rectangle

import qanalytics as qa
from qanalytics import plot
from qanalytics.read.common import OUTCOME_DTYPE, STATE_DTYPE, as_utc

T0 = 1_700_000_000.0 - 1_700_000_000.0 % 3600  # 2023-11-14 22:00 UTC, on the hour
H = 3600.0


def _num(epochs: Any) -> np.ndarray:
    """Epoch seconds as matplotlib date numbers, the x data the plots draw."""
    return np.asarray(mdates.date2num(as_utc(epochs).dt.tz_localize(None).to_numpy()))


def _cat(values: list[Any], dtype: Any = None) -> pd.Categorical:
    return pd.Categorical(values, dtype=dtype)


# ------------------------------------------------------------------- frames by contract


def heartbeats_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "worker_id": _cat(["w1", "w1", "w1", "w2", "w2", "w10"]),
            "at": as_utc([T0, T0 + 30, T0 + 600, T0 + 10, T0 + 40, T0 + 20]),
            "task_id": pd.array([1, pd.NA, pd.NA, 2, 2, pd.NA], dtype="Int64"),
        }
    )


def outages_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "worker_id": _cat(["w1", "w2"]),
            "start": as_utc([T0 + 30, T0 + 40]),
            "end": as_utc([T0 + 600, T0 + 900]),
            "duration_s": [570.0, 860.0],
            "ongoing": [False, True],
            "tasks_in_flight": [[], [2]],
            "ended_by": _cat(["resumed", "still silent"]),
        }
    )


def workers_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "worker_id": _cat(["w1", "w2", "w10", "w3"]),
            "state": _cat(["active", "stale", "active", "removed"], STATE_DTYPE),
            "registered_at": as_utc([T0, T0, T0, T0]),
            "last_heartbeat_at": as_utc([T0 + 600, T0 + 40, T0 + 20, np.nan]),
            "removed_at": as_utc([np.nan, np.nan, np.nan, T0 + 300]),
            "since_heartbeat_s": [300.0, 860.0, 880.0, np.nan],
        }
    )


def uptime_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "worker_id": _cat(["w1", "w1", "w2", "w2", "w10"]),
            "bucket": as_utc([T0, T0 + H, T0, T0 + 2 * H, T0 + 2 * H]),
            "alive_fraction": [1.0, 0.5, 0.25, 0.0, 1.0],
        }
    )


def depth_frame(by: bool = False) -> pd.DataFrame:
    buckets = T0 + 60 * np.arange(4)
    if not by:
        return pd.DataFrame(
            {
                "bucket": as_utc(buckets),
                "queued": np.array([3, 5, 2, 0], dtype="int64"),
                "processing": np.array([1, 2, 2, 1], dtype="int64"),
            }
        )
    return pd.DataFrame(
        {
            "bucket": as_utc(np.concatenate([buckets, buckets])),
            "type": _cat(["email"] * 4 + ["render"] * 4),
            "queued": np.array([3, 5, 2, 0, 1, 1, 4, 2], dtype="int64"),
            "processing": np.array([1, 2, 2, 1, 0, 1, 1, 0], dtype="int64"),
        }
    )


def success_frame(by: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "bucket": as_utc([T0, T0 + H, T0 + 2 * H]),
            "completed": np.array([9, 0, 4], dtype="int64"),
            "failed": np.array([1, 0, 4], dtype="int64"),
            "total": np.array([10, 0, 8], dtype="int64"),
            "rate": [0.9, np.nan, 0.5],
            "ci_low": [0.6, np.nan, 0.2],
            "ci_high": [0.98, np.nan, 0.8],
        }
    )
    if not by:
        return frame
    other = frame.assign(rate=[0.5, 0.7, 1.0], ci_low=[0.1, 0.3, 0.6], ci_high=[0.9, 0.9, 1.0])
    both = pd.concat([frame, other], ignore_index=True)
    both.insert(1, "type", _cat(["email"] * 3 + ["render"] * 3))
    return both


def throughput_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket": as_utc([T0, T0, T0 + H, T0 + H, T0 + 2 * H]),
            "outcome": _cat(
                ["completed", "failed", "completed", "abandoned", "failed"], OUTCOME_DTYPE
            ),
            "count": np.array([10, 2, 7, 1, 3], dtype="int64"),
        }
    )


def latency_frame(bucket: bool = False) -> pd.DataFrame:
    types = ["email", "email", "render", "render"]
    frame = pd.DataFrame(
        {
            "type": _cat(types),
            "quantile": [0.5, 0.9, 0.5, 0.9],
            "wait_s": [0.1, 0.5, 2.0, 30.0],
            "run_s": [1.0, 2.0, 3.0, 5.0],
            "count": np.array([10, 10, 4, 4], dtype="int64"),
        }
    )
    if not bucket:
        return frame
    later = frame.assign(run_s=frame["run_s"] * 2)
    both = pd.concat([frame, later], ignore_index=True)
    both.insert(0, "bucket", as_utc([T0] * 4 + [T0 + H] * 4))
    return both


def utilization_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "worker_id": _cat(["w1", "w1", "w2", "w2"]),
            "bucket": as_utc([T0, T0 + H, T0, T0 + H]),
            "busy_s": [1800.0, 3600.0, 0.0, 900.0],
            "alive_s": [3600.0, 3600.0, 0.0, 1800.0],
            "utilization": [0.5, 1.0, np.nan, 0.5],
        }
    )


def retry_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "attempt": np.array([1, 2, 3], dtype="int64"),
            "reached": np.array([100, 12, 4], dtype="int64"),
            "succeeded": np.array([88, 8, 1], dtype="int64"),
            "failed": np.array([10, 4, 3], dtype="int64"),
            "abandoned": np.array([2, 0, 0], dtype="int64"),
            "success_rate_at_attempt": [0.88, 8 / 12, 0.25],
            "eventual_success": [0.97, 0.75, 0.25],
        }
    )


# name -> (function, a frame builder); each case draws with its frame as the only argument
CASES: dict[str, tuple[Callable[..., Axes], Callable[[], pd.DataFrame]]] = {
    "heartbeat_timeline": (plot.heartbeat_timeline, heartbeats_frame),
    "uptime": (plot.uptime, uptime_frame),
    "worker_states": (plot.worker_states, workers_frame),
    "queue_depth": (plot.queue_depth, depth_frame),
    "success_rate": (plot.success_rate, success_frame),
    "throughput": (plot.throughput, throughput_frame),
    "latency": (plot.latency, latency_frame),
    "utilization": (plot.utilization, utilization_frame),
    "retry_outcomes": (plot.retry_outcomes, retry_frame),
}


@pytest.fixture(autouse=True)
def _no_show(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("plt.show() was called")

    monkeypatch.setattr(plt, "show", refuse)


def _texts(ax: Axes) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def _bars(ax: Axes) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


# ------------------------------------------------------------------- shared behaviour


def test_public_api() -> None:
    assert set(CASES) <= set(plot.__all__)
    assert {"STATE_COLORS", "OUTCOME_COLORS", "STATUS_COLORS"} <= set(plot.__all__)


@pytest.mark.parametrize("name", CASES)
def test_draws_on_given_ax_and_labels_it(name: str) -> None:
    func, build = CASES[name]
    fig, ax = plt.subplots()
    other = fig.add_subplot(2, 2, 4)  # the current Axes, which must be left alone
    assert plt.gca() is other
    assert func(build(), ax=ax) is ax
    assert ax.get_title()
    assert ax.get_xlabel() or name == "worker_states"
    assert ax.get_ylabel()
    assert not other.lines and not other.patches and not other.collections
    fig.canvas.draw()  # renders under Agg without errors


@pytest.mark.parametrize("name", CASES)
def test_uses_current_axes_when_none_given(name: str) -> None:
    func, build = CASES[name]
    _, ax = plt.subplots()
    assert func(build()) is ax


@pytest.mark.parametrize("name", CASES)
def test_empty_frame_draws_no_data_note(name: str) -> None:
    func, build = CASES[name]
    _, ax = plt.subplots()
    assert func(build().iloc[:0], ax=ax) is ax
    assert _texts(ax) == ["no data"]
    note = ax.texts[0]
    assert note.get_position() == (0.5, 0.5)
    assert note.get_transform() == ax.transAxes
    assert ax.get_title() and ax.get_ylabel()
    assert not ax.lines and not ax.collections
    ax.figure.canvas.draw()


@pytest.mark.parametrize("name", CASES)
def test_missing_column_is_a_value_error_naming_it(name: str) -> None:
    func, build = CASES[name]
    frame = build()
    column = frame.columns[-1] if name != "worker_states" else "state"
    required = {
        "heartbeat_timeline": "at",
        "uptime": "alive_fraction",
        "queue_depth": "processing",
        "success_rate": "ci_high",
        "throughput": "count",
        "latency": "run_s",
        "utilization": "utilization",
        "retry_outcomes": "eventual_success",
    }
    column = required.get(name, column)
    with pytest.raises(ValueError, match=repr(column)):
        func(frame.drop(columns=[column]))


@pytest.mark.parametrize("name", CASES)
def test_not_a_frame_is_a_type_error(name: str) -> None:
    func, build = CASES[name]
    with pytest.raises(TypeError, match="DataFrame"):
        func(build().to_dict())


# ------------------------------------------------------------------- heartbeat_timeline


def test_heartbeat_timeline_rows_beats_outages_and_removals() -> None:
    beats, outs, workers = heartbeats_frame(), outages_frame(), workers_frame()
    ax = plot.heartbeat_timeline(beats, outs, workers)
    rows = ["w1", "w2", "w3", "w10"]  # natural order, w3 known only from the registry
    assert [t.get_text() for t in ax.get_yticklabels()] == rows
    assert ax.get_ylim() == (len(rows) - 0.5, -0.5)  # first worker on top
    beat_line = next(line for line in ax.lines if line.get_label() == "heartbeat")
    np.testing.assert_allclose(beat_line.get_xdata(), _num(beats["at"].map(pd.Timestamp.timestamp)))
    expected_rows = [rows.index(w) for w in beats["worker_id"].astype(str)]
    np.testing.assert_array_equal(beat_line.get_ydata(), expected_rows)
    # One bar per outage, on its worker's row, spanning start to end; the ongoing one hatched.
    bars = _bars(ax)
    assert len(bars) == 2
    starts = sorted(b.get_x() for b in bars)
    np.testing.assert_allclose(starts, _num([T0 + 30, T0 + 40]))
    by_row = {round(b.get_y() + b.get_height() / 2): b for b in bars}
    assert set(by_row) == {0, 1}
    np.testing.assert_allclose(by_row[1].get_width(), 860 / 86400)
    assert by_row[1].get_hatch() and not by_row[0].get_hatch()
    removed = next(line for line in ax.lines if line.get_label() == "removed")
    np.testing.assert_allclose(removed.get_xdata(), _num([T0 + 300]))
    np.testing.assert_array_equal(removed.get_ydata(), [2])
    colors = {t.get_text(): t.get_color() for t in ax.get_yticklabels()}
    assert colors["w3"] == plot.STATE_COLORS["removed"]
    assert colors["w2"] == plot.STATE_COLORS["stale"]
    assert _legend_texts(ax) == ["heartbeat", "outage", "ongoing outage", "removed"]
    assert ax.get_xlabel() == "time (UTC)"
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)


def test_heartbeat_timeline_kwargs_reach_the_beats() -> None:
    ax = plot.heartbeat_timeline(heartbeats_frame(), color="black", markersize=3)
    (line,) = ax.lines
    assert line.get_color() == "black" and line.get_markersize() == 3


def test_heartbeat_timeline_checks_every_frame() -> None:
    with pytest.raises(ValueError, match="'end'"):
        plot.heartbeat_timeline(heartbeats_frame(), outages_frame().drop(columns=["end"]))
    with pytest.raises(TypeError, match="workers"):
        plot.heartbeat_timeline(heartbeats_frame(), None, ["w1"])  # type: ignore[arg-type]


def test_dates_are_utc_whatever_the_frame_timezone() -> None:
    beats = heartbeats_frame()
    local = beats.assign(at=beats["at"].dt.tz_convert("America/New_York"))
    ax_utc = plot.heartbeat_timeline(beats, ax=plt.figure().add_subplot())
    ax_local = plot.heartbeat_timeline(local, ax=plt.figure().add_subplot())
    np.testing.assert_allclose(ax_utc.lines[0].get_xdata(), ax_local.lines[0].get_xdata())
    formatter = ax_local.xaxis.get_major_formatter()
    assert isinstance(formatter, mdates.ConciseDateFormatter)
    assert formatter.format_ticks(_num([T0, T0 + H])) == ["22:00", "23:00"]  # UTC hours


# ------------------------------------------------------------------- uptime, utilization


def test_uptime_heatmap_cells_and_colorbar() -> None:
    frame = uptime_frame()
    fig, ax = plt.subplots()
    plot.uptime(frame, ax=ax)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    grid = mesh.get_array()
    assert grid.shape == (3, 3)  # w1, w2, w10 x three hourly buckets
    np.testing.assert_array_equal(grid.mask, [[0, 0, 1], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_allclose(grid.compressed(), [1.0, 0.5, 0.25, 0.0, 1.0])
    assert mesh.get_clim() == (0.0, 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["w1", "w2", "w10"]
    np.testing.assert_allclose(ax.get_xlim(), _num([T0, T0 + 3 * H]))
    assert len(fig.axes) == 2 and "alive" in fig.axes[1].get_ylabel()


def test_uptime_bucket_width_from_attrs_when_buckets_are_sparse() -> None:
    frame = uptime_frame().iloc[[0, 3]].copy()  # T0 and T0 + 2h only
    frame.attrs["freq"] = "1h"
    ax = plot.uptime(frame)
    (mesh,) = ax.collections
    assert mesh.get_array().shape == (2, 3)


def test_utilization_heatmap_and_fleet_line() -> None:
    frame = utilization_frame()
    ax = plot.utilization(frame, ax=plt.figure().add_subplot())
    (mesh,) = ax.collections
    np.testing.assert_allclose(mesh.get_array().filled(-1), [[0.5, 1.0], [-1, 0.5]])
    line_ax = plot.utilization(frame, kind="line", ax=plt.figure().add_subplot())
    (line,) = line_ax.lines
    np.testing.assert_allclose(line.get_xdata(), _num([T0, T0 + H]))
    np.testing.assert_allclose(line.get_ydata(), [1800 / 3600, 4500 / 5400])
    assert "%" in line_ax.get_ylabel()
    with pytest.raises(ValueError, match="kind"):
        plot.utilization(frame, kind="pie")


# ------------------------------------------------------------------- worker_states


def test_worker_states_counts_and_colours() -> None:
    frame = pd.concat([workers_frame(), workers_frame().iloc[:1]], ignore_index=True)
    ax = plot.worker_states(frame)
    bars = _bars(ax)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["active", "late", "stale", "removed"]
    assert [b.get_height() for b in bars] == [3, 0, 1, 1]
    expected = [plot.STATE_COLORS[s] for s in ("active", "late", "stale", "removed")]
    assert [matplotlib.colors.to_hex(b.get_facecolor()) for b in bars] == [
        c.lower() for c in expected
    ]
    assert _texts(ax) == ["3", "0", "1", "1"]  # counts written on the bars


def test_worker_states_accepts_plain_strings_and_unknown_states() -> None:
    ax = plot.worker_states(pd.DataFrame({"state": ["active", "draining"]}))
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[-1] == "draining" and len(_bars(ax)) == 5


# ------------------------------------------------------------------- queue_depth


def test_queue_depth_lines() -> None:
    frame = depth_frame()
    ax = plot.queue_depth(frame)
    assert [line.get_label() for line in ax.lines] == ["queued", "processing"]
    for line, column in zip(ax.lines, ["queued", "processing"], strict=True):
        # Steps: each bucket's depth holds to the end of the bucket (the last one's too).
        assert line.get_drawstyle() == "steps-post"
        np.testing.assert_allclose(line.get_xdata(), _num(T0 + 60 * np.arange(5)))
        values = frame[column].to_numpy()
        np.testing.assert_array_equal(line.get_ydata(), np.append(values, values[-1]))
        assert line.get_color() == plot.STATUS_COLORS[column]
    assert ax.get_ylim()[0] == 0


def test_queue_depth_by_group_lines_and_stacked() -> None:
    frame = depth_frame(by=True)
    ax = plot.queue_depth(frame, ax=plt.figure().add_subplot())
    assert [line.get_label() for line in ax.lines] == [
        "email · queued",
        "email · processing",
        "render · queued",
        "render · processing",
    ]
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), [1, 1, 4, 2, 2])
    assert "type" in ax.get_title()
    stacked = plot.queue_depth(frame, stacked=True, ax=plt.figure().add_subplot())
    polys = [c for c in stacked.collections if isinstance(c, PolyCollection)]
    assert len(polys) == 2 and _legend_texts(stacked) == ["email", "render"]
    top = polys[1].get_paths()[0].vertices[:, 1].max()
    assert top == (frame.groupby("bucket")["queued"].sum()).max()
    one = plot.queue_depth(frame, value="processing", ax=plt.figure().add_subplot())
    assert [line.get_label() for line in one.lines] == ["email", "render"]


def test_queue_depth_stacked_total_and_bad_arguments() -> None:
    ax = plot.queue_depth(depth_frame(), stacked=True)
    assert len(ax.collections) == 2
    with pytest.raises(ValueError, match="value"):
        plot.queue_depth(depth_frame(), value="done")
    with pytest.raises(ValueError, match="stacked"):
        plot.queue_depth(depth_frame(by=True), stacked=True, value="both")
    with pytest.raises(ValueError, match="'priority'"):
        plot.queue_depth(depth_frame(), by="priority")


# ------------------------------------------------------------------- success_rate


def test_success_rate_line_band_and_percent_axis() -> None:
    frame = success_frame()
    ax = plot.success_rate(frame)
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), _num([T0, T0 + H, T0 + 2 * H]))
    np.testing.assert_allclose(line.get_ydata(), frame["rate"].to_numpy())  # NaN: a gap
    (band,) = ax.collections
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() == pytest.approx(0.2) and ys.max() == pytest.approx(0.98)
    assert ax.get_ylim()[0] <= 0.5 and ax.get_ylim()[1] > 1.0  # down to the lowest rate
    assert ax.yaxis.get_major_formatter()(0.5, 0) == "50%"
    assert "%" in ax.get_ylabel()
    assert _legend_texts(ax) == ["success rate", "confidence band"]


def test_success_rate_a_line_and_band_per_group() -> None:
    frame = success_frame(by=True)
    ax = plot.success_rate(frame)
    assert [line.get_label() for line in ax.lines] == ["email", "render"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.5, 0.7, 1.0])
    assert len(ax.collections) == 2
    assert ax.lines[0].get_color() != ax.lines[1].get_color()
    no_band = plot.success_rate(frame, band=False, ax=plt.figure().add_subplot())
    assert not no_band.collections


# ------------------------------------------------------------------- throughput


def test_throughput_stacked_by_outcome() -> None:
    ax = plot.throughput(throughput_frame())
    bars = _bars(ax)
    assert _legend_texts(ax) == ["completed", "failed", "abandoned"]  # no cancelled
    assert len(bars) == 3 * 3
    completed, failed, abandoned = bars[0:3], bars[3:6], bars[6:9]
    assert [b.get_height() for b in completed] == [10, 7, 0]
    assert [b.get_height() for b in failed] == [2, 0, 3]
    assert [b.get_y() for b in failed] == [10, 7, 0]  # stacked on completed
    assert [b.get_y() for b in abandoned] == [12, 7, 3]
    np.testing.assert_allclose([b.get_x() for b in completed], _num([T0, T0 + H, T0 + 2 * H]))
    assert completed[0].get_width() == pytest.approx(0.9 / 24)
    assert (
        matplotlib.colors.to_hex(failed[0].get_facecolor()) == plot.OUTCOME_COLORS["failed"].lower()
    )
    assert ax.get_ylabel() == "tasks finished per hour"


def test_throughput_by_another_column() -> None:
    frame = throughput_frame().assign(type=_cat(["a", "b", "a", "a", "b"]))
    ax = plot.throughput(frame, hue="type")
    assert _legend_texts(ax) == ["a", "b"]
    assert [b.get_height() for b in _bars(ax)] == [10, 8, 0, 2, 0, 3]


# ------------------------------------------------------------------- latency


def test_latency_bars_per_type_without_buckets() -> None:
    frame = latency_frame()
    ax = plot.latency(frame)
    bars = _bars(ax)
    assert len(bars) == 4
    assert [b.get_height() for b in bars] == [1.0, 3.0, 2.0, 5.0]  # p50 per type, then p90
    assert [t.get_text() for t in ax.get_xticklabels()] == ["email", "render"]
    assert _legend_texts(ax) == ["p50", "p90"]
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "run time (s)"
    wait = plot.latency(frame, measure="wait_s", ax=plt.figure().add_subplot())
    assert wait.get_yscale() == "log"  # 0.1 s to 30 s: wider than a factor of 100
    assert wait.get_ylabel() == "wait time (s)"


def test_latency_lines_per_type_and_quantile() -> None:
    frame = latency_frame(bucket=True)
    ax = plot.latency(frame)
    assert len(ax.lines) == 4
    assert [line.get_label() for line in ax.lines] == [
        "email p50",
        "email p90",
        "render p50",
        "render p90",
    ]
    np.testing.assert_allclose(ax.lines[3].get_xdata(), _num([T0, T0 + H]))
    np.testing.assert_allclose(ax.lines[3].get_ydata(), [5.0, 10.0])
    assert ax.lines[0].get_color() == ax.lines[1].get_color()
    assert ax.lines[0].get_linestyle() != ax.lines[1].get_linestyle()
    assert _legend_texts(ax) == ["email", "render", "p50", "p90"]
    only = plot.latency(frame, quantiles=[0.9], log=True, ax=plt.figure().add_subplot())
    assert len(only.lines) == 2 and only.get_yscale() == "log"


def test_latency_log_scale_when_the_range_is_wide() -> None:
    frame = latency_frame().assign(run_s=[0.05, 0.2, 30.0, 600.0])
    assert plot.latency(frame).get_yscale() == "log"
    with pytest.raises(ValueError, match="measure"):
        plot.latency(frame, measure="total_s")


# ------------------------------------------------------------------- retry_outcomes


def test_retry_outcomes_bars_and_eventual_success() -> None:
    frame = retry_frame()
    fig, ax = plt.subplots()
    plot.retry_outcomes(frame, ax=ax)
    bars = _bars(ax)
    assert len(bars) == 3 * 4  # reached, then succeeded / failed / abandoned side by side
    assert [b.get_height() for b in bars[:3]] == [100, 12, 4]
    assert [b.get_height() for b in bars[3:6]] == [88, 8, 1]
    assert ax.get_yscale() == "log"
    stacked = plot.retry_outcomes(frame, log=False, ax=plt.figure().add_subplot())
    stacked_bars = _bars(stacked)
    assert [b.get_y() for b in stacked_bars[6:9]] == [88, 8, 1]
    assert stacked.get_yscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1\n(100)", "2\n(12)", "3\n(4)"]
    (twin,) = [other for other in fig.axes if other is not ax]
    (line,) = twin.lines
    np.testing.assert_allclose(line.get_ydata(), frame["eventual_success"])
    assert twin.yaxis.get_major_formatter()(0.25, 0) == "25%"
    assert _legend_texts(ax) == ["reached", "succeeded", "failed", "abandoned", "eventual success"]


# ------------------------------------------------------------------- from a real store


def _has(module: str, name: str) -> bool:
    import importlib

    return hasattr(importlib.import_module(f"qanalytics.{module}"), name)


@pytest.fixture
def busy_db(db: qa.Store, clock: qa.FakeClock) -> qa.Store:
    """Two workers over two hours: beats, a silence, successes, a failure and a retry."""
    qa.register_worker(db, "w1")
    qa.register_worker(db, "w2")
    for minute in range(120):
        qa.heartbeat(db, "w1")
        if not 30 <= minute < 60:
            qa.heartbeat(db, "w2")
        if minute % 10 == 0:
            qa.enqueue(db, "email" if minute % 20 else "render", {"n": minute})
            task = qa.claim(db, "w1")
            if task is not None:
                clock.advance(5)
                if minute == 40:
                    qa.fail(db, task.id, "boom")
                else:
                    qa.complete(db, task.id)
        clock.advance(55 if minute % 10 == 0 else 60)
    return db


def test_plots_of_real_frames(busy_db: qa.Store) -> None:
    from qanalytics import frames, liveness, metrics

    drawn = 0
    if _has("frames", "heartbeats") and _has("frames", "workers"):
        beats = frames.heartbeats(busy_db)
        outs = liveness.outages(busy_db) if _has("liveness", "outages") else None
        workers = frames.workers(busy_db, include_removed=True)
        ax = plot.heartbeat_timeline(beats, outs, workers, ax=plt.figure().add_subplot())
        assert len(ax.lines[0].get_xdata()) == len(beats)
        plot.worker_states(workers, ax=plt.figure().add_subplot())
        drawn += 2
    calls = [
        ("liveness", "uptime", plot.uptime),
        ("metrics", "success_rate", plot.success_rate),
        ("metrics", "throughput", plot.throughput),
        ("metrics", "depth_timeline", plot.queue_depth),
        ("metrics", "latency", plot.latency),
        ("metrics", "utilization", plot.utilization),
        ("metrics", "retry_outcomes", plot.retry_outcomes),
    ]
    for module, name, draw in calls:
        if _has(module, name):
            frame = getattr({"liveness": liveness, "metrics": metrics}[module], name)(busy_db)
            ax = draw(frame, ax=plt.figure().add_subplot())
            ax.figure.canvas.draw()
            assert ax.get_title()
            if name == "success_rate" and len(frame):
                np.testing.assert_allclose(ax.lines[0].get_ydata(), frame["rate"].to_numpy())
            if name == "throughput" and len(frame):
                heights = sum(b.get_height() for b in _bars(ax))
                assert heights == frame["count"].sum()
            drawn += 1
    if not drawn:
        pytest.skip("no read-side frame functions yet")


# ------------------------------------------------------------------- capacity


def plan_frame(by: str = "hour_of_day") -> pd.DataFrame:
    """A four-hour plan by contract (capacity.plan), at 1.5 times the observed load."""
    if by == "type":
        frame = pd.DataFrame(
            {
                "type": _cat(["email", "render"]),
                "offered_load": [0.5, 3.0],
                "workers_alive": [6.0, 6.0],
                "stable": [True, True],
                "recommended_workers": pd.array([2, 6], dtype="Int64"),
            }
        )
    else:
        frame = pd.DataFrame(
            {
                "hour_of_day": np.array([0, 1, 2, 3], dtype="int64"),
                "offered_load": [1.0, 2.0, 4.0, 2.0],
                "workers_alive": [4.0, 4.0, 5.5, 5.0],
                "stable": [True, True, False, True],
                "recommended_workers": pd.array([3, 5, 9, pd.NA], dtype="Int64"),
            }
        )
    frame.attrs.update({"target_wait_s": 30.0, "percentile": 0.95, "growth": 1.5, "by": by})
    return frame


def what_if_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "servers": np.array([2, 3, 4, 5, 6], dtype="int64"),
            "utilization": [1.25, 0.83, 0.62, 0.5, 0.42],
            "stable": [False, True, True, True, True],
            "prob_wait": [1.0, 0.7, 0.3, 0.1, 0.03],
            "mean_wait_s": [np.inf, 120.0, 20.0, 4.0, 0.5],
            "percentile_wait_s": [np.inf, 400.0, 60.0, 10.0, 0.0],
            "percentile": [0.95] * 5,
        }
    )


def littles_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bucket": as_utc([T0, T0 + H, T0 + 2 * H]),
            "arrivals": np.array([360, 720, 0], dtype="int64"),
            "mean_backlog": [0.5, 2.0, 0.0],
            "arrival_rate": [0.1, 0.2, 0.0],
            "mean_wait_s": [5.2, 10.0, np.nan],
            "predicted_backlog": [0.52, 2.0, 0.0],
            "relative_difference": [0.04, 0.0, np.nan],
        }
    )


CAPACITY_CASES: dict[str, tuple[Callable[..., Axes], Callable[[], pd.DataFrame], str]] = {
    # name -> (function, frame builder, a required column)
    "capacity": (plot.capacity, plan_frame, "recommended_workers"),
    "capacity_by_type": (plot.capacity, lambda: plan_frame("type"), "recommended_workers"),
    "what_if": (plot.what_if, what_if_frame, "mean_wait_s"),
    "littles_law": (plot.littles_law, littles_frame, "predicted_backlog"),
}


def _line(ax: Axes, label_start: str) -> Any:
    return next(line for line in ax.lines if str(line.get_label()).startswith(label_start))


def test_capacity_plots_are_public() -> None:
    assert {"capacity", "what_if", "littles_law"} <= set(plot.__all__)


@pytest.mark.parametrize("name", CAPACITY_CASES)
def test_capacity_plots_draw_on_given_or_current_ax(name: str) -> None:
    func, build, _ = CAPACITY_CASES[name]
    fig, ax = plt.subplots()
    other = fig.add_subplot(2, 2, 4)
    assert func(build(), ax=ax) is ax
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert not other.lines and not other.patches and not other.collections
    fig.canvas.draw()
    _, current = plt.subplots()
    assert func(build()) is current


@pytest.mark.parametrize("name", CAPACITY_CASES)
def test_capacity_plots_empty_frame_says_no_data(name: str) -> None:
    func, build, _ = CAPACITY_CASES[name]
    _, ax = plt.subplots()
    empty = build().iloc[:0]
    assert func(empty, ax=ax) is ax
    assert _texts(ax) == ["no data"]
    assert ax.texts[0].get_transform() == ax.transAxes
    assert ax.get_title() and ax.get_ylabel()
    assert not ax.lines and not ax.collections and not _bars(ax)
    ax.figure.canvas.draw()


@pytest.mark.parametrize("name", CAPACITY_CASES)
def test_capacity_plots_missing_column_and_wrong_type(name: str) -> None:
    func, build, column = CAPACITY_CASES[name]
    with pytest.raises(ValueError, match=repr(column)):
        func(build().drop(columns=[column]))
    with pytest.raises(TypeError, match="DataFrame"):
        func(build().to_dict())


def test_capacity_by_hour_steps_shading_and_title() -> None:
    frame = plan_frame()
    ax = plot.capacity(frame)
    recommended = _line(ax, "recommended")
    alive = _line(ax, "workers alive")
    load = _line(ax, "offered load")
    for line in (recommended, alive, load):
        assert line.get_drawstyle() == "steps-post"
        np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2, 3, 4])  # hour 3 ends at 4
    np.testing.assert_array_equal(recommended.get_ydata()[:-1], [3, 5, 9, np.nan])
    np.testing.assert_array_equal(alive.get_ydata()[:-1], frame["workers_alive"])
    # The load is drawn at the plan's growth, so it compares with the recommendation.
    np.testing.assert_allclose(load.get_ydata()[:-1], frame["offered_load"] * 1.5)
    assert "1.5×" in str(load.get_label())
    (shade,) = [p for p in ax.patches if p.get_facecolor()[3] < 0.5]  # hour 2 is unstable
    xs = shade.get_path().transformed(shade.get_patch_transform()).vertices[:, 0]
    assert (xs.min(), xs.max()) == (2.0, 3.0)
    assert _legend_texts(ax)[-1] == "today's fleet cannot carry the load"
    assert ax.get_title() == (
        "Workers needed by hour of day: 95 % of tasks wait ≤ 30 s, at 1.5× today's load"
    )
    assert _texts(ax) == ["peak 9 at 02:00"]
    assert ax.get_xlabel() == "hour of day (UTC)" and ax.get_ylabel() == "workers"
    assert ax.get_xlim() == (0.0, 4.0) and ax.get_ylim()[0] == 0


def test_capacity_title_without_attrs_and_mean_target() -> None:
    frame = plan_frame()
    frame.attrs.clear()
    assert plot.capacity(frame).get_title() == "Workers needed by hour of day"
    frame.attrs.update({"target_wait_s": 120.0, "percentile": None, "growth": 1.0})
    ax = plot.capacity(frame, ax=plt.figure().add_subplot())
    assert ax.get_title() == "Workers needed by hour of day: mean wait ≤ 2 min"
    stable = plot.capacity(
        plan_frame().assign(stable=True).drop(columns=["offered_load"]),
        ax=plt.figure().add_subplot(),
    )
    assert not stable.patches and len(stable.lines) == 2


def test_capacity_by_type_bars() -> None:
    frame = plan_frame("type")
    ax = plot.capacity(frame, color="black")
    heights = sorted(b.get_height() for b in _bars(ax))
    np.testing.assert_allclose(heights, sorted([2, 6, 0.5 * 1.5, 3.0 * 1.5]))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["email", "render"]
    assert _legend_texts(ax) == [
        "recommended workers",
        "offered load (busy workers on average), 1.5× today",
    ]
    assert any("dedicated pools in all: 8 workers" in t for t in _texts(ax))
    black = [b.get_height() for b in _bars(ax) if b.get_facecolor()[:3] == (0.0, 0.0, 0.0)]
    assert black == [2, 6]  # kwargs reach the recommended bars
    assert ax.get_title().startswith("Dedicated workers per task type: 95 %")
    with pytest.raises(ValueError, match="'hour_of_day' or 'type'"):
        plot.capacity(frame.drop(columns=["type"]))


def test_what_if_log_waits_skip_unstable_and_target() -> None:
    frame = what_if_frame()
    ax = plot.what_if(frame, target_wait="30s")
    mean = _line(ax, "mean wait")
    np.testing.assert_array_equal(mean.get_xdata(), [3, 4, 5, 6])  # 2 workers: unstable
    np.testing.assert_allclose(mean.get_ydata(), [120.0, 20.0, 4.0, 0.5])
    pct = _line(ax, "p95 wait")
    assert pct.get_label() == "p95 wait (0 from 6 workers)"
    np.testing.assert_allclose(pct.get_ydata(), [400.0, 60.0, 10.0])  # 0 has no log position
    target = _line(ax, "target")
    assert target.get_label() == "target 30 s"
    np.testing.assert_allclose(target.get_ydata(), [30.0, 30.0])
    assert any("5 workers meet it" in t for t in _texts(ax))  # the first p95 under 30 s
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "workers" and "s" in ax.get_ylabel()


def test_what_if_without_target_or_percentile() -> None:
    frame = what_if_frame().drop(columns=["percentile_wait_s", "percentile", "stable"])
    ax = plot.what_if(frame, color="black")
    assert [line.get_label() for line in ax.lines] == ["mean wait"]
    assert ax.lines[0].get_color() == "black"
    assert len(ax.lines[0].get_xdata()) == 4  # the infinite wait is still left out
    assert not _texts(ax)
    all_unstable = what_if_frame().assign(stable=False)
    assert _texts(plot.what_if(all_unstable, ax=plt.figure().add_subplot())) == ["no data"]
    with pytest.raises(ValueError, match="target_wait"):
        plot.what_if(what_if_frame(), target_wait="soon")


def test_littles_law_observed_and_predicted_lines() -> None:
    frame = littles_frame()
    ax = plot.littles_law(frame)
    observed = _line(ax, "observed")
    predicted = _line(ax, "predicted")
    for line, column in ((observed, "mean_backlog"), (predicted, "predicted_backlog")):
        np.testing.assert_allclose(line.get_xdata(), _num([T0, T0 + H, T0 + 2 * H]))
        np.testing.assert_allclose(line.get_ydata(), frame[column])
    assert predicted.get_linestyle() == "--"
    assert _texts(ax) == ["largest difference: 4.0 %"]
    assert ax.get_xlabel() == "time (UTC)" and "queued" in ax.get_ylabel()
    assert "Little" in ax.get_title()
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)


def test_capacity_plots_of_real_frames(busy_db: qa.Store) -> None:
    plan = qa.capacity.plan(busy_db, growth=2.0)
    ax = plot.capacity(plan, ax=plt.figure().add_subplot())
    np.testing.assert_allclose(
        _line(ax, "recommended").get_ydata()[:-1],
        plan["recommended_workers"].astype("float64").fillna(np.nan),
    )
    by_type = qa.capacity.plan(busy_db, by="type")
    plot.capacity(by_type, ax=plt.figure().add_subplot()).figure.canvas.draw()
    row = plan.loc[plan["arrival_rate"].idxmax()]
    frame = qa.capacity.what_if(row["arrival_rate"], 1 / row["service_time_s"], range(1, 6))
    plot.what_if(frame, target_wait=30, ax=plt.figure().add_subplot()).figure.canvas.draw()
    checks = qa.capacity.littles_law(busy_db)
    ax = plot.littles_law(checks, ax=plt.figure().add_subplot())
    np.testing.assert_allclose(_line(ax, "observed").get_ydata(), checks["mean_backlog"])
