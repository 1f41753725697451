"""The notebooks are stored with their outputs: keep them small, clean and runnable.

nbval (configured in pyproject.toml) executes them; these checks look at what is saved.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_NOTEBOOK_BYTES = 1_000_000
MAX_IMAGE_BYTES = 200_000
# Machine-specific paths must not leak into sources or saved outputs.
MACHINE_PATH = re.compile(r"(/home/|/Users/|/tmp/|/work/|[A-Z]:\\\\)")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def test_the_three_notebooks_exist() -> None:
    names = {path.stem for path in NOTEBOOKS}
    assert {
        "01-registration-and-heartbeats",
        "02-stale-workers",
        "03-success-rate-trends",
    } <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_small_with_outputs_and_no_errors(path: Path) -> None:
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is too big to commit"
    nb = _load(path)
    cells = _code_cells(nb)
    assert all(cell["execution_count"] is not None for cell in cells), "saved unexecuted"
    counts = [cell["execution_count"] for cell in cells]
    assert counts == sorted(counts), "cells were not run top to bottom"
    images = 0
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", f"{path.name} saved an error"
            png = output.get("data", {}).get("image/png")
            if png:
                images += 1
                assert len(base64.b64decode(png)) < MAX_IMAGE_BYTES
    assert images > 0, f"{path.name} has no plots saved"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tells_a_story_and_stays_portable(path: Path) -> None:
    nb = _load(path)
    markdown = [cell for cell in nb["cells"] if cell["cell_type"] == "markdown"]
    assert len(markdown) >= len(_code_cells(nb)) // 2, "prose between the code, please"
    text = json.dumps(nb)
    assert not MACHINE_PATH.search(text), f"{path.name} mentions a machine path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_sample_database_is_opened_read_only(path: Path) -> None:
    for cell in _code_cells(_load(path)):
        source = "".join(cell["source"])
        for call in re.findall(r"qa\.connect\([^)]*sample\.db[^)]*\)", source):
            assert "readonly=True" in call, f"{path.name}: {call} could write to the sample"
