"""A deterministic sample data dir, for the screenshots and the snapshot tests.

Real engine, real simulator, but a manual clock, a fixed id salt and fixed
custom_ids, so every id, count, age and dollar on screen is the same on every run.
The console is then shown at `Sample.now` with a frozen clock. No Textual here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from batchtop.config import Config, EngineConfig, FlushPolicy
from batchtop.engine.driver import one_pass
from batchtop.engine.tick import Engine
from batchtop.intake.validation import parse_lines
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.clients import fixed_factory
from batchtop.sim import ManualClock, SimConfig, Simulator
from batchtop.store import Store, actions, lease, status_queries
from batchtop.timefmt import parse_time

NOW = parse_time("2026-11-25T10:00:00Z")
"""The frozen 'now' the sample is shown at."""

SALT = "5a3b1e0c9d2f"

CONFIG = Config(
    engine=EngineConfig(poll_interval=30.0, max_attempts=3),
    flush=FlushPolicy(max_age=48 * 3600.0),  # only the sample's explicit flushes submit
)


@dataclass(frozen=True)
class Sample:
    data_dir: Path
    now: float
    config: Config
    failed_batch: str
    """An ended batch with failures of two kinds (for the inspect screen)."""
    running_batch: str
    """A batch in progress (for the cancel confirmation)."""
    buffer: str
    batches: dict[str, str] = field(default_factory=dict)


def _openai(cid: str, model: str, n: int) -> str:
    return json.dumps({
        "custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"Summarise ticket #{n} in one line."}]},
    })


def _anthropic(cid: str, model: str, n: int) -> str:
    return json.dumps({
        "custom_id": cid,
        "params": {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": f"Classify review #{n}."}]},
    })


def _enqueue(store: Store, lines: list[str], now: float, deadline: float | None = None) -> None:
    store.enqueue(parse_lines([("<sample>", i, line) for i, line in enumerate(lines, 1)]), deadline=deadline, now=now)


def _factory(sim: Simulator) -> Callable[[Config, str], ProviderAdapter]:
    return fixed_factory({"openai": sim.openai_base_url, "anthropic": sim.anthropic_base_url}, "sample")


def build(data_dir: Path, *, url: str | None = None) -> Sample:
    """Fill an empty data dir (or the PostgreSQL store at `url`) with a morning's work;
    returns what the screens show. Runs the engine with `asyncio.run`: call it outside
    an event loop."""
    clock = ManualClock(NOW - 3 * 3600)
    sim = Simulator(SimConfig(per_request_s=1.0, first_try_failure_rate=0.1, seed=7), clock=clock)
    sim.state.ids.salt = SALT
    sim.start()
    store = Store(data_dir, url=url)
    engine = Engine(store, CONFIG, now=clock.now, adapter_factory=_factory(sim))

    def tick() -> None:
        one_pass(engine)

    def flush_all() -> None:
        actions.request_flush(store, None, clock.now())
        tick()

    try:
        # 1. a morning batch per provider, with first-try failures and lines that always fail
        _enqueue(store, [_openai(f"ticket-{i:04d}" if i % 97 else f"ticket-{i:04d}-failalways", "gpt-4o-mini", i)
                         for i in range(1, 241)], clock.now())
        _enqueue(store, [_anthropic(f"review-{i:04d}" if i != 13 else "review-0013-failalways",
                                    "claude-sonnet-4-20250514", i) for i in range(1, 121)], clock.now())
        flush_all()
        first = {p: pid for pid, p in status_queries.submitted_batches(store.db)}
        clock.advance(300)
        tick()  # ingest: failures go back to their buffers
        # 2. two rounds of resubmission: the always-failing lines become dead letters
        for _ in range(2):
            clock.advance(60)
            flush_all()
            clock.advance(60)
            tick()
        # 3. a batch that expires half done
        clock.advance(600)
        _enqueue(store, [_openai(f"digest-{i:03d}", "o4-mini", i) for i in range(1, 61)], clock.now())
        flush_all()
        expiring = status_queries.submitted_batches(store.db, model="o4-mini")[0][0]
        clock.advance(25)
        sim.expire(expiring)
        tick()
        # 4. work in progress (slower per request, captured per batch)
        clock.advance(3600)
        sim.config.per_request_s = 10.0
        _enqueue(store, [_openai(f"catalog-{i:05d}", "gpt-4.1-mini", i) for i in range(1, 1201)], clock.now())
        _enqueue(store, [_anthropic(f"email-{i:04d}", "claude-haiku-4-5", i) for i in range(1, 301)], clock.now())
        flush_all()
        running = status_queries.submitted_batches(store.db, model="gpt-4.1-mini")[0][0]
        clock.advance(2400)
        # 5. queued, not flushed yet: one with a deadline
        _enqueue(store, [_openai(f"invoice-{i:03d}", "gpt-4o", i) for i in range(1, 37)], clock.now(),
                 deadline=NOW + 29 * 3600)
        _enqueue(store, [_anthropic(f"note-{i:03d}", "claude-haiku-4-5", i) for i in range(1, 13)], clock.now())
        clock.advance(NOW - 20 - clock.now())
        tick()  # the last poll, 20 s before the frozen 'now'
        lease.release(store)
    finally:
        store.close()
        sim.stop()
    return Sample(
        data_dir=data_dir,
        now=NOW,
        config=CONFIG,
        failed_batch=first["openai"],
        running_batch=running,
        buffer="openai:/v1/chat/completions:gpt-4o",
        batches=first,
    )
