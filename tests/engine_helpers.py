"""Shared parts of the engine tests: a simulator per test, SDK env, a driven engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchtop.config import Config, EngineConfig, FlushPolicy
from batchtop.engine.tick import Engine, TickReport
from batchtop.intake.client import Client
from batchtop.sim import SimConfig, Simulator
from batchtop.store import Store


def point_sdks_at(sim: Simulator, monkeypatch: pytest.MonkeyPatch, key: str = "sk-test-key") -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    monkeypatch.setenv("OPENAI_BASE_URL", sim.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.anthropic_base_url)
    monkeypatch.setenv("GEMINI_API_KEY", key)
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", sim.gemini_base_url)


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    simulator = Simulator(SimConfig()).start()
    point_sdks_at(simulator, monkeypatch)
    try:
        yield simulator
    finally:
        simulator.stop()


def config(**engine: object) -> Config:
    """Flush at once (max_age 0) and retry fast: tests drive ticks by hand."""
    flush = engine.pop("flush", None) or FlushPolicy(max_age=0.0)
    return Config(engine=EngineConfig(**{"poll_interval": 0.1, **engine}), flush=flush)  # type: ignore[arg-type]


def openai_lines(n: int, prefix: str = "o", model: str = "gpt-4o-mini") -> list[dict]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i in range(n)
    ]


def anthropic_lines(n: int, prefix: str = "a", model: str = "claude-sonnet-4-20250514") -> list[dict]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "params": {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i in range(n)
    ]


def gemini_lines(n: int, prefix: str = "g", model: str = "gemini-2.0-flash") -> list[dict]:
    """Gemini Batch Mode lines: the key, the GenerateContentRequest, the model beside them."""
    return [
        {
            "key": f"{prefix}{i}",
            "request": {
                "contents": [{"role": "user", "parts": [{"text": f"question {i}"}]}],
                "generationConfig": {"maxOutputTokens": 50},
            },
            "model": model,
        }
        for i in range(n)
    ]


def enqueue(data_dir: Path, lines: list[dict], *, url: str | None = None) -> None:
    """Enqueue through the Python API: into the data dir's file, or the PostgreSQL store at `url`."""
    with Client(data_dir, store=url) as bt:
        bt.enqueue_many(lines)


_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}


def run(engine: Engine, coro):  # type: ignore[no-untyped-def]
    """Run on one loop per engine, as the real engine does: SDK clients keep it."""
    loop = _LOOPS.get(id(engine))
    if loop is None or loop.is_closed():
        loop = _LOOPS[id(engine)] = asyncio.new_event_loop()
    return loop.run_until_complete(coro)


def close(engine: Engine) -> None:
    loop = _LOOPS.pop(id(engine), None)
    if loop is not None:
        loop.run_until_complete(engine.close())
        loop.close()


def tick(engine: Engine) -> TickReport:
    return run(engine, engine.tick())


def drive(engine: Engine, done: Callable[[], bool], *, ticks: int = 60, pause: float = 0.05) -> list[TickReport]:
    """Tick until `done()`; fail the test if it never is. Provider errors fail it too."""
    reports = []
    for _ in range(ticks):
        report = tick(engine)
        reports.append(report)
        assert not report.errors, report.errors
        if done():
            return reports
        time.sleep(pause)
    raise AssertionError(f"not done after {ticks} ticks: {reports[-3:]}")


def states(store: Store) -> dict[str, int]:
    return dict(store.db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall())


def all_settled(store: Store) -> Callable[[], bool]:
    def check() -> bool:
        s = states(store)
        return set(s) <= {"succeeded", "dead"}

    return check
