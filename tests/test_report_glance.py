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
