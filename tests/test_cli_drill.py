"""Drill-down commands (task, worker, failed), --watch, and how tables and CSV read.

The store is written through the write API with a fake clock, so every expected number
below is counted by hand from the schedule in :func:`store`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

import qanalytics as qa
from qanalytics.cli import main
from qanalytics.cli.output import MAX_CELL_WIDTH, display_width, human_duration, render_table
from qanalytics.export import frame_csv

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = T0 + 7200
WIDE = "工作者-宽"  # East Asian wide characters: two terminal columns each


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Any]:
    """Four workers and six tasks over two hours; asked about at ``NOW`` with ``--since 1h``.

    - ``old``: claimed by w-b at T0, failed for good at T0+20 ("old failure"), before the
      window.
    - ``retried``: w-a fails it at T0+3710 ("boom-1"), w-b completes it at T0+3730.
    - ``bad``: w-a fails it for good at T0+3810 ("disk full").
    - ``ok1``, ``ok2``: w-a completes them at T0+3910 and T0+3920.
    - ``held``: w-a claims it at T0+4000 and still holds it at NOW.

    w-a, w-b and the wide-named worker beat every 30 s; w-a is silent after its beat at
    T0+4980 until T0+6000 (one outage of 1020 s); w-quiet beats until T0+90 and then never
    again (stale).
    So w-a has five attempts in the window: two failed, two completed, one open.
    """
    path = tmp_path / "queue.db"
    clock = qa.FakeClock(T0)
    ids: dict[str, Any] = {"path": path}
    with qa.connect(path, clock=clock) as db:
        for worker in ["w-a", "w-b", WIDE, "w-quiet"]:
            qa.register_worker(db, worker, {})

        def take(worker: str, key: str, kind: str, max_attempts: int = 3) -> None:
            ids[key] = qa.enqueue(db, kind, max_attempts=max_attempts)
            task = qa.claim(db, worker)
            assert task is not None and task.id == ids[key]

        events: dict[float, Callable[[], Any]] = {
            T0: lambda: take("w-b", "old", "report", max_attempts=1),
            T0 + 20: lambda: qa.fail(db, ids["old"], "old failure"),
            T0 + 3700: lambda: take("w-a", "retried", "email"),
            T0 + 3710: lambda: qa.fail(db, ids["retried"], "boom-1", delay=0),
            T0 + 3720: lambda: qa.claim(db, "w-b"),
            T0 + 3730: lambda: qa.complete(db, ids["retried"]),
            T0 + 3800: lambda: take("w-a", "bad", "report", max_attempts=1),
            T0 + 3810: lambda: qa.fail(db, ids["bad"], "disk full"),
            T0 + 3900: lambda: take("w-a", "ok1", "email"),
            T0 + 3910: lambda: qa.complete(db, ids["ok1"]),
            T0 + 3915: lambda: take("w-a", "ok2", "email"),
            T0 + 3920: lambda: qa.complete(db, ids["ok2"]),
            T0 + 4000: lambda: take("w-a", "held", "resize"),
        }
        while clock() <= NOW:
            at = clock()
            if at in events:
                events[at]()
            if (at - T0) % 30 == 0:
                if not T0 + 5010 <= at < T0 + 6000:
                    qa.heartbeat(db, "w-a", task_id=ids.get("held"))
                qa.heartbeat(db, "w-b")
                qa.heartbeat(db, WIDE)
                if at <= T0 + 90:
                    qa.heartbeat(db, "w-quiet")
            clock.advance(5)
    return ids


def run(*args: str, obj: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), obj=obj, catch_exceptions=False)


def at_now(store: dict[str, Any]) -> list[str]:
    return ["--db", str(store["path"]), "--now", str(NOW)]


def assert_user_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


# -- tasks(ids=...) ---------------------------------------------------------------------------


def test_tasks_ids_selects_exactly_those_tasks(store: dict[str, Any]) -> None:
    with qa.connect(store["path"], readonly=True) as db:
        everything = qa.tasks(db, now=NOW)
        wanted = [store["bad"], store["ok1"], 10_000]  # 10_000 is not in the store
        some = qa.tasks(db, ids=wanted, now=NOW)
        one = qa.tasks(db, ids=store["held"], now=NOW)
        none = qa.tasks(db, ids=[], now=NOW)
        tries = qa.attempts(db, task_ids=[store["retried"]], now=NOW)
    expected = everything[everything["id"].isin(wanted)].reset_index(drop=True)
    pd.testing.assert_frame_equal(some, expected, check_categorical=False)
    assert one["id"].tolist() == [store["held"]] and one["status"].tolist() == ["processing"]
    assert none.empty and list(none.columns) == list(everything.columns)
    assert tries["attempt"].tolist() == [1, 2]
    assert tries["worker_id"].astype(str).tolist() == ["w-a", "w-b"]
    assert tries["outcome"].astype(str).tolist() == ["failed", "completed"]


@pytest.mark.parametrize(
    ("ids", "error"),
    [("3", TypeError), ([1, True], TypeError), ([1.5], TypeError), (2**70, ValueError)],
)
def test_tasks_ids_are_validated(store: dict[str, Any], ids: Any, error: type) -> None:
    with qa.connect(store["path"], readonly=True) as db, pytest.raises(error, match="ids"):
        qa.tasks(db, ids=ids, now=NOW)


# -- task -------------------------------------------------------------------------------------


def test_task_shows_every_attempt(store: dict[str, Any]) -> None:
    task_id = str(store["retried"])
    result = run("task", task_id, *at_now(store), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["task"]["id"] == store["retried"] and data["task"]["status"] == "completed"
    assert [a["worker_id"] for a in data["attempts"]] == ["w-a", "w-b"]
    assert [a["outcome"] for a in data["attempts"]] == ["failed", "completed"]
    assert data["attempts"][0]["error"] == "boom-1"
    assert data["attempts"][1]["run_s"] == pytest.approx(10.0)

    table = run("task", task_id, *at_now(store))
    assert table.exit_code == 0, table.output
    assert f"Task {task_id} (email): completed, 2 of 3 attempt(s) used." in table.stdout
    assert "Attempts (2):" in table.stdout
    assert "boom-1" in table.stdout and "  10 s" in table.stdout


def test_task_as_of_an_earlier_now(store: dict[str, Any]) -> None:
    args = ["task", str(store["retried"]), "--db", str(store["path"]), "--format", "json"]
    data = json.loads(run(*args, "--now", str(T0 + 3715)).stdout)
    assert data["task"]["status"] == "queued"
    assert [a["outcome"] for a in data["attempts"]] == ["failed"]


@pytest.mark.parametrize(("task_id", "needle"), [("99999", "no task 99999"), ("abc", "integer")])
def test_task_unknown_or_malformed_is_one_error_line(
    store: dict[str, Any], task_id: str, needle: str
) -> None:
    assert_user_error(run("task", task_id, *at_now(store)), needle)


def test_task_created_after_now_is_unknown(store: dict[str, Any]) -> None:
    args = ["task", str(store["held"]), "--db", str(store["path"]), "--now", str(T0 + 100)]
    assert_user_error(run(*args), f"no task {store['held']}")


# -- worker -----------------------------------------------------------------------------------


def test_worker_summary(store: dict[str, Any]) -> None:
    args = ["worker", "w-a", *at_now(store), "--since", "1h", "--min-gap", "2min"]
    result = run(*args, "--format", "json", "--recent", "3")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["worker"]["state"] == "active"
    assert data["worker"]["current_task_id"] == store["held"]
    assert data["current_task"] == {"id": store["held"], "type": "resize", "status": "processing"}
    window = data["window"]
    # Five attempts in the window: retried (failed), bad (failed), ok1, ok2, held (open).
    assert (window["attempts"], window["failed"], window["completed"]) == (5, 2, 2)
    assert window["failure_rate"] == pytest.approx(2 / 4)
    assert window["outages"] == 1
    (outage,) = data["outages"]
    assert outage["start"] == "2023-11-14T23:36:20.000Z"  # T0+4980, the last beat before
    assert outage["duration_s"] == pytest.approx(1020.0)
    assert window["max_gap_s"] == pytest.approx(1020.0)
    assert window["median_gap_s"] == pytest.approx(30.0)
    assert [r["task_id"] for r in data["recent_attempts"]] == [
        store["held"],
        store["ok2"],
        store["ok1"],
    ]

    table = run(*args)
    assert table.exit_code == 0, table.output
    assert "Worker w-a: active." in table.stdout
    assert f"Current task: {store['held']} (resize, processing)." in table.stdout
    assert "failure rate 50.0% (2 of 4)" in table.stdout
    assert "outages: 1" in table.stdout and "17 min" in table.stdout


def test_worker_stale_with_no_recent_work(store: dict[str, Any]) -> None:
    data = json.loads(run("worker", "w-quiet", *at_now(store), "--format", "json").stdout)
    assert data["worker"]["state"] == "stale"
    assert data["current_task"] is None
    assert data["window"]["attempts"] == 0 and data["window"]["failure_rate"] is None
    assert data["recent_attempts"] == []


def test_worker_unknown_is_one_error_line(store: dict[str, Any]) -> None:
    assert_user_error(run("worker", "nobody", *at_now(store)), "no worker 'nobody'")


# -- failed -----------------------------------------------------------------------------------


def test_failed_lists_tasks_that_failed_in_the_window(store: dict[str, Any]) -> None:
    args = ["failed", *at_now(store), "--since", "1h"]
    data = json.loads(run(*args, "--format", "json").stdout)
    # "old" failed before the window; "retried" failed once but then completed.
    assert [(r["id"], r["error"], r["worker_id"]) for r in data] == [
        (store["bad"], "disk full", "w-a")
    ]
    wider = run("failed", *at_now(store), "--since", "3h", "--format", "json")
    everything = json.loads(wider.stdout)
    assert [r["id"] for r in everything] == [store["bad"], store["old"]]  # newest first
    assert json.loads(run(*args, "--type", "email", "--format", "json").stdout) == []

    table = run(*args)
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("1 task(s) failed between 2023-11-14 23:13:20 UTC")
    assert "disk full" in table.stdout


def test_failed_empty_window(store: dict[str, Any]) -> None:
    result = run("failed", *at_now(store), "--since", "10min")
    assert result.exit_code == 0 and result.stdout.startswith("No tasks failed between")


# -- --watch ----------------------------------------------------------------------------------


class Frames:
    """An injected sleep that lets `frames` frames be drawn, then presses Ctrl-C."""

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.frames:
            raise KeyboardInterrupt


@pytest.mark.parametrize("command", ["workers", "stale", "metrics"])
def test_watch_redraws_until_ctrl_c(store: dict[str, Any], command: str) -> None:
    sleep = Frames(3)
    obj = {"sleep": sleep, "clock": lambda: NOW}
    result = run(command, *at_now(store), "--watch", "2s", obj=obj)
    # Exit 0 on Ctrl-C, also for `stale` (which finds w-quiet stale and would exit 1).
    assert result.exit_code == 0, result.output
    assert sleep.waits == [2.0, 2.0, 2.0]
    header = rf"Every 2s: qanalytics {command}  \(2023-11-15 00:13:20 UTC"
    headers = re.findall(header, result.stdout)
    assert len(headers) == 3
    body = {"workers": "w-quiet", "stale": "w-quiet", "metrics": "total_workers"}[command]
    assert result.stdout.count(body) == 3


def test_stale_without_watch_still_exits_1(store: dict[str, Any]) -> None:
    assert run("stale", *at_now(store)).exit_code == 1


@pytest.mark.parametrize("interval", ["0", "-2s"])
def test_watch_needs_a_positive_interval(store: dict[str, Any], interval: str) -> None:
    assert_user_error(run("workers", *at_now(store), f"--watch={interval}"), "--watch")


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["outages", "--since=-5m"], "--since='-5m' must be positive"),
        (["outages", "--min-gap", "-1"], "--min-gap='-1' must be positive"),
        (["stale", "--threshold=-3min"], "--threshold='-3min' must be positive"),
        (["failed", "--until=-1h"], "--until='-1h' must be positive"),
    ],
)
def test_negative_durations_must_be_positive(
    store: dict[str, Any], args: list[str], needle: str
) -> None:
    assert_user_error(run(*args, *at_now(store)), needle)


def test_requeue_orphans_help_names_every_writing_command() -> None:
    text = " ".join(run("requeue-orphans", "--help").stdout.split())
    assert "The one command that writes" not in text
    for name in ["simulate", "prune", "vacuum", "checkpoint", "record"]:
        assert name in text


def test_old_store_warns_on_stderr_unless_now_is_given(store: dict[str, Any]) -> None:
    # The store's last event is in 2023; the real clock is far later.
    result = run("workers", "--db", str(store["path"]))
    assert result.exit_code == 0
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("Warning: the store's last event")
    assert "--now latest" in warning[0] and "w-a" in result.stdout
    assert run("workers", *at_now(store)).stderr == ""
    assert run("workers", "--db", str(store["path"]), "--now", "latest").stderr == ""


# -- tables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.44, "0.4 s"),
        (9.94, "9.9 s"),
        (45.2, "45 s"),
        (59.6, "1 min"),
        (125, "2 min 5 s"),
        (3600, "1 h"),
        (32 * 3600 + 26 * 60 + 10, "32 h 26 min"),
        (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"),
        (-90, "-1 min 30 s"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_tables_show_durations_as_text(store: dict[str, Any]) -> None:
    lines = run("stale", *at_now(store)).stdout.splitlines()
    row = next(line for line in lines if line.startswith("w-quiet"))
    # Silent since T0+90 at NOW = T0+7200: 7110 s.
    assert row.split("  ")[-1].strip() == "1 h 58 min"
    data = json.loads(run("stale", *at_now(store), "--format", "json").stdout)
    assert data[0]["since_heartbeat_s"] == pytest.approx(7110.0)


def test_wide_ids_line_up(store: dict[str, Any]) -> None:
    lines = run("workers", *at_now(store)).stdout.splitlines()
    # The state column starts at the same terminal column on every line.
    starts = []
    for line in lines:
        cut = re.search(r"\s(state|active|late|stale)\s", line)
        assert cut is not None, line
        starts.append(display_width(line[: cut.start() + 1]))
    assert WIDE in "\n".join(lines) and len(set(starts)) == 1, lines
    assert display_width(WIDE) == 2 * 5 - 1  # four wide characters and a hyphen


def test_long_cells_are_cut_with_an_ellipsis() -> None:
    long = "x" * 200
    wide = "宽" * 100
    table = render_table({"a": [long, "short"], "b": [wide, "y"]})
    title, first, second = table.splitlines()
    assert first.startswith("x" * (MAX_CELL_WIDTH - 1) + "…  ")
    # 59 columns of wide characters would be 29.5 of them: 29 fit, then the ellipsis.
    assert first.endswith("宽" * 29 + "…")
    assert display_width(first) == MAX_CELL_WIDTH + 2 + 2 * 29 + 1
    # The second column starts at the same terminal column on every line.
    assert title.index("b") == second.index("y") == MAX_CELL_WIDTH + 2


# -- CSV --------------------------------------------------------------------------------------


def test_csv_writes_plain_values() -> None:
    frame = pd.DataFrame(
        {
            "ongoing": [True, False],
            "held": pd.Series([[10770, 10771], []], dtype=object),
            "caps": pd.Series([{"gpu": True}, None], dtype=object),
            "n": [1, -2],
        }
    )
    rows = list(csv.reader(io.StringIO(frame_csv(frame))))
    assert rows == [
        ["ongoing", "held", "caps", "n"],
        ["true", "10770;10771", '{"gpu": true}', "1"],
        ["false", "", "", "-2"],
    ]


# -- import time ------------------------------------------------------------------------------


def _modules_loaded_by(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    script = code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    return set(out.stdout.split())


def test_help_and_import_do_not_load_the_heavy_libraries() -> None:
    help_run = (
        "from qanalytics.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['worker', '--help'])\nexcept SystemExit:\n    pass"
    )
    for code in ["import qanalytics", help_run]:
        loaded = _modules_loaded_by(code)
        assert "qanalytics" in loaded
        assert not {"pandas", "numpy", "matplotlib", "pyarrow", "nbconvert"} & loaded, code
    # A real command loads what it needs.
    assert "pandas" in _modules_loaded_by("import qanalytics\nqanalytics.tasks")


def test_public_names_and_old_module_paths_still_resolve() -> None:
    from qanalytics.frames import tasks as old_path
    from qanalytics.read import frames

    assert qa.tasks is old_path is frames.tasks
    assert sys.modules["qanalytics.frames"] is frames
    assert frames.__spec__ is not None and frames.__spec__.name == "qanalytics.read.frames"
    assert {"tasks", "connect", "plot", "maintenance"} <= set(dir(qa))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = qa.no_such_name


def test_stale_default_is_the_state_rule() -> None:
    # stale and requeue-orphans follow the liveness model by default, as workers() does.
    for command in ("stale", "requeue-orphans"):
        assert "ten of the worker's own expected beat intervals" in " ".join(
            run(command, "--help").stdout.split()
        ), command
