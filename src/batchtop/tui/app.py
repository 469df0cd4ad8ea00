"""The console App: owns the refresh loop, the engine's driver and the actions' workers.

Every store read and write runs in a thread worker with a connection of its own;
the engine runs in its driver's thread (`engine.driver`), which decides when it
ticks: the console only asks for a tick after an action and shows what each tick
reports. Results come back as messages (`messages.py`) applied on the UI loop, so
the screen never waits on SQLite or HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState, get_current_worker

from batchtop.config import Config
from batchtop.display import clean
from batchtop.engine.driver import EngineDriver, TickOutcome
from batchtop.engine.tick import AdapterFactory
from batchtop.errors import BatchtopError
from batchtop.tui import operations, rows, snapshot
from batchtop.tui.commands import ConsoleCommands
from batchtop.tui.engine_line import EngineView, State, engine_text
from batchtop.tui.messages import (
    ActionDone,
    EngineTicked,
    EngineTicking,
    SearchDone,
    StatusRefreshed,
)
from batchtop.tui.screens.main import MainScreen
from batchtop.tui.snapshot import Snapshot

QUIT_GRACE = 5.0
"""Seconds to let a running tick finish before quitting anyway."""


class BatchtopApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "batchtop"
    COMMANDS = App.COMMANDS | {ConsoleCommands}

    def __init__(
        self,
        data_dir: Path,
        config: Config,
        *,
        now: Callable[[], float] = time.time,
        engine: bool = True,
        refresh_every: float | None = 1.0,
        exit_after: float | None = None,
        label: str | None = None,
        read_only: bool = False,
        read_only_reason: str | None = None,
        adapter_factory: AdapterFactory | None = None,
    ) -> None:
        """`engine=False` only watches; `refresh_every=None` refreshes on request only
        (tests); `label` names the data dir in the header (default: its path).
        `read_only` (the console served to a browser as a view) refuses every action
        here, whatever sent it, and runs no engine, since the engine writes.
        `read_only_reason`: why, when it is not the operator's choice (a PostgreSQL
        role that may only read): named in the header and in every refusal.
        `adapter_factory` builds the engine's provider adapters (default: from the
        environment and config; tests count them)."""
        super().__init__()
        self.read_only = read_only
        engine = engine and not read_only
        self.data_dir = data_dir
        self.read_only_reason = read_only_reason if read_only else None
        if label is None:
            label = _home_short(data_dir) if config.store.url is None else _display_url(config.store.url)
        self.label = label
        if read_only:  # first, so that a long path cut to fit never hides it
            self.label = f"{self.read_only_reason or 'read-only'} · {self.label}"
        self.config = config
        self.now = now
        self.refresh_every = refresh_every
        self.exit_after = exit_after
        self.latest: Snapshot | None = None
        self._engine_view = EngineView("starting" if engine else "off", config.engine.poll_interval)
        self._want_engine = engine
        self._adapter_factory = adapter_factory
        self._engine_driver: EngineDriver | None = None
        self._viewer_of: str | None = None
        self._stopping = False
        self._refresh_timer: Timer | None = None
        self._batch_rows = rows.BatchRowMemo()
        """The refresh worker's last batch rows (formatting them is most of its work)."""

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.refresh_status()
        if self.read_only_reason:
            self.tell(self.read_only_reason, severity="warning")
        if self._want_engine:  # the last tick's age, and the stall warning, stay current
            self.set_interval(1.0, self._show_engine_age)
        if self.exit_after is not None:
            self.set_timer(self.exit_after, self.action_quit)

    @property
    def runs_engine(self) -> bool:
        """This console runs (or will run) the engine: it was not started as a watcher."""
        return self._want_engine

    @property
    def engine_line(self) -> Text:
        """The header's engine line, aged to this moment."""
        return engine_text(self._engine_view, time.monotonic())

    def _engine_is(self, state: State, **changes: object) -> None:
        self._engine_view = replace(self._engine_view, state=state, **changes)  # type: ignore[arg-type]

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    # -- refresh -------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="refresh", exit_on_error=False)
    def refresh_status(self) -> None:
        """Read the status in this worker thread (its own connection) and format its
        rows here too, so the UI loop only diffs them; post it."""
        snap = snapshot.load(self.data_dir, self.config, self.now())
        snap = snapshot.formatted(snap, rows.id_width(self.size.width), self._batch_rows)
        if not get_current_worker().is_cancelled:
            self.post_message(StatusRefreshed(snap))

    @work(thread=True, exclusive=True, group="search", exit_on_error=False)
    def search(self, needle: str) -> None:
        """Every batch in the store matching the `/` search, not only those listed."""
        found = snapshot.search(self.data_dir, needle, self.config.store)
        if not get_current_worker().is_cancelled:
            self.post_message(SearchDone(needle, found))

    def on_search_done(self, message: SearchDone) -> None:
        self.main.found(message.needle, message.batches)

    def _show_engine_age(self) -> None:
        if self.screen is self.main:
            self.main.show_engine(self.engine_line)

    def on_status_refreshed(self, message: StatusRefreshed) -> None:
        self.latest = message.snapshot
        self._engine_follow(message.snapshot)
        if self.screen is self.main:  # skip the redraw while a modal is open; shown on resume
            self.main.apply(message.snapshot, self.engine_line)
        self._arm_refresh()

    def _arm_refresh(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = None
        if self.refresh_every is not None and not self._stopping:
            self._refresh_timer = self.set_timer(self.refresh_every, self.refresh_status)

    # -- engine ----------------------------------------------------------------------
    def _engine_follow(self, snap: Snapshot) -> None:
        """Start the engine unless another process holds the data dir (then watch it),
        and take over when that one goes away."""
        if not self._want_engine or self._stopping:
            return
        if snap.other_engine is not None:
            if self._engine_driver is None:
                self._viewer_of = snap.other_engine
                self._engine_is("viewer", detail=snap.other_engine)
            return
        if self._engine_driver is None:
            if self._viewer_of is not None:
                self.tell(f"the other engine ({self._viewer_of}) is gone: this console runs the engine now")
            self._viewer_of = None
            self._engine_driver = EngineDriver(
                self.data_dir, self.config, now=self.now, adapter_factory=self._adapter_factory,
                on_tick=self._ticking,
            )
            self._engine_is("starting", started_at=time.monotonic(), last_tick_at=None)
            self._engine_driver.start_thread()  # its first tick starts at once; the driver times the others

    def wake_engine(self) -> None:
        """Ask the driver for a tick now (after an action) rather than at the next poll;
        if one is running, the next starts as soon as it ends. A worker waits for it,
        so tests (and quit) see the tick as work in progress."""
        if self._engine_driver is not None and not self._stopping:
            self._await_tick(self._engine_driver.request_tick())

    def _ticking(self, outcome: Future[TickOutcome]) -> None:
        """The driver's `on_tick`, called from its thread as a tick starts."""
        self.post_message(EngineTicking(outcome))

    def _await_tick(self, outcome: Future[TickOutcome], *, report: bool = False) -> None:
        async def wait() -> None:
            try:
                done = await asyncio.wrap_future(outcome)
            except asyncio.CancelledError:  # the driver stopped before the tick: nothing to show
                return
            if report:
                self.post_message(EngineTicked(done))

        self.run_worker(wait(), group="engine", exit_on_error=False, name="engine tick")

    def on_engine_ticking(self, message: EngineTicking) -> None:
        """Each tick of the driver, whoever asked for it, is a worker until it ends."""
        self._await_tick(message.outcome, report=True)

    def on_engine_ticked(self, message: EngineTicked) -> None:
        outcome = message.outcome
        error = outcome.error
        if outcome.fatal:  # the driver stopped itself and gave the data dir back
            self._engine_driver = None
            self._engine_is("viewer", detail=str(error))
            self._viewer_of = str(error)
            self.tell(f"another engine took the data dir; watching it: {error}", severity="warning")
        elif error is not None:
            self._engine_is("error", detail=f"{type(error).__name__}: {error}")
        else:
            report = outcome.report
            assert report is not None
            done = [f"took {outcome.took:.1f}s"]
            done += [f"{what} {len(ids)}" for what, ids in (("submitted", report.submitted), ("ingested", report.ingested)) if ids]
            self._engine_is("running", last_tick_at=time.monotonic(), summary=", ".join(done),
                            provider_errors=len(report.errors), detail="")  # the providers line says which and why
        self.refresh_status()

    # -- actions -----------------------------------------------------------------------
    def _act(self, fn: Callable[[], str], *, wake: bool) -> None:
        def run() -> None:
            try:
                self.post_message(ActionDone(fn(), wake=wake))
            except BatchtopError as exc:
                self.post_message(ActionDone(str(exc), error=True))

        self.run_worker(run, thread=True, group="action", exit_on_error=False, name="action")

    def refused(self, what: str) -> bool:
        """True (with a notice) when this console is read-only: the one check every
        action passes, from a key, the command palette or a prompt."""
        if self.read_only:
            self.tell(f"{self.read_only_reason or 'read-only console'}: {what} is disabled", severity="warning")
        return self.read_only

    def request_flush(self, buffer_name: str | None) -> None:
        if self.refused("flush all" if buffer_name is None else "flush"):
            return
        self._act(partial(operations.flush, self.data_dir, buffer_name, self.now(), self.config.store), wake=True)

    def resubmit(self, batch_id: str) -> None:
        if self.refused("resubmit"):
            return
        self._act(partial(operations.resubmit, self.data_dir, batch_id, self.now(), self.config.store), wake=True)

    def cancel(self, batch_id: str) -> None:
        if self.refused("cancel"):
            return
        self._act(partial(operations.cancel, self.data_dir, batch_id, self.now(), self.config.store), wake=True)

    def retry_realtime(self) -> None:
        """Dead letters once more through the real-time API (issue 15; asked first by the screen)."""
        if self.refused("retry real time"):
            return
        self._act(partial(operations.retry_realtime, self.data_dir, self.config), wake=True)

    def on_action_done(self, message: ActionDone) -> None:
        if message.error:
            self.tell(message.text, severity="error", timeout=8)
            return
        if self._engine_driver is None and self._viewer_of:
            self.tell(f"{message.text}; the engine in {self._viewer_of.split(' (')[0]} carries it out")
        else:
            self.tell(message.text)
        if message.wake:
            self.wake_engine()
        self.refresh_status()

    def tell(self, text: str, *, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        """A notification of text that may carry batch ids, model names or provider
        errors: cleaned, and never read as markup."""
        self.notify(clean(text, limit=400), severity=severity, timeout=timeout, markup=False)

    # -- failures and exit ---------------------------------------------------------------
    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        """The one place worker failures land: shown, never a crash."""
        if event.state != WorkerState.ERROR:
            return
        worker, error = event.worker, event.worker.error
        if worker.group == "refresh":
            self.tell(f"refresh failed: {error}", severity="error")
            self._arm_refresh()
        else:
            self.tell(f"{worker.name or worker.group} failed: {type(error).__name__}: {error}", severity="error")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own commands, less its Quit: the console's Quit (with the engine's
        grace) is in the palette already, once."""
        for command in super().get_system_commands(screen):
            if command.title != "Quit":
                yield command

    def on_unmount(self) -> None:
        """Exited without `action_quit` (e.g. a test harness): still stop the engine and
        give the lease back, letting a running tick finish first (briefly)."""
        driver, self._engine_driver = self._engine_driver, None
        if driver is not None:
            driver.stop()
            driver.join(QUIT_GRACE)

    async def action_quit(self) -> None:
        """Stop the engine, let a running tick finish (briefly), give the lease back, exit."""
        if self._stopping:
            return
        self._stopping = True
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        driver, self._engine_driver = self._engine_driver, None
        if driver is not None:
            driver.stop()  # the driver closes its clients and releases the lease when its tick ends
            await asyncio.to_thread(driver.join, QUIT_GRACE)
        self.exit(0)


def _display_url(url: str) -> str:
    from batchtop.store.location import display_url

    return display_url(url)


def _home_short(path: Path) -> str:
    try:
        return "~/" + str(path.expanduser().resolve().relative_to(Path.home()))
    except ValueError:
        return str(path)
