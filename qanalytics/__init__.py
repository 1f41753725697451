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


def __getattr__(name: str) -> Any:
    # qa.plot loads matplotlib.pyplot on first use, not on every `import qanalytics`;
    # qa.record (recorders of other queues) is loaded on first use too.
    if name in ("plot", "record"):
        return importlib.import_module("." + name, __name__)
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
    return sorted({*globals(), *__getattr__("__all__")})
