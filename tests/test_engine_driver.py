"""The one engine driver: `run`'s loop and the console's engine follow the same rule.

Both hosts are driven through the same scenario against a provider whose batch create
takes SLOW seconds, so a tick can be caught in the middle:
- the first tick (at start) submits; two ticks asked for while it runs are answered
  by one tick that starts as soon as it ends;
- then nothing wakes the driver (no work due, a long poll interval) until a tick is
  asked for while idle: it starts at once;
- across all of it the provider's SDK client was built once, and closed once.
"""

# ruff: noqa: F811  (pytest fixtures imported from other test modules are parameters here)
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.message import Message

from batchtop.config import Config, EngineConfig, FlushPolicy
from batchtop.engine.driver import EngineDriver, TickOutcome
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.clients import build_adapter
from batchtop.tui.app import BatchtopApp
from batchtop.tui.messages import EngineTicked, EngineTicking
from test_tui import SIZE, anyio_backend, enqueue  # noqa: F401 (fixtures)

from conftest import openai_line
from hostile_provider import HostileProvider, hostile  # noqa: F401 (hostile is a fixture)

SLOW = 1.0
"""Seconds the provider takes to create a batch: the first tick lasts at least this."""
RIGHT_AFTER = 0.5
"""A tick asked for mid-tick starts within this of the running one's end."""
IDLE = 1.5
"""How long the driver is left alone to show that nothing else wakes it."""

CONFIG = Config(
    engine=EngineConfig(poll_interval=30.0, auto_resubmit=False, max_attempts=1),
    flush=FlushPolicy(max_age=0.0),
)


@dataclass
class Span:
    start: float
    end: float | None = None
    outcome: TickOutcome | None = None


class Counted:
    """The real adapter factory, counting the adapters (SDK clients) it builds and
    the ones closed."""

    def __init__(self) -> None:
        self.built: Counter[str] = Counter()
        self.adapters: list[Any] = []
        """Every adapter built (each holds its SDK client as `client`)."""

    def __call__(self, config: Config, provider: str) -> ProviderAdapter:
        self.built[provider] += 1
        adapter = build_adapter(config, provider)
        self.adapters.append(adapter)
        return adapter


def wait_for(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def check_rule(spans: list[Span], asked_mid_tick: float, asked_idle: float, counted: Counted) -> None:
    """The rule both hosts must show (module docstring)."""
    assert len(spans) == 3, f"expected the first tick, one for both mid-tick requests and one asked while idle: {spans}"
    first, second, third = spans
    assert first.end is not None and second.end is not None and third.end is not None
    assert all(s.outcome is None or s.outcome.error is None for s in spans), spans
    assert first.start < asked_mid_tick < first.end, "the request did not land mid-tick"
    assert first.end - first.start >= SLOW
    # (the console sees both through its message queue: the start may be told first)
    assert -0.1 < second.start - first.end < RIGHT_AFTER, f"started {second.start - first.end:.2f}s after the first ended"
    assert asked_idle - second.end >= IDLE - 0.1  # nothing ticked meanwhile (len(spans) == 3)
    assert 0 <= third.start - asked_idle < RIGHT_AFTER, f"started {third.start - asked_idle:.2f}s after it was asked"
    assert counted.built == {"openai": 1}, "each tick built its own SDK client"


def test_run_loop_follows_the_rule(data_dir: Path, hostile: HostileProvider) -> None:
    """`batchtop run`'s loop (`EngineDriver.serve`), here in a thread of its own."""
    hostile.config.slow_create_s = SLOW
    enqueue(data_dir, [openai_line(f"r{i}") for i in range(3)])
    counted = Counted()
    spans: list[Span] = []
    lock = threading.Lock()

    def on_tick(future: Future[TickOutcome]) -> None:
        span = Span(time.monotonic())
        with lock:
            spans.append(span)

        def done(f: Future[TickOutcome]) -> None:
            span.outcome, span.end = f.result(), time.monotonic()

        future.add_done_callback(done)

    driver = EngineDriver(data_dir, CONFIG, adapter_factory=counted, on_tick=on_tick)
    driver.start_thread()
    try:
        wait_for(lambda: hostile.state.uploads_started >= 1 and bool(spans) and spans[0].end is None,
                 "the first tick never reached the provider")
        asked_mid_tick = time.monotonic()
        answers = [driver.request_tick(), driver.request_tick()]
        wait_for(lambda: all(a.done() for a in answers), "the mid-tick requests were never answered")
        assert answers[0].result() is answers[1].result()  # one tick answered both
        time.sleep(IDLE)
        asked_idle = time.monotonic()
        driver.request_tick().result(timeout=15)
    finally:
        driver.stop()
        assert driver.join(15)
    check_rule(spans, asked_mid_tick, asked_idle, counted)
    assert [s.outcome for s in spans[1:2]] == [answers[0].result()]
    assert hostile.state.creates_by_uid.total() == 1
    assert all(a.client.is_closed() for a in counted.adapters)  # closed once, at the end


@pytest.mark.anyio
async def test_console_follows_the_same_rule(data_dir: Path, hostile: HostileProvider) -> None:
    """The console asks the driver for ticks (`wake_engine`) and shows what it reports."""
    hostile.config.slow_create_s = SLOW
    enqueue(data_dir, [openai_line(f"c{i}") for i in range(3)])
    counted = Counted()
    spans: list[Span] = []
    futures: list[Future[TickOutcome]] = []

    def hook(message: Message) -> None:
        """The start of the next tick may be told before the end of the last."""
        if isinstance(message, EngineTicking):
            spans.append(Span(time.monotonic()))
            futures.append(message.outcome)
        elif isinstance(message, EngineTicked):
            (span,) = [s for s, f in zip(spans, futures) if f.done() and f.result() is message.outcome]
            span.end, span.outcome = time.monotonic(), message.outcome

    async def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 15
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)

    app = BatchtopApp(data_dir, CONFIG, refresh_every=None, adapter_factory=counted)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await until(lambda: hostile.state.uploads_started >= 1 and bool(spans) and spans[0].end is None,
                    "the first tick never reached the provider")
        asked_mid_tick = time.monotonic()
        app.wake_engine()
        app.wake_engine()
        await until(lambda: len(spans) == 2 and spans[1].end is not None, "the mid-tick requests were never answered")
        await asyncio.sleep(IDLE)
        asked_idle = time.monotonic()
        app.wake_engine()
        await until(lambda: len(spans) == 3 and spans[2].end is not None, "the idle request was never answered")
        assert "engine running" in app.engine_line.plain and "last tick" in app.engine_line.plain
        await pilot.press("q")
    check_rule(spans, asked_mid_tick, asked_idle, counted)
    assert hostile.state.creates_by_uid.total() == 1
    assert all(a.client.is_closed() for a in counted.adapters)  # quit closed it


def test_hosted_service_shares_the_loop_and_stop_is_prompt(data_dir: Path) -> None:
    """A service hosted by the driver (the place for real-time workers) runs on the
    driver's loop for as long as it serves; `stop` ends an idle wait of a 30 s poll
    at once, cancels the service and gives the data dir back."""
    seen: dict[str, object] = {}
    started = threading.Event()

    async def service(driver: EngineDriver) -> None:
        seen["loop"] = asyncio.get_running_loop()
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    ticks: list[Future[TickOutcome]] = []
    driver = EngineDriver(data_dir, CONFIG, on_tick=ticks.append)
    driver.host(service)
    driver.start_thread()
    assert started.wait(10)
    wait_for(lambda: bool(ticks) and ticks[0].done(), "the first tick never ended")
    assert ticks[0].result().error is None
    stopping = time.monotonic()
    driver.stop()
    assert driver.join(5)
    assert time.monotonic() - stopping < 2.0
    assert seen.get("cancelled") is True
    assert isinstance(seen["loop"], asyncio.AbstractEventLoop) and seen["loop"].is_closed()
    assert len(ticks) == 1
    assert driver.request_tick().cancelled()  # a stopped driver answers nothing
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM lease").fetchone() == (0,)
