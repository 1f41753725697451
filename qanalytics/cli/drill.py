"""Drill-down commands: one task (``task``), one worker (``worker``), recent failures (``failed``).

They answer the questions that follow a glance at ``workers`` or ``metrics``: what
happened to this task, what is this worker doing and how reliable is it, what failed and
why. Each reads the store read-only; an unknown task or worker is a user error (one
``Error:`` line, exit status 2).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import click

from .._lazy import lazy_function, lazy_module
from .commands import (
    _TIME_HELP,
    DEFAULT_SINCE,
    DURATION,
    TIME,
    CLIError,
    _columns_option,
    _db_option,
    _format_option,
    _moment,
    _now_option,
    _open,
    _time_arg,
    main,
)
from .output import emit_frame, human_duration, record_table

if TYPE_CHECKING:
    import pandas as pd

    from .._suggest import known_task_types, unknown_message
    from ..export import frame_records, plain, safe_text
    from ..read import frames, liveness
    from ..read.common import resolve_window
    from ..store import Store
else:  # loaded when a command runs, not for --help
    pd = lazy_module("pandas")
    known_task_types = lazy_function("qanalytics._suggest", "known_task_types")
    unknown_message = lazy_function("qanalytics._suggest", "unknown_message")
    frame_records = lazy_function("qanalytics.export", "frame_records")
    plain = lazy_function("qanalytics.export", "plain")
    safe_text = lazy_function("qanalytics.export", "safe_text")
    frames = lazy_module("qanalytics.read.frames")
    liveness = lazy_module("qanalytics.read.liveness")
    resolve_window = lazy_function("qanalytics.read.common", "resolve_window")

__all__ = ["failed_by_error", "failed_command", "task_command", "worker_command"]

_ATTEMPT_COLUMNS = [
    "attempt",
    "worker_id",
    "claimed_at",
    "finished_at",
    "outcome",
    "run_s",
    "error",
]
_RECENT_COLUMNS = ["task_id", "attempt", "type", "claimed_at", "finished_at", "outcome", "run_s"]
_FAILED_COLUMNS = ["id", "type", "attempts", "max_attempts", "worker_id", "finished_at", "error"]


def _has(db: Store, capability: str) -> bool:
    return capability in db.capabilities


def _json(value: Any) -> None:
    click.echo(json.dumps(plain(value), indent=2))


def _rate(failed: int, finished: int) -> float | None:
    return failed / finished if finished else None


def _rate_text(failed: int, finished: int) -> str:
    rate = _rate(failed, finished)
    return "n/a" if rate is None else f"{rate:.1%} ({failed} of {finished})"


@main.command("task", short_help="One task and all its attempts.")
@click.argument("task_id", type=int, metavar="ID")
@_db_option
@_format_option(("table", "json"))
@_now_option
def task_command(task_id: int, db_path: str | None, fmt: str, now: str | None) -> None:
    """One task as it stood at --now, and every attempt at it: who ran it, when, and why
    each try ended.

    An id that is not in the store (or created after --now) is an error (exit status 2).
    """
    with _open(db_path, now=now) as db:
        at = db.resolve_now(_time_arg(now))
        found = frames.tasks(db, ids=[task_id], now=at)
        if found.empty:
            raise CLIError(f"no task {task_id} in the store as of {_moment(at)}")
        tries = (
            frames.attempts(db, task_ids=[task_id], now=at)[_ATTEMPT_COLUMNS]
            if _has(db, "attempt_history")
            else None
        )
    if fmt == "json":
        _json(
            {
                "task": frame_records(found)[0],
                "attempts": None if tries is None else frame_records(tries),
            }
        )
        return
    row = found.iloc[0]
    click.echo(
        f"Task {task_id} ({safe_text(str(row['type']))}): {row['status']}, "
        f"{row['attempts']} of {row['max_attempts']} attempt(s) used."
    )
    click.echo(record_table(found))
    click.echo()
    if tries is None:
        click.echo("This store keeps no per-attempt history.")
    else:
        click.echo(f"Attempts ({len(tries)}):")
        emit_frame(tries, "table", empty="No attempts yet.")


@main.command("worker", short_help="One worker: state, current task, attempts, outages.")
@click.argument("worker_id", metavar="ID")
@_db_option
@click.option(
    "--since",
    type=TIME,
    default=DEFAULT_SINCE,
    show_default=True,
    help="Window for the failure rate, heartbeat gaps and outages. " + _TIME_HELP,
)
@click.option(
    "--recent",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the worker's latest attempts to list.",
)
@click.option(
    "--min-gap",
    type=DURATION,
    default=None,
    help="A silence longer than this is an outage [default: 3x the worker's median interval].",
)
@_format_option(("table", "json"))
@_now_option
def worker_command(
    worker_id: str,
    db_path: str | None,
    since: str,
    recent: int,
    min_gap: float | None,
    fmt: str,
    now: str | None,
) -> None:
    """One worker: its state and current task, its latest attempts (any time), and its
    failure rate, heartbeat gaps and outages in the window.

    The failure rate counts the worker's finished attempts in the window (failed over
    completed plus failed); the lifetime counts are those of ``qanalytics workers``. A
    worker that is not registered (or registered after --now) is an error (exit status 2).
    """
    with _open(db_path, now=now) as db:
        lo, hi, at = resolve_window(db, _time_arg(since), None, _time_arg(now))
        fleet = frames.workers(db, now=at, include_removed=True)
        mine = fleet[fleet["worker_id"] == worker_id].reset_index(drop=True)
        if mine.empty:
            known = [str(w) for w in fleet["worker_id"]]
            message = unknown_message("worker", worker_id, known)
            raise CLIError(message.replace("in the store", f"in the store as of {_moment(at)}"))
        mine = mine.drop(columns=["capabilities"], errors="ignore")
        held = mine["current_task_id"].dropna().tolist()
        task = (
            frames.tasks(db, ids=[int(i) for i in held], now=at)[["id", "type", "status"]]
            if held
            else None
        )
        tries = everything = None
        if _has(db, "attempt_history"):
            everything = frames.attempts(db, workers=worker_id, now=at)
            claimed = everything["claimed_at"]
            inside = claimed <= pd.Timestamp(hi, unit="s", tz="UTC")
            if lo is not None:
                inside &= claimed >= pd.Timestamp(lo, unit="s", tz="UTC")
            tries = everything[inside]
        gaps = outages = None
        if _has(db, "heartbeat_history"):
            gaps = liveness.heartbeat_gaps(db, workers=worker_id, since=lo, until=hi, now=at)
            found = liveness.outages(db, min_gap=min_gap, since=lo, until=hi, now=at)
            outages = found[found["worker_id"] == worker_id].reset_index(drop=True)
    window = _window_summary(tries, gaps, outages)
    latest = (
        None
        if everything is None
        else everything.sort_values("claimed_at", ascending=False, kind="stable")
        .head(recent)[_RECENT_COLUMNS]
        .reset_index(drop=True)
    )
    if fmt == "json":
        _json(
            {
                "worker": frame_records(mine)[0],
                "current_task": None if task is None or task.empty else frame_records(task)[0],
                "window": {"since": _iso(lo), "until": _iso(hi), **window},
                "recent_attempts": None if latest is None else frame_records(latest),
                "outages": None if outages is None else frame_records(outages),
            }
        )
        return
    row = mine.iloc[0]
    click.echo(f"Worker {safe_text(worker_id)}: {row['state']}.")
    click.echo(record_table(mine))
    if task is not None and not task.empty:
        t = task.iloc[0]
        click.echo(f"Current task: {t['id']} ({safe_text(str(t['type']))}, {t['status']}).")
    click.echo()
    start = "the first beat" if lo is None else _moment(lo)
    click.echo(f"Between {start} and {_moment(hi)}:")
    if tries is not None:
        click.echo(
            f"  attempts: {window['attempts']}, failure rate "
            f"{_rate_text(window['failed'], window['finished'])}"
        )
    if gaps is not None and outages is not None:
        median = window["median_gap_s"]
        longest = window["max_gap_s"]
        click.echo(
            f"  heartbeats: {window['heartbeats']}, median gap "
            f"{human_duration(median) or 'n/a'}, longest {human_duration(longest) or 'n/a'}"
        )
        click.echo(f"  outages: {len(outages)}")
    if outages is not None and not outages.empty:
        click.echo()
        click.echo("Outages:")
        emit_frame(outages.drop(columns=["worker_id"]), "table")
    if latest is not None:
        click.echo()
        click.echo(f"Latest attempts ({len(latest)}, newest first, any time):")
        emit_frame(latest, "table", empty="No attempts.")


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return pd.Timestamp(at, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _window_summary(
    tries: pd.DataFrame | None, gaps: pd.DataFrame | None, outages: pd.DataFrame | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if tries is not None:
        failed = int((tries["outcome"] == "failed").sum())
        completed = int((tries["outcome"] == "completed").sum())
        out.update(
            attempts=len(tries),
            completed=completed,
            failed=failed,
            finished=completed + failed,
            failure_rate=_rate(failed, completed + failed),
        )
    if gaps is not None:
        values = gaps["gap_s"].dropna()
        out.update(
            heartbeats=len(gaps),
            median_gap_s=float(values.median()) if len(values) else None,
            max_gap_s=float(values.max()) if len(values) else None,
        )
    if outages is not None:
        total = float(outages["duration_s"].sum()) if len(outages) else 0.0
        out.update(outages=len(outages), outage_s=total if math.isfinite(total) else None)
    return out


@main.command("failed", short_help="Tasks that failed for good, with their errors.")
@_db_option
@click.option("--since", type=TIME, default=DEFAULT_SINCE, show_default=True, help=_TIME_HELP)
@click.option("--until", type=TIME, default=None, help=_TIME_HELP)
@click.option("--type", "types", multiple=True, help="Only tasks of this type (repeatable).")
@click.option(
    "--by",
    type=click.Choice(["task", "error"]),
    default="task",
    show_default=True,
    help="One row per task, or one per distinct error (type, error, tasks, first, last).",
)
@_format_option()
@_columns_option
@_now_option
def failed_command(
    db_path: str | None,
    since: str,
    until: str | None,
    types: tuple[str, ...],
    by: str,
    fmt: str,
    now: str | None,
) -> None:
    """Tasks that ended failed (out of attempts, or failed for good) in the window, newest
    first, with the error of their last attempt; --by error groups them by error, most
    frequent first, as the report does.

    The window applies to when the task finished; use ``qanalytics task ID`` for every
    attempt of one of them. A --type the store does not hold is an error naming close
    matches.
    """
    with _open(db_path, now=now) as db:
        lo, hi, at = resolve_window(db, _time_arg(since), _time_arg(until), _time_arg(now))
        if types:
            known = known_task_types(db)
            for name in types:
                if name not in known:
                    raise CLIError(unknown_message("task type", name, known))
        found = frames.tasks(db, status="failed", types=list(types) or None, now=at)
    finished = found["finished_at"]
    keep = finished <= pd.Timestamp(hi, unit="s", tz="UTC")
    if lo is not None:
        keep &= finished >= pd.Timestamp(lo, unit="s", tz="UTC")
    failed = (
        found.loc[keep, _FAILED_COLUMNS]
        .sort_values(["finished_at", "id"], ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    span = f"{_moment(lo) if lo is not None else 'the first task'} and {_moment(hi)}"
    if by == "error":
        errors = failed_by_error(failed)
        if fmt == "table" and not errors.empty:
            click.echo(
                f"{len(failed)} task(s) failed between {span}, "
                f"with {len(errors)} distinct error(s):"
            )
        emit_frame(errors, fmt, empty=f"No tasks failed between {span}.")
        return
    if fmt == "table" and not failed.empty:
        click.echo(f"{len(failed)} task(s) failed between {span}:")
    emit_frame(failed, fmt, empty=f"No tasks failed between {span}.")


def failed_by_error(failed: pd.DataFrame) -> pd.DataFrame:
    """Failed tasks grouped by type and error: how many, first and last finish.

    Parameters
    ----------
    failed : pandas.DataFrame
        Rows of :func:`qanalytics.tasks` (``type``, ``error``, ``id``, ``finished_at``).

    Returns
    -------
    pandas.DataFrame
        ``type``, ``error`` (``"(no message)"`` when empty), ``tasks`` (int64),
        ``first_failed_at``, ``last_failed_at``; most tasks first, then newest.
    """
    columns = ["type", "error", "tasks", "first_failed_at", "last_failed_at"]
    if failed.empty:
        return pd.DataFrame(
            {
                "type": pd.Series([], dtype=object),
                "error": pd.Series([], dtype=object),
                "tasks": pd.Series([], dtype="int64"),
                "first_failed_at": pd.Series([], dtype=failed["finished_at"].dtype),
                "last_failed_at": pd.Series([], dtype=failed["finished_at"].dtype),
            }
        )[columns]
    work = failed.assign(
        type=failed["type"].astype(str),
        error=failed["error"].fillna("").astype(str).replace("", "(no message)"),
    )
    grouped = (
        work.groupby(["type", "error"], sort=False)
        .agg(
            tasks=("id", "size"),
            first_failed_at=("finished_at", "min"),
            last_failed_at=("finished_at", "max"),
        )
        .reset_index()
        .sort_values(["tasks", "last_failed_at"], ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    grouped["tasks"] = grouped["tasks"].astype("int64")
    return grouped[columns]
