"""success_rate() and throughput() read the history in batches and count per batch.

Their answers must not depend on the batch size: each is checked, with batches of a few
rows forced, against a plain recomputation that loads every finished row at once and
groups with pandas (what these functions did before they streamed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_metrics import run_workload

import qanalytics as qa
from qanalytics.read import common, trends
from qanalytics.read.common import OUTCOME_DTYPE, UTC_DTYPE, as_utc, resolve_window

BYS: list[Any] = [None, "type", "worker_id", ["worker_id", "type"]]


def _cat(values: pd.Series) -> pd.Categorical:
    present = sorted({v for v in values if v != ""})
    # Categories of the names present, sorted (an empty set stays an object index).
    categories = pd.Index(present) if present else pd.Index([], dtype=object)
    return pd.Categorical([None if v == "" else v for v in values], categories=categories)


def _rows(db: qa.Store, level: str, statuses: tuple[str, ...], lo: Any, hi: float) -> pd.DataFrame:
    if level == "task":
        table = "tasks t LEFT JOIN workers w ON w.worker_key = t.worker_key"
        fin, status = "t.finished_at", "t.status"
    else:
        table = (
            "attempts a JOIN tasks t ON t.id = a.task_id"
            " LEFT JOIN workers w ON w.worker_key = a.worker_key"
        )
        fin, status = "a.finished_at", "a.outcome"
    marks = ", ".join("?" * len(statuses))
    window = f"{fin} <= ?" if lo is None else f"{fin} BETWEEN ? AND ?"
    params = [*statuses, hi] if lo is None else [*statuses, lo, hi]
    rows = db.query(
        f"SELECT {fin}, {status}, t.type, IFNULL(w.worker_id, '') FROM {table}"
        f" WHERE {status} IN ({marks}) AND {window}",
        params,
    )
    return pd.DataFrame(rows, columns=["at", "status", "type", "worker_id"])


def _keys(by: Any) -> list[str]:
    return [] if by is None else [by] if isinstance(by, str) else list(by)


def reference_success_rate(db: qa.Store, freq: str, by: Any, level: str, **window: Any) -> Any:
    width = pd.Timedelta(freq).total_seconds()
    keys = _keys(by)
    lo, hi, _at = resolve_window(db, window.get("since"), window.get("until"), window.get("now"))
    statuses = ("completed", "failed") if level == "task" else ("completed", "failed", "abandoned")
    rows = _rows(db, level, statuses, lo, hi)
    rows["bucket"] = np.floor(rows["at"].to_numpy(dtype="float64") / width) * width
    rows["ok"] = (rows["status"] == "completed").astype("int64")
    agg = rows.groupby(["bucket", *keys], sort=True)["ok"].agg(["sum", "size"]).reset_index()
    completed = agg["sum"].to_numpy().astype("int64")
    total = agg["size"].to_numpy().astype("int64")
    rate, low, high = trends._wilson(completed, total, common._z_score(0.95))
    out = pd.DataFrame({"bucket": as_utc(agg["bucket"].to_numpy())})
    for key in keys:
        out[key] = _cat(agg[key])
    out["completed"], out["failed"], out["total"] = completed, total - completed, total
    out["rate"], out["ci_low"], out["ci_high"] = rate, low, high
    return out


def reference_throughput(db: qa.Store, freq: str, by: Any, **window: Any) -> Any:
    width = pd.Timedelta(freq).total_seconds()
    keys = _keys(by)
    lo, hi, _at = resolve_window(db, window.get("since"), window.get("until"), window.get("now"))
    rows = _rows(db, "task", ("completed", "failed", "cancelled"), lo, hi)
    rows["bucket"] = np.floor(rows["at"].to_numpy(dtype="float64") / width) * width
    rows["order"] = rows["status"].map({"completed": 0, "failed": 1, "cancelled": 2})
    agg = rows.groupby(["bucket", *keys, "order", "status"], sort=True).size().reset_index()
    out = pd.DataFrame({"bucket": as_utc(agg["bucket"].to_numpy())})
    for key in keys:
        out[key] = _cat(agg[key])
    out["outcome"] = pd.Categorical(agg["status"].tolist(), dtype=OUTCOME_DTYPE)
    out["count"] = agg[0].to_numpy().astype("int64")
    return out


@pytest.fixture
def history(file_db: qa.Store, clock: qa.FakeClock) -> tuple[qa.Store, list[dict[str, Any]]]:
    start = clock.now
    run_workload(file_db, clock, seed=11, steps=400)
    end = clock.now
    span = end - start
    windows: list[dict[str, Any]] = [
        {},
        {"since": start + 0.25 * span},
        {"since": start + 0.2 * span, "until": start + 0.6 * span},
        {"now": start + 0.5 * span},
        {"since": start + 0.1 * span, "until": end + 3600, "now": start + 0.7 * span},
    ]
    return file_db, windows


@pytest.mark.parametrize("rows_per_batch", [1, 7])
@pytest.mark.parametrize("level", ["task", "attempt"])
@pytest.mark.parametrize("by", BYS)
def test_success_rate_batches_match_one_load(
    history: tuple[qa.Store, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    rows_per_batch: int,
    level: str,
    by: Any,
) -> None:
    db, windows = history
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", rows_per_batch)
    seen = 0
    for window in windows:
        for freq in ("1s", "1h"):
            got = qa.success_rate(db, freq=freq, by=by, level=level, **window)
            want = reference_success_rate(db, freq, by, level, **window)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            assert got["bucket"].dtype == UTC_DTYPE
            seen += len(got)
    assert seen > 50  # the workload finished enough tasks for the comparison to bite


@pytest.mark.parametrize("rows_per_batch", [1, 7])
@pytest.mark.parametrize("by", BYS)
def test_throughput_batches_match_one_load(
    history: tuple[qa.Store, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    rows_per_batch: int,
    by: Any,
) -> None:
    db, windows = history
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", rows_per_batch)
    seen = 0
    for window in windows:
        for freq in ("1s", "1h"):
            got = qa.throughput(db, freq=freq, by=by, **window)
            want = reference_throughput(db, freq, by, **window)
            pd.testing.assert_frame_equal(got, want, check_exact=True)
            seen += len(got)
    assert seen > 50


@pytest.mark.parametrize("level", ["task", "attempt"])
def test_types_read_as_text_across_batches(
    history: tuple[qa.Store, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    # Beyond _MAX_CASE_TYPES types are read as text; codes must agree across batches
    # that meet the types in different orders.
    db, windows = history
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", 2)
    monkeypatch.setattr(common, "_MAX_CASE_TYPES", 0)
    for window in windows:
        got = qa.success_rate(db, freq="1h", by=["type", "worker_id"], level=level, **window)
        want = reference_success_rate(db, "1h", ["type", "worker_id"], level, **window)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    got = qa.throughput(db, freq="1h", by="type")
    pd.testing.assert_frame_equal(got, reference_throughput(db, "1h", "type"), check_exact=True)


def test_batches_in_memory_store(db: qa.Store, clock: qa.FakeClock, monkeypatch: Any) -> None:
    run_workload(db, clock, seed=5, steps=250)
    monkeypatch.setattr(trends, "_ROWS_PER_BATCH", 3)
    for level in ("task", "attempt"):
        got = qa.success_rate(db, freq="1h", by=["type", "worker_id"], level=level)
        want = reference_success_rate(db, "1h", ["type", "worker_id"], level)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got["total"].sum() > 10


@pytest.mark.parametrize(("span", "middle"), [(2, 51), (10_000, 51), (1 << 40, 1 << 22)])
def test_batch_counts_paths_agree(span: int, middle: int) -> None:
    # Dense bincount, sorted unique keys, and (for key spaces past int64) unique rows.
    rng = np.random.default_rng(span)
    n = 500
    b = rng.integers(0, span, n) + 12345
    sizes = [4, middle, 6]
    codes = [rng.integers(-1, 3, n), rng.integers(-1, 50, n), rng.integers(-1, 5, n)]
    got_b, got_codes, got_counts = trends._batch_counts(b, codes, sizes)
    frame = pd.DataFrame({"b": b, "c0": codes[0], "c1": codes[1], "c2": codes[2]})
    want = frame.groupby(["b", "c0", "c1", "c2"], sort=True).size().reset_index()
    np.testing.assert_array_equal(got_b, want["b"].to_numpy())
    for i in range(3):
        np.testing.assert_array_equal(got_codes[i], want[f"c{i}"].to_numpy())
    np.testing.assert_array_equal(got_counts, want[0].to_numpy())
    assert got_counts.dtype == np.int64


# -- freq=None: one row per group for the whole window ---------------------------------------
def _ts(seconds: float) -> pd.Timestamp:
    return as_utc(np.array([seconds])).iloc[0]  # microseconds, as frames hold them


def _whole_window_start(rows: pd.DataFrame, lo: float | None) -> float:
    return float(rows["at"].min()) if lo is None else lo


@pytest.mark.parametrize("level", ["task", "attempt"])
@pytest.mark.parametrize("by", BYS)
def test_success_rate_whole_window_matches_an_independent_count(
    history: tuple[qa.Store, list[dict[str, Any]]], level: str, by: Any
) -> None:
    db, windows = history
    keys = _keys(by)
    statuses = ("completed", "failed") if level == "task" else ("completed", "failed", "abandoned")
    for window in windows:
        lo, hi, _at = resolve_window(db, *(window.get(k) for k in ("since", "until", "now")))
        rows = _rows(db, level, statuses, lo, hi)
        got = qa.success_rate(db, freq=None, by=by, level=level, **window)
        assert list(got.columns) == list(qa.success_rate(db, by=by, level=level).columns)
        if rows.empty:
            assert got.empty
            continue
        # One row per group, all with the window's start (or its first finish).
        start = _ts(_whole_window_start(rows, lo))
        assert (got["bucket"] == start).all() and got["bucket"].dtype == UTC_DTYPE
        assert not keys or not got.duplicated(keys).any()
        rows["ok"] = (rows["status"] == "completed").astype("int64")
        if keys:
            want = rows.groupby(keys)["ok"].agg(["sum", "size"])
            got_by = got.set_index(keys)
            for group, (completed, total) in want.iterrows():
                one = got_by.loc[group]
                assert (int(one["completed"]), int(one["total"])) == (completed, total)
            assert len(got) == len(want)
        else:
            assert len(got) == 1
            assert int(got["completed"].iloc[0]) == int(rows["ok"].sum())
            assert int(got["total"].iloc[0]) == len(rows)
        assert (got["failed"] == got["total"] - got["completed"]).all()
        assert np.allclose(got["rate"], got["completed"] / got["total"])
        # And the hourly buckets add up to the same totals.
        hourly = qa.success_rate(db, freq="1h", by=by, level=level, **window)
        assert int(hourly["total"].sum()) == int(got["total"].sum())


@pytest.mark.parametrize("by", BYS)
def test_throughput_whole_window_matches_an_independent_count(
    history: tuple[qa.Store, list[dict[str, Any]]], by: Any
) -> None:
    db, windows = history
    keys = _keys(by)
    for window in windows:
        lo, hi, _at = resolve_window(db, *(window.get(k) for k in ("since", "until", "now")))
        rows = _rows(db, "task", ("completed", "failed", "cancelled"), lo, hi)
        got = qa.throughput(db, freq=None, by=by, **window)
        if rows.empty:
            assert got.empty
            continue
        start = _ts(_whole_window_start(rows, lo))
        assert (got["bucket"] == start).all()
        for key in keys:
            rows[key] = rows[key].replace("", None)
        want = rows.groupby([*keys, "status"], dropna=False).size()
        got_counts = {
            tuple(None if pd.isna(v) else str(v) for v in row[:-1]): int(row[-1])
            for row in got[[*keys, "outcome", "count"]].itertuples(index=False)
        }
        want_counts = {
            tuple(None if pd.isna(v) else str(v) for v in (k if isinstance(k, tuple) else (k,))): n
            for k, n in want.items()
        }
        assert got_counts == want_counts


def test_whole_window_reads_the_tiers_after_finished_tasks_are_pruned(
    history: tuple[qa.Store, list[dict[str, Any]]],
) -> None:
    db, _windows = history
    before = qa.success_rate(db, freq=None, by="type")
    before_level = qa.success_rate(db, freq=None, level="attempt")
    before_tp = qa.throughput(db, freq=None)
    first = db.query("SELECT min(finished_at) FROM tasks WHERE status IN ('completed', 'failed')")
    first_at = float(first[0][0])
    # An hour-aligned cutoff: the tiers count whole hours, so prune loses no finish.
    at = db.now() // 3600 * 3600
    result = qa.maintenance.prune(db, keep="7d", finished_keep="2h", now=at)
    assert result.tasks_deleted > 0
    after = qa.success_rate(db, freq=None, by="type")
    cols = ["type", "completed", "failed", "total"]
    pd.testing.assert_frame_equal(after[cols], before[cols])
    # The first finish was deleted: the tiers know it to the hour.
    hour = _ts(first_at // 3600 * 3600)
    assert (after["bucket"] == hour).all()
    assert (before["bucket"] == _ts(first_at)).all()
    after_level = qa.success_rate(db, freq=None, level="attempt")
    assert after_level["total"].tolist() == before_level["total"].tolist()
    after_tp = qa.throughput(db, freq=None)
    assert after_tp["count"].tolist() == before_tp["count"].tolist()
    # A window from a whole hour reads that hour from the tiers (a window that starts
    # inside a pruned hour can only scan what is left of it).
    since = qa.success_rate(db, freq=None, since=first_at // 3600 * 3600)
    assert since["bucket"].tolist() == [hour]
    assert since["total"].tolist() == [before["total"].sum()]


def test_whole_window_of_an_empty_store(db: qa.Store) -> None:
    for frame, like in [
        (qa.success_rate(db, freq=None, by="type"), qa.success_rate(db, by="type")),
        (qa.throughput(db, freq=None), qa.throughput(db)),
    ]:
        assert frame.empty
        assert frame.dtypes.to_dict() == like.dtypes.to_dict()
