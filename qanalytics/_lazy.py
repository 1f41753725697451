"""Imports deferred to first use, so ``qanalytics --help`` does not load pandas.

``import qanalytics`` itself is light: the public names load the library (and pandas,
numpy, pyarrow) on first access. The command-line modules name the heavy modules they
use with :func:`lazy_module` and :func:`lazy_function` at module level; the layer test
(tests/test_layers.py) checks those names like imports.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["LazyModule", "alias_modules", "lazy_function", "lazy_module"]


class LazyModule:
    """A stand-in for a module, imported when one of its attributes is first read.

    Parameters
    ----------
    name : str
        The module's absolute name, e.g. ``"pandas"`` or ``"qanalytics.read.frames"``.
    """

    __slots__ = ("_lazy_name",)

    def __init__(self, name: str) -> None:
        self._lazy_name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._lazy_name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._lazy_name!r}>"


def lazy_module(name: str) -> Any:
    """A module imported on first attribute access (at once if it is already loaded).

    Parameters
    ----------
    name : str
        The module's absolute name.

    Returns
    -------
    module or LazyModule
    """
    return sys.modules.get(name) or LazyModule(name)


def lazy_function(module: str, name: str) -> Callable[..., Any]:
    """A function that imports `module` on its first call and calls ``module.name``.

    Parameters
    ----------
    module : str
        The module's absolute name.
    name : str
        The function's name in it.

    Returns
    -------
    callable
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"Calls :func:`{module}.{name}` (imported on first use)."
    return call


class _AliasLoader(importlib.abc.Loader):
    """Loads an old module path as the module that now lives elsewhere."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the alias's spec: restore it


class _AliasFinder(importlib.abc.MetaPathFinder):
    def __init__(self, aliases: Mapping[str, str]) -> None:
        self.aliases = dict(aliases)

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.aliases:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(self.aliases[fullname]))


def alias_modules(aliases: Mapping[str, str]) -> None:
    """Make old module paths import the modules that replaced them, on first import.

    Parameters
    ----------
    aliases : mapping of str to str
        Old absolute module name to the new one; ``import old`` then gives the new module
        (the same object, not a copy).
    """
    sys.meta_path.append(_AliasFinder(aliases))
