"""The console App: owns the refresh loop, the engine ticks and the actions' workers.

Every store read and write, and every engine tick, runs in a thread worker with a
connection of its own; results come back as messages (`messages.py`) applied on
the UI loop, so the screen never waits on SQLite or HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
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
from batchtop.errors import BatchtopError
from batchtop.store.lease import EngineBusy
from batchtop.tui import operations, rows, snapshot
from batchtop.tui.commands import ConsoleCommands
from batchtop.tui.engine_line import EngineView, State, engine_text
from batchtop.tui.engine_runner import EngineRunner
from batchtop.tui.messages import ActionDone, EngineTicked, SearchDone, StatusRefreshed
from batchtop.tui.screens.main import MainScreen
from batchtop.tui.snapshot import Snapshot

QUIT_GRACE = 5.0
"""Seconds to let a running tick finish before quitting anyway."""

MIN_TIMER = 0.05
"""The shortest delay a timer is armed with: Textual 8 never fires a 0 s timer."""


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
    ) -> None:
        """`engine=False` only watches; `refresh_every=None` refreshes on request only
        (tests); `label` names the data dir in the header (default: its path).
        `read_only` (the console served to a browser as a view) refuses every action
        here, whatever sent it, and runs no engine, since the engine writes."""
        super().__init__()
        self.read_only = read_only
        engine = engine and not read_only
        self.data_dir = data_dir
        self.label = label if label is not None else _home_short(data_dir)
        if read_only:  # first, so that a long path cut to fit never hides it
            self.label = f"read-only · {self.label}"
        self.config = config
        self.now = now
        self.refresh_every = refresh_every
        self.exit_after = exit_after
        self.latest: Snapshot | None = None
        self._engine_view = EngineView("starting" if engine else "off", config.engine.poll_interval)
        self._want_engine = engine
        self._runner: EngineRunner | None = None
        self._viewer_of: str | None = None
        self._ticking = self._tick_again = self._stopping = False
        self._tick_timer: Timer | None = None
        self._refresh_timer: Timer | None = None
        self._batch_rows = rows.BatchRowMemo()
        """The refresh worker's last batch rows (formatting them is most of its work)."""

    def on_mount(self) -> None:
        self.push_screen(MainScreen())
        self.refresh_status()
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
        found = snapshot.search(self.data_dir, needle)
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
            if self._runner is None:
                self._viewer_of = snap.other_engine
                self._engine_is("viewer", detail=snap.other_engine)
            return
        if self._runner is None:
            if self._viewer_of is not None:
                self.tell(f"the other engine ({self._viewer_of}) is gone: this console runs the engine now")
            self._viewer_of = None
            self._runner = EngineRunner(self.data_dir, self.config, self.now)
            self._engine_is("starting", started_at=time.monotonic(), last_tick_at=None)
            self._start_tick()

    def wake_engine(self) -> None:
        """Tick now (after an action) rather than at the next poll."""
        if self._runner is not None and not self._stopping:
            self._start_tick()

    def _start_tick(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.stop()
            self._tick_timer = None
        if self._ticking:
            self._tick_again = True
            return
        self._ticking = True
        self._tick_again = False
        runner = self._runner
        assert runner is not None
        self.run_worker(partial(self._tick, runner), thread=True, group="engine", exit_on_error=False, name="engine tick")

    def _tick(self, runner: EngineRunner) -> None:
        self.post_message(EngineTicked(runner.tick()))

    def on_engine_ticked(self, message: EngineTicked) -> None:
        self._ticking = False
        report = message.result.report
        done = [f"took {message.result.took:.1f}s"]
        done += [f"{what} {len(ids)}" for what, ids in (("submitted", report.submitted), ("ingested", report.ingested)) if ids]
        self._engine_is("running", last_tick_at=time.monotonic(), summary=", ".join(done),
                        provider_errors=len(report.errors), detail="")  # the providers line says which and why
        if self._tick_again:
            self._start_tick()  # an action landed mid-tick: go again now, never through a 0 s timer
        else:
            self._next_tick(message.result.next_in)
        self.refresh_status()

    def _next_tick(self, delay: float) -> None:
        """Arm the next tick. Textual 8's timers never fire at a 0 s delay (they divide by
        it), so the delay has a floor: a tick is never lost to a zero."""
        if self._stopping or self._runner is None:
            return
        if self._tick_timer is not None:
            self._tick_timer.stop()
        self._tick_timer = self.set_timer(max(MIN_TIMER, delay), self._start_tick)

    def _engine_failed(self, error: BaseException | None) -> None:
        self._ticking = False
        if isinstance(error, EngineBusy):
            runner, self._runner = self._runner, None
            if runner is not None:
                self.run_worker(runner.close, thread=True, group="engine-close", exit_on_error=False)
            self._engine_is("viewer", detail=str(error))
            self._viewer_of = str(error)
            self.tell(f"another engine took the data dir; watching it: {error}", severity="warning")
            return
        self._engine_is("error", detail=f"{type(error).__name__}: {error}")
        if self._tick_again:
            self._start_tick()
        else:
            self._next_tick(self.config.engine.poll_interval)

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
            self.tell(f"read-only console: {what} is disabled", severity="warning")
        return self.read_only

    def request_flush(self, buffer_name: str | None) -> None:
        if self.refused("flush all" if buffer_name is None else "flush"):
            return
        self._act(partial(operations.flush, self.data_dir, buffer_name, self.now()), wake=True)

    def resubmit(self, batch_id: str) -> None:
        if self.refused("resubmit"):
            return
        self._act(partial(operations.resubmit, self.data_dir, batch_id, self.now()), wake=True)

    def cancel(self, batch_id: str) -> None:
        if self.refused("cancel"):
            return
        self._act(partial(operations.cancel, self.data_dir, batch_id, self.now()), wake=True)

    def retry_realtime(self) -> None:
        """Dead letters once more through the real-time API (issue 15; asked first by the screen)."""
        if self.refused("retry real time"):
            return
        self._act(partial(operations.retry_realtime, self.data_dir, self.config), wake=True)

    def on_action_done(self, message: ActionDone) -> None:
        if message.error:
            self.tell(message.text, severity="error", timeout=8)
            return
        if self._runner is None and self._viewer_of:
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
        if worker.group == "engine":
            self._engine_failed(error)
        elif worker.group == "refresh":
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
        """Exited without `action_quit` (e.g. a test harness): still give the lease back,
        unless a tick is using the connection right now."""
        runner, self._runner = self._runner, None
        if runner is not None and not self._ticking:
            runner.close()

    async def action_quit(self) -> None:
        """Stop ticking, let a running tick finish (briefly), give the lease back, exit."""
        if self._stopping:
            return
        self._stopping = True
        for timer in (self._tick_timer, self._refresh_timer):
            if timer is not None:
                timer.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            ticks = [w for w in self.workers if w.group == "engine" and w.is_running]
            deadline = time.monotonic() + QUIT_GRACE
            while any(w.is_running for w in ticks) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if not any(w.is_running for w in ticks):
                worker = self.run_worker(runner.close, thread=True, group="engine-close", exit_on_error=False)
                try:
                    await worker.wait()
                except Exception:  # noqa: BLE001, S110 shown by _worker_changed; exiting anyway
                    pass
        self.exit(0)


def _home_short(path: Path) -> str:
    try:
        return "~/" + str(path.expanduser().resolve().relative_to(Path.home()))
    except ValueError:
        return str(path)
