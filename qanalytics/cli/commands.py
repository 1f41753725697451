"""The ``qanalytics`` command: the read side for the engineer on call, and a few chores.

Every command takes ``--db PATH`` (or the ``QANALYTICS_DB`` environment variable) and
calls one library function. Read commands open the store read-only and take a hidden
``--now`` to answer as of a past moment. Tabular output is ``--format table`` (aligned
text, timestamps as ``YYYY-MM-DD HH:MM:SS`` UTC), ``json`` (a list of records, ISO 8601
timestamps) or ``csv``.

Maintenance commands (``prune``, ``vacuum``, ``checkpoint``) open the store writable
and say what they did; ``check`` and ``stats`` only read.

Exit status: 0 on success; 1 from ``stale`` when a worker is stale and from ``check``
when it finds a problem; 2 for user errors (no such file, not a queue store, a bad
duration or argument), reported as one ``Error: ...`` line on stderr, never a traceback.

Tables show durations (``*_s`` columns, ages) as text such as ``45 s`` or ``32 h 26 min``,
line columns up by display width (East Asian wide characters take two columns) and cut a
cell wider than :data:`~qanalytics.cli.output.MAX_CELL_WIDTH` columns with ``…``; JSON and
CSV keep whole values and seconds. A read command asked about "now" warns on stderr when
the store's last event is more than :data:`OLD_STORE_AFTER_S` ago (a copy, the sample):
``--now latest`` answers as of that event instead. ``workers``, ``stale`` and ``metrics``
take ``--watch INTERVAL`` to redraw until Ctrl-C (exit status 0).

Text from the store is untrusted: in tables and messages, control characters (C0, DEL,
C1), line and paragraph separators and bidirectional controls are shown as escapes
(``\\n``, ``\\x1b``, ``\\u202e``), so a worker id cannot move the cursor, recolour the
terminal or reorder a line. In CSV, a text cell starting with ``=``, ``+``, ``-``, ``@``,
tab or carriage return gets a leading ``'`` so that spreadsheets do not run it as a
formula; numbers are written as numbers, so ``-1.5`` stays ``-1.5``; booleans are
``true``/``false`` and a list of ids is joined by ``;`` (``10770;10771``). A capability value
nested more than :data:`~qanalytics.registry.MAX_JSON_DEPTH` levels deep (possible only
in a store written by other means) is shown as a placeholder.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._lazy import lazy_function, lazy_module
from .._version import __version__
from ..errors import QAnalyticsError
from .live import watch
from .output import (
    COLUMNS_KEY,
    NOTES_KEY,
    emit_frame,
    emit_result,
    epoch_text,
    flatten,
    human_duration,
    metric_text,
    render_table,
)

# The library (and pandas) load when a command runs, not for --help or a usage error.
if TYPE_CHECKING:
    import pandas as pd

    from .. import report, simulation, state, upkeep
    from .._time import parse_duration
    from ..export import plain, prometheus_text, safe_text
    from ..read import frames, liveness, snapshot, trends
    from ..read.common import resolve_window
    from ..record.celery import CeleryRecorder, redact_url
    from ..store import Store, connect
    from ..store.postgres import is_postgres_url, redact
    from ..write import tasks
else:
    pd = lazy_module("pandas")
    report = lazy_module("qanalytics.report")
    simulation = lazy_module("qanalytics.simulation")
    state = lazy_module("qanalytics.state")
    upkeep = lazy_module("qanalytics.upkeep")
    parse_duration = lazy_function("qanalytics._time", "parse_duration")
    plain = lazy_function("qanalytics.export", "plain")
    prometheus_text = lazy_function("qanalytics.export", "prometheus_text")
    safe_text = lazy_function("qanalytics.export", "safe_text")
    frames = lazy_module("qanalytics.read.frames")
    liveness = lazy_module("qanalytics.read.liveness")
    snapshot = lazy_module("qanalytics.read.snapshot")
    trends = lazy_module("qanalytics.read.trends")
    resolve_window = lazy_function("qanalytics.read.common", "resolve_window")
    connect = lazy_function("qanalytics.store", "connect")
    CeleryRecorder = lazy_function("qanalytics.record.celery", "CeleryRecorder")
    redact_url = lazy_function("qanalytics.record.celery", "redact_url")
    is_postgres_url = lazy_function("qanalytics.store.postgres", "is_postgres_url")
    redact = lazy_function("qanalytics.store.postgres", "redact")
    tasks = lazy_module("qanalytics.write.tasks")

__all__ = [
    "DEFAULT_SINCE",
    "EXIT_PROBLEMS",
    "EXIT_STALE",
    "EXIT_USER_ERROR",
    "CLIError",
    "main",
]

#: Exit status for user errors; click uses the same for usage errors.
EXIT_USER_ERROR = 2
#: Exit status of ``qanalytics stale`` when at least one worker is stale.
EXIT_STALE = 1
#: Exit status of ``qanalytics check`` when the store has a problem.
EXIT_PROBLEMS = 1
#: The window every command that looks back (outages, failed, success-rate, worker, report)
#: opens by default, so that they tell one story: a flapping worker shows in all of them.
DEFAULT_SINCE = "7d"
#: A read command warns when the store's last event is older than this (seconds).
OLD_STORE_AFTER_S = 86400.0

#: Errors that mean the user asked for something impossible, not that qanalytics broke.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    QAnalyticsError,
    ValueError,
    TypeError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

F = TypeVar("F", bound=Callable[..., Any])


class CLIError(click.ClickException):
    """A user error: printed as one ``Error: ...`` line on stderr, exit status 2."""

    exit_code = EXIT_USER_ERROR


def _one_line(exc: BaseException) -> str:
    text = safe_text(" ".join(str(exc).split()))
    return text or type(exc).__name__


class _Group(click.Group):
    """A group that turns library and argument errors into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except click.exceptions.Exit:
            _flush_warnings(ctx)  # the command ran: a stale exit status is a result too
            raise
        except click.UsageError as exc:
            # One "Error: ..." line without the usage banner; the message may quote the
            # offending argument, so it is escaped like any other text.
            text = safe_text(" ".join(exc.format_message().split()))
            raise CLIError(text) from None
        except _USER_ERRORS as exc:
            raise CLIError(_one_line(exc)) from exc
        _flush_warnings(ctx)
        return result


_WARNINGS = "qanalytics.warnings"


def _flush_warnings(ctx: click.Context) -> None:
    """Print the warnings a command collected, on stderr after its output.

    A command that fails prints only its one ``Error:`` line, never warnings.
    """
    for text in dict.fromkeys(ctx.meta.pop(NOTES_KEY, [])):
        click.echo(f"Note: {text}", err=True)
    for text in dict.fromkeys(ctx.meta.pop(_WARNINGS, [])):
        click.echo(f"Warning: {text}", err=True)


class _Duration(click.ParamType):
    """Seconds or a duration string such as ``90s``, ``5min``, ``24h``, ``7d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        option = param.opts[0] if param is not None and param.opts else "duration"
        _refuse_negative(value, option)
        try:
            return parse_duration(value, name=option)
        except (ValueError, TypeError) as exc:
            raise CLIError(_one_line(exc)) from None


def _refuse_negative(value: Any, option: str) -> None:
    """A signed duration (``-5m``, ``-1``) gets "must be positive", not "not a duration"."""
    text = str(value).strip()
    if not text.startswith("-"):
        return
    try:
        parse_duration(text[1:], name=option)
    except (ValueError, TypeError):
        return
    raise CLIError(
        f"{option}={safe_text(text)!r} must be positive: a duration is written without a "
        f"sign, e.g. {safe_text(text[1:])!r}"
    )


class _Time(click.ParamType):
    """A timestamp (ISO 8601, epoch seconds) or a duration back from now (``24h``)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        option = param.opts[0] if param is not None and param.opts else "time"
        try:
            float(value)
        except ValueError:  # not epoch seconds: a signed duration is refused here
            _refuse_negative(value, option)
        return value


DURATION = _Duration()
TIME = _Time()

_FORMATS = ("table", "json", "csv")
_TIME_HELP = "A timestamp (ISO 8601 or epoch seconds) or a duration back from now ('24h')."


def _db_option(f: F) -> F:
    return click.option(
        "--db",
        "db_path",
        metavar="PATH",
        envvar="QANALYTICS_DB",
        show_envvar=True,
        help="The queue store (a SQLite file).",
    )(f)


def _set_columns(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[COLUMNS_KEY] = [c.strip() for c in value.split(",") if c.strip()]


def _columns_option(f: F) -> F:
    return click.option(
        "--columns",
        metavar="A,B,...",
        default=None,
        expose_value=False,
        callback=_set_columns,
        help="The columns to show, in this order (e.g. worker_id,state,since_heartbeat). "
        "Without it a table fits the terminal's width, leaving columns out and saying so.",
    )(f)


def _now_option(f: F) -> F:
    return click.option(
        "--now",
        default=None,
        help="Answer as of this moment (ISO 8601, epoch seconds, or 'latest' for the "
        "store's last recorded event) instead of the clock.",
    )(f)


def _format_option(choices: Iterable[str] = _FORMATS) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(list(choices)),
            default="table",
            show_default=True,
            help="Output format.",
        )(f)

    return decorate


def _time_arg(value: str | None) -> Any:
    """A command-line time: epoch seconds when numeric, else the string for the library."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _require_path(db_path: str | None) -> str:
    if db_path is None:
        raise CLIError("no queue store given: pass --db PATH or set QANALYTICS_DB")
    return db_path


_NOT_ASKED = object()


def _open(db_path: str | None, *, readonly: bool = True, now: Any = _NOT_ASKED) -> Store:
    """Open the store; a command that asks about "now" passes its ``--now``, to be warned
    about an old file (writers too: ``prune --keep 1d`` on a copy would roll up all of it).
    """
    path = _require_path(db_path)
    if not readonly:
        # A writer would create a missing file; check it is an existing store first.
        connect(path, readonly=True).close()
    with warnings.catch_warnings():
        # The command says it once itself, after its output, with the --now to use.
        warnings.filterwarnings("ignore", message=".* is opened for writing, but its last event")
        db = connect(path, readonly=readonly)
    if now is None:
        try:
            _warn_if_old(db)
        except BaseException:
            db.close()
            raise
    return db


def _warn_if_old(db: Store) -> None:
    """Warn on stderr, after the output, when the store's last event is long past."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.meta.get("qanalytics.checked_age"):
        return
    ctx.meta["qanalytics.checked_age"] = True  # once per run, also under --watch
    latest = db.latest_event_at()
    if latest is None or db.now() - latest <= OLD_STORE_AFTER_S:
        return
    ctx.meta.setdefault(_WARNINGS, []).append(
        f"the store's last event was at {epoch_text(latest)} UTC, "
        f"{human_duration(db.now() - latest)} ago; pass --now latest to answer as of then."
    )


def _watch_option(f: F) -> F:
    return click.option(
        "--watch",
        "watch_every",
        type=DURATION,
        default=None,
        metavar="INTERVAL",
        help="Redraw every INTERVAL ('2s', '1min') until Ctrl-C.",
    )(f)


def _watched(ctx: click.Context, every: float | None, title: str, render: Callable[[], Any]) -> Any:
    """Run `render` once, or every `every` seconds until Ctrl-C (then exit status 0).

    Tests pass ``obj={"sleep": ..., "clock": ...}`` to the command to drive the loop.
    """
    if every is None:
        return render()
    obj = ctx.find_object(dict) or {}
    watch(
        render,
        every,
        title=title,
        sleep=obj.get("sleep", time.sleep),
        clock=obj.get("clock", time.time),
    )
    return None


# -- commands -------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="qanalytics")
def main() -> None:
    """Understand a SQLite-backed task queue: workers, outages, metrics.

    Every command reads the store named by --db (or QANALYTICS_DB) read-only, except
    requeue-orphans, simulate, prune, summarize, vacuum, checkpoint, migrate and record.
    Exit status 2 means a user error (printed as one line). Tables show durations as text
    ('2 min 5 s', '32 h 26 min'); JSON and CSV keep seconds.
    """


@main.command("workers", short_help="The fleet: each worker's state and current task.")
@_db_option
@click.option(
    "--state",
    type=click.Choice(["active", "late", "stale", "removed"]),
    default=None,
    help="Only workers in this state.",
)
@click.option("--include-removed", is_flag=True, help="Also list removed workers.")
@_format_option()
@_columns_option
@_now_option
@_watch_option
@click.pass_context
def workers_command(
    ctx: click.Context,
    db_path: str | None,
    state: str | None,
    include_removed: bool,
    fmt: str,
    now: str | None,
    watch_every: float | None,
) -> None:
    """The fleet: one row per worker with its state, last heartbeat and current task."""

    def render() -> None:
        with _open(db_path, now=now) as db:
            frame = frames.workers(
                db, now=_time_arg(now), include_removed=include_removed or state == "removed"
            )
        if state is not None:
            frame = frame[frame["state"] == state].reset_index(drop=True)
        if fmt == "table" and any(str(c).startswith("cap_") for c in frame.columns):
            frame = frame.drop(columns="capabilities")  # the cap_<key> columns say the same
        emit_frame(frame, fmt, empty="No workers.")

    _watched(ctx, watch_every, "qanalytics workers", render)


@main.command("stale", short_help="Stale workers and their tasks; exit 1 if any.")
@_db_option
@click.option(
    "--threshold",
    type=DURATION,
    default=None,
    help="A worker silent for longer than this is stale "
    "[default: ten of the worker's own expected beat intervals].",
)
@_format_option()
@_columns_option
@_now_option
@_watch_option
@click.pass_context
def stale_command(
    ctx: click.Context,
    db_path: str | None,
    threshold: float | None,
    fmt: str,
    now: str | None,
    watch_every: float | None,
) -> None:
    """Stale workers and the tasks they hold; exit status 1 when any worker is stale.

    The output is printed either way, so cron jobs and alerting can use the exit status
    and still show what was found. With --watch the exit status is 0 (Ctrl-C ends it).
    """

    def render() -> bool:
        with _open(db_path, now=now) as db:
            # Late sits between active and stale, so the active bound must not exceed the
            # stale one.
            if threshold is None:  # the liveness model: each worker's own rhythm
                frame = frames.workers(db, now=_time_arg(now))
            else:
                active_within = min(state.ACTIVE_WITHIN_S, threshold)
                frame = frames.workers(
                    db, now=_time_arg(now), active_within=active_within, stale_after=threshold
                )
        stale = frame.loc[
            frame["state"] == "stale",
            [
                "worker_id",
                "last_heartbeat_at",
                "since_heartbeat_s",
                "held_task_id",
                "held_task_status",
            ],
        ].reset_index(drop=True)
        if threshold is None:
            limit = "ten of their expected beat intervals"
            empty = "No stale workers (silent for more than ten expected beat intervals)."
        else:
            limit = human_duration(threshold)
            empty = f"No stale workers (threshold {limit})."
        if fmt == "table" and not stale.empty:
            click.echo(f"{len(stale)} stale worker(s), silent for more than {limit}:")
        emit_frame(stale, fmt, empty=empty)
        return not stale.empty

    if _watched(ctx, watch_every, "qanalytics stale", render):
        ctx.exit(EXIT_STALE)


@main.command("outages", short_help="Heartbeat silences and the tasks held.")
@_db_option
@click.option("--since", type=TIME, default=DEFAULT_SINCE, show_default=True, help=_TIME_HELP)
@click.option("--until", type=TIME, default=None, help=_TIME_HELP)
@click.option(
    "--min-gap",
    type=DURATION,
    default=None,
    help="A silence longer than this is an outage [default: 3x each worker's median interval].",
)
@_format_option()
@_columns_option
@_now_option
def outages_command(
    db_path: str | None,
    since: str,
    until: str | None,
    min_gap: float | None,
    fmt: str,
    now: str | None,
) -> None:
    """Silences in the heartbeat history: who went quiet, when, and what they held.

    Every outage overlapping the window is listed whole: one that started before the
    window (a worker silent since long ago) shows its true start.
    """
    with _open(db_path, now=now) as db:
        lo, hi, at = resolve_window(db, _time_arg(since), _time_arg(until), _time_arg(now))
        frame = liveness.outages(db, min_gap=min_gap, since=lo, until=hi, now=at)
    span = f"{_moment(lo) if lo is not None else 'the first beat'} and {_moment(hi)}"
    if fmt == "table" and not frame.empty:
        ongoing = int(frame["ongoing"].sum())
        line = f"{len(frame)} outage(s) between {span}, {ongoing} still going on"
        if lo is not None:
            earlier = int((frame["start"] < pd.Timestamp(lo, unit="s", tz="UTC")).sum())
            if earlier:
                line += f"; {earlier} started before the window (start is when it began)"
        click.echo(line + ":")
    emit_frame(frame, fmt, empty=f"No outages between {span}.")


def _moment(at: float) -> str:
    return pd.Timestamp(at, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


@main.command("metrics", short_help="Queue health now (table, JSON or Prometheus).")
@_db_option
@_format_option(("table", "json", "prometheus"))
@_now_option
@_watch_option
@click.pass_context
def metrics_command(
    ctx: click.Context, db_path: str | None, fmt: str, now: str | None, watch_every: float | None
) -> None:
    """The queue's health now: depth by status and type, oldest task, success rate, workers.

    --format prometheus writes the Prometheus text exposition format, for a textfile
    collector or a scrape endpoint.
    """

    def render() -> None:
        with _open(db_path, now=now) as db:
            metrics = snapshot.queue_metrics(db, now=_time_arg(now))
        if fmt == "prometheus":
            click.echo(prometheus_text(metrics), nl=False)
        elif fmt == "json":
            click.echo(json.dumps(plain(metrics), indent=2))
        else:
            rows = flatten(metrics)
            cells = {
                "metric": [name for name, _ in rows],
                "value": [metric_text(value, name) for name, value in rows],
            }
            click.echo(render_table(cells, right=["value"]))

    _watched(ctx, watch_every, "qanalytics metrics", render)


@main.command("success-rate", short_help="Success rate over time with Wilson intervals.")
@_db_option
@click.option("--freq", default="1h", show_default=True, help="Bucket width ('1h', '1D').")
@click.option(
    "--by",
    type=click.Choice(["type", "worker_id"]),
    multiple=True,
    help="Group by task type and/or worker (repeatable).",
)
@click.option("--since", type=TIME, default=DEFAULT_SINCE, show_default=True, help=_TIME_HELP)
@click.option("--until", type=TIME, default=None, help=_TIME_HELP)
@click.option(
    "--level",
    type=click.Choice(["task", "attempt"]),
    default="task",
    show_default=True,
    help="Count final task outcomes, or every attempt.",
)
@click.option(
    "--confidence",
    type=float,
    default=0.95,
    show_default=True,
    help="Confidence level of the Wilson interval.",
)
@_format_option()
@_columns_option
@_now_option
def success_rate_command(
    db_path: str | None,
    freq: str,
    by: tuple[str, ...],
    since: str,
    until: str | None,
    level: str,
    confidence: float,
    fmt: str,
    now: str | None,
) -> None:
    """Success rate per time bucket, with Wilson confidence intervals."""
    group: str | list[str] | None = None if not by else (by[0] if len(by) == 1 else list(by))
    with _open(db_path, now=now) as db:
        frame = trends.success_rate(
            db,
            freq=freq,
            by=group,
            since=_time_arg(since),
            until=_time_arg(until),
            now=_time_arg(now),
            level=level,
            confidence=confidence,
        )
    emit_frame(frame, fmt, empty="No finished tasks in the window.")


_ORPHAN_COLUMNS = ["task_id", "type", "worker_id", "attempts", "max_attempts", "reason", "status"]


def _orphan_frame(found: list[Any]) -> pd.DataFrame:
    rows = [
        [o.task_id, o.type, o.worker_id, o.attempts, o.max_attempts, o.reason, o.next_status]
        for o in found
    ]
    return pd.DataFrame(rows, columns=_ORPHAN_COLUMNS).astype(
        {"task_id": "int64", "attempts": "int64", "max_attempts": "int64"}
    )


@main.command("requeue-orphans", short_help="Requeue tasks whose worker is gone (writes).")
@_db_option
@click.option(
    "--stale-after",
    type=DURATION,
    default=None,
    help="A worker silent for longer than this is stale, and its tasks orphaned "
    "[default: ten of the worker's own expected beat intervals].",
)
@click.option("--dry-run", is_flag=True, help="List what would be taken back; change nothing.")
@_format_option()
@_columns_option
@_now_option
def requeue_orphans_command(
    db_path: str | None, stale_after: float | None, dry_run: bool, fmt: str, now: str | None
) -> None:
    """Put tasks held by stale or removed workers (or with expired leases) back in the queue.

    This writes to the store (as do simulate, prune, vacuum, checkpoint and record). A
    task out of attempts ends failed instead of queued. With --dry-run the store is opened read-only
    and nothing changes.
    """
    with _open(db_path, readonly=dry_run, now=now) as db:
        at = db.resolve_now(_time_arg(now))
        planned = tasks.find_orphans(db, stale_after=stale_after, now=at)
        if dry_run:
            done = _orphan_frame(planned)
        else:
            # The write re-reads under its lock; report what it actually took back.
            ids = set(tasks.requeue_orphans(db, stale_after=stale_after, now=at))
            seen = {o.task_id for o in planned}
            late = [i for i in ids if i not in seen]
            done = _orphan_frame([o for o in planned if o.task_id in ids])
            if late:
                click.echo(f"Also took back task(s) orphaned meanwhile: {sorted(late)}", err=True)
    if fmt == "table":
        ids_text = ", ".join(str(i) for i in done["task_id"])
        verb = "Would take back" if dry_run else "Took back"
        if done.empty:
            click.echo("No orphaned tasks." + (" (dry run)" if dry_run else ""))
            return
        click.echo(f"{verb} {len(done)} orphaned task(s): {ids_text}")
    emit_frame(done, fmt)


@main.command("simulate", short_help="Write a simulated fleet and workload to PATH.")
@click.argument("path", required=False, metavar="PATH")
@_db_option
@click.option(
    "--workers", type=int, default=24, show_default=True, help="Initial fleet size (4 to 1000)."
)
@click.option("--duration", type=DURATION, default="48h", show_default=True, help="Simulated time.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same database.")
@click.option("--overwrite", is_flag=True, help="Replace the contents of an existing store.")
def simulate_command(
    path: str | None,
    db_path: str | None,
    workers: int,
    duration: float,
    seed: int,
    overwrite: bool,
) -> None:
    """Write a realistic simulated fleet, workload and incidents into the store at PATH.

    PATH defaults to --db; the file is created if missing. A store that already holds
    workers or tasks is replaced only with --overwrite, and a file that is not a queue
    store never is. Progress is shown on stderr.
    """
    target = path if path is not None else _require_path(db_path)
    result = simulation.simulate(
        target, workers=workers, duration=duration, seed=seed, progress=True, overwrite=overwrite
    )
    counts = ", ".join(f"{n:,} {name}" for name, n in result.counts.items())
    click.echo(f"Wrote {safe_text(str(result.path))}: {counts} (seed {result.seed}).")


@main.command("report", short_help="Write the HTML report for a capacity-planning review.")
@_db_option
@click.option("--since", type=TIME, default=DEFAULT_SINCE, show_default=True, help=_TIME_HELP)
@_now_option
@click.option(
    "-o",
    "--output",
    "output",
    metavar="PATH",
    default="report.html",
    show_default=True,
    help="The HTML file to write (its folder is created if missing).",
)
@click.option("--title", default=None, help="The report's heading [default: from the file name].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def report_command(
    db_path: str | None,
    since: str,
    now: str | None,
    output: str,
    title: str | None,
    quiet: bool,
) -> None:
    """Write a self-contained HTML report: fleet, outages, success rate, latency, backlog.

    The report is a template notebook executed against the store (read-only) and
    exported without code; plots are embedded and nothing is fetched from the network.
    A historical file (a copy, the sample) needs --now latest, or the window ends today.
    """
    path = report.write_report(
        _require_path(db_path),
        output,
        since=_time_arg(since),
        now=_time_arg(now),
        progress=not quiet,
        title=title,
    )
    click.echo(f"Wrote {safe_text(str(path))}.")


# -- maintenance ----------------------------------------------------------------------------


@main.command("prune", short_help="Roll old heartbeats up into minutes (writes).")
@_db_option
@click.option(
    "--keep",
    type=DURATION,
    default="7d",
    show_default=True,
    help="Raw heartbeat history to keep, back from now; older beats become minute rows.",
)
@click.option(
    "--finished-keep",
    type=DURATION,
    default=None,
    help="Also delete tasks (and attempts) that finished longer ago than this "
    "[default: keep all tasks].",
)
@click.option("--batch", type=int, default=5000, show_default=True, help="Rows per transaction.")
@_format_option(("table", "json"))
@_now_option
def prune_command(
    db_path: str | None,
    keep: float,
    finished_keep: float | None,
    batch: int,
    fmt: str,
    now: str | None,
) -> None:
    """Roll heartbeats older than --keep up into per-minute rows and delete them.

    Beats and finished tasks before the cutoff are first folded into the summary tiers
    (see `summarize`), from which outages, uptime and success rates read old history.
    With --finished-keep, old finished tasks are deleted too; success rates and
    throughput keep counting them, other metrics lose them. Running it again with the
    same --now changes nothing.
    """
    with _open(db_path, readonly=False, now=now) as db:
        result = upkeep.prune(
            db, keep=keep, finished_keep=finished_keep, batch=batch, now=_time_arg(now)
        )
    if fmt == "json":
        click.echo(json.dumps(result.as_dict()))
        return
    click.echo(
        f"Rolled up {result.heartbeats_rolled_up:,} heartbeat(s) before "
        f"{epoch_text(result.cutoff)} UTC into {result.rollup_rows:,} minute row(s)."
    )
    if result.finished_cutoff is not None:
        click.echo(
            f"Deleted {result.tasks_deleted:,} task(s) and {result.attempts_deleted:,} "
            f"attempt(s) finished before {epoch_text(result.finished_cutoff)} UTC."
        )


@main.command("summarize", short_help="Fold heartbeats into the summary tiers (writes).")
@_db_option
@click.option(
    "--lag",
    type=DURATION,
    default="1h",
    show_default=True,
    help="How far behind now the tiers stop.",
)
@_format_option(("table", "json"))
@_now_option
def summarize_command(db_path: str | None, lag: float, fmt: str, now: str | None) -> None:
    """Fold heartbeats and finished tasks up to --lag before now into the summary tiers.

    Outages, uptime and alive intervals read history before the tiers' mark from one
    row per worker and day plus the silences, and success rates and throughput read
    whole hours from per-hour counts, so long histories answer in seconds. Run
    it every few minutes to hours (prune runs it up to its own cutoff). Raw beats are
    kept; running it again changes nothing until new beats age past the lag.
    """
    with _open(db_path, readonly=False, now=now) as db:
        bar = fmt == "table" and sys.stderr.isatty()  # a progress bar only for a person
        result = upkeep.summarize(db, lag=lag, now=_time_arg(now), progress=bar)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict()))
        return
    if result.until is None:
        click.echo("Summarized nothing: the store holds no heartbeat yet.")
        return
    click.echo(
        f"Summarized {result.beats:,} heartbeat(s) up to {epoch_text(result.until)} UTC "
        f"({result.silences:,} silence(s) kept, {result.transactions:,} transaction(s))."
    )
    if result.tasks_until is not None:
        click.echo(
            f"Counted {result.tasks:,} finished task(s) into the hourly task tiers, up to "
            f"{epoch_text(result.tasks_until)} UTC."
        )


@main.command("vacuum", short_help="Return unused pages to the file system (writes).")
@_db_option
@click.option(
    "--full", is_flag=True, help="Rewrite the whole file (slow; enables incremental vacuum)."
)
@click.option(
    "--full-if-needed",
    is_flag=True,
    help="Fall back to a full vacuum when the store cannot vacuum incrementally.",
)
def vacuum_command(db_path: str | None, full: bool, full_if_needed: bool) -> None:
    """Free unused pages: incrementally by default, or rewrite the file with --full.

    A full vacuum needs free disk space about the size of the store and cannot run
    while another process reads it.
    """
    with _open(db_path, readonly=False) as db:
        result = upkeep.vacuum(db, incremental=not full, full_if_needed=full_if_needed)
    if result.mode == "none":
        click.echo(f"Nothing done: {result.note}.")
        return
    click.echo(
        f"{result.mode.capitalize()} vacuum freed {result.bytes_freed:,} bytes "
        f"({result.pages_before:,} -> {result.pages_after:,} pages)."
    )


@main.command("checkpoint", short_help="Copy the WAL back into the database (writes).")
@_db_option
@click.option(
    "--mode",
    type=click.Choice(["PASSIVE", "FULL", "RESTART", "TRUNCATE"], case_sensitive=False),
    default="PASSIVE",
    show_default=True,
    help="PASSIVE never waits; FULL and RESTART wait for writers; TRUNCATE also empties "
    "the WAL file.",
)
def checkpoint_command(db_path: str | None, mode: str) -> None:
    """Checkpoint the write-ahead log into the database file."""
    with _open(db_path, readonly=False) as db:
        result = upkeep.checkpoint(db, mode)
    busy = " (busy: not every frame could be copied)" if result.busy else ""
    click.echo(
        f"{result.mode} checkpoint: {result.checkpointed_frames} of {result.wal_frames} "
        f"WAL frame(s) copied{busy}."
    )


@main.command("migrate", short_help="Bring the store's schema up to date now (writes).")
@_db_option
def migrate_command(db_path: str | None) -> None:
    """Migrate an older schema and switch the file to WAL mode, without writing a row.

    Any write does this first; reading never does, so opening a copy to look at it leaves
    the file as it was.
    """
    with _open(db_path, readonly=False) as db:
        before = db.schema_version
        changed = db.prepare_writes()
        after = db.schema_version
    if not changed:
        click.echo(f"Nothing to do: schema version {after}, ready for writing.")
    elif before != after:
        click.echo(f"Migrated the schema from version {before} to {after}.")
    else:
        click.echo(f"Schema version {after} is current; set the file up for writing.")


@main.command("check", short_help="Check the file and the queue's invariants; exit 1 if bad.")
@_db_option
@click.option(
    "--no-invariants",
    is_flag=True,
    help="Only check the file (pages, indexes, foreign keys), not the queue's rules.",
)
@click.pass_context
def check_command(ctx: click.Context, db_path: str | None, no_invariants: bool) -> None:
    """Check the database file and the queue's invariants (read-only).

    Prints one line per problem, or "ok"; exit status 1 when there is a problem.
    """
    with _open(db_path) as db:
        problems = upkeep.integrity_check(db, invariants=not no_invariants)
    if not problems:
        click.echo("ok")
        return
    for problem in problems:
        click.echo(safe_text(problem.replace("\n", " ")))
    ctx.exit(EXIT_PROBLEMS)


@main.command("stats", short_help="Sizes, row counts and the heartbeat history's span.")
@_db_option
@_format_option(("table", "json"))
def stats_command(db_path: str | None, fmt: str) -> None:
    """File, WAL and table sizes, row counts, and where raw heartbeat history starts."""
    with _open(db_path) as db:
        result = upkeep.stats(db)
    emit_result(result, fmt)


# -- recording other queues -------------------------------------------------------------------


@main.group("record", cls=_Group, short_help="Record another queue's events into a store.")
def record_group() -> None:
    """Record a running queue's events (workers, heartbeats, tasks, attempts) into a store."""


@record_group.command("celery", short_help="Record a Celery fleet from its event stream.")
@click.option(
    "--broker",
    metavar="URL",
    envvar="CELERY_BROKER_URL",
    show_envvar=True,
    required=True,
    help="The Celery broker, e.g. redis://localhost:6379/0.",
)
@_db_option
@click.option(
    "--flush-interval",
    type=DURATION,
    default="0.5s",
    show_default=True,
    help="How often a batch of events is written (one transaction each).",
)
@click.option(
    "--no-enable-events",
    is_flag=True,
    help="Do not broadcast enable_events to the workers (they must run with -E).",
)
@click.option(
    "--summarize-every",
    type=DURATION,
    default="10min",
    show_default=True,
    help="How often to fold beats and finishes older than an hour into the summary tiers"
    " (0: never).",
)
@click.option("--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def record_celery_command(
    broker: str,
    db_path: str | None,
    flush_interval: float,
    no_enable_events: bool,
    summarize_every: float,
    quiet: bool,
) -> None:
    """Listen to a Celery fleet's events and record them into the store at --db.

    Workers become registered workers (capabilities: hostname, pid, freq, sw_ident,
    sw_ver, sw_sys) with every heartbeat kept; tasks keep Celery's UUID as external_id;
    each start is an attempt. The store is created if missing. Runs until SIGTERM or
    SIGINT, then writes what it holds, closes the store and exits 0.
    """
    if flush_interval <= 0:
        raise CLIError("--flush-interval must be more than 0 seconds")
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    path = _require_path(db_path)
    recorder = CeleryRecorder(
        broker,
        path,
        flush_interval=flush_interval,
        enable_events=not no_enable_events,
        summarize_every=summarize_every or None,
    )
    if not quiet:
        shown = redact(path) if is_postgres_url(path) else path
        click.echo(
            f"Recording Celery events from {safe_text(redact_url(broker))} into"
            f" {safe_text(shown)}.",
            err=True,
        )
    totals = recorder.run(handle_signals=True)
    if not quiet:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(totals.by_kind.items()))
        click.echo(
            f"Stopped: {totals.applied:,} events recorded ({kinds or 'none'}), "
            f"{totals.unchanged:,} changed nothing (repeated or already known),"
            f" {totals.ignored:,} ignored.",
            err=True,
        )
