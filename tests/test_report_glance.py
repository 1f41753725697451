"""The rendered report agrees with notebook 04 and reads at a glance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import qanalytics as qa

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.db"


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("report") / "sample.html"
    qa.write_report(SAMPLE, out, since="7d", now="latest", progress=False)
    return out.read_text(encoding="utf-8")


def test_report_and_notebook_04_count_the_same_short_hours(sample_report: str) -> None:
    with qa.connect(SAMPLE, readonly=True, clock="latest") as db:
        plan = qa.capacity.plan(db, target_wait="30s", percentile=0.95)  # as notebook 04
    expected = int(qa.capacity.understaffed(plan).sum())
    assert expected == 5
    found = re.search(r"In (\d+) hour\(s\) of the day fewer workers were alive", sample_report)
    assert found is not None and int(found.group(1)) == expected
    assert "12:00 (25.96 alive, 26 needed)" in sample_report


def test_capacity_table_shows_measured_busy_beside_measured_share(sample_report: str) -> None:
    assert "busy workers needed" not in sample_report
    assert "busy (measured)" in sample_report and "busy share (measured)" in sample_report


# -- plots that read at a glance ---------------------------------------------------------------

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from qanalytics import plot  # noqa: E402

T0 = pd.Timestamp("2026-01-05", tz="UTC")


def _rates(types: dict[str, list[tuple[int, int]]]) -> pd.DataFrame:
    """A success_rate frame from (completed, failed) per hourly bucket and type."""
    rows = []
    for name, counts in types.items():
        for i, (ok, bad) in enumerate(counts):
            total = ok + bad
            rows.append({"bucket": T0 + pd.Timedelta(hours=i), "type": name, "completed": ok,
                         "failed": bad, "total": total})
    frame = pd.DataFrame(rows)
    z = 1.959964
    n, p = frame["total"].astype(float), frame["completed"] / frame["total"]
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    frame["rate"], frame["ci_low"], frame["ci_high"] = p, centre - half, centre + half
    frame.loc[frame["rate"] == 1.0, "ci_high"] = 1.0
    frame["type"] = pd.Categorical(frame["type"])
    return frame


def test_legend_flags_on_the_interval_not_the_point() -> None:
    frame = _rates({
        "data-export": [(40, 0), (3, 1), (40, 0)],  # 3 of 4: 75 %, but could be 95 %
        "thumbnail": [(100, 0), (20, 80), (100, 0)],  # the incident
    })
    ax = plot.success_rate(frame, ax=plt.figure().add_subplot())
    texts = {t.get_text().split(" ")[0]: t.get_text() for t in ax.get_legend().get_texts()}
    assert "lowest 75" not in texts["data-export"]
    assert "dipped below 95" in texts["data-export"]
    assert "dipped below 2" in texts["thumbnail"]  # ~28 %: loud where it should be


def test_no_band_under_a_thin_bucket_that_stayed_100_percent() -> None:
    frame = _rates({"email": [(200, 0), (3, 0), (200, 0)]}).drop(columns="type")
    ax = plot.success_rate(frame, ax=plt.figure().add_subplot(), band=True)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() > 0.9  # the 3-task night bucket (interval down to 44 %) is not shaded


def test_a_single_bucket_keeps_a_narrow_time_axis() -> None:
    frame = _rates({"email": [(10, 1)]}).drop(columns="type")
    ax = plot.success_rate(frame, ax=plt.figure().add_subplot())
    lo, hi = ax.get_xlim()
    assert hi - lo < 1.0  # days: not 2025 to 2029


def test_many_groups_legend_leaves_the_plot_its_width() -> None:
    names = ["data-export", "email", "pdf-render", "report", "thumbnail", "webhook"]
    frame = _rates({n: [(100, 1), (98, 2), (100, 0)] for n in names})
    fig = plt.figure()  # the default size
    ax = plot.success_rate(frame, by="type", ax=fig.add_subplot())
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    assert axes.width > 0.75 * fig.bbox.width
    assert legend.y1 <= axes.y0 + 1  # below the plot, not beside it


def test_backlog_summary_peak_is_on_the_chart(sample_report: str) -> None:
    assert "mean per 15 min" not in sample_report
    found = re.search(r"peak ([\d,]+) queued", sample_report)
    assert found is not None
