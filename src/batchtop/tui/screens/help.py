"""Keys and columns, built from the action registry so it never goes stale."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from batchtop.tui.registry import ACTIONS, NAVIGATION, key_label

COLUMNS = (
    ("flush due", "when the buffer is submitted: its age limit, a deadline's latest safe time, or a flush you asked for"),
    ("deadline", "the earliest deadline among its queued requests (--sla / --deadline)"),
    ("held", "why the buffer waits (no API key, refused by the provider, ...)"),
    ("progress", "green succeeded, red failed (✗), dim not done; ⊘ cancelled or expired: never run, not failures"),
    ("saved $", "real-time price less batch price; shown so that batch $ + saved $ = real-time $ on every row"),
    ("window left", "time before the provider's 24 h window ends and unfinished requests expire"),
    ("1st pass", "share of requests that succeeded on their first attempt"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="batchtop.help.close"),
    ]

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold cyan", no_wrap=True)
        keys.add_column()
        for a in ACTIONS:
            where = {"buffers": " (Buffers table)", "batches": " (Batches table)"}.get(a.on or "", "")
            keys.add_row(key_label(a), a.help + where)
        keys.add_row("ctrl+p", "Command palette: every action above, by name")
        nav = Table.grid(padding=(0, 2))
        nav.add_column(style="bold cyan", no_wrap=True)
        nav.add_column()
        for key, meaning in NAVIGATION:
            nav.add_row(key, meaning)
        cols = Table.grid(padding=(0, 2))
        cols.add_column(style="bold", no_wrap=True)
        cols.add_column()
        for name, meaning in COLUMNS:
            cols.add_row(name, meaning)
        with VerticalScroll(id="help"):
            yield Static(Text("batchtop — keys", style="bold"))
            yield Static(keys)
            yield Static(Text("\nmoving around", style="bold"))
            yield Static(nav)
            yield Static(Text("\ncolumns", style="bold"))
            yield Static(cols)
            yield Static(Text("\nActions are written to the store; the engine holding the data dir carries them out.", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
