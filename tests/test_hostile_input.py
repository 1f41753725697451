"""Hostile input: control characters, formula cells, deep JSON, absurd times and freqs.

Each case either renders safely or gets one clear typed error (CLI: one ``Error:`` line,
exit status 2), and a rejected write leaves the store exactly as it was.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import qanalytics as qa
from qanalytics import capacity
from qanalytics.cli import emit_frame, main, prometheus_text, safe_text
from qanalytics.report import notebook as rpt
from qanalytics.write.workers import MAX_JSON_DEPTH

T0 = 1_700_000_000.0
NOW = T0 + 600
NOW_ARG = str(NOW)

# Control characters a terminal acts on, and bidirectional controls that reorder a line.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
ESC_ID = "w-\x1b[31mred\x1b[0m"
CR_ID = "w-ok\rw-fake"
OSC_ID = "w-\x1b]0;pwned\x07title"
BIDI_ID = "w-\u202eexe.txt"
C1_ID = "w-\x9b2J"
HOSTILE_IDS = [ESC_ID, CR_ID, OSC_ID, BIDI_ID, C1_ID]
HOSTILE_TYPE = "type-\x1b[2J\x1b[H"


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def assert_user_error(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(path: Path) -> list[str]:
    """Every row of every table, as SQL text: equal snapshots mean an unchanged store."""
    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """Workers with control characters in their ids, and a queued task of a hostile type."""
    path = tmp_path / "hostile.db"
    clock = qa.FakeClock(T0)
    with qa.connect(path, clock=clock) as db:
        for worker in HOSTILE_IDS:
            qa.register_worker(db, worker, {"zone": "\x1b[1mbold"})
        qa.enqueue(db, HOSTILE_TYPE)
        bad = qa.enqueue(db, "other", max_attempts=1)
        clock.advance(5)
        assert qa.claim(db, ESC_ID, types=["other"]) is not None
        qa.fail(db, bad, "boom \x1b[2J")
        clock.advance(NOW - clock())
        for worker in HOSTILE_IDS:
            qa.heartbeat(db, worker)
    return path


def plain_store(tmp_path: Path, *, beats_until: float = NOW) -> Path:
    path = tmp_path / "plain.db"
    clock = qa.FakeClock(T0)
    with qa.connect(path, clock=clock) as db:
        qa.register_worker(db, "w1")
        qa.enqueue(db, "email", {"to": "a"})
        while clock() < beats_until:
            clock.advance(30)
            qa.heartbeat(db, "w1")
    return path


# -- terminal output ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["workers", "stale", "metrics"])
def test_table_output_escapes_control_characters(hostile: Path, command: str) -> None:
    extra = ["--threshold", "1s"] if command == "stale" else []
    result = run(command, "--db", str(hostile), "--now", str(NOW + 600), *extra)
    assert result.exit_code in (0, 1), result.output
    assert not UNSAFE.search(result.stdout), repr(result.stdout)
    if command == "metrics":
        assert "queue_depth_by_type.type-\\x1b[2J\\x1b[H" in result.stdout
    else:
        for shown in [
            "w-\\x1b[31mred\\x1b[0m",
            "w-ok\\rw-fake",
            "w-\\x1b]0;pwned\\x07title",
            "w-\\u202eexe.txt",
            "w-\\x9b2J",
        ]:
            assert shown in result.stdout


def test_table_columns_stay_aligned_with_escapes(hostile: Path) -> None:
    result = run("workers", "--db", str(hostile), "--now", NOW_ARG)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + len(HOSTILE_IDS)  # no row split by \r or a separator
    state_at = lines[0].index("state")
    assert all(line[state_at:].startswith("active") for line in lines[1:])


def test_json_output_keeps_the_text_exact(hostile: Path) -> None:
    result = run("workers", "--db", str(hostile), "--now", NOW_ARG, "--format", "json")
    assert not UNSAFE.search(result.stdout)  # JSON escapes controls itself
    assert sorted(r["worker_id"] for r in json.loads(result.stdout)) == sorted(HOSTILE_IDS)


def test_error_line_escapes_control_characters(hostile: Path) -> None:
    line = assert_user_error(
        run("workers", "--db", str(hostile), "--state", "\x1b[2Jactive"), "\\x1b[2Jactive"
    )
    assert not UNSAFE.search(line)
    line = assert_user_error(run("workers", "--db", str(hostile), "--now", "\x1b]0;x\x07"))
    assert not UNSAFE.search(line)


def test_error_from_a_store_file_name_is_escaped(tmp_path: Path) -> None:
    line = assert_user_error(run("workers", "--db", str(tmp_path / "no\x1b[31mfile.db")))
    assert "no\\x1b[31mfile.db" in line


@given(st.text())
def test_safe_text_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = safe_text(text)
    assert not UNSAFE.search(shown) and "\n" not in shown
    if not UNSAFE.search(text) and "\n" not in text:
        assert shown == text  # ordinary text, any script, is untouched


# -- Prometheus -----------------------------------------------------------------------------


def _queue_metrics(by_type: dict[Any, int]) -> dict[str, Any]:
    return {
        "queue_depth_by_status": {"queued": sum(by_type.values()), "completed": 0},
        "queue_depth_by_type": by_type,
        "task_statistics": {"runnable": 0, "delayed": 0},
        "oldest_queued_task_age_seconds": None,
        "success_rate": None,
        "failure_rate": None,
        "total_workers": 0,
        "active_workers": 0,
        "stale_workers": 0,
    }


def _samples(text: str, name: str) -> list[tuple[tuple[tuple[str, str], ...], float]]:
    return [
        (tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_prometheus_merges_keys_that_print_alike() -> None:
    text = prometheus_text(_queue_metrics({1: 2, "1": 3, None: 1, "None": 4}))
    queued = [line for line in text.splitlines() if line.startswith("qanalytics_queued_tasks")]
    assert queued == [
        'qanalytics_queued_tasks{type="1"} 5',
        'qanalytics_queued_tasks{type="None"} 5',
    ]


def test_prometheus_from_a_store_with_numeric_types(tmp_path: Path) -> None:
    path = plain_store(tmp_path)
    with sqlite3.connect(path) as conn:  # a store written by other means: type 7 as a number
        conn.execute(
            "INSERT INTO tasks (type, created_at, run_after) VALUES (7, ?, ?), ('7', ?, ?)",
            (T0, T0, T0, T0),
        )
    result = run("metrics", "--db", str(path), "--now", NOW_ARG, "--format", "prometheus")
    assert result.exit_code == 0, result.output
    samples = _samples(result.stdout, "qanalytics_queued_tasks")
    assert len(samples) == len({labels for labels, _ in samples})
    assert dict(samples) == {(("type", "7"),): 2.0, (("type", "email"),): 1.0}


def test_prometheus_label_values_are_escaped() -> None:
    weird = 'a"b\\c\nd\x1b[0m'
    text = prometheus_text(_queue_metrics({weird: 1}))
    assert 'qanalytics_queued_tasks{type="a\\"b\\\\c\\nd\x1b[0m"} 1' in text
    assert dict(_samples(text, "qanalytics_queued_tasks")) == {(("type", weird),): 1.0}


# -- CSV ------------------------------------------------------------------------------------


FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_defuses_formula_cells(tmp_path: Path) -> None:
    path = tmp_path / "csv.db"
    with qa.connect(path, clock=qa.FakeClock(T0)) as db:
        for worker in [*FORMULAS, "plain", "a=b"]:
            qa.register_worker(db, worker, {"note": worker})
    result = run("workers", "--db", str(path), "--now", NOW_ARG, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    ids = {row["worker_id"] for row in rows}
    assert ids == {"'" + f for f in FORMULAS} | {"plain", "a=b"}
    assert {row["cap_note"] for row in rows} == ids  # a capability column, too


def test_csv_keeps_negative_numbers_as_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.DataFrame(
        {
            "name": ["-1", "=1+1", "ok"],
            "delta_s": [-1.5, 0.0, 2.5],
            "count": [-3, 0, 4],
            "mixed": pd.Series([-7, "-7", None], dtype=object),
            "kind": pd.Categorical(["@x", "y", "+z"]),
        }
    )
    emit_frame(frame, "csv")
    out = capsys.readouterr().out
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["name", "delta_s", "count", "mixed", "kind"],
        ["'-1", "-1.5", "-3", "-7", "'@x"],
        ["'=1+1", "0.0", "0", "'-7", "y"],
        ["ok", "2.5", "4", "", "'+z"],
    ]


# -- deeply nested JSON ---------------------------------------------------------------------


def nested(depth: int) -> Any:
    """A value whose dicts/lists nest `depth` levels deep (0 is a scalar)."""
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def test_capabilities_at_the_depth_limit_are_kept(tmp_path: Path) -> None:
    with qa.connect(tmp_path / "q.db") as db:
        caps = {"deep": nested(MAX_JSON_DEPTH - 1)}  # the dict itself is a level
        assert qa.register_worker(db, "w", caps).capabilities == caps


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_capabilities_and_payloads_are_refused(tmp_path: Path, depth: int) -> None:
    path = plain_store(tmp_path)
    before = snapshot(path)
    message = "is nested more than 64 levels deep; at most 64 levels"
    with qa.connect(path) as db:
        with pytest.raises(ValueError, match=f"^capabilities {message}"):
            qa.register_worker(db, "w2", {"deep": nested(depth - 1)})
        with pytest.raises(ValueError, match=f"^capabilities {message}"):
            qa.register_worker(db, "w1", {"deep": nested(depth - 1)})  # an update, too
        with pytest.raises(ValueError, match=f"^payload {message}"):
            qa.enqueue(db, "email", nested(depth))
    assert snapshot(path) == before


def test_a_payload_that_contains_itself_is_still_a_type_error(tmp_path: Path) -> None:
    loop: list[Any] = []
    loop.append(loop)
    circular = "payload must be JSON-serialisable: Circular"
    with qa.connect(tmp_path / "q.db") as db, pytest.raises(TypeError, match=circular):
        qa.enqueue(db, "email", {"a": loop})


def _deep_text(depth: int) -> str:
    return '{"deep": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [200, 100_000])
@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_cli_renders_deep_values_already_in_a_store(tmp_path: Path, depth: int, fmt: str) -> None:
    path = plain_store(tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE workers SET capabilities = ?", (_deep_text(depth),))
        conn.execute(
            "UPDATE worker_events SET capabilities = ? WHERE capabilities IS NOT NULL",
            (_deep_text(depth),),
        )
    result = run("workers", "--db", str(path), "--now", NOW_ARG, "--format", fmt)
    assert result.exit_code == 0, result.output
    if depth == 200:  # Python parses it; the CLI shows a placeholder
        assert "<nested more than 64 levels deep>" in result.stdout
    elif fmt == "table":  # too deep for the parser: its text, cut to the table's cell width
        assert '{"deep": [[[' in result.stdout and "…" in result.stdout
    else:  # too deep for the parser: read as its text, shown as text
        assert result.stdout.count("[") >= depth


def test_library_reads_values_too_deep_to_parse_as_text(tmp_path: Path) -> None:
    path = plain_store(tmp_path)
    text = "[" * 100_000 + "]" * 100_000
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE workers SET capabilities = ?", (text,))
        conn.execute(
            "UPDATE worker_events SET capabilities = ? WHERE capabilities IS NOT NULL", (text,)
        )
        conn.execute("UPDATE tasks SET payload = ?", (text,))
    with qa.connect(path, readonly=True) as db:
        assert qa.get_worker(db, "w1").capabilities == {"value": text}
        assert qa.get_task(db, 1).payload == text
        assert qa.workers(db, now=NOW)["capabilities"].tolist() == [{"value": text}]


# -- times and freq -------------------------------------------------------------------------

RANGE = "is outside the supported time range (1677-09-22 to 2262-04-11 UTC)"


@pytest.mark.parametrize(
    ("now", "shown"),
    [("2300-01-01", "'2300-01-01'"), ("1e308", "1e+308"), ("-1e20", "-1e+20"), ("1e15", "")],
)
@pytest.mark.parametrize("command", ["workers", "stale", "outages", "metrics", "success-rate"])
def test_cli_refuses_times_out_of_range(tmp_path: Path, command: str, now: str, shown: str) -> None:
    path = plain_store(tmp_path)
    assert_user_error(run(command, "--db", str(path), "--now", now), f"now={shown}", RANGE)


@pytest.mark.parametrize("since", ["1e308", "-1e20", "1600-01-01", "1000000d"])
def test_cli_refuses_windows_out_of_range(tmp_path: Path, since: str) -> None:
    path = plain_store(tmp_path)
    assert_user_error(
        run("outages", "--db", str(path), "--now", NOW_ARG, "--since", since), "since=", RANGE
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda db: qa.heartbeats(db, since=1e308),
        lambda db: qa.outages(db, now=-1e20),
        lambda db: qa.uptime(db, now="2300-01-01"),
        lambda db: qa.queue_metrics(db, now=float(2**63)),
        lambda db: qa.success_rate(db, since="1000000d", now=NOW),
        lambda db: qa.workers(db, now=pd.Timestamp("2262-04-12").to_pydatetime()),
    ],
)
def test_library_refuses_times_out_of_range(
    tmp_path: Path, call: Callable[[qa.Store], Any]
) -> None:
    with (
        qa.connect(plain_store(tmp_path), readonly=True) as db,
        pytest.raises(ValueError, match=re.escape(RANGE)),
    ):
        call(db)


def test_times_at_the_range_edges_are_accepted() -> None:
    day = 86400.0
    epoch = date(1970, 1, 1)
    assert qa._time.to_epoch("1677-09-22") == (date(1677, 9, 22) - epoch).days * day
    assert qa._time.to_epoch("2262-04-11") == (date(2262, 4, 11) - epoch).days * day
    assert qa._time.to_epoch(qa._time.MAX_EPOCH) == qa._time.MAX_EPOCH
    with pytest.raises(ValueError, match=re.escape(RANGE)):
        qa._time.to_epoch(qa._time.MAX_EPOCH + 1)
    with pytest.raises(ValueError, match=re.escape(RANGE)):
        qa._time.to_epoch(qa._time.MIN_EPOCH - 1)


def test_enqueue_refuses_run_after_out_of_range(tmp_path: Path) -> None:
    path = plain_store(tmp_path)
    before = snapshot(path)
    with qa.connect(path) as db:
        with pytest.raises(ValueError, match="run_after=.*" + re.escape(RANGE)):
            qa.enqueue(db, "email", run_after="2300-01-01T00:00:00Z")
        with pytest.raises(ValueError, match="run_after=.*" + re.escape(RANGE)):
            qa.enqueue(db, "email", run_after=1e308)
    assert snapshot(path) == before


BAD_FREQS: list[tuple[Any, str]] = [
    ("0s", "must be greater than zero"),
    (0, "must be greater than zero"),
    ("-1h", "is not a positive fixed-width bucket size"),
    (-60, "must not be negative"),
    ("1ns", "a bucket must be from 1ms to 9.22337e+09s (about 292 years)"),
    ("1e-5", "a bucket must be from 1ms to 9.22337e+09s (about 292 years)"),
    ("1000000d", "a bucket must be from 1ms to 9.22337e+09s (about 292 years)"),
    (1e300, "a bucket must be from 1ms to 9.22337e+09s (about 292 years)"),
    ("garbage", "is not a positive fixed-width bucket size"),
    ("1W-MON", "is not a positive fixed-width bucket size"),  # anchored: not fixed-width
    (float("nan"), "must be a finite duration"),
]
FREQ_FUNCTIONS: list[tuple[str, Callable[..., Any]]] = [
    ("success_rate", lambda db, f: qa.success_rate(db, freq=f, now=NOW)),
    ("throughput", lambda db, f: qa.throughput(db, freq=f, now=NOW)),
    ("depth_timeline", lambda db, f: qa.depth_timeline(db, freq=f, now=NOW)),
    ("latency", lambda db, f: qa.latency(db, freq=f, now=NOW)),
    ("utilization", lambda db, f: qa.utilization(db, freq=f, now=NOW)),
    ("uptime", lambda db, f: qa.uptime(db, freq=f, now=NOW)),
    ("arrival_rates", lambda db, f: capacity.arrival_rates(db, by=None, freq=f, now=NOW)),
    ("fleet", lambda db, f: capacity.fleet(db, by=None, freq=f, now=NOW)),
    ("littles_law", lambda db, f: capacity.littles_law(db, freq=f, now=NOW)),
]


@pytest.mark.parametrize(("freq", "message"), BAD_FREQS)
@pytest.mark.parametrize(("name", "call"), FREQ_FUNCTIONS, ids=[n for n, _ in FREQ_FUNCTIONS])
def test_every_freq_argument_refuses_absurd_widths(
    tmp_path: Path, name: str, call: Callable[..., Any], freq: Any, message: str
) -> None:
    with (
        qa.connect(plain_store(tmp_path), readonly=True) as db,
        pytest.raises(ValueError, match=f"^freq=.*{re.escape(message)}"),
    ):
        call(db, freq)


@pytest.mark.parametrize(
    ("freq", "seconds"),
    [
        ("1ms", 0.001),
        ("15min", 900.0),
        ("1D", 86400.0),
        ("1H", 3600.0),
        (3600, 3600.0),
        ("366d", 366 * 86400.0),
        ("100000d", 100_000 * 86400.0),
    ],
)
def test_sane_freqs_are_accepted(freq: Any, seconds: float) -> None:
    assert qa._time.parse_freq(freq) == seconds


def test_cli_refuses_absurd_freq(tmp_path: Path) -> None:
    path = plain_store(tmp_path)
    assert_user_error(
        run("success-rate", "--db", str(path), "--now", NOW_ARG, "--freq", "1ns"),
        "freq='1ns' is 1e-09s wide; a bucket must be from 1ms to 9.22337e+09s (about 292 years)",
    )


def test_uptime_refuses_millions_of_buckets(tmp_path: Path) -> None:
    # Two hours of beats in 1 ms buckets: 7.2 million (worker, bucket) rows.
    path = plain_store(tmp_path, beats_until=T0 + 7200)
    with qa.connect(path, readonly=True) as db:
        with pytest.raises(ValueError, match=r"freq='1ms' gives 7,20\d,\d{3} worker buckets"):
            qa.uptime(db, freq="1ms", now=T0 + 7200)
        small = qa.uptime(db, freq="1s", now=T0 + 7200)  # 7,200 rows: fine
    assert len(small) == 7200


# -- report ---------------------------------------------------------------------------------


def _failing_template() -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## Fleet\nThe fleet."),
        nbformat.v4.new_code_cell('raise RuntimeError("bad \\x1b[31mvalue\\nsecond line")'),
    ]
    return nb


def test_failing_report_cell_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = plain_store(tmp_path)
    out = tmp_path / "report.html"
    monkeypatch.setattr(rpt, "_load_template", _failing_template)
    with pytest.raises(qa.ReportError) as caught:
        rpt.write_report(path, out, now=NOW, progress=False)
    assert (caught.value.section, caught.value.ename) == ("Fleet", "RuntimeError")
    assert caught.value.evalue == "bad \x1b[31mvalue\nsecond line"
    result = run("report", "--db", str(path), "--now", NOW_ARG, "-o", str(out), "--quiet")
    line = assert_user_error(
        result,
        "Error: the report's 'Fleet' section failed: RuntimeError: bad \\x1b[31mvalue second line",
    )
    assert not UNSAFE.search(line)
    assert not out.exists()
