"""`batchtop serve`: the console in a real headless browser, and the guard in front of it.

The server is the real `batchtop serve` process (textual-serve, one console process
per browser session) on 127.0.0.1, over a real SQLite store; the browser is Debian's
Chromium driven by Playwright (`/usr/bin/chromium`; `.ci/run` installs it). What the
page shows is read from the websocket frames the browser received, so a test sees the
screen the operator sees; the store is read after every key.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchtop import Client
from batchtop.config import Config
from batchtop.sim import SimConfig, Simulator
from batchtop.tui.app import BatchtopApp
from batchtop.tui.screens.confirm import ConfirmScreen
from batchtop.tui.widgets.live_table import LiveTable

from conftest import anthropic_line, openai_line, run_batchtop
from engine_helpers import point_sdks_at

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run does)"
)
TOKEN = "s3cret-token-for-the-test-0123456789"
ANSI = re.compile(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|P[^\x1b]*\x1b\\|[@-Z\\-_])")
BUFFER = "openai:/v1/chat/completions:gpt-4o-mini"


def enqueue(data_dir: Path, lines: list[dict]) -> None:
    with Client(data_dir) as c:
        c.enqueue_many(lines)


def db_rows(data_dir: Path, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as conn:
        return conn.execute(sql, args).fetchall()


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (the sessions' consoles), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


class Served:
    """A running `batchtop serve`; stopped with SIGTERM, which must leave no console behind."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()
        found = re.search(r"http://\S+/", self.banner)
        assert found, self.banner + self.proc.stdout.read()
        self.url = found.group(0)
        self.output = ""

    def sessions(self) -> list[int]:
        """The session processes under the server (shell and console), by pid."""
        found, todo = [], children(self.proc.pid)
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children(pid)
        return found

    def stop(self) -> None:
        sessions = self.sessions()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.output = self.banner + out
        assert self.proc.returncode == 0, self.output
        # a console lets a running engine tick finish before it quits (up to its grace):
        # under load that can outlast the server's own exit by a few seconds
        deadline = time.monotonic() + 15
        while True:
            alive = [pid for pid in sessions if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert alive == [], "a session's console outlived the server"


@pytest.fixture
def served(data_dir: Path) -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for s in running:
        if s.proc.poll() is None:
            s.stop()


def serve(running: list[Served], data_dir: Path, *args: str, **kw: dict[str, str]) -> Served:
    s = Served(data_dir, *args, **kw)
    running.append(s)
    return s


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) without following redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kw: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


# -- refusing to start ----------------------------------------------------------------------


def test_any_other_address_needs_read_only_or_a_token(data_dir: Path) -> None:
    for host in ("0.0.0.0", "::"):
        done = run_batchtop("--data-dir", str(data_dir), "serve", "--host", host, "--port", "0", timeout=30)
        assert done.returncode == 2, done.stderr
        assert f"refusing to serve the console on {host}" in done.stderr
        assert "--read-only" in done.stderr and "--token-env" in done.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("value", ["", "short"])
def test_a_token_must_be_set_and_long_enough(data_dir: Path, value: str) -> None:
    done = run_batchtop("--data-dir", str(data_dir), "serve", "--token-env", "BT_TOKEN", env={"BT_TOKEN": value},
                        timeout=30)
    assert done.returncode == 1
    assert "--token-env BT_TOKEN" in done.stderr and (value == "" or "at least 16" in done.stderr)
    assert value not in done.stderr or value == ""


@pytest.mark.parametrize("args", [("--read-only", "tick"), ("--once", "--read-only"), ("flush", "--all", "--read-only")])
def test_read_only_elsewhere_is_a_usage_error(data_dir: Path, args: tuple[str, ...]) -> None:
    done = run_batchtop("--data-dir", str(data_dir), *args, timeout=30)
    assert done.returncode == 2 and "--read-only" in done.stderr.splitlines()[-1]


def test_a_port_in_use_is_a_clear_error(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_batchtop("--data-dir", str(data_dir), "serve", "--port", str(port), timeout=30)
    assert done.returncode == 1
    assert f"batchtop: cannot listen on 127.0.0.1 port {port}" in done.stderr and "Traceback" not in done.stderr


def test_non_loopback_read_only_starts(data_dir: Path, served: list[Served]) -> None:
    s = serve(served, data_dir, "--host", "0.0.0.0", "--read-only")
    assert "(read-only, no token)" in s.banner
    port = s.url.rsplit(":", 1)[1].strip("/")
    status, _, body = get(f"http://127.0.0.1:{port}/")
    assert status == 200 and "batchtop (read-only)" in body
    assert f"ws://127.0.0.1:{port}/ws" in body  # the address the browser used, not 0.0.0.0


# -- the guard, over plain HTTP ---------------------------------------------------------------


def test_token_guards_every_route_and_never_shows_up_in_the_log(data_dir: Path, served: list[Served]) -> None:
    s = serve(served, data_dir, "--token-env", "BT_TOKEN", env={"BT_TOKEN": TOKEN})
    assert "token required" in s.banner
    for path in ("", "ws", "static/js/textual.js", "download/x"):
        status, _, body = get(s.url + path)
        assert status == 401 and TOKEN not in body, path
    assert get(s.url + "?token=wrong-token-wrong-token")[0] == 401
    assert get(s.url, {"Authorization": "Bearer wrong"})[0] == 401
    assert get(s.url, {"Cookie": "batchtop_session=" + TOKEN})[0] == 401  # the cookie is not the token

    status, headers, _ = get(s.url + f"?token={TOKEN}&fontsize=14")
    assert status == 303 and headers["Location"] == "/?fontsize=14"  # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    session = cookie.split(";", 1)[0]
    status, headers, body = get(s.url + "?fontsize=14", {"Cookie": session})
    assert status == 200 and "textual-terminal" in body and headers["X-Frame-Options"] == "DENY"
    assert get(s.url + "static/js/textual.js", {"Cookie": session})[0] == 200
    assert get(s.url, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    # behind a TLS-terminating reverse proxy: its Host is served (the token guards),
    # and the page's websocket is wss:// so the browser does not block it
    proxied = {"Host": "batchtop.example.org", "X-Forwarded-Proto": "https"}
    status, headers, _ = get(s.url + f"?token={TOKEN}", proxied)
    assert status == 303 and "Secure" in headers["Set-Cookie"]
    status, _, body = get(s.url, {**proxied, "Cookie": session})
    assert status == 200 and "wss://batchtop.example.org/ws" in body
    s.stop()
    assert TOKEN not in s.output and "GET /static/js/textual.js 200" in s.output


def test_a_local_console_serves_only_local_names_and_its_own_origin(data_dir: Path, served: list[Served]) -> None:
    s = serve(served, data_dir)
    port = s.url.rsplit(":", 1)[1].strip("/")
    assert get(s.url)[0] == 200
    assert get(f"http://localhost:{port}/")[0] == 200
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1
    assert get(s.url, {"Host": f"evil.example:{port}"})[0] == 403
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert get(s.url + "ws", {**upgrade, "Origin": "http://evil.example"})[0] == 403
    assert children(s.proc.pid) == []  # a refused websocket starts no console


# -- the read-only console itself (Pilot) --------------------------------------------------------


@pytest.fixture
def slow_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Batches that stay in progress for the whole test."""
    s = Simulator(SimConfig(per_request_s=30.0)).start()
    point_sdks_at(s, monkeypatch)
    yield s
    s.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_read_only_console_refuses_every_action_and_runs_no_engine(
    data_dir: Path, slow_sim: Simulator, anyio_backend: str
) -> None:
    enqueue(data_dir, [openai_line(f"o{i}") for i in range(3)])
    assert run_batchtop("--data-dir", str(data_dir), "flush", "--all").returncode == 0
    assert run_batchtop("--data-dir", str(data_dir), "tick").returncode == 0  # one batch in progress
    (batch_id,) = [b["id"] for b in slow_sim.batches()]
    enqueue(data_dir, [openai_line(f"q{i}") for i in range(2)] + [anthropic_line("a1")])  # queued
    before = db_rows(data_dir, "SELECT id, queued, flush_requested_at FROM buffers ORDER BY id")
    states = db_rows(data_dir, "SELECT state, count(*) FROM requests GROUP BY state ORDER BY state")
    slow_sim.clear_log()

    app = BatchtopApp(data_dir, Config(), refresh_every=None, read_only=True)
    async with app.run_test(size=(150, 45)) as pilot:
        for _ in range(50):
            await app.workers.wait_for_complete()
            await pilot.pause()
            if app.latest is not None:
                break
        assert not app.runs_engine
        footer = {b.binding.action for b in app.screen.active_bindings.values()}
        assert not footer & {"flush", "flush_all", "resubmit", "cancel"}
        buffers = app.screen.query_one("#buffers", LiveTable)
        buffers.focus()
        buffers.move_cursor(row=buffers.get_row_index(BUFFER))
        await pilot.press("f", "F")
        batches = app.screen.query_one("#batches", LiveTable)
        batches.focus()
        batches.move_cursor(row=batches.get_row_index(batch_id))
        await pilot.press("r", "c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)  # refused before the prompt
        await app.screen.run_action("flush_all")  # the command palette's way in
        app.cancel(batch_id)  # and any other caller of the App's own methods
        await app.workers.wait_for_complete()
        await pilot.pause()
        notices = [n.message for n in app._notifications]
        for what in ("flush", "flush all", "resubmit", "cancel"):
            assert f"read-only console: {what} is disabled" in notices
        await pilot.press("q")

    assert db_rows(data_dir, "SELECT id, queued, flush_requested_at FROM buffers ORDER BY id") == before
    assert db_rows(data_dir, "SELECT state, count(*) FROM requests GROUP BY state ORDER BY state") == states
    assert db_rows(data_dir, "SELECT count(*) FROM batches WHERE cancel_requested_at IS NOT NULL") == [(0,)]
    assert db_rows(data_dir, "SELECT count(*) FROM lease") == [(0,)]
    assert slow_sim.requests() == []  # no engine: no provider call


# -- in a real browser ---------------------------------------------------------------------------


class Page:
    """A Chromium page on the served console; `text` is what the websocket delivered
    to the browser (the screen's text, escape sequences removed)."""

    def __init__(self, browser: object, url: str) -> None:
        self.frames: list[bytes] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        self.response = self.page.goto(url)

    def _frame(self, payload: str | bytes) -> None:
        self.frames.append(payload if isinstance(payload, bytes) else payload.encode())

    @property
    def text(self) -> str:
        return ANSI.sub("", b"".join(self.frames).decode("utf-8", "replace"))

    def wait_for(self, needle: str, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            assert time.monotonic() < deadline, f"{needle!r} never shown; got {self.text[-2000:]!r}"
            self.page.wait_for_timeout(100)

    def press(self, *keys: str) -> None:
        self.page.locator("#terminal").click()
        for key in keys:
            self.page.keyboard.press(key)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM))
        yield b
        b.close()


def _work(data_dir: Path) -> None:
    enqueue(data_dir, [openai_line(f"o{i}") for i in range(4)] + [anthropic_line(f"a{i}") for i in range(2)])


@needs_chromium
def test_browser_shows_the_buffers_and_read_only_keys_change_nothing(
    data_dir: Path, served: list[Served], browser: object, tmp_path: Path
) -> None:
    _work(data_dir)
    before = db_rows(data_dir, "SELECT id, queued, flush_requested_at FROM buffers ORDER BY id")
    s = serve(served, data_dir, "--read-only")
    page = Page(browser, s.url)
    page.wait_for("gpt-4o-mini")
    page.wait_for("claude-sonnet-4-20250514")
    assert "read-only" in page.text and "Buffers (2)" in page.text
    page.press("Tab", "Tab", "f", "F")  # to the buffers table, flush it, flush all
    page.wait_for("read-only console: flush all is disabled")
    page.page.wait_for_timeout(500)
    page.page.screenshot(path=str(tmp_path / "browser.png"))
    assert (tmp_path / "browser.png").stat().st_size > 10_000
    assert db_rows(data_dir, "SELECT id, queued, flush_requested_at FROM buffers ORDER BY id") == before
    assert db_rows(data_dir, "SELECT count(*) FROM batches") == [(0,)]
    assert db_rows(data_dir, "SELECT count(*) FROM lease") == [(0,)]  # a view runs no engine
    page.page.close()
    s.stop()


@needs_chromium
def test_browser_flush_reaches_the_store_when_not_read_only(
    data_dir: Path, served: list[Served], browser: object
) -> None:
    """The control for the read-only test: the same keys do reach the console."""
    _work(data_dir)
    s = serve(served, data_dir)
    page = Page(browser, s.url)
    page.wait_for("gpt-4o-mini")
    page.press("F")
    page.wait_for("flush requested for every buffer")
    flushed = db_rows(data_dir, "SELECT count(*) FROM buffers WHERE flush_requested_at IS NOT NULL")
    assert flushed == [(2,)]
    (holder,) = db_rows(data_dir, "SELECT pid FROM lease")  # the session's console runs the engine
    assert holder[0] in s.sessions()
    s.stop()  # with the page still open: the session is closed, its console quits and gives the lease back
    assert db_rows(data_dir, "SELECT count(*) FROM lease") == [(0,)]
    assert "Traceback" not in s.output
    page.page.close()


@needs_chromium
def test_browser_needs_the_token_once(data_dir: Path, served: list[Served], browser: object) -> None:
    _work(data_dir)
    s = serve(served, data_dir, "--token-env", "BT_TOKEN", env={"BT_TOKEN": TOKEN})
    refused = Page(browser, s.url)
    assert refused.response.status == 401 and "needs its token" in refused.page.content()
    assert refused.frames == []
    page = Page(browser, f"{s.url}?token={TOKEN}")
    page.wait_for("gpt-4o-mini")
    assert TOKEN not in page.page.url  # redirected: the token is not left in the address bar
    assert page.page.context.request.get(s.url).status == 200  # the cookie holds the session for a reload
    page.page.close()
    refused.page.close()
    s.stop()
    assert TOKEN not in s.output


def test_readme_shows_the_browser_view() -> None:
    root = Path(__file__).resolve().parent.parent
    assert "](screenshots/browser.png)" in (root / "README.md").read_text(encoding="utf-8")
    assert (root / "screenshots" / "browser.png").read_bytes().startswith(b"\x89PNG")
