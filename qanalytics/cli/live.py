"""``--watch``: redraw a command's output every few seconds until Ctrl-C."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .._time import Clock

__all__ = ["CLEAR_SCREEN", "watch"]

#: Home the cursor and clear the screen (written only when stdout is a terminal).
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def watch(
    render: Callable[[], object],
    interval: float,
    *,
    title: str,
    sleep: Callable[[float], object] = time.sleep,
    clock: Clock = time.time,
    frames: int | None = None,
) -> None:
    """Call `render` every `interval` seconds, clearing the screen before each frame.

    Each frame starts with a header line (the command, the interval and the clock time);
    Ctrl-C (KeyboardInterrupt) ends the loop quietly.

    Parameters
    ----------
    render : callable
        Prints one frame to stdout; its return value is ignored.
    interval : float
        Seconds between frames, greater than zero.
    title : str
        What is being watched, for the header line.
    sleep : callable, default time.sleep
        Waits the given seconds; injectable for tests.
    clock : callable, default the system clock
        Epoch seconds for the header line; injectable for tests.
    frames : int or None, default None
        Stop after this many frames (None: until Ctrl-C).

    Raises
    ------
    ValueError
        If `interval` is not greater than zero.
    """
    if not interval > 0:
        raise ValueError(f"--watch={interval!r} must be greater than zero")
    tty = sys.stdout.isatty()
    drawn = 0
    try:
        while frames is None or drawn < frames:
            if tty:
                click.echo(CLEAR_SCREEN, nl=False)
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(clock()))
            click.echo(f"Every {interval:g}s: {title}  ({at} UTC; Ctrl-C to stop)")
            click.echo()
            render()
            drawn += 1
            if frames is None or drawn < frames:
                sleep(interval)
    except KeyboardInterrupt:
        click.echo()
