"""The progress bar class: a widget in Jupyter when it can draw one, else text on stderr.

``tqdm.auto`` picks the notebook widget inside a kernel, and warns ("IProgress not
found") when ipywidgets is missing; the text bar is then the better choice, without the
warning. The ``lab`` extra installs ipywidgets.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

__all__ = ["leave_bar", "progress_class"]


def progress_class() -> Any:
    """The tqdm class to draw a progress bar with.

    Returns
    -------
    type
        ``tqdm.auto.tqdm`` when ipywidgets is installed (a widget in Jupyter, text in a
        terminal), else the text bar ``tqdm.std.tqdm``.
    """
    if importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm


def leave_bar() -> bool:
    """Whether a finished bar should stay: not in a terminal, where it is cleared.

    In a notebook a cleared text bar leaves an empty stderr box behind, so it stays,
    showing what was done.

    Returns
    -------
    bool
    """
    stream = sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())
