"""The Examples sections of the docstrings run, and show what they say they show.

Every module of the package is imported and its docstrings' examples are run with
:mod:`doctest` (ELLIPSIS and NORMALIZE_WHITESPACE). Each runs with ``qa`` and an
in-memory store ``db`` (on a fake clock) at hand, and with the wall clock moved to a
moment no example could have been written at, so an example whose output depends on
the wall clock fails.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import time
from collections.abc import Iterator

import matplotlib.pyplot as plt
import pytest

import qanalytics as qa

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: 2001-09-09 01:46:40 UTC: where the wall clock stands while the examples run.
WALL_CLOCK = 1_000_000_000.0


def _modules() -> Iterator[str]:
    yield qa.__name__
    for info in pkgutil.walk_packages(qa.__path__, f"{qa.__name__}."):
        yield info.name


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            # A function re-exported by another module is found there too: run it once.
            if test.examples and test.name not in found:
                found[test.name] = test
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = _doctests()


def test_the_public_api_has_examples() -> None:
    names = {t.name.rsplit(".", 1)[-1] for t in DOCTESTS}
    assert {"success_rate", "throughput", "stale_workers", "connect", "FakeClock"} <= names
    assert len(DOCTESTS) > 20


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test: doctest.DocTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: WALL_CLOCK)
    failures: list[str] = []
    with qa.connect(":memory:", clock=qa.FakeClock()) as db:
        globs = {**test.globs, "qa": qa, "db": db}
        run = doctest.DocTest(
            test.examples, globs, test.name, test.filename, test.lineno, test.docstring
        )
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        try:
            runner.run(run, out=failures.append, clear_globs=True)
        finally:
            plt.close("all")
    assert runner.failures == 0, "\n".join(failures)
