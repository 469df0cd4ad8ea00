"""The one engine driver: when the engine ticks, on which loop, with which SDK clients.

`batchtop run`, `batchtop tick`, `--once`, an immediate `cancel` and the console all
drive the engine through an `EngineDriver`. It keeps one Engine, one asyncio loop
(an `asyncio.Runner`) and so one set of SDK clients for its whole lifetime, and
closes them once, in `close`. Before it, the console ran every tick on a fresh
`asyncio.run` with new SDK clients, and `run` kept its own copy of the "when is
the next tick" rule; the two had drifted.

The rule lives here only (`_serve` and `_wait`):
- a tick every `poll_interval`, counted from the end of the last one;
- a tick requested (`request_tick`) while one runs starts as soon as it ends,
  and one requested while idle starts at once; requests never pile up: every
  request waiting when a tick starts is answered by that tick;
- sooner when work comes due (a buffer's flush time, a requested cancel, result
  files the last tick left part-read), looked for at least every CHECK_EVERY s
  and never sooner than MIN_GAP after the last tick ended;
- after a tick that failed, nothing but a request or the poll interval wakes it
  (a failing store is not hammered).

The console runs `serve` in a thread of its own (`start_thread`): Textual runs its
own loop, so the console only asks (`request_tick`, `stop`) and is told (`on_tick`,
called as each tick starts with the future of its outcome). No Textual here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

from batchtop.config import Config
from batchtop.engine.tick import AdapterFactory, Engine, TickReport
from batchtop.providers.clients import build_adapter
from batchtop.store import Store, lease, status_queries
from batchtop.store.db import StoreBusy

log = logging.getLogger("batchtop.engine.driver")

MIN_GAP = 0.5
"""Seconds after a tick before work that came due may start the next one (a
buffer that stays due must not spin the loop). A requested tick is not held back."""
CHECK_EVERY = 1.0
"""At most this long between two looks for work due while idle: another process
(the CLI's `flush` or `cancel`) may have asked for something meanwhile."""
MIN_WAIT = 0.05
"""The shortest sleep of the idle wait: never a busy loop on a zero delay."""

FATAL = (lease.EngineBusy, lease.LeaseLost)
"""Errors that end `serve`: another engine holds the data dir, so this one stops."""

T = TypeVar("T")
TickListener = Callable[["Future[TickOutcome]"], None]
Service = Callable[["EngineDriver"], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class TickOutcome:
    """One pass as the driver saw it: what it did, or why it failed, and how long it took."""

    report: TickReport | None
    """None when the pass raised (see `error`)."""
    error: BaseException | None
    took: float
    """Seconds the pass took (monotonic)."""
    cancels_only: bool = False

    @property
    def fatal(self) -> bool:
        """The data dir is another engine's: the driver stops."""
        return isinstance(self.error, FATAL)


class EngineDriver:
    """Drives one Engine for its lifetime; see the module docstring for the rule.

    The synchronous one-pass calls (`tick`, `cancels_only`) and `serve` run on the
    driver's own loop in the calling thread: one at a time, never while `serve`
    runs elsewhere. `request_tick` and `stop` may be called from any thread."""

    def __init__(
        self,
        store: Store | Path,
        config: Config,
        *,
        now: Callable[[], float] = time.time,
        adapter_factory: AdapterFactory | None = None,
        host: str | None = None,
        on_tick: TickListener | None = None,
    ) -> None:
        """`store`: a Store (the caller closes it) or a data dir, opened on first use
        in the thread that drives (the console's UI thread never touches SQLite) and
        closed by `close`. `on_tick` is called, in the driving thread, as each tick of
        `serve` starts, with the future of its outcome."""
        self.config = config
        self._store: Store | None = store if isinstance(store, Store) else None
        self._data_dir = store if isinstance(store, Path) else None
        self._owns_store = self._store is None
        self._build: Callable[[Store], Engine] = lambda db: Engine(
            db, config, now=now, adapter_factory=adapter_factory or build_adapter, host=host
        )
        self._engine: Engine | None = None
        self.on_tick = on_tick
        self._runner: asyncio.Runner | None = None
        self._lock = threading.Lock()
        self._requests: list[tuple[bool, Future[TickOutcome]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop `serve` runs on, while it runs: where requests are signalled."""
        self._wake: asyncio.Event | None = None
        self._halt: asyncio.Event | None = None
        self._stopping = False
        self._services: list[Service] = []
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last: TickOutcome | None = None
        """The outcome of the last tick `serve` ran."""

    @classmethod
    def around(cls, engine: Engine) -> EngineDriver:
        """A driver for an Engine built elsewhere (tests, the sample builders): its
        store stays the caller's."""
        driver = cls(engine.store, engine.config)
        driver._engine = engine
        return driver

    @property
    def engine(self) -> Engine:
        """The Engine (and the Store under it), built on first use in the driving thread."""
        if self._engine is None:
            if self._store is None:
                assert self._data_dir is not None
                self._store = Store(self._data_dir, url=self.config.store.url, schema=self.config.store.schema)
            self._engine = self._build(self._store)
        return self._engine

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """On the driver's one loop, made on first use: its SDK clients live as long."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coro)

    # -- one pass, synchronously -------------------------------------------------
    def tick(self) -> TickReport:
        """One full pass now (`batchtop tick`, `--once`); EngineBusy when another
        engine holds the data dir."""
        return self._run(self.engine.tick())

    def cancels_only(self) -> TickReport:
        """The requested cancels and nothing else (`batchtop cancel` with no engine running)."""
        return self._run(self.engine.cancels_only())

    # -- the loop ------------------------------------------------------------------
    def serve(self, *, signals: Iterable[signal.Signals] = ()) -> None:
        """Tick by the rule until `stop` (or one of `signals`, handled on the driver's
        loop, so it must be the main thread's); re-raises the error that ended it when
        another engine took the data dir."""
        self._run(self._serve(tuple(signals)))

    def start_thread(self) -> threading.Thread:
        """`serve` in a daemon thread of its own (the console), closing the driver when
        it ends; the store is opened in that thread too."""

        def main() -> None:
            try:
                self.serve()
            except FATAL:
                pass  # told through the tick's outcome already
            except Exception:  # a crash of the loop itself: logged, the driver closed
                log.exception("engine driver stopped")
            finally:
                self.close()

        self._thread = threading.Thread(target=main, name="batchtop-engine", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread of `start_thread` to end; True when it has (or never ran)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_tick(self, *, cancels_only: bool = False) -> Future[TickOutcome]:
        """Ask `serve` for a tick (from any thread): it starts now, or as soon as the
        running one ends. The future is the outcome of the tick that answers it; it is
        cancelled if the driver stops first. `cancels_only` asks for the cancels alone,
        unless a full tick is asked for too."""
        future: Future[TickOutcome] = Future()
        with self._lock:
            if self._stopping:
                future.cancel()
                return future
            self._requests.append((cancels_only, future))
        self._signal(lambda: self._wake.set() if self._wake is not None else None)
        return future

    def stop(self) -> None:
        """End `serve` (from any thread): an idle wait ends at once, a result download
        in progress is dropped, the running tick's other steps finish."""
        with self._lock:
            self._stopping = True
            waiting, self._requests = self._requests, []
        for _, future in waiting:
            future.cancel()

        def halt() -> None:
            for event in (self._halt, self._wake):
                if event is not None:
                    event.set()

        self._signal(halt)

    def host(self, service: Service) -> None:
        """Run `service(driver)` as a task on the driver's loop beside the ticks, for as
        long as `serve` runs (cancelled when it stops). The place for work that must
        share the loop and the SDK clients, such as a pool of real-time workers.
        Call it before `serve`."""
        self._services.append(service)

    def _signal(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is None:
            return  # not serving yet: `_serve` reads the flags when it starts
        try:
            loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop closed meanwhile
            pass

    async def _serve(self, signals: tuple[signal.Signals, ...]) -> None:
        engine = self.engine
        self._loop = asyncio.get_running_loop()
        self._wake, self._halt = asyncio.Event(), asyncio.Event()
        engine._stop = self._halt  # a result download in progress is dropped on stop
        for sig in signals:
            self._loop.add_signal_handler(sig, self.stop)
        if self._stopping:
            self._halt.set()
        services = [asyncio.create_task(s(self), name=f"batchtop-service-{i}") for i, s in enumerate(self._services)]
        for task in services:
            task.add_done_callback(_service_ended)
        fatal: BaseException | None = None
        try:
            async with engine.lease.renewing():  # between ticks too: an idle wait may outlast the ttl
                while not self._stopping:
                    outcome = await self._one_tick()
                    if outcome.fatal:
                        fatal = outcome.error
                        break
                    await self._wait(failed=outcome.error is not None)
        finally:
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            for task in services:
                task.cancel()
            await asyncio.gather(*services, return_exceptions=True)
            with self._lock:
                self._stopping = True  # late requests are refused, not left hanging
                waiting, self._requests = self._requests, []
            for _, future in waiting:
                future.cancel()
            self._loop = self._wake = None
        if fatal is not None:
            raise fatal

    async def _one_tick(self) -> TickOutcome:
        """Run one pass for the requests waiting now (or for the rule), and answer them."""
        assert self._wake is not None
        with self._lock:
            answered, self._requests = self._requests, []
        self._wake.clear()
        only_cancels = bool(answered) and all(c for c, _ in answered)
        future: Future[TickOutcome] = Future()
        future.set_running_or_notify_cancel()
        if self.on_tick is not None:
            self.on_tick(future)
        started = time.monotonic()
        engine = self.engine
        try:
            report = await (engine.cancels_only() if only_cancels else engine.tick())
            outcome = TickOutcome(report, None, time.monotonic() - started, only_cancels)
        except Exception as exc:  # noqa: BLE001 - told to whoever asked; the rule decides what next
            outcome = TickOutcome(None, exc, time.monotonic() - started, only_cancels)
        self.last = outcome
        future.set_result(outcome)
        for _, asked in answered:
            if asked.set_running_or_notify_cancel():
                asked.set_result(outcome)
        return outcome

    async def _wait(self, *, failed: bool) -> None:
        """Until the next tick is due by the rule (module docstring)."""
        assert self._wake is not None
        engine = self.engine
        ended = time.monotonic()
        deadline = ended + self.config.engine.poll_interval
        due_in = None if failed else self._next_due_in()
        while not self._stopping and not self._requests:
            clock = time.monotonic()
            if clock >= deadline:
                return
            if not failed and clock - ended >= MIN_GAP and self._work_due(engine):
                return
            wake_at = [deadline, clock + CHECK_EVERY]
            if not failed:  # the first look at MIN_GAP, and one when the first buffer comes due
                wake_at += [at for at in (ended + MIN_GAP, None if due_in is None else ended + due_in)
                            if at is not None and at > clock]
            timeout = min(wake_at) - clock
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(MIN_WAIT, timeout))
            except TimeoutError:
                pass

    def _next_due_in(self) -> float | None:
        """Seconds until the first buffer comes due (held ones wait for a poll)."""
        engine = self.engine
        try:
            ready = [at for b in status_queries.buffers(engine.store.db, self.config)
                     if (at := status_queries.ready_at(b)) is not None]
        except StoreBusy:
            return None
        return max(0.0, min(ready) - engine.now()) if ready else None

    @staticmethod
    def _work_due(engine: Engine) -> bool:
        try:
            return engine._work_due()
        except StoreBusy as exc:  # locked past the busy timeout: look again later
            log.warning("store busy looking for work due (%s)", exc)
            return False

    # -- the end -------------------------------------------------------------------
    def close(self, *, release: bool = True) -> None:
        """Once, at the end: close the SDK clients on the loop they ran on, then the
        loop; with `release`, let the last webhook deliveries settle and give the
        data dir back; close the store if the driver opened it. Again: nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._engine is not None and self._runner is not None:
                self._runner.run(self._engine.close())
        finally:
            if self._runner is not None:
                self._runner.close()
                self._runner = None
            try:
                if release and self._engine is not None:
                    self._engine.settle_deliveries()
                    lease.release(self._engine.store)
            finally:
                if self._owns_store and self._store is not None:
                    self._store.close()
                    self._store = None
                    self._engine = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _service_ended(task: asyncio.Task[None]) -> None:
    """A hosted service that fails is logged; the ticks go on without it."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("engine service %s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)


def one_pass(engine: Engine, *, only_cancels: bool = False) -> TickReport:
    """One pass of an Engine built elsewhere, from synchronous code (tests, the sample
    builders), through a driver of its own: its loop and SDK clients are closed before
    it returns; the lease is kept."""
    driver = EngineDriver.around(engine)
    try:
        return driver.cancels_only() if only_cancels else driver.tick()
    finally:
        driver.close(release=False)
