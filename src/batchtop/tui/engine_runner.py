"""The engine as the console runs it: one tick at a time in a worker thread.

Each tick runs on a fresh asyncio loop in the calling thread (`asyncio.run`), with
the runner's own Store connection, so neither SQLite nor HTTP ever touches the UI
loop. The SDK clients are closed after every tick because they belong to that
loop. No Textual here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchtop.config import Config
from batchtop.engine.tick import Engine, TickReport
from batchtop.store import Store, lease
from batchtop.store import status_queries

MIN_DELAY = 0.5
"""Never tick more often than this, even when a buffer keeps coming due."""


@dataclass(frozen=True)
class TickResult:
    report: TickReport
    next_in: float
    """Seconds until the next tick is worth running."""
    took: float


class EngineRunner:
    """Owns the engine and its Store; `tick` must not be called from two threads at once."""

    def __init__(self, data_dir: Path, config: Config, now: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.config = config
        self.now = now
        self._store: Store | None = None
        self._engine: Engine | None = None

    def _ensure(self) -> Engine:
        if self._engine is None:
            self._store = Store(self.data_dir)
            self._engine = Engine(self._store, self.config, now=self.now)
        return self._engine

    def tick(self) -> TickResult:
        """One engine pass (raises `lease.EngineBusy` when another engine holds the dir)."""
        engine = self._ensure()
        started = time.monotonic()
        report = engine.run_once()
        return TickResult(report, self.next_in(), time.monotonic() - started)

    def next_in(self) -> float:
        """Until the next poll, or sooner when a buffer comes due (held ones wait for a poll)."""
        assert self._store is not None
        now = self.now()
        poll = self.config.engine.poll_interval
        due = now + poll
        for b in status_queries.buffers(self._store.db, self.config):
            at = status_queries.ready_at(b)
            if at is not None:
                due = min(due, at)
        return min(poll, max(MIN_DELAY, due - now))

    def close(self) -> None:
        """Give the data dir back (release the lease) and close the connection."""
        if self._store is not None:
            try:
                lease.release(self._store)
            finally:
                self._store.close()
                self._store = self._engine = None
