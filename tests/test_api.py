"""The package's namespace: ``dir(qa)`` lists the public API and nothing else."""

from __future__ import annotations

import subprocess
import sys
import types

import qanalytics as qa
from qanalytics import _api

#: Documented names besides ``__all__``.
EXTRAS = {"__version__", "plot", "record", "report", "schema", "upkeep"}


def test_dir_lists_the_public_api_only() -> None:
    qa.tasks  # noqa: B018  (loads the API, which binds every subpackage on the package)
    names = dir(qa)
    assert names == sorted(names)
    assert set(names) == set(_api.__all__) | EXTRAS
    # No private helper, import or building-block module leaks into the listing.
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    for stray in ("annotations", "importlib", "Any", "TYPE_CHECKING", "read", "write", "store"):
        assert stray not in names


def test_every_listed_name_resolves() -> None:
    for name in dir(qa):
        assert getattr(qa, name) is not None, name
    assert isinstance(qa.report, types.ModuleType)
    assert isinstance(qa.upkeep, types.ModuleType)


def test_dir_on_a_fresh_import_is_the_same() -> None:
    code = (
        "import qanalytics as qa; names = dir(qa);"
        " print(len(names), 'report' in names, 'importlib' in names)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    assert out[0] == str(len(dir(qa)))
    assert out[1:] == ["True", "False"]


def test_the_old_module_paths_resolve_as_attributes() -> None:
    from qanalytics.write import workers

    assert qa.registry is workers  # as README's ``qa.registry.MAX_JSON_DEPTH`` reads it
    assert "registry" not in dir(qa)
