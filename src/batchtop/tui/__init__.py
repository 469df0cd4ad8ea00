"""The console (TUI). Textual is imported lazily, inside `run_console`, so the
headless commands never pay for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App

    from batchtop.config import Config
    from batchtop.tui.app import BatchtopApp


READ_ONLY_STORE = "read-only store: viewing only"
"""What the console says when its PostgreSQL role may only read the store."""


def run_console(data_dir: Path, config: Config, *, read_only: bool = False) -> int:
    """Open the console on a data dir (`read_only`: a view that refuses every action
    and runs no engine); returns the exit status, non-zero when the console ended in
    an error rather than by quitting."""
    app = console_app(data_dir, config, read_only=read_only)
    result = app.run()
    return exit_status(app, result)


def console_app(data_dir: Path, config: Config, *, read_only: bool = False) -> BatchtopApp:
    """The console `run_console` runs: a viewer (as with `read_only`, saying why) when
    its PostgreSQL role may only read the store."""
    from batchtop.tui.app import BatchtopApp
    from batchtop.tui.snapshot import store_is_read_only

    reason = None
    if not read_only and store_is_read_only(data_dir, config):
        read_only, reason = True, READ_ONLY_STORE
    return BatchtopApp(data_dir, config, read_only=read_only, read_only_reason=reason)


def exit_status(app: App[Any], result: object) -> int:
    """The app's own result, unless it ended in an error (Textual printed the
    traceback and set a non-zero return code): a crash never exits 0."""
    if app.return_code:
        return int(app.return_code)
    return int(result or 0)  # type: ignore[call-overload]
