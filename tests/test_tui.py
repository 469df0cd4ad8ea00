"""The console driven key by key against a real store and the real simulator.

Every test waits on the App's workers (never sleeps) and asserts the effect where
it lands: in the store and at the simulator.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.worker import WorkerState

from batchtop import Client
from batchtop.config import Config, EngineConfig
from batchtop.sim import SimConfig, Simulator
from batchtop.timefmt import parse_time
from batchtop.tui import rows
from batchtop.tui.app import BatchtopApp
from batchtop.tui.messages import ActionDone
from batchtop.tui.registry import ACTIONS
from batchtop.tui.screens.confirm import ConfirmScreen
from batchtop.tui.screens.help import HelpScreen
from batchtop.tui.screens.inspect import InspectScreen
from batchtop.tui.widgets.live_table import LiveTable
from batchtop.views.detail import batch_detail, buffer_detail, error_code

from conftest import anthropic_line, openai_line

SIZE = (150, 45)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("textual.widgets._input.Input.cursor_blink", False)


def start_sim(monkeypatch: pytest.MonkeyPatch, config: SimConfig) -> Simulator:
    sim = Simulator(config).start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.anthropic_base_url)
    return sim


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Fast batches; lines whose custom_id says `failalways` fail every time."""
    s = start_sim(monkeypatch, SimConfig())
    yield s
    s.stop()


@pytest.fixture
def slow_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Batches that stay in progress for the whole test."""
    s = start_sim(monkeypatch, SimConfig(per_request_s=30.0))
    yield s
    s.stop()


MANUAL = Config(engine=EngineConfig(auto_resubmit=False, max_attempts=3))
"""Failures wait for the operator (r), so a resubmit is the only way back."""


def console(data_dir: Path, config: Config = MANUAL, **kw: object) -> BatchtopApp:
    return BatchtopApp(data_dir, config, refresh_every=None, **kw)  # type: ignore[arg-type]


async def settle(pilot: Pilot) -> None:
    """Until no worker is pending or running (a finished one may start another)."""
    app = pilot.app
    for _ in range(100):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers):
            return
    raise AssertionError("workers never settled")


def table(app: BatchtopApp, name: str) -> LiveTable:
    return app.screen.query_one(f"#{name}", LiveTable)


def select(app: BatchtopApp, name: str, key: str) -> None:
    t = table(app, name)
    t.focus()
    t.move_cursor(row=t.get_row_index(key))


def db(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "batchtop.sqlite3")


def enqueue(data_dir: Path, lines: list[dict]) -> None:
    with Client(data_dir) as c:
        c.enqueue_many(lines)


async def submit_all(pilot: Pilot, sim: Simulator) -> list[str]:
    """F, then the engine's ticks until the batches are known; their provider ids."""
    before = len(sim.batches())
    await pilot.press("F")
    await settle(pilot)
    assert len(sim.batches()) > before
    return [b["id"] for b in sim.batches()[before:]]


async def ingest(pilot: Pilot) -> None:
    """One more engine tick now (the poll that picks up ended batches)."""
    pilot.app.wake_engine()  # type: ignore[attr-defined]
    await settle(pilot)


# -- keys ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_f_flushes_the_selected_buffer_into_a_batch(data_dir: Path, sim: Simulator) -> None:
    enqueue(data_dir, [openai_line(f"o{i}") for i in range(5)] + [anthropic_line(f"a{i}") for i in range(3)])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert sim.batches() == []  # not due yet: nothing goes without a flush
        assert table(app, "buffers").row_count == 2
        select(app, "buffers", "openai:/v1/chat/completions:gpt-4o-mini")
        await pilot.press("f")
        await settle(pilot)
        assert [(b["provider"], b["n"]) for b in sim.batches()] == [("openai", 5)]
        with db(data_dir) as conn:
            assert conn.execute("SELECT provider, queued FROM buffers ORDER BY provider").fetchall() == [
                ("anthropic", 3), ("openai", 0)
            ]
        assert sim.batches()[0]["id"] in table(app, "batches").rows
        await pilot.press("q")
    assert app.return_value == 0
    with db(data_dir) as conn:  # the lease was given back on quit
        assert conn.execute("SELECT count(*) FROM lease").fetchone() == (0,)


@pytest.mark.anyio
async def test_r_resubmits_exactly_the_failed_lines(data_dir: Path, sim: Simulator) -> None:
    ids = [f"ok-{i}" for i in range(6)] + ["bad-failalways-1", "bad-failalways-2"]
    enqueue(data_dir, [openai_line(cid) for cid in ids])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, sim)
        await ingest(pilot)
        assert sim.batch(batch_id)["request_counts"] == {"total": 8, "completed": 6, "failed": 2}
        select(app, "batches", batch_id)
        await pilot.press("r")
        await settle(pilot)
        batches = sim.batches()
        assert len(batches) == 2
        assert sorted(batches[1]["custom_ids"]) == ["bad-failalways-1", "bad-failalways-2"]
        assert sim.submissions[("openai", "ok-0")] == 1
        with db(data_dir) as conn:
            second = conn.execute(
                "SELECT r.custom_id, a.number FROM attempts a JOIN requests r ON r.id = a.request_id"
                " JOIN batches b ON b.id = a.batch_id WHERE b.provider_batch_id = ? ORDER BY 1",
                (batches[1]["id"],),
            ).fetchall()
        assert second == [("bad-failalways-1", 2), ("bad-failalways-2", 2)]


@pytest.mark.anyio
async def test_c_cancels_only_after_confirmation(data_dir: Path, slow_sim: Simulator) -> None:
    enqueue(data_dir, [openai_line(f"c{i}") for i in range(10)])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, slow_sim)
        select(app, "batches", batch_id)

        def cancel_requested() -> bool:
            with db(data_dir) as conn:
                (at,) = conn.execute("SELECT cancel_requested_at FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone()
            return at is not None

        for refusal in ("n", "escape"):
            await pilot.press("c")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmScreen)
            body = str(app.screen.query_one("#dialog-body").render())
            assert "0 of 10 succeeded" in body
            await pilot.press(refusal)
            await settle(pilot)
            assert not isinstance(app.screen, ConfirmScreen)
            assert not cancel_requested()
            assert slow_sim.batch(batch_id)["status"] in ("validating", "in_progress")

        await pilot.press("c")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert cancel_requested()
        assert slow_sim.batch(batch_id)["status"] in ("cancelling", "cancelled")
        assert "cancel" in str(table(app, "batches").get_cell(batch_id, "status"))


@pytest.mark.anyio
async def test_enter_inspects_a_batch_and_a_buffer(data_dir: Path, sim: Simulator) -> None:
    enqueue(data_dir, [openai_line(f"ok-{i}") for i in range(3)] + [openai_line("x-failalways")])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, sim)
        await ingest(pilot)
        select(app, "batches", batch_id)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InspectScreen)
        errors = str(app.screen.query_one("#inspect-errors").render())
        assert "invalid_value" in errors and "x-failalways" in errors
        attempts = app.screen.query_one("#inspect-table")
        assert attempts.row_count == 4
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectScreen)
        enqueue(data_dir, [anthropic_line("later")])
        app.refresh_status()
        await settle(pilot)
        select(app, "buffers", "anthropic:/v1/messages:claude-sonnet-4-20250514")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InspectScreen)
        assert app.screen.query_one("#inspect-table").row_count == 1


@pytest.mark.anyio
async def test_errors_are_notifications_not_crashes(data_dir: Path, slow_sim: Simulator) -> None:
    enqueue(data_dir, [openai_line("only")])
    seen: list[Message] = []
    app = console(data_dir)
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await settle(pilot)
        await pilot.press("r")  # no batch yet
        (batch_id,) = await submit_all(pilot, slow_sim)
        select(app, "batches", batch_id)
        await pilot.press("r")  # still running: cannot resubmit
        await settle(pilot)
        done = [m for m in seen if isinstance(m, ActionDone)]
        assert done[-1].error and "has not ended" in done[-1].text
        assert app.is_running


@pytest.mark.anyio
@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
async def test_filter_help_and_palette(data_dir: Path, sim: Simulator) -> None:
    enqueue(data_dir, [openai_line("o1"), anthropic_line("a1")])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"anthropic")
        assert [k.value for k in table(app, "buffers").rows] == ["anthropic:/v1/messages:claude-sonnet-4-20250514"]
        await pilot.press("escape")
        assert table(app, "buffers").row_count == 2
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        # the palette runs the same actions as the keys
        await pilot.press("ctrl+p", *"Flush all")
        await settle(pilot)
        await pilot.pause(0.3)  # the palette debounces its search
        await pilot.press("enter")
        await settle(pilot)
        assert sorted(b["provider"] for b in sim.batches()) == ["anthropic", "openai"]


@pytest.mark.anyio
async def test_viewer_when_another_engine_holds_the_data_dir(data_dir: Path, sim: Simulator) -> None:
    enqueue(data_dir, [openai_line("v1")])
    with db(data_dir) as conn:
        conn.execute("INSERT INTO lease (name, host, pid, expires_at) VALUES ('engine', 'elsewhere', 4242, ?)",
                     (time.time() + 600,))
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "viewer" in app.engine_line and "4242" in app.engine_line
        assert "viewer" in str(app.screen.query_one("#header").render())
        await pilot.press("F")
        await settle(pilot)
        with db(data_dir) as conn:  # written for the other engine to carry out
            assert conn.execute("SELECT flush_requested_at IS NOT NULL FROM buffers").fetchone() == (1,)
        assert sim.batches() == []
        with db(data_dir) as conn:  # the other engine goes away: this console takes over
            conn.execute("DELETE FROM lease")
        app.refresh_status()
        await settle(pilot)
        assert "engine running" in app.engine_line
        assert len(sim.batches()) == 1


@pytest.mark.anyio
async def test_a_failing_provider_is_a_status_not_a_frozen_screen(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = start_sim(monkeypatch, SimConfig(fault_rate=1.0))  # every HTTP call: 429/500 with retry-after-ms
    try:
        enqueue(data_dir, [openai_line("f1")])
        app = console(data_dir)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("F")
            await settle(pilot)
            header = str(app.screen.query_one("#header").render())
            assert "openai backing off" in header
            assert "openai:" in str(app.screen.query_one("#problems").render())
            await pilot.press("slash", "x")  # still answering keys
            assert app.screen.query_one("#filter").value == "x"
    finally:
        sim.stop()


# -- pieces -------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_live_table_keeps_the_cursor_on_its_row() -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield LiveTable(("name", "n"), id="t")

    app = One()
    async with app.run_test() as pilot:
        t = app.query_one(LiveTable)
        t.sync([("a", ("a", "1")), ("b", ("b", "2")), ("c", ("c", "3"))])
        await pilot.pause()
        t.move_cursor(row=1)
        t.sync([("new", ("new", "0")), ("a", ("a", "1")), ("b", ("b", "5"))])  # c gone, new on top
        await pilot.pause()
        assert [r.key.value for r in t.ordered_rows] == ["new", "a", "b"]
        assert t.selected_key == "b"
        assert t.get_cell("b", "n") == "5"


def test_rows_format_from_the_document_only() -> None:
    bar = rows.progress_bar(6, 2, 10)
    assert bar.plain == "██████▒▒░░ 8/10 ✗2"
    now = parse_time("2026-11-25T10:00:00Z")
    assert rows.countdown(parse_time("2026-11-25T10:04:00Z"), now) == "in 4m"
    assert rows.countdown(parse_time("2026-11-25T09:00:00Z"), now) == "now"
    assert rows.ago(parse_time("2026-11-25T08:30:00Z"), now) == "1h30m"
    assert rows.ago(now - 59.6, now) == "1m"  # counted from the second the JSON shows, as before
    assert rows.ago(None, now) == rows.countdown(None, now) == "-"
    assert rows.size(53_100) == "53.1\u00a0kB"  # a no-break space: the unit never wraps away
    assert rows.matches(("k", ("openai", "gpt-4o")), "OPENAI 4o")
    assert error_code("server_error: boom", "errored") == "server_error"
    assert error_code(None, "expired") == "expired"


def test_palette_and_bindings_share_one_registry() -> None:
    from batchtop.tui.screens.main import MainScreen

    keys = {b.key: b.action for b in MainScreen.BINDINGS}  # type: ignore[union-attr]
    assert keys == {a.key: a.action for a in ACTIONS}
    assert {"f", "F", "r", "c", "enter", "slash", "question_mark", "q"} <= set(keys)


def test_inspect_queries_need_no_textual(data_dir: Path, sim: Simulator) -> None:
    """The inspect screen's queries are headless; so are the console's data helpers."""
    code = (
        "import sys, batchtop.views.detail, batchtop.tui, batchtop.tui.snapshot, batchtop.engine.driver,"
        " batchtop.tui.operations, batchtop.demo; assert 'textual' not in sys.modules, 'textual'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    enqueue(data_dir, [openai_line("q1"), openai_line("q2")])
    with db(data_dir) as conn:
        detail = buffer_detail(conn, "openai:/v1/chat/completions:gpt-4o-mini")
        assert [r.custom_id for r in detail.requests] == ["q1", "q2"]
        with pytest.raises(Exception, match="no batch"):
            batch_detail(conn, "batch_nope")

