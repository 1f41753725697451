"""Close matches for names that are not in the store, so a typo does not answer silently.

``qa.tasks(db, types="emial")`` would otherwise be an empty frame, and ``qanalytics failed
--type thumbnial`` would say that nothing failed. The library warns (an unknown name may
simply not have been written yet); the command line makes it an error.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

__all__ = ["check_task_types", "close_matches", "known_task_types", "unknown_message"]

#: How many close matches a message names, and how close they must be (difflib's ratio).
MAX_MATCHES = 3
CUTOFF = 0.6


def close_matches(name: str, known: Iterable[str]) -> list[str]:
    """The known names closest to `name`, best first (at most :data:`MAX_MATCHES`).

    Parameters
    ----------
    name : str
        The name asked for.
    known : iterable of str
        The names the store holds.

    Returns
    -------
    list of str
        Possibly empty.
    """
    return difflib.get_close_matches(name, sorted(set(known)), n=MAX_MATCHES, cutoff=CUTOFF)


def unknown_message(kind: str, name: str, known: Iterable[str]) -> str:
    """A one-line message for a name that is not among `known`, naming close matches.

    Parameters
    ----------
    kind : str
        What the name is, e.g. ``"task type"`` or ``"worker"``.
    name : str
        The name asked for.
    known : iterable of str
        The names the store holds.

    Returns
    -------
    str
        For example ``no task type 'emial' in the store; did you mean 'email'?``.
    """
    names = sorted(set(known))
    text = f"no {kind} {name!r} in the store"
    matches = close_matches(name, names)
    if matches:
        return text + "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
    if not names:
        return text + f" (it holds no {kind} yet)"
    shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return text + f" (it has {shown})"


def known_task_types(db: Store) -> list[str]:
    """The task types the store holds, sorted.

    Parameters
    ----------
    db : Store

    Returns
    -------
    list of str
    """
    rows = db.query("SELECT DISTINCT type FROM tasks", action="list the task types")
    return sorted(str(row[0]) for row in rows if row[0] is not None)


def check_task_types(db: Store, types: Iterable[str] | None, *, stacklevel: int = 3) -> list[str]:
    """Warn about task types the store does not hold, naming close matches.

    Parameters
    ----------
    db : Store
    types : iterable of str or None
        The types asked for; None asks for all and is never unknown.
    stacklevel : int, default 3
        Passed to :func:`warnings.warn`, so the warning points at the caller's caller.

    Returns
    -------
    list of str
        One message per unknown type (empty when all are known).
    """
    if types is None:
        return []
    asked = list(types)
    if not asked:
        return []
    known = known_task_types(db)
    messages = [unknown_message("task type", name, known) for name in asked if name not in known]
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=stacklevel)
    return messages
