"""qanalytics: understand SQLite-backed task queues.

Write side: :func:`connect` a store, :func:`register_worker`, :func:`heartbeat`,
:func:`enqueue`, :func:`claim`, :func:`complete`, :func:`fail`, :func:`cancel`,
:func:`requeue_orphans`. Classic API: :class:`QueueMonitoring`. Read side:
:func:`queue_metrics` and the frame functions.

The names are loaded on first use (from :mod:`qanalytics._api`), so importing the package,
or running ``qanalytics --help``, does not load pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._lazy import alias_modules
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._api import *  # noqa: F403
    from ._api import __all__ as __all__

# Module paths of the flat layout this package had before it was split by layer; code
# that imports them (``from qanalytics.frames import workers``) keeps working.
_MOVED = {
    "frames": "read.frames",
    "liveness": "read.liveness",
    "maintenance": "upkeep",
    "metrics": "read",
    "registry": "write.workers",
    "schema": "store.schema",
    "taskqueue": "write.tasks",
}
alias_modules({f"{__name__}.{old}": f"{__name__}.{new}" for old, new in _MOVED.items()})


#: Names the package has always had besides ``__all__``.
_ALSO = frozenset({"schema", "upkeep"})

#: Subpackages loaded on first use: qa.plot loads matplotlib.pyplot, qa.record the
#: recorders of other queues, qa.report the HTML report; not on every `import qanalytics`.
_ON_FIRST_USE = frozenset({"plot", "record", "report"})


def __getattr__(name: str) -> Any:
    if name in _ON_FIRST_USE:
        return importlib.import_module("." + name, __name__)
    if name in _MOVED and name not in _ALSO and name != "maintenance":
        # The old flat module paths, as attributes too (``qa.registry.MAX_JSON_DEPTH``).
        return importlib.import_module(f".{name}", __name__)
    if name.startswith("__") and name != "__all__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    api = importlib.import_module("._api", __name__)
    try:
        value = getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    if name != "__all__" and name not in api.__all__ and name not in _ALSO:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API: ``__all__``, the subpackages loaded on first use and ``__version__``.

    Private helpers, the modules the package is built from and the old flat module
    paths (still importable) are left out, so tab completion shows what to use.

    Returns
    -------
    list of str
        Sorted names.
    """
    return sorted({*__getattr__("__all__"), *_ALSO, *_ON_FIRST_USE, "__version__"})
