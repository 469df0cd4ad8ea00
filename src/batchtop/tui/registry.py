"""The console's actions, once: key bindings, the footer, the help screen and the
command palette are all built from this list, so they can never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class ConsoleAction:
    id: str
    """Stable binding id, so users can remap keys (Textual keymaps)."""
    key: str
    action: str
    """The main screen's action name (without `action_`)."""
    label: str
    """Short footer label."""
    help: str
    """One line for the help screen and the command palette."""
    display_key: str | None = None
    show: bool = True
    on: str | None = None
    """The table whose selected row it acts on (it must have focus); None: no row."""


ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction("flush", "f", "flush", "Flush", "Flush the selected buffer now: the engine submits it as a batch", on="buffers"),
    ConsoleAction("flush-all", "F", "flush_all", "Flush all", "Flush every buffer that has queued requests"),
    ConsoleAction(
        "resubmit", "r", "resubmit", "Resubmit", "Resubmit the selected batch's failed, expired and cancelled requests", on="batches"
    ),
    ConsoleAction("cancel", "c", "cancel", "Cancel", "Cancel the selected batch at the provider (asks first)", on="batches"),
    ConsoleAction(
        "retry-realtime", "R", "retry_realtime", "Retry real time",
        "Send every dead letter once more through the real-time API, at list price (asks first, with the estimated cost)",
        show=False,
    ),
    ConsoleAction(
        "inspect", "enter", "inspect", "Inspect", "Inspect the selected batch (errors, attempts) or buffer (queued requests)", show=False
    ),
    ConsoleAction(
        "filter", "slash", "filter", "Search", "Search every batch in the store and filter the tables (provider, model, id, status)",
        display_key="/",
    ),
    ConsoleAction(
        "savings", "dollar_sign", "savings", "Savings",
        "Savings over time: spend per day as a chart, per model, first-pass break-even, what-if routing",
        display_key="$", show=False,
    ),
    ConsoleAction("help", "question_mark", "help", "Help", "Show the keys and what the columns mean", display_key="?"),
    ConsoleAction("quit", "q", "quit", "Quit", "Quit the console (the engine stops with it; queued work stays in the store)"),
)

NAVIGATION: tuple[tuple[str, str], ...] = (
    ("tab / shift+tab", "Next / previous table (Buffers, Batches, Savings): keys act on its selected row"),
    ("↑ ↓", "Move the selection"),
    ("pgup / pgdn", "A page up / down"),
    ("home g / end G", "First / last row"),
    ("s / S", "Sort the table by the next column / reverse it (or click a column header)"),
    ("escape", "Clear the search"),
)
"""Keys the tables and the screen handle themselves, for the help screen."""


def bindings() -> list[BindingType]:
    """The main screen's bindings, one per action."""
    return [
        Binding(a.key, a.action, a.label, show=a.show, key_display=a.display_key, id=f"batchtop.{a.id}")
        for a in ACTIONS
    ]


def key_label(action: ConsoleAction) -> str:
    return action.display_key or action.key
