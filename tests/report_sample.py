"""A deterministic fortnight of batches, for the savings screen's snapshot and screenshot.

Real engine, real simulator (the openai/anthropic SDKs over HTTP), a manual clock, a
fixed id salt and fixed custom_ids: every figure on the savings screen is the same on
every run. Work arrives on weekdays only, in varying volume; one model's output must
be JSON and never is, so it fails validation, is billed, and sits below break-even.
No Textual here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from batchtop.config import Config, parse_config
from batchtop.engine.driver import one_pass
from batchtop.engine.tick import Engine
from batchtop.intake.validation import parse_lines
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.clients import fixed_factory
from batchtop.sim import ManualClock, SimConfig, Simulator
from batchtop.store import Store, actions, lease
from batchtop.timefmt import parse_time

NOW = parse_time("2026-12-01T18:00:00Z")
"""The frozen 'now' the savings screen is shown at."""
START = parse_time("2026-11-18T08:00:00Z")
SALT = "7c1d0e5a9b3f"
DAYS = 14

CONFIG: Config = parse_config({
    "engine": {"max_attempts": 3},
    "flush": {"max_age": "48h"},  # only the sample's explicit flushes submit
    "buffers": [{"model": "gpt-4o-mini", "output": "json"}],
    "routing": {"candidates": ["gpt-4o-mini", "claude-haiku-4-5"]},
})


@dataclass(frozen=True)
class History:
    data_dir: Path
    now: float
    config: Config


_TEXT = "The quarterly figures, the open incidents and the customer's last three messages. " * 40


def _openai(cid: str, model: str) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": model, "max_tokens": 2000,
                                "messages": [{"role": "user", "content": f"Summarise document {cid}: " + _TEXT}]}})


def _anthropic(cid: str) -> str:
    return json.dumps({"custom_id": cid, "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 2000,
                                                    "messages": [{"role": "user", "content": f"Classify ticket {cid}: " + _TEXT}]}})


def _factory(sim: Simulator) -> Callable[[Config, str], ProviderAdapter]:
    return fixed_factory({"openai": sim.openai_base_url, "anthropic": sim.anthropic_base_url}, "sample")


def build(data_dir: Path) -> History:
    """Fill an empty data dir with two weeks of work. Runs the engine with
    `asyncio.run`: call it outside an event loop."""
    clock = ManualClock(START)
    sim = Simulator(SimConfig(per_request_s=20.0, first_try_failure_rate=0.08, cached_input_share=0.2,
                              output_tokens_min=300, output_tokens_max=1800, seed=11),
                    clock=clock)
    sim.state.ids.salt = SALT
    sim.start()
    store = Store(data_dir)
    engine = Engine(store, CONFIG, now=clock.now, adapter_factory=_factory(sim))

    def tick() -> None:
        one_pass(engine)

    try:
        for day in range(DAYS):
            if datetime.fromtimestamp(START + day * 86400, UTC).weekday() < 5:  # weekdays only
                n = 12 + (day * 7) % 19
                lines = [_openai(f"d{day:02d}-doc-{i:03d}", "gpt-4o") for i in range(n)]
                lines += [_anthropic(f"d{day:02d}-tkt-{i:03d}") for i in range(n // 2 + (day % 3) * 4)]
                if day % 4 == 1:
                    lines += [_openai(f"d{day:02d}-json-{i:02d}", "gpt-4o-mini") for i in range(3)]
                store.enqueue(parse_lines([("<sample>", i, line) for i, line in enumerate(lines, 1)]), now=clock.now())
                for _ in range(3):  # submit, then resubmit what failed
                    actions.request_flush(store, None, clock.now())
                    tick()
                    clock.advance(3 * 3600)
                    tick()
            clock.advance(START + (day + 1) * 86400 - clock.now())
        clock.advance(NOW - clock.now())
        lease.release(store)
    finally:
        store.close()
        sim.stop()
    return History(data_dir=data_dir, now=NOW, config=CONFIG)
