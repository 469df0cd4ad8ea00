"""The console in a real terminal (tmux): what only a terminal shows. A provider's
escape sequences must arrive as visible stand-ins, never as commands (window title,
OSC 52 clipboard, clear screen), and the exit status must tell the truth."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.app import App

from batchtop.sim import Simulator
from batchtop.tui import exit_status

from conftest import openai_line, run_batchtop

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

HOSTILE = "quota \x1b]0;pwned-title\x07 \x1b]52;c;aGVsbG8=\x1b\\ \x1b[2J\x1b[31m red [/] [bold]x"


SOCKET = f"batchtop-test-{os.getpid()}"
"""A tmux server of our own: its size and options are not shared with anyone's."""


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True, check=True).stdout


def wait_for(what: str, session: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if what in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{what!r} never appeared:\n{screen}")


def test_hostile_text_is_shown_not_obeyed_and_quit_exits_0(data_dir: Path, tmp_path: Path) -> None:
    lines = tmp_path / "work.jsonl"
    lines.write_text("\n".join(json.dumps(openai_line(f"t{i}", model="gpt-4o-mini[/]")) for i in range(3)) + "\n")
    assert run_batchtop("--data-dir", str(data_dir), "enqueue", str(lines)).returncode == 0  # names are data
    sim = Simulator().start()
    try:
        env = {"OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": sim.openai_base_url}
        assert run_batchtop("--data-dir", str(data_dir), "flush", "--all", env=env).returncode == 0
        assert run_batchtop("--data-dir", str(data_dir), "tick", env=env).returncode == 0
    finally:
        sim.stop()
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as conn:  # as a hostile provider would report it
        conn.execute("UPDATE batches SET status = 'failed', last_error = ?", (HOSTILE,))

    session = f"batchtop-test-{os.getpid()}"
    status_file = tmp_path / "status"
    command = (
        f"cd {tmp_path} && env -u COLUMNS -u LINES {sys.executable} -m batchtop --data-dir {data_dir}; echo $? > {status_file}; sleep 30"
    )
    env_args = [arg for name in ("BATCHTOP_CONFIG", "BATCHTOP_DATA_DIR", "PATH", "HOME")
                if name in os.environ for arg in ("-e", f"{name}={os.environ[name]}")]
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", *env_args, command)
    try:
        screen = wait_for("Errors & alerts", session)
        screen = wait_for("red [/] [bold]x", session)
        assert "␛]52;c;aGVsbG8=␛\\" in screen  # the escapes, made visible
        screen = wait_for("gpt-4o-mini[/]", session)  # markup in a name, shown as typed (the buffers may come a refresh later)
        assert "pwned-title" not in tmux("display-message", "-p", "-t", session, "#{pane_title}")
        raw = tmux("capture-pane", "-p", "-e", "-t", session)
        assert "\x1b]52" not in raw and "\x1b]0;pwned" not in raw
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 20
        while not status_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], check=False, capture_output=True)


def test_a_console_that_crashes_does_not_exit_0() -> None:
    class Crashes(App[int]):
        def on_mount(self) -> None:
            raise RuntimeError("boom")

    app = Crashes()
    result = app.run(headless=True)
    assert exit_status(app, result) == 1

    class Quits(App[int]):
        def on_mount(self) -> None:
            self.exit(0)

    app2 = Quits()
    assert exit_status(app2, app2.run(headless=True)) == 0
