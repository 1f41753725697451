"""Shared fixtures: a fresh store with a fake clock, in memory and on disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest

import qanalytics as qa

matplotlib.use("Agg")

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def clock() -> qa.FakeClock:
    return qa.FakeClock(T0)


@pytest.fixture
def db(clock: qa.FakeClock) -> Iterator[qa.Store]:
    with qa.connect(":memory:", clock=clock) as store:
        yield store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.db"


@pytest.fixture
def file_db(db_path: Path, clock: qa.FakeClock) -> Iterator[qa.Store]:
    with qa.connect(db_path, clock=clock) as store:
        yield store


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    import matplotlib.pyplot as plt

    plt.close("all")
