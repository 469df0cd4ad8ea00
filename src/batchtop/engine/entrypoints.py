"""Engine entry points for the CLI: one tick, the loop, an immediate cancel.

Kept apart from `cli.py` so the argument parsing stays thin, and from `engine.py`
so the engine knows nothing of signals or printing.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from batchtop.config import Config
from batchtop.engine.tick import Engine, TickReport
from batchtop.store import Store, lease


def _one_pass(store: Store, config: Config, cancels_only: bool = False) -> TickReport:
    engine = Engine(store, config)
    try:
        return engine.run_once(only_cancels=cancels_only)
    finally:
        engine.settle_deliveries()
        lease.release(store)


def tick(data_dir: Path, config: Config) -> TickReport:
    """One engine pass; EngineBusy when another engine holds the data dir."""
    with Store(data_dir) as store:
        return _one_pass(store, config)


def run(data_dir: Path, config: Config) -> None:
    """Tick until SIGINT or SIGTERM, then release the lease and return."""
    with Store(data_dir) as store:
        engine = Engine(store, config)
        engine.lease.acquire()  # fail fast, before the loop

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await engine.run(stop)

        asyncio.run(main())
        engine.settle_deliveries()


def cancel_now(data_dir: Path, config: Config) -> TickReport | None:
    """Carry out requested cancels now, unless another engine holds the data dir
    (it will, on its next tick): returns None in that case."""
    with Store(data_dir) as store:
        if lease.holder(store, time.time()) is not None:
            return None
        return _one_pass(store, config, cancels_only=True)
