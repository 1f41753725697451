"""Old spellings kept working: renamed arguments warn once per call site and carry on."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["UNSET", "renamed_argument"]


class _Unset:
    """The default of a deprecated argument: tells "not given" from any value."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unset>"

    def __bool__(self) -> bool:
        return False


#: Default of a deprecated keyword argument.
UNSET: Any = _Unset()


def renamed_argument(
    func: str, old: str, new: str, old_value: Any, new_value: Any, default: Any
) -> Any:
    """The value of an argument that was renamed from `old` to `new`.

    Parameters
    ----------
    func : str
        The function's public name, for the messages (``"stale_workers"``).
    old, new : str
        The argument's old and new names.
    old_value : Any
        What the caller passed under the old name (:data:`UNSET` when nothing).
    new_value : Any
        What the caller passed under the new name (or its default).
    default : Any
        The new name's default, to tell whether the caller gave both.

    Returns
    -------
    Any
        `new_value`, or `old_value` (with a :class:`DeprecationWarning`) when the old
        name was used.

    Raises
    ------
    TypeError
        If both names were given.
    """
    if old_value is UNSET:
        return new_value
    if new_value is not default and new_value != default:
        raise TypeError(f"{func}() got both {new}= and its old name {old}=; pass only {new}=")
    warnings.warn(
        f"{func}({old}=...) is deprecated; use {func}({new}=...)",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value
