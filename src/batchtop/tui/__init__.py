"""The console (TUI). Textual is imported lazily, inside `run_console`, so the
headless commands never pay for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App

    from batchtop.config import Config


def run_console(data_dir: Path, config: Config, *, read_only: bool = False) -> int:
    """Open the console on a data dir (`read_only`: a view that refuses every action
    and runs no engine); returns the exit status, non-zero when the console ended in
    an error rather than by quitting."""
    from batchtop.tui.app import BatchtopApp

    app = BatchtopApp(data_dir, config, read_only=read_only)
    result = app.run()
    return exit_status(app, result)


def exit_status(app: App[Any], result: object) -> int:
    """The app's own result, unless it ended in an error (Textual printed the
    traceback and set a non-zero return code): a crash never exits 0."""
    if app.return_code:
        return int(app.return_code)
    return int(result or 0)  # type: ignore[call-overload]
