"""The console (TUI). Textual is imported lazily, inside `run_console`, so the
headless commands never pay for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from batchtop.config import Config


def run_console(data_dir: Path, config: Config) -> int:
    """Open the console on a data dir; returns the exit status."""
    from batchtop.tui.app import BatchtopApp

    result = BatchtopApp(data_dir, config).run()
    return int(result or 0)
