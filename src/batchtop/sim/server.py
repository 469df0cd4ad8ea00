"""The simulator's HTTP server and its test-facing handle.

Runs aiohttp on 127.0.0.1, either in a background thread with its own event
loop (``start``/``stop``, for sync tests and tools) or inside a running loop
(``start_async``/``stop_async``).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from typing import Any

from aiohttp import web

from . import anthropic_routes, debug_routes, gemini_routes, openai_routes, realtime_routes
from .clock import Clock
from .config import SimConfig
from .middleware import APP_SIM, FaultDice, log_on_prepare, sim_middleware
from .state import LogRecord, SimState

_BODY_SLACK = 1 << 20


class Simulator:
    """A fake OpenAI Batch + Anthropic Message Batches + Gemini Batch Mode server for tests and demos.

    ``config`` may be edited (or replaced) while running; see :class:`SimConfig`
    for which knobs apply per request and which are captured per batch.
    """

    def __init__(self, config: SimConfig | None = None, *, clock: Clock | None = None, host: str = "127.0.0.1") -> None:
        self.config = config if config is not None else SimConfig()
        self.clock = clock if clock is not None else Clock()
        self.host = host
        self.state = SimState(lambda: self.config, self.clock)
        self.fault_dice = FaultDice(self.config.seed)
        self.realtime_calls: Counter[str] = Counter()
        """custom_id -> synchronous calls (real time, flex) answered 200 for it."""
        self.realtime_received: Counter[str] = Counter()
        """custom_id -> synchronous calls taken for work (not refused with a fault), answered or not."""
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ addresses

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("simulator is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Pass as ``OpenAI(base_url=...)``; the SDK's paths have no ``/v1``."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Pass as ``Anthropic(base_url=...)``; the SDK's paths include ``/v1``."""
        return self.base_url

    @property
    def gemini_base_url(self) -> str:
        """Pass as ``genai.Client(http_options=HttpOptions(base_url=...))``: the API
        root, ``/gemini`` (OpenAI's routes own ``/v1`` here); the SDK adds the version
        (``/v1``, or ``/v1beta``) and ``/upload/<version>`` for uploads."""
        return f"{self.base_url}/gemini"

    # ------------------------------------------------------------ lifecycle

    def build_app(self) -> web.Application:
        app = web.Application(
            middlewares=[sim_middleware], client_max_size=self.config.max_json_body_bytes + _BODY_SLACK
        )
        app[APP_SIM] = self
        app.on_response_prepare.append(log_on_prepare)
        app.add_routes(openai_routes.routes)
        app.add_routes(anthropic_routes.routes)
        app.add_routes(gemini_routes.routes)
        app.add_routes(debug_routes.routes)
        app.add_routes(realtime_routes.routes)
        return app

    async def start_async(self, port: int = 0) -> Simulator:
        """Start listening inside the running loop; returns once the socket is bound."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self

    async def stop_async(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def start(self, port: int = 0) -> Simulator:
        """Serve from a daemon thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async(port))
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"batchtop-sim-{id(self):x}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`; safe to call twice."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = self._loop = None

    def __enter__(self) -> Simulator:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_async()

    # ------------------------------------------------------------ observability

    @property
    def request_log(self) -> list[LogRecord]:
        """A snapshot of every HTTP request received so far, in arrival order."""
        with self.state.lock:
            return list(self.state.log)

    def clear_log(self) -> None:
        with self.state.lock:
            self.state.log.clear()

    def requests(self, *, provider: str | None = None, method: str | None = None, path: str | None = None) -> list[LogRecord]:
        """Filtered :attr:`request_log`; ``path`` matches as a prefix."""
        return [
            r for r in self.request_log
            if (provider is None or r.provider == provider)
            and (method is None or r.method == method.upper())
            and (path is None or r.path.startswith(path))
        ]

    @property
    def submissions(self) -> Counter[tuple[str, str]]:
        """Copy of ``(provider, custom_id) -> times included in a created batch``."""
        with self.state.lock:
            return Counter(self.state.submissions)

    def batches(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Every batch as a plain dict (provider, id, status, phase, metadata, n, done, seq, …), oldest first."""
        return self.state.describe(provider)

    def batch(self, batch_id: str) -> dict[str, Any]:
        for entry in self.batches():
            if entry["id"] == batch_id:
                return entry
        raise KeyError(batch_id)

    # ------------------------------------------------------------ time control

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward; batches progress accordingly."""
        self.clock.advance(seconds)

    def expire(self, batch_id: str) -> None:
        """End a running batch's window now; done requests keep their results."""
        self.state.expire(batch_id)

    def forget(self, batch_id: str) -> None:
        """Lose a batch: the provider answers 404 for it from now on."""
        self.state.forget(batch_id)


def serve_forever(port: int, config: SimConfig) -> None:
    """Run the simulator in the foreground until SIGINT/SIGTERM (``batchtop sim``).

    Prints the three base URLs, one per line, once listening. The signal handlers
    are in place before the URLs are printed, so a caller that signals as soon
    as it has read them still gets a clean exit. A port that cannot be bound is
    reported as a :class:`~batchtop.errors.BatchtopError` (one line, exit 1).
    """
    from batchtop.errors import BatchtopError

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        sim = Simulator(config)
        try:
            await sim.start_async(port)
        except OSError as exc:
            raise BatchtopError(f"sim: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
        try:
            print(f"OPENAI_BASE_URL={sim.openai_base_url}", flush=True)
            print(f"ANTHROPIC_BASE_URL={sim.anthropic_base_url}", flush=True)
            print(f"GEMINI_BASE_URL={sim.gemini_base_url}", flush=True)
            await stop.wait()
        finally:
            await sim.stop_async()

    asyncio.run(main())
