"""Docstring pieces that many functions share, written once.

Read functions all take ``db, *, since=None, until=None, now=None`` and plots all take
``ax=None``; their numpydoc entries are kept here and filled into the docstrings by
:func:`share_docs`, in the manner of seaborn's ``_docstrings``. A docstring names a piece
as ``{db}``, ``{since_until}``, ``{now}`` or ``{ax}`` alone on its line; lines that follow
it, indented as the piece's description, add what is particular to the function::

    @share_docs
    def heartbeats(db, *, since=None, until=None, now=None):
        '''One row per beat.

        Parameters
        ----------
        {db}
        {since_until}
            Beats in this window.
        {now}
        '''

Only the known names are replaced, so other braces (``{"task", "attempt"}``) stay as
they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DOCS", "share_docs"]

#: The shared entries, as they read at the left margin of a Parameters section.
DOCS: dict[str, str] = {
    "db": (
        "db : Store\n"
        "    An open store (:func:`qanalytics.connect`); read-only is enough."
    ),
    "since_until": (
        "since, until : time-like, duration or None\n"
        "    The window: absolute times (epoch seconds, ISO 8601 strings, datetimes) or\n"
        '    durations back from `now` (``"24h"``); None leaves that end open. `until`\n'
        "    never passes `now`."
    ),
    "now": (
        'now : time-like, "latest" or None\n'
        "    Answer as of this moment: the store clock when None, the store's latest\n"
        '    recorded event for ``"latest"``; later events are ignored.'
    ),
    "ax": (
        "ax : matplotlib.axes.Axes, optional\n"
        "    Where to draw; the current Axes (``plt.gca()``) when None."
    ),
}

_PIECE = re.compile(r"^(?P<indent>[ \t]*)\{(?P<name>" + "|".join(DOCS) + r")\}[ \t]*$", re.M)

F = TypeVar("F", bound=Callable[..., object])


def fill(doc: str) -> str:
    """`doc` with each ``{name}`` line replaced by its piece, at that line's indent.

    Parameters
    ----------
    doc : str

    Returns
    -------
    str
        Unknown names are left as written: only the names in :data:`DOCS` are matched.
    """

    def piece(match: re.Match[str]) -> str:
        indent = match.group("indent")
        return "\n".join(indent + line for line in DOCS[match.group("name")].splitlines())

    return _PIECE.sub(piece, doc)


def share_docs(func: F) -> F:
    """Fill the shared pieces into `func`'s docstring (a decorator).

    Parameters
    ----------
    func : callable

    Returns
    -------
    callable
        `func` itself, its ``__doc__`` filled.
    """
    if func.__doc__:
        func.__doc__ = fill(func.__doc__)
    return func
