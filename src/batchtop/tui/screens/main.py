"""The main screen: header, buffers, batches, savings and problems.

It renders whatever snapshot the App hands it (`apply`) and turns keys into calls
on the App; it reads no store and computes nothing beyond formatting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from batchtop.providers.base import ENDED
from batchtop.tui import rows
from batchtop.tui.registry import bindings
from batchtop.tui.screens.confirm import ConfirmScreen, cancel_prompt
from batchtop.tui.screens.help import HelpScreen
from batchtop.tui.screens.inspect import InspectScreen
from batchtop.tui.snapshot import Snapshot
from batchtop.tui.widgets.live_table import LiveTable

if TYPE_CHECKING:
    from batchtop.tui.app import BatchtopApp


class MainScreen(Screen[None]):
    BINDINGS = bindings()

    def __init__(self) -> None:
        super().__init__()
        self._snapshot: Snapshot | None = None
        self._engine = ""
        self._filter = ""

    @property
    def console(self) -> BatchtopApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Input(placeholder="filter: words to match in provider, model, batch id, status… (enter keeps, escape clears)", id="filter")
        with Vertical(id="tables"):
            yield LiveTable(rows.BUFFER_COLUMNS, id="buffers")
            yield LiveTable(rows.BATCH_COLUMNS, id="batches")
            with Horizontal(id="bottom"):
                yield LiveTable(rows.SAVINGS_COLUMNS, id="savings")
                with VerticalScroll(id="problems-box"):
                    yield Static(id="problems")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#buffers").border_title = "Buffers"
        self.query_one("#batches").border_title = "Batches"
        self.query_one("#savings").border_title = "Savings by model"
        self.query_one("#problems-box").border_title = "Errors & alerts"
        self.query_one("#batches", LiveTable).focus()

    # -- rendering -----------------------------------------------------------------
    def apply(self, snapshot: Snapshot, engine: str) -> None:
        """Show a snapshot; the tables are diffed so cursors stay on their rows."""
        self._snapshot = snapshot
        self._engine = engine
        self._redraw()

    def _redraw(self) -> None:
        snap = self._snapshot
        if snap is None:
            return
        doc, now = snap.doc, snap.now
        with self.app.batch_update():
            self.query_one("#header", Static).update(rows.header_lines(doc, now, self._engine, self.console.label))
            self._fill("#buffers", "Buffers", rows.buffer_rows(doc, now))
            self._fill("#batches", "Batches", rows.batch_rows(doc, now))
            self._fill("#savings", "Savings by model", rows.savings_rows(doc))
            self.query_one("#problems", Static).update(rows.problems(doc, now, snap.error))

    def _fill(self, selector: str, title: str, all_rows: list[rows.Row]) -> None:
        table = self.query_one(selector, LiveTable)
        shown = rows.only(all_rows, self._filter)
        table.sync(shown)
        count = f"{len(shown)} of {len(all_rows)}" if self._filter else f"{len(all_rows)}"
        table.border_title = f"{title} ({count})"

    # -- selection -------------------------------------------------------------------
    def _batch(self, batch_id: str) -> dict[str, Any] | None:
        if self._snapshot is None:
            return None
        return next((dict(b) for b in self._snapshot.doc["batches"] if b["id"] == batch_id), None)

    def _selected(self, table_id: str, what: str) -> str | None:
        key = self.query_one(f"#{table_id}", LiveTable).selected_key
        if key is None:
            self.notify(f"no {what} selected", severity="warning")
        return key

    # -- actions (the registry's) ------------------------------------------------------
    def action_flush(self) -> None:
        if (name := self._selected("buffers", "buffer")) is not None:
            self.console.request_flush(name)

    def action_flush_all(self) -> None:
        self.console.request_flush(None)

    def action_resubmit(self) -> None:
        if (batch_id := self._selected("batches", "batch")) is not None:
            self.console.resubmit(batch_id)

    def action_cancel(self) -> None:
        batch_id = self._selected("batches", "batch")
        batch = self._batch(batch_id) if batch_id else None
        if batch_id is None or batch is None:
            return
        if batch["status"] in ENDED:
            self.notify(f"{batch_id} has already ended ({batch['status']})", severity="warning")
            return
        title, body = cancel_prompt(batch)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.console.cancel(batch_id)
            else:
                self.notify(f"{batch_id} not cancelled", timeout=3)

        self.app.push_screen(ConfirmScreen(title, body, yes="Cancel batch (y)", no="Keep it (n)"), answered)

    def action_inspect(self) -> None:
        focused = self.focused
        if isinstance(focused, LiveTable) and focused.id == "buffers":
            kind, key = "buffer", focused.selected_key
        else:
            kind, key = "batch", self.query_one("#batches", LiveTable).selected_key
        if key is None:
            self.notify(f"no {kind} selected", severity="warning")
            return
        now = self._snapshot.now if self._snapshot else self.console.now()
        self.app.push_screen(InspectScreen(self.console.data_dir, kind, key, now))  # type: ignore[arg-type]

    @on(DataTable.RowSelected, "#buffers, #batches")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_inspect()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._filter = event.value.strip()
        self._redraw()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.remove_class("shown")
        self.query_one("#batches", LiveTable).focus()

    def key_escape(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown"):
            box.value = ""
            box.remove_class("shown")
            self.query_one("#batches", LiveTable).focus()

    def action_savings(self) -> None:
        from batchtop.tui.screens.savings import SavingsScreen

        self.app.push_screen(SavingsScreen(self.console.data_dir, self.console.config, self.console.now))

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        await self.console.action_quit()

    def on_screen_resume(self) -> None:
        """Back from a modal or the inspect screen: show what arrived meanwhile."""
        pending = self.console.latest
        if pending is not None and pending is not self._snapshot:
            self.apply(pending, self.console.engine_line)
