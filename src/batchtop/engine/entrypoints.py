"""Engine entry points for the CLI: one tick, the loop, an immediate cancel.

Kept apart from `cli.py` so the argument parsing stays thin, and from the engine so
it knows nothing of signals or printing. Each drives the engine through one
`EngineDriver`, the only place that decides when the engine ticks.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

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


class _Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM while standing by: unwinds whatever the standby was doing (a
    store transaction rolls back; psycopg cancels a query in flight, as on Ctrl-C),
    so it ends at once, whatever it was waiting on."""


@contextmanager
def _stop_on_signals(signals: tuple[signal.Signals, ...]) -> Iterator[threading.Event]:
    """While inside: each of `signals` sets the event and raises `_Stopped` in the main
    thread; the handlers before are put back on the way out."""
    stopped = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        raise _Stopped

    before: dict[signal.Signals, Any] = {}
    try:
        for sig in signals:
            before[sig] = signal.signal(sig, handler)
        yield stopped
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def stand_by(
    engine_lease: lease.Lease,
    *,
    stopped: threading.Event | None = None,
    say: Callable[[str], None] = log.info,
) -> bool:
    """Wait until the lease is ours (`batchtop run --standby`): while another engine
    holds the store, look again every min(1 s, ttl/10) and take it over as soon as its
    lease lapses (or its process on this host is gone). True once we hold it; False
    when `stopped` is set first. `say` is told once who holds it.

    Between two looks only a read of the lease row: the writer lock is taken only
    to acquire, when the lease looks free."""
    store = engine_lease.store
    every = min(1.0, engine_lease.ttl / 10)
    told = False
    busy: str | None = None
    while stopped is None or not stopped.is_set():
        try:
            current = engine_lease.current()
            if current is None or (current.host, current.pid) == (engine_lease.host, engine_lease.pid):
                try:
                    engine_lease.acquire()
                    return True
                except lease.EngineBusy as exc:  # taken (or renewed) meanwhile
                    current = exc.holder or current
        except StoreBusy as exc:  # the writer lock held past its timeout: look again, as the engine would
            if str(exc) != busy:
                log.warning("standby: store busy (%s); looking again", exc)
                busy = str(exc)
            current = None
        if not told and current is not None:
            say(f"standby: {current} holds {store.where}; taking over when its lease lapses")
            told = True
        if stopped is None:
            time.sleep(every)
        elif stopped.wait(every):
            break
    return False


def run(data_dir: Path, config: Config, *, standby: bool = False) -> None:
    """Tick until SIGINT or SIGTERM, then release the lease and return. When another
    engine holds the store: EngineBusy, or with `standby` wait for its lease to lapse
    and take over (a signal while waiting returns at once)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    with (
        Store(data_dir, url=config.store.url, schema=config.store.schema) as store,
        EngineDriver(store, config, on_tick=lambda f: f.add_done_callback(_log_tick)) as driver,
    ):
        if standby:
            try:
                with _stop_on_signals(signals) as stopped:
                    if not stand_by(driver.engine.lease, stopped=stopped):
                        raise _Stopped
            except _Stopped:
                try:
                    driver.close()  # gives the lease back if the signal came just as it was taken
                except Exception as exc:  # noqa: BLE001 - stopping anyway; a row left behind lapses
                    log.warning("standby stopped; could not close cleanly: %s", exc)
                log.info("standby stopped; it never took %s over", store.where)
                return
        else:
            driver.engine.lease.acquire()  # fail fast, before the loop
        log.info("engine running: a tick every %gs, or sooner when work comes due", config.engine.poll_interval)
        try:
            driver.serve(signals=signals)
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
