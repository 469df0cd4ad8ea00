"""The main screen: header, buffers, batches, savings and problems.

It renders whatever snapshot the App hands it (`apply`) and turns keys into calls
on the App; it reads no store and computes nothing beyond formatting.

One focus model: a key acts on the focused table's selected row. Only the focused
table shows its cursor at full strength, the footer names the row a key will act on
(`r Resubmit batch_0c…`), and keys that need another table are hidden from it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import ActiveBinding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from batchtop.providers.base import ENDED
from batchtop.tui import rows
from batchtop.tui.registry import ACTIONS, bindings
from batchtop.tui.screens.confirm import ConfirmScreen, cancel_prompt
from batchtop.tui.screens.help import HelpScreen
from batchtop.tui.screens.inspect import InspectScreen
from batchtop.tui.snapshot import Snapshot
from batchtop.tui.widgets.live_table import LiveTable
from batchtop.views.status_model import BatchStatus, Status

if TYPE_CHECKING:
    from batchtop.tui.app import BatchtopApp

NARROW = 120

TABLE_NAMES = {"buffers": ("buffer", "Buffers"), "batches": ("batch", "Batches"), "savings": ("model", "Savings by model")}
SCOPE = {a.action: a.on for a in ACTIONS}
WRITES = frozenset({"flush", "flush_all", "resubmit", "cancel"})
"""The actions that change the store: hidden from a read-only console's footer (and
refused by the App if used anyway)."""

WELCOME = (
    "Nothing here yet. To start:\n"
    "  batchtop enqueue requests.jsonl      queue a JSONL file of requests (OpenAI or Anthropic lines)\n"
    "  batchtop demo                        or watch a demo data dir against the built-in simulator\n"
    "Keys: ? help · / search · q quit"
)


def short(key: str, width: int = 16) -> str:
    """A row key for the footer: `batch_…0c1f2e9d`, both ends kept."""
    return rows.middle(key, width)


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = list(bindings())

    def __init__(self) -> None:
        super().__init__()
        self._snapshot: Snapshot | None = None
        self._engine = Text()
        self._filter = ""
        self._found: list[BatchStatus] = []
        """Batches anywhere in the store matching the search (`/`)."""
        self._shown: dict[str, object] = {}
        """What the header, the problems panel and the tables' titles last showed."""

    @property
    def console(self) -> BatchtopApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Input(placeholder="search: words to match in provider, model, batch id, status… (enter keeps, escape clears)", id="filter")
        with Vertical(id="tables"):
            yield Static(WELCOME, id="welcome", markup=False)
            yield LiveTable(rows.BUFFER_COLUMNS, id="buffers")
            yield LiveTable(rows.BATCH_COLUMNS, id="batches")
            with Horizontal(id="bottom"):
                yield LiveTable(rows.SAVINGS_COLUMNS, id="savings")
                box = VerticalScroll(id="problems-box")
                box.can_focus = False  # Tab visits only the tables: they are what keys act on
                with box:
                    yield Static(id="problems")
        yield Footer()

    def on_resize(self) -> None:
        """Narrow terminals: batch ids cut in the middle, savings and problems side by
        side at equal widths, so the essentials (leftmost columns) stay in view."""
        narrow = self.size.width < NARROW
        self.set_class(narrow, "narrow")
        footer = self.query_one(Footer)
        footer.compact = narrow
        footer.show_command_palette = not narrow  # ctrl+p still works; help lists it
        self._redraw()

    def on_mount(self) -> None:
        for name, (_, title) in TABLE_NAMES.items():
            self.query_one(f"#{name}").border_title = title
        self.query_one("#problems-box").border_title = "Errors & alerts"
        self.query_one("#batches", LiveTable).focus()

    # -- rendering -----------------------------------------------------------------
    def apply(self, snapshot: Snapshot, engine: Text) -> None:
        """Show a snapshot; the tables are diffed so cursors stay on their rows."""
        self._snapshot = snapshot
        self._engine = engine
        self._redraw()

    def show_engine(self, engine: Text) -> None:
        """Only the header's engine line changed (its age)."""
        self._engine = engine
        self._draw_header()

    def _draw_header(self) -> None:
        snap = self._snapshot
        if snap is None:
            return
        # the keys matter to the engine this console runs; another engine has keys of its own
        keys = snap.missing_keys if snap.other_engine is None and self.console.runs_engine else {}
        self._show("#header", rows.header_lines(snap.doc, snap.now, self._engine, self.console.label, keys))

    def _show(self, selector: str, text: Text) -> None:
        """Update a Static only when what it shows changed: an update repaints it."""
        if self._shown.get(selector) != (sig := rows.signature((text,))):
            self.query_one(selector, Static).update(text)
            self._shown[selector] = sig

    def _title(self, table: LiveTable, title: str) -> None:
        """Set a table's title only when it changed: setting one repaints the whole table."""
        if self._shown.get(f"{table.id} title") != title:
            table.border_title = title
            self._shown[f"{table.id} title"] = title

    def _tables(self, snap: Snapshot) -> rows.Tables:
        """The snapshot's rows as the refresh worker formatted them, unless the
        terminal has since crossed the width at which batch ids are cut."""
        width = rows.id_width(self.size.width)
        if snap.tables is not None and snap.tables.id_width == width:
            return snap.tables
        return rows.tables(snap.doc, snap.now, width)

    def _redraw(self) -> None:
        snap = self._snapshot
        if snap is None:
            return
        doc, now = snap.doc, snap.now
        tables = self._tables(snap)
        with self.app.batch_update():
            self._draw_header()
            empty = not doc.buffers and not doc.batches and not doc.savings.by_model and not snap.error
            self.query_one("#welcome").display = empty
            self._fill("buffers", "Buffers", tables)
            self._fill_batches(doc, now, tables)
            self._fill("savings", "Savings by model", tables)
            self._show("#problems", rows.problems(doc, now, snap.error))
        self.refresh_bindings()

    def _fill(self, name: str, title: str, tables: rows.Tables) -> None:
        table = self.query_one(f"#{name}", LiveTable)
        all_rows: list[rows.Row] = getattr(tables, name)
        shown = rows.only(all_rows, self._filter)
        table.sync(shown, tables.signatures[name])
        count = f"{len(shown)} of {len(all_rows)}" if self._filter else f"{len(all_rows)}"
        self._title(table, f"{title} ({count})")

    def _fill_batches(self, doc: Status, now: float, tables: rows.Tables) -> None:
        """In flight first, then the recent ended; a search adds its hits from the
        whole store (older ended batches the document does not list)."""
        table = self.query_one("#batches", LiveTable)
        listed = tables.batches
        shown = rows.only(listed, self._filter)
        extra: list[rows.Row] = []
        if self._filter and self._found:
            have = {k for k, _ in listed}
            older = [b for b in self._found if b.id not in have]
            extra = rows.batch_rows(older, now, tables.id_width)
        table.sync(shown + extra, tables.signatures["batches"])
        title = rows.batches_title(doc, len(shown), len(listed))
        if self._filter:
            title += f" · {len(extra):,} more found in the store" if extra else " · none more in the store"
        self._title(table, f"Batches ({title})")

    def found(self, needle: str, batches: list[BatchStatus]) -> None:
        """A store search came back: show it if it is still the current search."""
        if needle == self._filter:
            self._found = batches
            self._redraw()

    # -- focus and the footer ----------------------------------------------------------
    def _focused_table(self) -> LiveTable | None:
        focused = self.focused
        return focused if isinstance(focused, LiveTable) else None

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """The footer shows only the keys that act on the focused table (or on no row),
        each naming the row it acts on: `r Resubmit batch_0c1f…`."""
        active = super().active_bindings
        table = self._focused_table()
        here = table.id if table is not None else None
        key = table.selected_key if table is not None else None
        named = False
        for k, ab in list(active.items()):
            if ab.node is not self:
                continue
            action = ab.binding.action
            if action in WRITES and self.console.read_only:
                del active[k]
                continue
            scope = SCOPE.get(action)
            if action == "inspect":
                scope = here if here in ("buffers", "batches") else "-"
            if scope is None:
                continue
            if scope != here:
                del active[k]
            elif key is not None and not named and ab.binding.show:  # once, on the first key for this row
                active[k] = ab._replace(binding=replace(ab.binding, description=f"{ab.binding.description} {short(key)}"))
                named = True
        return active

    @on(DataTable.RowHighlighted)
    def _row_moved(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    @on(LiveTable.Sorted)
    def _sorted(self, event: LiveTable.Sorted) -> None:
        event.stop()
        self.refresh_bindings()

    # -- selection -------------------------------------------------------------------
    def _batch(self, batch_id: str) -> BatchStatus | None:
        if self._snapshot is None:
            return None
        pool = [*self._snapshot.doc.batches, *self._found]
        return next((b for b in pool if b.id == batch_id), None)

    def _selected(self, table_id: str) -> str | None:
        """The focused table's selected row, if it is `table_id`."""
        what, title = TABLE_NAMES[table_id]
        table = self._focused_table()
        if table is None or table.id != table_id:
            self.console.tell(f"select a {what} in {title} first (tab moves between tables)", severity="warning")
            return None
        key = table.selected_key
        if key is None:
            self.console.tell(f"no {what} selected", severity="warning")
        return key

    # -- actions (the registry's) ------------------------------------------------------
    def action_flush(self) -> None:
        if (name := self._selected("buffers")) is not None:
            self.console.request_flush(name)

    def action_flush_all(self) -> None:
        self.console.request_flush(None)

    def action_resubmit(self) -> None:
        if (batch_id := self._selected("batches")) is not None:
            self.console.resubmit(batch_id)

    def action_cancel(self) -> None:
        if self.console.refused("cancel"):  # before the prompt: there is nothing to confirm
            return
        batch_id = self._selected("batches")
        batch = self._batch(batch_id) if batch_id else None
        if batch_id is None or batch is None:
            return
        if batch.status in ENDED:
            self.console.tell(f"{batch_id} has already ended ({batch.status})", severity="warning")
            return
        title, body = cancel_prompt(batch, auto_resubmit=self.console.config.engine.auto_resubmit)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.console.cancel(batch_id)
            else:
                self.console.tell(f"{batch_id} not cancelled", timeout=3)

        self.app.push_screen(ConfirmScreen(title, body, yes="Cancel batch (y)", no="Keep it (n)"), answered)

    def action_retry_realtime(self) -> None:
        """Issue 15: every dead letter once more, real time, after a prompt with the cost."""
        if self.console.refused("retry real time"):
            return
        from batchtop.tui import operations

        n, cost = operations.retry_estimate(self.console.data_dir, self.console.config)
        if not n:
            self.console.tell("no dead letters to retry real time", timeout=3)
            return
        title = Text("Retry dead letters real time?", style="bold")
        body = Text(f"Send {cost}, each once, through the provider's real-time API.")

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.console.retry_realtime()
            else:
                self.console.tell("dead letters not retried", timeout=3)

        self.app.push_screen(ConfirmScreen(title, body, yes="Send (y)", no="Keep them (n)"), answered)

    def action_inspect(self) -> None:
        table = self._focused_table()
        if table is None or table.id not in ("buffers", "batches"):
            self.console.tell("select a batch or a buffer first (tab moves between tables)", severity="warning")
            return
        kind = "buffer" if table.id == "buffers" else "batch"
        key = table.selected_key
        if key is None:
            self.console.tell(f"no {kind} selected", severity="warning")
            return
        now = self._snapshot.now if self._snapshot else self.console.now()
        self.app.push_screen(InspectScreen(self.console.data_dir, kind, key, now, self.console.config.store))  # type: ignore[arg-type]

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
        self._found = []
        self._redraw()
        if self._filter:
            self.console.search(self._filter)

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
