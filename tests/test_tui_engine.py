"""The console's engine loop: it keeps ticking whatever the keys do, and the header
tells the truth about when a tick last finished."""

# ruff: noqa: F811  (pytest fixtures imported from test_tui are parameters here)
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from textual.message import Message

from batchtop.config import Config, EngineConfig
from batchtop.sim import Simulator
from batchtop.tui.engine_line import EngineView, engine_text, stalled_for
from batchtop.tui.messages import EngineTicked
from test_tui import SIZE, anyio_backend, console, enqueue, settle, sim  # noqa: F401 (fixtures)

from conftest import openai_line

FAST = Config(engine=EngineConfig(poll_interval=0.5, auto_resubmit=False, max_attempts=3))


@pytest.mark.anyio
async def test_keys_mid_tick_never_stop_the_engine(data_dir: Path, sim: Simulator) -> None:
    """An action that lands while a tick runs queues one more tick; after it the loop
    must go on by itself (it used to arm a 0 s timer that never fires)."""
    enqueue(data_dir, [openai_line(f"s{i}") for i in range(3)])
    ticks: list[float] = []

    def hook(message: Message) -> None:
        if isinstance(message, EngineTicked):
            ticks.append(time.monotonic())

    app = console(data_dir, FAST)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await settle(pilot)
        assert ticks, "the engine never ticked"
        await pilot.press("F", "F")  # each action wakes the engine when its write is done
        app.wake_engine()  # a tick is running now…
        app.wake_engine()  # …and another action's wake lands on it, as a key mid-tick does
        await settle(pilot)
        before = len(ticks)
        deadline = time.monotonic() + 15
        while len(ticks) < before + 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # leave it alone: the poll alone must tick
        assert len(ticks) >= before + 3, f"engine stalled: {len(ticks) - before} tick(s) after the keys"
        assert "last tick" in app.engine_line
        assert "NO TICK" not in app.engine_line
        await pilot.press("q")


def test_engine_line_warns_when_no_tick_finished_within_three_polls() -> None:
    fresh = EngineView("running", poll_interval=30.0, started_at=0.0, last_tick_at=100.0, summary="took 0.2s")
    assert engine_text(fresh, 105.0).plain == "engine running · last tick 5s ago (took 0.2s)"
    assert stalled_for(fresh, 189.0) is None
    late = engine_text(fresh, 100.0 + 91)
    assert "NO TICK FOR 1m (poll every 30s)" in late.plain
    assert any("red" in str(span.style) for span in late.spans)
    never = EngineView("starting", poll_interval=1.0, started_at=0.0)
    assert "NO TICK FOR 4s" in engine_text(never, 4.0).plain
    assert engine_text(EngineView("off", poll_interval=1.0), 0).plain == "engine off"


def test_engine_line_never_reads_untrusted_text_as_markup() -> None:
    hostile = "boom [/] [bold]x\x1b]52;c;aGk=\x07\x1b[2J"
    line = engine_text(EngineView("error", poll_interval=1.0, started_at=0.0, detail=hostile), 0.5)
    assert "[/] [bold]x" in line.plain
    assert "\x1b" not in line.plain and "\x07" not in line.plain
