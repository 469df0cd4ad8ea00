"""Engine entry points for the CLI: one tick, the loop, an immediate cancel.

Kept apart from `cli.py` so the argument parsing stays thin, and from the engine so
it knows nothing of signals or printing. Each drives the engine through one
`EngineDriver`, the only place that decides when the engine ticks.
"""

from __future__ import annotations

import logging
import signal
import time
from concurrent.futures import Future
from pathlib import Path

from batchtop.config import Config
from batchtop.engine.driver import EngineDriver, TickOutcome
from batchtop.engine.tick import TickReport
from batchtop.store import Store, lease
from batchtop.store.db import StoreBusy

log = logging.getLogger("batchtop.engine.tick")
"""`run` logs under the engine's name, as it always has (operators' filters use it)."""


def tick(data_dir: Path, config: Config) -> TickReport:
    """One engine pass; EngineBusy when another engine holds the data dir."""
    with Store(data_dir, url=config.store.url, schema=config.store.schema) as store, EngineDriver(store, config) as driver:
        return driver.tick()


def _log_tick(future: Future[TickOutcome]) -> None:
    """What `run` says about each tick, once it is done."""
    outcome = future.result()
    if outcome.error is not None:
        if isinstance(outcome.error, StoreBusy):  # e.g. locked past the busy timeout by heavy writers
            log.warning("store busy (%s); trying again next tick", outcome.error)
        elif not outcome.fatal:
            log.error("tick failed: %s: %s", type(outcome.error).__name__, outcome.error, exc_info=outcome.error)
        return
    report = outcome.report
    assert report is not None
    if done := report.summary():
        log.info("tick: %s", done)
    for provider, error in report.errors.items():
        log.warning("%s: %s", provider, error)
    for reason in report.lost_reasons.values():
        log.warning("%s", reason)


def run(data_dir: Path, config: Config) -> None:
    """Tick until SIGINT or SIGTERM, then release the lease and return."""
    with (
        Store(data_dir, url=config.store.url, schema=config.store.schema) as store,
        EngineDriver(store, config, on_tick=lambda f: f.add_done_callback(_log_tick)) as driver,
    ):
        driver.engine.lease.acquire()  # fail fast, before the loop
        log.info("engine running: a tick every %gs, or sooner when work comes due", config.engine.poll_interval)
        try:
            driver.serve(signals=(signal.SIGINT, signal.SIGTERM))
        finally:
            driver.close()
            log.info("engine stopped; the data dir is free")


def cancel_now(data_dir: Path, config: Config) -> TickReport | None:
    """Carry out requested cancels now, unless another engine holds the data dir
    (it will, on its next tick): returns None in that case."""
    with Store(data_dir, url=config.store.url, schema=config.store.schema) as store:
        if lease.holder(store, time.time()) is not None:
            return None
        with EngineDriver(store, config) as driver:
            return driver.cancels_only()
