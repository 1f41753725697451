"""The HTML report: :func:`write_report`, and the toolbox its template notebook uses."""

from __future__ import annotations

from . import notebook
from .notebook import *  # noqa: F403
from .notebook import INJECTED_TAG, PARAMETERS_TAG, TARGET_ENV
from .notebook import _inject_parameters as _inject_parameters
from .notebook import _load_template as _load_template

__all__ = [*notebook.__all__, "INJECTED_TAG", "PARAMETERS_TAG", "TARGET_ENV"]
