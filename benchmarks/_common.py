"""Helpers shared by the benchmark scripts: the data folder, tables, ratios and goals."""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_DIR",
    "Goal",
    "finish",
    "median",
    "peak_call",
    "print_table",
    "remove_store",
]

#: Generated stores live here (git-ignored).
DATA_DIR = Path(__file__).resolve().parent / "data"


def median(values: Sequence[float]) -> float:
    """The median of some measurements (NaN when there are none).

    Parameters
    ----------
    values : sequence of float

    Returns
    -------
    float
    """
    return statistics.median(values) if values else float("nan")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_call(call: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run `call` once: its result, wall seconds and peak resident-set growth (MiB).

    The kernel's peak mark is reset first (``/proc/self/clear_refs``), so the growth is
    ``VmHWM`` after the call minus ``VmRSS`` before it, the result included. Linux only;
    run it in a fresh process for a clean figure.

    Parameters
    ----------
    call : callable
        No arguments.

    Returns
    -------
    (result, seconds, peak_mib) : tuple
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status_kib("VmRSS")
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    return result, seconds, (_status_kib("VmHWM") - before) / 1024


def remove_store(path: Path) -> None:
    """Delete a SQLite file and its WAL and shared-memory companions, if present.

    Parameters
    ----------
    path : pathlib.Path
    """
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain, aligned text table.

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequences
        Cells are printed with ``str``; right-aligned except the first column.
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts)

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


@dataclass(frozen=True)
class Goal:
    """A ratio goal: ``ratio`` must be at least ``target``.

    Attributes
    ----------
    name : str
        What is compared, e.g. ``"heartbeats/s, 1 process"``.
    ratio : float
        The measured ratio (higher is better); NaN when it could not be measured.
    target : float
        The minimum acceptable ratio.
    """

    name: str
    ratio: float
    target: float

    @property
    def met(self) -> bool:
        """Whether the goal is met (a NaN ratio never is)."""
        return self.ratio >= self.target


def finish(goals: Sequence[Goal], *, check: bool) -> int:
    """Print every goal with its verdict and return the process exit status.

    Parameters
    ----------
    goals : sequence of Goal
    check : bool
        When False, only report: always return 0.

    Returns
    -------
    int
        1 if `check` and any goal was missed, else 0.
    """
    print()
    missed = []
    for goal in goals:
        verdict = "ok" if goal.met else "MISSED"
        print(f"goal  {goal.name}: {goal.ratio:.2f}x (needs >= {goal.target:g}x)  {verdict}")
        if not goal.met:
            missed.append(goal)
    if missed and check:
        names = "; ".join(f"{g.name} {g.ratio:.2f}x < {g.target:g}x" for g in missed)
        print(f"FAILED: {len(missed)} goal(s) missed: {names}", file=sys.stderr)
        return 1
    return 0
