"""The console (TUI). Textual is imported lazily, inside `run_console`, so the
headless commands never pay for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from batchtop.config import Config


def run_console(data_dir: Path, config: Config) -> int:
    """Open the console on a data dir; returns the exit status, non-zero when the
    console ended in an error rather than by quitting."""
    from batchtop.tui.app import BatchtopApp

    app = BatchtopApp(data_dir, config)
    result = app.run()
    if app.return_code:  # a crash (Textual printed the traceback): never exit 0
        return int(app.return_code)
    return int(result or 0)
