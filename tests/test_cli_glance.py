"""Output that reads at a glance, and typos that do not answer silently (CLI and library)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

import qanalytics as qa
from qanalytics._suggest import close_matches, unknown_message
from qanalytics.cli import main, prometheus_text
from qanalytics.cli.commands import DEFAULT_SINCE
from qanalytics.cli.output import fit_columns, rate_text

SAMPLE = str(Path(__file__).resolve().parent.parent / "data" / "sample.db")


def _run(*args: str, columns: int | None = None) -> tuple[int, str, str]:
    env = {"COLUMNS": str(columns)} if columns else {"COLUMNS": ""}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


# -- typos --------------------------------------------------------------------------------


def test_close_matches_and_message() -> None:
    assert close_matches("emial", ["email", "report"]) == ["email"]
    assert "did you mean 'worker-13'" in unknown_message(
        "worker", "worker13", ["worker-13", "worker-01"]
    )
    assert "holds no task type yet" in unknown_message("task type", "x", [])
    assert "it has 'a', 'b'" in unknown_message("task type", "zzzzzz", ["a", "b"])


def test_tasks_warns_about_an_unknown_type() -> None:
    with qa.connect(SAMPLE, readonly=True) as db:
        with pytest.warns(UserWarning, match=r"'emial'.*did you mean 'email'"):
            frame = qa.tasks(db, types="emial")
        assert frame.empty
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert not qa.tasks(db, types=["email"]).empty  # a known type: no warning


def test_failed_with_a_typo_is_an_error() -> None:
    code, out, err = _run("failed", "--db", SAMPLE, "--type", "thumbnial", "--now", "latest")
    assert code == 2
    assert "no task type 'thumbnial'" in err and "did you mean 'thumbnail'" in err
    assert "No tasks failed" not in out


def test_worker_with_a_typo_suggests_the_id() -> None:
    code, _out, err = _run("worker", "worker13", "--db", SAMPLE, "--now", "latest")
    assert code == 2
    assert "did you mean 'worker-13'" in err


# -- tables fit the terminal --------------------------------------------------------------


def test_workers_table_fits_80_columns_and_says_what_it_left_out() -> None:
    code, out, err = _run("workers", "--db", SAMPLE, "--now", "latest", columns=80)
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    header = out.splitlines()[0].split()
    assert header[:2] == ["worker_id", "state"]
    assert "current_task_id" in header  # what a worker holds outranks its capabilities
    assert "left out to fit 80 columns" in err and "--columns" in err


def test_columns_option_chooses_and_orders() -> None:
    code, out, _err = _run(
        "workers", "--db", SAMPLE, "--now", "latest", "--columns", "state,worker_id", columns=80
    )
    assert code == 0
    assert out.splitlines()[0].split() == ["state", "worker_id"]
    code, _out, err = _run("workers", "--db", SAMPLE, "--columns", "nope")
    assert code == 2 and "no column 'nope'" in err


def test_a_pipe_gets_every_column() -> None:
    code, out, err = _run("workers", "--db", SAMPLE, "--now", "latest")
    assert code == 0
    assert "cap_host" in out.splitlines()[0]
    assert "left out" not in err


def test_fit_columns_cuts_a_long_last_column() -> None:
    cells = {"id": ["1"], "type": ["t"], "error": ["x" * 200]}
    kept, hidden = fit_columns(cells, 40)
    assert hidden == [] and len(kept["error"][0]) <= 40


def test_duration_headers_lose_the_unit_suffix() -> None:
    _code, out, _err = _run("outages", "--db", SAMPLE, "--now", "latest")
    header = out.splitlines()[1].split()
    assert "duration" in header and "duration_s" not in header
    _code, out, _err = _run("stale", "--db", SAMPLE, "--now", "latest")
    assert "since_heartbeat " in out and "since_heartbeat_s" not in out
    _code, out, _err = _run("outages", "--db", SAMPLE, "--now", "latest", "--format", "json")
    assert "duration_s" in json.loads(out)[0]  # JSON keeps the name and the seconds


# -- numbers that do not round to a lie ----------------------------------------------------


def test_rate_text_never_rounds_to_100_unless_exact() -> None:
    assert rate_text(3145 / 3146) == "99.97 %"
    assert rate_text(1.0) == "100.0 %"
    assert rate_text(0.9894) == "98.9 %"
    assert rate_text(0.9894, 2) == "98.94 %"
    assert rate_text(1 - 1e-7).startswith("99.99999")
    assert rate_text(math.nan) == ""


def test_success_rate_table_shows_percentages() -> None:
    code, out, _err = _run("success-rate", "--db", SAMPLE, "--now", "latest", "--freq", "1D")
    assert code == 0
    assert "1.000" not in out
    assert "99.98 %" in out


def test_prometheus_omits_the_oldest_age_when_nothing_is_queued() -> None:
    with qa.connect(":memory:") as db:
        metrics = qa.queue_metrics(db)
    assert metrics["oldest_queued_task_age_seconds"] is None
    text = prometheus_text(metrics)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["qanalytics_oldest_queued_task_age_seconds"].samples == []
    _code, out, _err = _run("metrics", "--db", SAMPLE, "--now", "latest")
    line = next(x for x in out.splitlines() if x.startswith("oldest_queued"))
    assert line.split()[-1] == "n/a"


# -- one default window ---------------------------------------------------------------------


def test_every_look_back_command_has_the_same_default_window() -> None:
    for name in ("outages", "failed", "success-rate", "worker", "report"):
        command = main.commands[name]
        since = next(p for p in command.params if p.name == "since")
        assert since.default == DEFAULT_SINCE == "7d", name


def test_default_window_shows_worker_14s_flaps() -> None:
    code, out, _err = _run("outages", "--db", SAMPLE, "--now", "latest")
    assert code == 0
    assert out.count("worker-14") >= 4


def test_failed_by_error_groups_as_the_report_does() -> None:
    code, out, _err = _run("failed", "--db", SAMPLE, "--now", "latest", "--by", "error",
                           "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["type"] == "thumbnail" and rows[0]["tasks"] > 200
    assert rows[0]["error"].startswith("ImageDecodeError")
    assert sum(r["tasks"] for r in rows) == len(
        json.loads(_run("failed", "--db", SAMPLE, "--now", "latest", "--format", "json")[1])
    )
    assert [r["tasks"] for r in rows] == sorted((r["tasks"] for r in rows), reverse=True)
