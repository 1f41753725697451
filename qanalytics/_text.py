"""Text for people: durations written the same way by the CLI and the report.

Imports nothing heavy, so the command line can use it before pandas is loaded.
"""

from __future__ import annotations

import math

__all__ = ["human_duration"]


def human_duration(seconds: float | None) -> str:
    """A duration as words a reader takes in at a glance.

    Under ten seconds one decimal is kept (``0.4 s``); then whole seconds (``45 s``), and
    from a minute on the two largest units, the smaller left out when it is zero: ``2 min
    5 s``, ``6 min``, ``32 h 26 min`` (hours up to two days, as on-call engineers count
    them), ``3 d 4 h``. The CLI's tables and the report both write durations this way.

    Parameters
    ----------
    seconds : float or None
        Negative values keep their sign; infinities are shown as ``∞``.

    Returns
    -------
    str
        ``""`` when `seconds` is None or NaN.

    Examples
    --------
    >>> human_duration(32 * 3600 + 26 * 60)
    '32 h 26 min'
    """
    if seconds is None or math.isnan(seconds):
        return ""
    if math.isinf(seconds):
        return "∞" if seconds > 0 else "-∞"
    sign = "-" if seconds < 0 else ""
    left = abs(float(seconds))
    if round(left, 1) < 10:
        return f"{sign}{left:.1f} s"
    whole = round(left)
    if whole < 60:
        return f"{sign}{whole} s"
    if whole < 3600:
        big, small, units = whole // 60, whole % 60, ("min", "s")
    elif whole < 48 * 3600:
        minutes = round(whole / 60)
        big, small, units = minutes // 60, minutes % 60, ("h", "min")
    else:
        hours = round(whole / 3600)
        big, small, units = hours // 24, hours % 24, ("d", "h")
    return f"{sign}{big} {units[0]}" + (f" {small} {units[1]}" if small else "")
