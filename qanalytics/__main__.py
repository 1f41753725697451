"""``python -m qanalytics``: the same as the ``qanalytics`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="qanalytics")
