"""`batchtop demo`: the simulator, the workload and the console in one process."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from textual.app import App

from batchtop.demo import DemoSession, run_demo
from batchtop.tui.app import BatchtopApp
from batchtop.tui.widgets.live_table import LiveTable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("textual.widgets._input.Input.cursor_blink", False)


@pytest.mark.anyio
async def test_demo_shows_batches_within_seconds() -> None:
    with DemoSession(speed=4.0) as demo:
        data_dir = demo.data_dir
        assert data_dir is not None and data_dir.exists()
        assert os.environ["OPENAI_BASE_URL"] == demo.sim.openai_base_url
        app = demo.app()
        async with app.run_test(size=(150, 45)) as pilot:
            batches = app.screen.query_one("#batches", LiveTable)
            deadline = time.monotonic() + 15
            while batches.row_count == 0 or not demo.sim.batches():
                assert time.monotonic() < deadline, "no batch on screen within 15 s"
                await asyncio.sleep(0.1)  # the demo runs on real time: wait for its refresh
            assert set(batches.rows) & {b["id"] for b in demo.sim.batches()}
            assert "engine running" in app.engine_line
            await pilot.press("q")
        assert demo.workload is not None and demo.workload.error is None
    assert not data_dir.exists()
    assert "OPENAI_BASE_URL" not in os.environ  # restored: conftest removed it


def test_run_demo_starts_fast_and_exits_by_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real entry point, headless; it cleans up after itself."""
    started: list[float] = []
    made: list[Path] = []
    real_run = App.run

    def headless_run(self: BatchtopApp, **kw: object) -> object:
        made.append(self.data_dir)
        self.call_later(lambda: started.append(time.monotonic()))
        return real_run(self, headless=True, size=(150, 45))

    monkeypatch.setattr(BatchtopApp, "run", headless_run)
    t0 = time.monotonic()
    assert run_demo(speed=2.0, seconds=2.0) == 0
    assert started and started[0] - t0 < 3.0
    assert time.monotonic() - t0 < 12
    assert made and not made[0].exists()
    assert not Path(os.environ["BATCHTOP_DATA_DIR"]).exists()  # never the real data dir
