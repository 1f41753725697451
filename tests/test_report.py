"""The HTML report: content, self-containment, parameters, errors and the CLI command."""

from __future__ import annotations

import html
import importlib
import importlib.util
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from click.testing import CliRunner

import qanalytics as qa
from qanalytics import report as rpt
from qanalytics.cli import main

SECTIONS = [
    "1. The fleet now",
    "2. Outages in the window",
    "3. Success rate by task type",
    "4. Latency",
    "5. Throughput and utilisation",
    "6. Backlog over time",
    "7. Capacity",
    "About this report",
]


def _capacity_available() -> bool:
    if importlib.util.find_spec("qanalytics.capacity") is None:
        return False
    return hasattr(importlib.import_module("qanalytics.capacity"), "plan")


class _Links(HTMLParser):
    """Every tag name and every attribute that can make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value:
                self.refs.append((tag, name, value))


def _text(markup: str) -> str:
    """What a reader sees: the body without tags, unescaped, whitespace collapsed."""
    body = markup[markup.index("<body") :]
    body = re.sub(r"<style.*?</style>", " ", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def _links(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def sim_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "sim.db"
    qa.simulate(path, workers=6, duration="6h", progress=False)
    return path


@pytest.fixture(scope="module")
def report_html(sim_path: Path) -> str:
    out = sim_path.parent / "out" / "report.html"
    written = rpt.write_report(sim_path, out, now="latest", progress=False)
    assert written == out
    return out.read_text(encoding="utf-8")


# -- the document -----------------------------------------------------------------------------


def test_report_has_every_section(report_html: str) -> None:
    assert "<title>Task queue report: sim.db</title>" in report_html
    for heading in SECTIONS:
        assert f">{heading}<" in report_html, heading


def test_report_embeds_png_plots(report_html: str) -> None:
    images = [v for tag, name, v in _links(report_html).refs if tag == "img" and name == "src"]
    assert len(images) >= 6
    assert all(src.startswith("data:image/png;base64,") for src in images)


def test_report_shows_no_code(report_html: str) -> None:
    body = report_html[report_html.index("<body") :]
    assert "jp-InputArea-editor" not in body
    assert "jp-CodeMirrorEditor" not in body
    assert "jp-InputPrompt" not in body
    assert "jp-OutputPrompt" not in body
    assert "import qanalytics" not in _text(report_html)
    assert "write_report() injects" not in _text(report_html)
    assert not re.search(r"(In|Out)&nbsp;\[", body)
    # Warnings and other stderr never reach the reader.
    assert "application/vnd.jupyter.stderr" not in body


def test_report_refers_to_nothing_outside(report_html: str) -> None:
    links = _links(report_html)
    assert "script" not in links.tags  # no require.js, MathJax, Mermaid or widgets
    assert "link" not in links.tags
    assert "iframe" not in links.tags
    for tag, name, value in links.refs:
        assert value.startswith(("data:", "#")), (tag, name, value[:80])
    for url in re.findall(r"url\(\s*['\"]?([^'\")]*)", report_html):
        assert url.startswith(("data:", "#")), url[:80]
    assert "@import" not in report_html


def test_report_summary_matches_the_library(sim_path: Path, report_html: str) -> None:
    with qa.connect(sim_path, readonly=True) as db:
        created = len(qa.tasks(db, now="latest"))
        fleet = qa.workers(db, now="latest")
        window = rpt.report_window(db, since="7d", now="latest")
    text = _text(report_html)
    assert f"{created:,} created in the window" in text
    alive = int(fleet["state"].isin(["active", "late"]).sum())
    assert f"{alive} alive" in text
    # The history is shorter than the window: the report starts at its first activity.
    assert "the store's history starts later" in text
    assert f"Window {rpt.fmt_time(window.start)} to {rpt.fmt_time(window.now)}" in text


def test_report_capacity_section(report_html: str) -> None:
    text = _text(report_html)
    section = text[text.index("7. Capacity") : text.index("About this report")]
    if _capacity_available():
        assert "The eight busiest hours of the day" in section
        assert "not available yet" not in section
    else:
        assert "Capacity planning is not available yet" in section


def test_report_from_a_store_with_an_empty_window(sim_path: Path, tmp_path: Path) -> None:
    # Opened from a path, the store clock is today's: the simulated history is long past.
    with qa.connect(sim_path, readonly=True) as db:
        out = rpt.write_report(
            db, tmp_path / "empty.html", since="1h", progress=False, title="Old <copy>"
        )
    markup = out.read_text(encoding="utf-8")
    assert "<title>Old &lt;copy&gt;</title>" in markup
    text = _text(markup)
    assert "Old <copy>" in text
    assert "This report is empty" in text
    assert "pass now='latest' (--now latest)" in text
    for heading in SECTIONS:
        assert f">{heading}<" in markup, heading


# -- arguments and errors -----------------------------------------------------------------------


def test_missing_store_raises_store_not_found(tmp_path: Path) -> None:
    with pytest.raises(qa.StoreNotFound):
        rpt.write_report(tmp_path / "nope.db", tmp_path / "r.html", progress=False)
    assert not (tmp_path / "nope.db").exists()
    assert not (tmp_path / "r.html").exists()


def test_non_store_raises_schema_error(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(qa.SchemaError):
        rpt.write_report(other, tmp_path / "r.html", progress=False)


def test_in_memory_store_is_refused(tmp_path: Path) -> None:
    with qa.connect(":memory:") as db, pytest.raises(ValueError, match="in-memory"):
        rpt.write_report(db, tmp_path / "r.html", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"since": "soon"}, ValueError, "since"),
        ({"now": "yesterday-ish"}, ValueError, "now"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"title": 3}, TypeError, "title"),
    ],
)
def test_bad_arguments(
    sim_path: Path, tmp_path: Path, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        rpt.write_report(sim_path, tmp_path / "r.html", **kwargs)


def test_output_path_that_is_a_directory(sim_path: Path, tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError):
        rpt.write_report(sim_path, tmp_path, progress=False)


# -- the template and its parameters ---------------------------------------------------------


def test_template_has_a_parameters_cell() -> None:
    nb = rpt._load_template()
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    nbformat.validate(nb)


def test_parameters_are_injected_after_the_tagged_cell() -> None:
    nb = rpt._load_template()
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    params = {"db_path": "/x/it's.db", "since": None, "now": 1.5, "title": "T"}
    rpt._inject_parameters(nb, params)
    rpt._inject_parameters(nb, params)  # injecting twice replaces, never duplicates
    injected = [i for i, c in enumerate(nb.cells) if rpt.INJECTED_TAG in c.metadata.get("tags", [])]
    assert injected == [index + 1]
    namespace: dict[str, Any] = {}
    exec(nb.cells[index + 1].source, namespace)
    assert {k: namespace[k] for k in params} == params
    nbformat.validate(nb)


# -- the toolbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.44, "0.4 s"),
        (27.2, "27 s"),
        (360, "6 min"),
        (3600, "1 h"),
        (32 * 3600 + 26 * 60, "32 h 26 min"),
        (3 * 86400 + 3600, "3 d 1 h"),
        (float("nan"), ""),
        (None, ""),
    ],
)
def test_fmt_duration(seconds: Any, text: str) -> None:
    assert rpt.fmt_duration(seconds) == text


def test_fmt_helpers() -> None:
    assert rpt.fmt_freq("1h") == "hour"
    assert rpt.fmt_freq("3h") == "3 hours"
    assert rpt.fmt_freq("15min") == "15 min"
    assert rpt.fmt_freq("1d") == "day"
    assert rpt.fmt_time(0.0) == "1970-01-01 00:00"
    assert rpt.fmt_time(pd.Timestamp("2026-01-05T15:34:12Z"), seconds=True) == (
        "2026-01-05 15:34:12"
    )
    assert rpt.fmt_time(pd.NaT) == ""
    assert rpt.fmt_count(43985) == "43,985"
    assert rpt.fmt_rate(0.99431) == "99.43 %"
    assert rpt.fmt_rate(None) == ""


def test_table_is_small_and_escaped() -> None:
    frame = pd.DataFrame({"error": [f"<b>{i}</b>" for i in range(15)]})
    markup = rpt.table(frame, max_rows=10)._repr_html_()
    assert markup.count("<tr") == 11  # header and ten rows
    assert "and 5 more (of 15)" in markup
    assert "<b>" not in markup
    assert "None." in str(rpt.table(frame.head(0)))
    assert "&lt;x&gt;" in str(rpt.callout("<x>", warning=True))


def test_report_window(sim_path: Path) -> None:
    with qa.connect(sim_path, readonly=True) as db:
        latest = db.latest_event_at()
        assert latest is not None
        window = rpt.report_window(db, since="7d", now="latest")
        assert window.now == latest
        assert window.since == pytest.approx(latest - 7 * 86400)
        assert window.since < window.start < window.now  # clipped to the first activity
        assert not window.empty
        assert (window.freq, window.depth_freq) == ("1h", "5min")
        old = rpt.report_window(db, since="1h", now=latest + 86400)
        assert old.empty
        assert "now='latest'" in old.notice()
        assert old.start == old.since


def test_window_success_matches_success_rate(sim_path: Path) -> None:
    with qa.connect(sim_path, readonly=True) as db:
        window = rpt.report_window(db, since=None, now="latest")
        overall = rpt.window_success(db, window, by=None)
        by_type = rpt.window_success(db, window)
        hourly = qa.success_rate(db, freq="1h", since=window.start, now=window.now)
    assert len(overall) == 1
    assert overall["total"].iloc[0] == hourly["total"].sum() == by_type["total"].sum()
    assert overall["completed"].iloc[0] == hourly["completed"].sum()
    assert list(by_type["rate"]) == sorted(by_type["rate"])


# -- the command line ----------------------------------------------------------------------------


def test_cli_report(sim_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "cli.html"
    result = CliRunner().invoke(
        main, ["report", "--db", str(sim_path), "--now", "latest", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"Wrote {out}." in result.stdout
    assert "cell" in result.stderr  # the progress bar
    text = out.read_text(encoding="utf-8")
    assert ">1. The fleet now<" in text
    assert "data:image/png;base64," in text


def test_cli_report_reads_db_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["report", "-o", str(tmp_path / "r.html")],
        env={"QANALYTICS_DB": str(tmp_path / "missing.db")},
    )
    assert result.exit_code == 2
    assert "missing.db" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--db", "{tmp}/missing.db"], "no store at"),
        (["--db", "{tmp}/other.db"], "not a qanalytics"),
        (["--db", "{sim}", "--since", "soon"], "since"),
        (["--db", "{sim}", "--now", "whenever"], "now"),
        ([], "no queue store given"),
    ],
)
def test_cli_report_errors(
    sim_path: Path, tmp_path: Path, args: list[str], message: str, monkeypatch: Any
) -> None:
    monkeypatch.delenv("QANALYTICS_DB", raising=False)
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("CREATE TABLE t (x)")
    argv = [a.format(tmp=tmp_path, sim=sim_path) for a in args]
    result = CliRunner().invoke(main, ["report", *argv, "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


def test_report_and_cli_on_every_backend(
    store_target: str, tmp_path: Path, clock: qa.FakeClock
) -> None:
    # A server URL must reach the template notebook as it is (never as a file path), and
    # the title must not carry credentials.
    with qa.connect(store_target, clock=clock) as db:
        qa.simulate(db, workers=4, duration="2h", progress=False)
    out = tmp_path / "r.html"
    rpt.write_report(store_target, out, now="latest", progress=False)
    text = out.read_text(encoding="utf-8")
    assert "data:image/png;base64" in text and "Traceback" not in text
    assert "postgres@" not in text
    result = CliRunner().invoke(main, ["stale", "--db", store_target, "--now", "latest"])
    assert result.exit_code == 1 and "worker-" in result.output
