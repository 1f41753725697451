"""The HTML report: a template notebook, executed with parameters and exported as HTML.

:func:`write_report` copies the template (``templates/report.ipynb``), injects a cell of
parameters after the cell tagged ``parameters`` (the papermill convention), runs it in a
kernel of the current Python environment inside a temporary working folder, and exports
the result with nbconvert as one self-contained HTML file: no code, no prompts, plots
embedded as PNG, CSS inlined, no scripts and nothing fetched from the network.

The rest of this module is the template's toolbox (the report window, formatting, small
tables), kept here so that it is typed, linted and tested like the library.
"""

from __future__ import annotations

import html
import math
import os
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._progress import progress_class
from .._text import human_duration
from .._time import parse_duration
from ..capacity import understaffed
from ..errors import ReportError
from ..read.common import resolve_window
from ..read.frames import tasks, workers
from ..read.trends import success_rate
from ..store import Store, connect

__all__ = [
    "ReportWindow",
    "Table",
    "callout",
    "capacity_short",
    "fmt_alive",
    "fmt_count",
    "fmt_duration",
    "fmt_freq",
    "fmt_rate",
    "fmt_time",
    "layout_notice",
    "missing_data",
    "report_window",
    "summary_table",
    "table",
    "window_success",
    "write_report",
]

#: The tag of the template cell whose values :func:`write_report` overrides.
PARAMETERS_TAG = "parameters"
#: The tag of the cell :func:`write_report` injects after it.
INJECTED_TAG = "injected-parameters"
#: Seconds one template cell may run before the report is abandoned.
CELL_TIMEOUT_S = 600
_TEMPLATE = "report.ipynb"
_KERNEL_NAME = "qanalytics-current-env"
_HTML_TEMPLATE = "qanalytics-report.html.j2"
#: The environment variable that hands the kernel the store's real target when it differs
#: from what the report shows (a server URL with a password): the environment is not
#: part of the notebook, so it is never rendered or saved.
TARGET_ENV = "QANALYTICS_REPORT_TARGET"

# The "lab" template, minus every script it would load from a CDN (require.js, MathJax,
# Mermaid, widgets): the report has no code, no maths and no widgets, and must open
# offline. Its CSS is inlined by the base template; a few rules after it make it read as
# a document (the lab theme right-aligns every table cell, which suits numbers only).
_HTML_TEMPLATE_TEXT = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
body.jp-Notebook { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; }
.jp-Cell { padding-left: 0; padding-right: 0; }
.jp-OutputPrompt, .jp-InputPrompt { display: none; }
.jp-RenderedHTMLCommon { font-size: 15px; line-height: 1.55; }
body.jp-Notebook .jp-RenderedHTMLCommon table { font-size: 13px; margin: 6px 0 14px 0; }
body.jp-Notebook .jp-RenderedHTMLCommon td,
body.jp-Notebook .jp-RenderedHTMLCommon th { padding: 3px 10px; text-align: left; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
.qa-callout { border-left: 4px solid #0072B2; background: #eef5fb; padding: 8px 14px;
  margin: 8px 0; }
.qa-callout.qa-warning { border-left-color: #D55E00; background: #fdf0e8; }
.qa-summary td:first-child { font-weight: 600; white-space: nowrap; }
.qa-muted { color: #666; font-size: 13px; }
</style>
{%- endblock html_head_css -%}
"""


# -- writing the report ---------------------------------------------------------------------


def _target_of(store: Store) -> tuple[str, str]:
    """What the kernel opens, and what the report may show of it.

    A server URL is opened as given but shown without its password; a file becomes
    absolute, since the template notebook runs in a temporary folder.
    """
    if "://" in store.path:
        return str(getattr(store, "url", store.path)), store.path
    path = str(Path(store.path).resolve())
    return path, path


def _display_name(target: str) -> str:
    if "://" in target:  # the database name, never the credentials
        return urllib.parse.urlsplit(target).path.rsplit("/", 1)[-1] or "database"
    return Path(target).name


def write_report(
    db: Store | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    since: Any = "7d",
    now: Any = None,
    progress: bool = True,
    title: str | None = None,
) -> Path:
    """Write the capacity-planning report on a queue store as one self-contained HTML file.

    The template notebook is executed in a fresh kernel of this Python environment
    (in a temporary folder), then exported without code: the fleet now and its stale
    workers, outages in the window, success rate by task type with intervals, latency,
    throughput and utilisation, the backlog over time, and the capacity section.

    Parameters
    ----------
    db : Store, str or os.PathLike
        A store backed by a file, or the path of one (opened read-only, so never created
        or changed).
    path : str or os.PathLike
        Where to write the HTML. Missing parent folders are created; an existing file is
        replaced (atomically).
    since : time-like, duration or None, default "7d"
        Start of the window (a duration reaches back from `now`); None for all history.
        The plots start at the first activity in the window, not before.
    now : time-like, "latest" or None
        The moment the report is written as of: None for the store clock (the current
        time for a store opened from a path), ``"latest"`` for the store's latest recorded
        event, which is what a historical file (a copy, ``data/sample.db``) needs.
        Resolved to epoch seconds before the notebook runs.
    progress : bool, default True
        Show a progress bar over the executed cells on stderr.
    title : str, optional
        The report's heading; defaults to "Task queue report: <file name>".

    Returns
    -------
    pathlib.Path
        The HTML file written.

    Raises
    ------
    StoreNotFound
        If `db` is a path with no file.
    SchemaError
        If `db` is not a qanalytics store.
    ValueError
        If `db` is an in-memory store (the kernel cannot see it), or `since` or `now`
        is not a time.
    TypeError
        If an argument has the wrong type.
    ReportError
        If a template cell fails or times out; the message names the report section and
        the cell's exception (class and message), and no file is written.

    Examples
    --------
    >>> import qanalytics as qa
    >>> qa.write_report("data/sample.db", "report.html", now="latest")  # doctest: +SKIP
    PosixPath('report.html')
    """
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, not {type(title).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a directory, not a file to write")
    if isinstance(db, Store):
        if db.in_memory:
            raise ValueError(
                "db: an in-memory store cannot be reported on (the report runs in another "
                "process); write it to a file first"
            )
        window = report_window(db, since=since, now=now)
        target, db_path = _target_of(db)
    elif isinstance(db, (str, os.PathLike)):
        with connect(db, readonly=True) as store:
            window = report_window(store, since=since, now=now)
            target, db_path = _target_of(store)
    else:
        raise TypeError(f"db must be a Store or a path, not {type(db).__name__}")
    parameters = {
        "db_path": db_path,
        "since": window.since,
        "now": window.now,
        "title": title or f"Task queue report: {_display_name(db_path)}",
    }
    if progress and window.empty:
        print(f"Note: {window.notice()}", file=sys.stderr)
    nb = _load_template()
    _inject_parameters(nb, parameters)
    env = {k: v for k, v in os.environ.items() if k != TARGET_ENV}
    if target != db_path:
        env[TARGET_ENV] = target
    with tempfile.TemporaryDirectory(prefix="qanalytics-report-") as workdir:
        _execute(nb, workdir, progress=progress, env=env)
    document = _export_html(nb, str(parameters["title"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(document, encoding="utf-8")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _load_template() -> Any:
    import nbformat

    text = resources.files("qanalytics").joinpath("templates", _TEMPLATE).read_text("utf-8")
    return nbformat.reads(text, as_version=4)


def _inject_parameters(nb: Any, parameters: Mapping[str, Any]) -> None:
    """Insert a cell assigning `parameters` after the cell tagged ``parameters``."""
    import nbformat

    lines = ["# Parameters injected by qanalytics.write_report"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    tagged = [
        i for i, c in enumerate(nb.cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    nb.cells.insert(tagged[-1] + 1 if tagged else 0, cell)


def _section_names(cells: list[Any]) -> dict[int, str]:
    """For each cell index, the title of the last ``#``/``##`` heading above it."""
    names: dict[int, str] = {}
    current = "summary"
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown":
            for line in str(cell.source).splitlines():
                if line.startswith(("# ", "## ")):
                    current = line.lstrip("#").strip()
                    break
        names[i] = current
    return names


def _kernel_manager_class() -> type:
    """A kernel manager that runs the kernel with this interpreter.

    A ``python3`` kernelspec installed elsewhere on the machine could point at another
    Python without qanalytics; the report always runs where it was asked for.
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == _KERNEL_NAME:
                return KernelSpec(
                    resource_dir=ipykernel.kernelspec.RESOURCES,
                    **ipykernel.kernelspec.get_kernel_dict(),
                )
            return super().get_kernel_spec(kernel_name)

    class CurrentEnvKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return CurrentEnvSpecs(data_dir=self.data_dir)

    return CurrentEnvKernelManager


def _execute(nb: Any, workdir: str, *, progress: bool, env: Mapping[str, str]) -> None:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    tqdm = progress_class()

    sections = _section_names(nb.cells)
    code = sum(1 for c in nb.cells if c.cell_type == "code")
    bar = tqdm(
        total=code, desc="report", unit="cell", file=sys.stderr, disable=not progress, leave=True
    )

    current = {"section": ""}

    def started(cell: Any, cell_index: int, **_: Any) -> None:
        current["section"] = sections.get(cell_index, "")
        bar.set_postfix_str(current["section"], refresh=True)

    def executed(cell: Any, cell_index: int, **_: Any) -> None:
        bar.update(1)

    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=_KERNEL_NAME,
        kernel_manager_class=_kernel_manager_class(),
        resources={"metadata": {"path": workdir}},
        # The kernel's own log (a warning about its local TCP transport) is not progress.
        extra_arguments=["--IPKernelApp.log_level=ERROR"],
        on_cell_start=started,
        on_cell_executed=executed,
    )
    try:
        client.execute(cwd=workdir, env=dict(env))
    except CellExecutionError as exc:
        # The exception's text is the cell's coloured traceback; keep the name and message.
        section = current["section"]
        evalue = " ".join(str(exc.evalue).split())
        raise ReportError(
            f"the report's {section!r} section failed: {exc.ename}: {evalue}",
            section=section,
            ename=str(exc.ename),
            evalue=str(exc.evalue),
        ) from None
    except CellTimeoutError:
        section = current["section"]
        raise ReportError(
            f"the report's {section!r} section ran longer than {CELL_TIMEOUT_S}s",
            section=section,
            ename="CellTimeoutError",
        ) from None
    finally:
        bar.close()


def _strip_for_export(nb: Any) -> list[str]:
    """Drop what a reader should not see; return any stderr the kernel wrote.

    Code cells without visible output would leave empty boxes, and stderr (warnings)
    is not report content; it is handed back so it can be shown, not swallowed.
    """
    messages: list[str] = []
    kept = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            outputs = []
            for output in cell.get("outputs", []):
                if output.get("output_type") == "stream" and output.get("name") == "stderr":
                    messages.append(str(output.get("text", "")).rstrip())
                else:
                    outputs.append(output)
            cell["outputs"] = outputs
            if not outputs:
                continue
        kept.append(cell)
    nb.cells = kept
    return [m for m in messages if m]


def _export_html(nb: Any, title: str) -> str:
    import jinja2
    from nbconvert import HTMLExporter

    for message in _strip_for_export(nb):
        print(message, file=sys.stderr)
    nb.metadata["title"] = title
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({_HTML_TEMPLATE: _HTML_TEMPLATE_TEXT})],
        template_file=_HTML_TEMPLATE,
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        theme="light",
    )
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


# -- the template's toolbox -------------------------------------------------------------------


@dataclass(frozen=True)
class ReportWindow:
    """The period a report covers, and the bucket widths its plots use.

    Attributes
    ----------
    since : float or None
        The requested start (epoch seconds); None for all history.
    start : float
        Where the plots start: `since`, or the first activity after it when later.
    now : float
        The moment the report is written as of (epoch seconds).
    latest_event : float or None
        The store's latest recorded event; None for an empty store.
    freq : str
        Bucket width for rates and counts over time.
    depth_freq : str
        Bucket width for the backlog over time.
    """

    since: float | None
    start: float
    now: float
    latest_event: float | None
    freq: str
    depth_freq: str

    @property
    def span_s(self) -> float:
        """Seconds from `start` to `now`."""
        return self.now - self.start

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded in the window."""
        return self.latest_event is None or (
            self.since is not None and self.latest_event < self.since
        )

    def notice(self) -> str:
        """Why the window is empty, and what to do about it."""
        if self.latest_event is None:
            return "the store holds no events yet."
        return (
            f"nothing happened between {fmt_time(self.since)} and {fmt_time(self.now)}: "
            f"the store's last event was at {fmt_time(self.latest_event)}. To read a "
            "historical file as of its last event, pass now='latest' (--now latest)."
        )


def _freqs(span_s: float) -> tuple[str, str]:
    # Enough buckets to see the daily cycle, few enough that lines stay readable.
    if span_s <= 3 * 86400:
        return "1h", "5min"
    if span_s <= 10 * 86400:
        return "3h", "15min"
    if span_s <= 45 * 86400:
        return "12h", "1h"
    return "1d", "6h"


def report_window(db: Store, *, since: Any = "7d", now: Any = None) -> ReportWindow:
    """Resolve the report's window on `db`.

    Parameters
    ----------
    db : Store
    since : time-like, duration or None, default "7d"
    now : time-like, "latest" or None

    Returns
    -------
    ReportWindow
    """
    lo, _hi, at = resolve_window(db, since, None, now)
    latest = db.latest_event_at()
    first: list[float] = []
    created = tasks(db, since=lo, now=at)["created_at"]
    if len(created):
        first.append(created.min().timestamp())
    registered = workers(db, now=at, include_removed=True)["registered_at"].dropna()
    if len(registered):
        first.append(registered.min().timestamp())
    start = min(first) if first else (at if lo is None else lo)
    if lo is not None:
        start = max(start, lo)
    start = min(start, at)
    freq, depth_freq = _freqs(max(at - start, 1.0))
    return ReportWindow(lo, start, at, latest, freq, depth_freq)


def fmt_time(value: Any, *, seconds: bool = False) -> str:
    """A moment as ``YYYY-MM-DD HH:MM`` UTC (with seconds when asked); "" when missing.

    Parameters
    ----------
    value : float, datetime, pandas.Timestamp or None
        Epoch seconds or a timestamp.
    seconds : bool, default False

    Returns
    -------
    str
    """
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)):
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    else:
        moment = pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def fmt_duration(seconds: Any) -> str:
    """Seconds as words a reader takes in at a glance: "0.4 s", "45 s", "6 min", "8 h 25 min".

    Parameters
    ----------
    seconds : float or None

    Returns
    -------
    str
        "" when missing.
    """
    if seconds is None or pd.isna(seconds):
        return ""
    return human_duration(float(seconds))


def fmt_freq(freq: str) -> str:
    """A bucket width as words: "hour", "3 hours", "5 min", "day".

    Parameters
    ----------
    freq : str
        A duration such as ``"1h"``, ``"15min"``, ``"1d"``.

    Returns
    -------
    str
    """
    seconds = round(parse_duration(freq, name="freq", allow_zero=False))
    for size, one, many in ((86400, "day", "{} days"), (3600, "hour", "{} hours")):
        if seconds % size == 0:
            count = seconds // size
            return one if count == 1 else many.format(count)
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def capacity_short(plan: pd.DataFrame) -> pd.Series:
    """Which hours of a capacity plan had fewer workers alive than recommended.

    The report's name for :func:`qanalytics.capacity.understaffed`, the one definition
    notebooks use too: the mean alive is compared unrounded, and the report shows it with
    :func:`fmt_alive` so that a short hour reads short ("25.96 alive / 26 recommended").

    Parameters
    ----------
    plan : DataFrame
        From :func:`qanalytics.capacity.plan` by hour of day: ``recommended_workers`` and
        ``workers_alive``.

    Returns
    -------
    Series of bool
        True where the mean alive is below the recommendation; False where either is
        missing.

    Raises
    ------
    ValueError
        If `plan` lacks one of the two columns.
    """
    return understaffed(plan)


def fmt_alive(value: Any, recommended: Any = None) -> str:
    """A mean number of workers alive, with two decimals when one would mislead.

    Parameters
    ----------
    value : float
        The time-averaged workers alive.
    recommended : int, optional
        The recommendation it is compared with: when one decimal would round the mean up
        to it (25.96 shown as "26.0" beside 26), two decimals are shown.

    Returns
    -------
    str
        ``"25.9"``, ``"25.96"``; ``""`` when missing.
    """
    if value is None or pd.isna(value):
        return ""
    text = f"{float(value):.1f}"
    if (
        recommended is not None
        and not pd.isna(recommended)
        and float(value) < float(recommended) <= float(text)
    ):
        return f"{float(value):.2f}"
    return text


def fmt_count(value: Any) -> str:
    """An integer with thousands separators ("43,985"); "" when missing.

    Parameters
    ----------
    value : int or None

    Returns
    -------
    str
    """
    return "" if value is None or pd.isna(value) else f"{int(value):,}"


def fmt_rate(value: Any, digits: int = 2) -> str:
    """A fraction as a percentage ("99.43 %"); "" when missing.

    Parameters
    ----------
    value : float or None
    digits : int, default 2

    Returns
    -------
    str
    """
    return "" if value is None or pd.isna(value) else f"{100 * float(value):.{digits}f} %"


class Table:
    """HTML that notebooks display as is (it has ``_repr_html_``).

    Parameters
    ----------
    markup : str
        The HTML.
    """

    def __init__(self, markup: str) -> None:
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __str__(self) -> str:
        return self.markup


def table(frame: pd.DataFrame, *, max_rows: int = 10, empty: str = "None.") -> Table:
    """A small HTML table of `frame`, without its index; longer frames are cut.

    Parameters
    ----------
    frame : pandas.DataFrame
        Already formatted for reading (strings or numbers).
    max_rows : int, default 10
        Show at most this many rows, and say how many more there were.
    empty : str, default "None."
        What to show instead of an empty table.

    Returns
    -------
    Table
    """
    if frame.empty:
        return Table(f'<p class="qa-muted">{html.escape(empty)}</p>')
    markup = frame.head(max_rows).to_html(index=False, border=0, escape=True, na_rep="")
    if len(frame) > max_rows:
        more = len(frame) - max_rows
        markup += f'<p class="qa-muted">… and {more:,} more (of {len(frame):,}).</p>'
    return Table(markup)


_MISSING_TEXT = {
    "heartbeat_history": "heartbeat history (only each worker's last heartbeat)",
    "attempt_history": "per-attempt rows (only each task's final state)",
}


def missing_data(db: Store, *capabilities: str) -> str | None:
    """Why a report section cannot be shown on `db`, or None when it has the data.

    Parameters
    ----------
    db : Store
    *capabilities : str
        What the section needs (see :attr:`qanalytics.Store.capabilities`).

    Returns
    -------
    str or None
        A sentence naming what the store's layout does not record.
    """
    lacking = [c for c in capabilities if c not in db.capabilities]
    if not lacking:
        return None
    what = " and no ".join(_MISSING_TEXT.get(c, c) for c in lacking)
    return f"Not available: this {db.layout} queue database records no {what}."


def layout_notice(db: Store) -> str | None:
    """A note for the top of a report on a store that is not a qanalytics store.

    Parameters
    ----------
    db : Store

    Returns
    -------
    str or None
        None for a native store.
    """
    if db.layout == "native":
        return None
    return (
        f"This is a {db.layout} queue database, read as it is. It keeps each worker's last "
        "heartbeat and each task's final state, not their history, so outages, uptime, "
        "utilisation and capacity planning are not shown; wait times count only tasks "
        "claimed once, and a retried task counts as queued until its latest claim."
    )


def callout(text: str, *, warning: bool = False) -> Table:
    """A highlighted paragraph (HTML-escaped `text`).

    Parameters
    ----------
    text : str
    warning : bool, default False
        Draw it as a warning rather than a note.

    Returns
    -------
    Table
    """
    kind = "qa-callout qa-warning" if warning else "qa-callout"
    return Table(f'<div class="{kind}">{html.escape(text)}</div>')


def summary_table(rows: Iterable[tuple[str, str]]) -> Table:
    """A two-column table of labels and already formatted values.

    Parameters
    ----------
    rows : iterable of (str, str)

    Returns
    -------
    Table
    """
    body = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
        for label, value in rows
    )
    return Table(f'<table class="qa-summary" border="0"><tbody>{body}</tbody></table>')


def window_success(
    db: Store, window: ReportWindow, *, by: str | None = "type", confidence: float = 0.95
) -> pd.DataFrame:
    """Final task outcomes over the whole window, with Wilson intervals.

    Parameters
    ----------
    db : Store
    window : ReportWindow
    by : {"type", "worker_id"} or None, default "type"
        One row per group, or one row for all tasks.
    confidence : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        The `by` column (category), ``completed``, ``failed``, ``total`` (int64),
        ``rate``, ``ci_low``, ``ci_high`` (float); worst rate first. No rows when nothing
        finished in the window.
    """
    # Buckets are aligned to the epoch, so one bucket wider than `now` holds the window.
    width = float(math.floor(window.now) + 1)
    frame = success_rate(
        db, freq=width, by=by, since=window.start, now=window.now, confidence=confidence
    )
    frame = frame.drop(columns="bucket").sort_values(["rate", "total"], ascending=[True, False])
    return frame.reset_index(drop=True)
