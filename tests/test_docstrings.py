"""The shared docstring pieces are filled in wherever a docstring names them."""

from __future__ import annotations

import inspect
import re

import qanalytics as qa
from qanalytics._docstrings import DOCS, fill

_PLACEHOLDER = re.compile(r"^\s*\{(" + "|".join(DOCS) + r")\}\s*$", re.M)


def _public_functions() -> list[object]:
    found = []
    for space in (qa, qa.plot, qa.capacity, qa.maintenance):
        for name in getattr(space, "__all__", []):
            value = getattr(space, name)
            if inspect.isfunction(value):
                found.append(value)
    return found


def test_no_placeholder_is_left_unfilled() -> None:
    left = [f.__qualname__ for f in _public_functions() if _PLACEHOLDER.search(f.__doc__ or "")]
    assert left == []


def test_pieces_land_at_the_placeholder_indent_and_keep_additions() -> None:
    doc = "Parameters\n    ----------\n    {db}\n    {now}\n        Later beats too.\n    x : int\n"
    filled = fill(doc)
    assert "    db : Store\n        An open store" in filled
    assert '    now : time-like, "latest" or None\n' in filled
    assert filled.endswith("ignored.\n        Later beats too.\n    x : int\n")
    # Braces that are not a known piece, or not alone on their line, stay as written.
    assert fill('    level : {"task", "attempt"}\n    {other}\n') == (
        '    level : {"task", "attempt"}\n    {other}\n'
    )


def test_read_and_plot_functions_share_the_pieces() -> None:
    assert "durations back from `now`" in (qa.success_rate.__doc__ or "")
    assert "db : Store" in (qa.heartbeats.__doc__ or "")
    assert "``plt.gca()``" in (qa.plot.uptime.__doc__ or "")
