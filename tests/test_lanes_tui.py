"""The console's key for dead letters retried real time (issue 15): it asks with the
estimated cost, and the console's engine sends each once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from batchtop.config import Config, EngineConfig, FlushPolicy
from batchtop.sim import Simulator
from batchtop.store import Store
from test_tui import anyio_backend, console, no_cursor_blink, settle, sim  # noqa: F401 (fixtures)

from conftest import run_batchtop
from engine_helpers import enqueue as enqueue_lines
from engine_helpers import openai_lines, states

FAST = Config(engine=EngineConfig(poll_interval=0.1), flush=FlushPolicy(max_age=0.0))


@pytest.mark.anyio
async def test_retry_realtime_key_asks_with_the_cost_then_sends_once(data_dir: Path, sim: Simulator) -> None:  # noqa: F811
    sim.config.scripted_errors = {"k0": "invalid_request", "k1": "invalid_request"}
    enqueue_lines(data_dir, openai_lines(2, "k"))

    assert run_batchtop("--data-dir", str(data_dir), "flush", "--all").returncode == 0
    for _ in range(50):  # engine passes of their own, in another process, until both are dead letters
        run_batchtop("--data-dir", str(data_dir), "tick")
        with Store(data_dir) as store:
            if states(store) == {"dead": 2}:
                break
        time.sleep(0.1)
    app = console(data_dir, FAST)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("R")
        await settle(pilot)
        body = " ".join(str(app.screen.query_one("#dialog-body").render()).split())
        assert "2 requests at list price, about $" in body
        await pilot.press("n")
        await settle(pilot)
        assert not sim.realtime_calls
        await pilot.press("R")
        await settle(pilot)
        await pilot.press("y")
        end = time.monotonic() + 30
        while time.monotonic() < end:
            await settle(pilot)
            with Store(data_dir) as store:
                if states(store) == {"succeeded": 2}:
                    break
            await pilot.pause(0.2)
    with Store(data_dir) as store:
        assert states(store) == {"succeeded": 2}
    assert sorted(sim.realtime_calls.values()) == [1, 1]
