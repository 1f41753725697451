"""How long ``qanalytics --help`` takes to start, against loading the whole library first.

Each measurement is a fresh ``python`` process, timed from outside (wall clock):

* ``--help``: ``python -m qanalytics --help`` as shipped (the library is loaded on first use);
* ``eager``: ``python -c "import qanalytics._api; ..."`` then the same ``--help``: what every
  command paid before, when ``import qanalytics`` loaded pandas, numpy, pyarrow and the rest;
* ``python``: ``python -c pass``, the interpreter's own start-up, for scale.

The three alternate over ``--repeats`` (default 7) and medians are printed with the ratio
eager / ``--help``. Goal: ``--help`` at least 3x faster than eager.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import median, print_table

ROOT = Path(__file__).resolve().parent.parent
GOAL = 3.0

CASES = {
    "--help": [sys.executable, "-m", "qanalytics", "--help"],
    "eager": [
        sys.executable,
        "-c",
        "import qanalytics._api\nfrom qanalytics.cli import main\nmain(['--help'])",
    ],
    "python": [sys.executable, "-c", "pass"],
}


def _run_once(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(
        argv, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-check", action="store_true", help="Only report.")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for argv in CASES.values():  # warm the file cache once
        _run_once(argv)
    for _ in range(args.repeats):
        for name, argv in CASES.items():
            times[name].append(_run_once(argv))
    med = {name: median(values) for name, values in times.items()}
    print_table(
        ["start-up", "median s", "min s"],
        [(name, f"{med[name]:.3f}", f"{min(times[name]):.3f}") for name in CASES],
    )
    ratio = med["eager"] / med["--help"]
    print(f"\neager / --help: {ratio:.1f}x (goal >= {GOAL:g}x)")
    if not args.no_check and ratio < GOAL:
        print(f"FAILED: --help is only {ratio:.1f}x faster than loading the library first")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
