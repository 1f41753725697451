"""First touch: every documented path runs in a fresh interpreter, and reading changes nothing.

Each command and import runs in its own subprocess, as a new user's first command would:
an import cycle that a warm test process hides (the package already loaded) shows here.
"""

from __future__ import annotations

import filecmp
import os
import pkgutil
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import qanalytics as qa
from qanalytics.store.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.db"
CLI = [sys.executable, "-m", "qanalytics"]


def _run(args: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "80"}
    env.pop("QANALYTICS_DB", None)
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _public_modules() -> list[str]:
    names = ["qanalytics"]
    for info in pkgutil.walk_packages(qa.__path__, "qanalytics."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_imports_in_a_fresh_interpreter(module: str, tmp_path: Path) -> None:
    done = _run([sys.executable, "-c", f"import {module}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_simulation_imports_first(tmp_path: Path) -> None:
    code = "import qanalytics.simulation as s; print(s.SimulationResult.__name__)"
    done = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "SimulationResult"


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store simulated by the command line, in a fresh interpreter."""
    folder = tmp_path_factory.mktemp("fresh")
    done = _run(
        [*CLI, "simulate", "sim.db", "--workers", "4", "--duration", "3h", "--seed", "1"],
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Wrote" in done.stdout
    return folder / "sim.db"


# Every command, with what a newcomer would type. Exit status 1 is a result for stale
# (a stale worker) and check (a problem found); never a traceback.
READ_COMMANDS = [
    ["workers"],
    ["workers", "--format", "json"],
    ["stale"],
    ["outages"],
    ["outages", "--now", "latest"],
    ["metrics"],
    ["metrics", "--format", "json"],
    ["metrics", "--format", "prometheus"],
    ["success-rate", "--now", "latest"],
    ["success-rate", "--by", "type", "--freq", "1D", "--now", "latest"],
    ["failed", "--now", "latest"],
    ["failed", "--by", "error", "--now", "latest"],
    ["task", "1"],
    ["worker", "worker-01"],
    ["check"],
    ["stats"],
    ["requeue-orphans", "--dry-run"],
]
WRITE_COMMANDS = [
    ["requeue-orphans", "--now", "latest"],
    ["summarize", "--now", "latest"],
    ["prune", "--keep", "1d", "--now", "latest"],
    ["vacuum"],
    ["checkpoint"],
    ["migrate"],
]


def _assert_ran(done: subprocess.CompletedProcess[str], args: list[str]) -> None:
    assert "Traceback" not in done.stderr, (args, done.stderr)
    assert done.returncode in (0, 1), (args, done.returncode, done.stderr)


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_read_commands_on_the_sample_leave_it_unchanged(args: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    done = _run([*CLI, *args, "--db", str(copy)], cwd=tmp_path)
    _assert_ran(done, args)
    assert filecmp.cmp(copy, SAMPLE, shallow=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.db"]


@pytest.mark.parametrize("args", READ_COMMANDS + WRITE_COMMANDS, ids=" ".join)
def test_every_command_on_a_fresh_store(args: list[str], fresh_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sim.db"
    shutil.copyfile(fresh_store, copy)
    if args[0] == "worker":
        args = ["worker", "worker-01"]
    done = _run([*CLI, *args, "--db", str(copy)], cwd=tmp_path)
    _assert_ran(done, args)


@pytest.mark.parametrize("args", WRITE_COMMANDS, ids=" ".join)
def test_write_commands_on_a_copy_of_the_sample(args: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    done = _run([*CLI, *args, "--db", str(copy)], cwd=tmp_path)
    _assert_ran(done, args)


def test_an_empty_store_answers_every_read_command(tmp_path: Path) -> None:
    qa.connect(tmp_path / "empty.db").close()
    for args in READ_COMMANDS:
        if args[0] in ("task", "worker"):
            continue  # asking for a row an empty store lacks is a user error, tested elsewhere
        done = _run([*CLI, *args, "--db", "empty.db"], cwd=tmp_path)
        _assert_ran(done, args)


def test_every_command_has_help(tmp_path: Path) -> None:
    from qanalytics.cli import main

    names = [*main.commands, "record celery"]
    for name in names:
        done = _run([*CLI, *name.split(), "--help"], cwd=tmp_path)
        assert done.returncode == 0, (name, done.stderr)


def test_simulate_then_report_in_fresh_interpreters(fresh_store: Path, tmp_path: Path) -> None:
    done = _run(
        [*CLI, "report", "--db", str(fresh_store), "--now", "latest", "--quiet", "-o", "r.html"],
        cwd=tmp_path,
    )
    _assert_ran(done, ["report"])
    assert done.returncode == 0
    assert (tmp_path / "r.html").stat().st_size > 10_000


# -- reading changes nothing ------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*is opened for writing:UserWarning")
def test_connect_and_read_leaves_the_sample_byte_identical(tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    with qa.connect(copy) as db:  # write mode, the default
        assert db.schema_version < SCHEMA_VERSION  # an older schema, read as it is
        assert len(qa.tasks(db)) > 0
        assert len(qa.workers(db, now="latest")) > 0
        qa.outages(db, now="latest")
        qa.success_rate(db, freq="1D", now="latest", since="7d")
    assert filecmp.cmp(copy, SAMPLE, shallow=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sample.db"]


def test_opening_an_old_file_for_writing_warns(tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    with pytest.warns(UserWarning, match="opened for writing, but its last event was"):
        qa.connect(copy).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qa.connect(copy, readonly=True).close()  # only reading: nothing to warn about
        qa.connect(copy, clock="latest").close()  # read and written as of its last event
        qa.connect(tmp_path / "new.db").close()  # a new store has no events
    # The command line says it once, in its own words, not as a Python warning.
    done = _run([*CLI, "summarize", "--db", str(copy)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "UserWarning" not in done.stderr and "--now latest" in done.stderr


@pytest.mark.filterwarnings("ignore:.*is opened for writing:UserWarning")
def test_the_first_write_migrates_and_switches_to_wal(tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    with qa.connect(copy) as db:
        assert db.write_setup_pending
        qa.heartbeat(db, "worker-01")  # the hot path, which skips Store.transaction
        assert not db.write_setup_pending
        assert db.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.filterwarnings("ignore:.*is opened for writing:UserWarning")
def test_prepare_writes_and_migrate_command(tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    done = _run([*CLI, "migrate", "--db", str(copy)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"to {SCHEMA_VERSION}" in done.stdout
    with qa.connect(copy) as db:
        assert not db.write_setup_pending
        assert db.prepare_writes() is False
    with qa.connect(copy, readonly=True) as db, pytest.raises(qa.ReadOnlyError):
        db.prepare_writes()


def test_a_new_store_is_set_up_at_once(tmp_path: Path) -> None:
    with qa.connect(tmp_path / "new.db") as db:
        assert not db.write_setup_pending
        assert db.query("PRAGMA journal_mode")[0][0] == "wal"


@pytest.mark.parametrize(
    "args",
    [
        ["prune", "--keep", "1d"],
        ["summarize"],
        ["requeue-orphans"],
        ["requeue-orphans", "--dry-run"],
    ],
    ids=" ".join,
)
def test_writers_on_a_historical_copy_warn(args: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "sample.db"
    shutil.copyfile(SAMPLE, copy)
    done = _run([*CLI, *args, "--db", str(copy)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Warning: the store's last event was at 2026-01-06" in done.stderr
    assert "--now latest" in done.stderr


def test_the_sample_is_untouched_by_this_suite() -> None:
    done = subprocess.run(
        ["git", "status", "--porcelain", "--", "data"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    assert done.stdout == ""


# -- quiet in JupyterLab ----------------------------------------------------------------------


def test_lab_extra_installs_ipywidgets() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("ipywidgets") for dep in extras["lab"])


def test_progress_without_ipywidgets_is_the_text_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import tqdm.std

    from qanalytics import _progress

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ipywidgets" else real(name)
    )
    assert _progress.progress_class() is tqdm.std.tqdm  # no "IProgress not found" warning


def test_simulate_progress_leaves_its_bar_where_stderr_is_no_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with qa.connect(":memory:") as db:
        qa.simulate(db, workers=4, duration="2h", progress=True)
    err = capsys.readouterr().err
    assert "simulating" in err and "120/120" in err  # not an empty box in a notebook
    assert err.rstrip().endswith("]")


def test_readme_names_every_notebook() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Notebooks") :]
    section = section[: section.index("\n### ", 5)]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        number = notebook.name[:2]
        assert f" {number} " in section, f"README's notebooks section does not list {number}"
