"""The confirmation before a destructive action: y confirms; n or escape does nothing."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from batchtop.display import clean
from batchtop.views.status_model import BatchStatus


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on y (or the confirm button)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="batchtop.confirm.yes"),
        Binding("n", "answer(False)", "No", id="batchtop.confirm.no"),
        Binding("escape", "answer(False)", "No", show=False, id="batchtop.confirm.escape"),
    ]

    def __init__(self, title: Text, body: Text, *, yes: str = "Yes (y)", no: str = "No (n)") -> None:
        super().__init__()
        self._title = title
        self._body = body
        self._yes = yes
        self._no = no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(self._title, id="dialog-title")
            yield Static(self._body, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button(self._yes, variant="error", id="yes")
                yield Button(self._no, variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # enter alone never confirms

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def cancel_prompt(batch: BatchStatus, *, auto_resubmit: bool) -> tuple[Text, Text]:
    """Title and body naming the batch and its counts, and saying what really becomes
    of the requests not done: with `engine.auto_resubmit` they are queued again by
    themselves; without it they wait for `r`."""
    total, ok, failed = batch.total, batch.succeeded, batch.failed
    pending = max(0, total - ok - failed)
    title = Text(f"Cancel batch {clean(batch.id, limit=60)}?")
    if auto_resubmit:
        fate = (
            f"Results already done are kept. The {pending:,} not done end as cancelled and are\n"
            "queued again automatically (engine.auto_resubmit is on): they go out in a new batch."
        )
    else:
        fate = (
            f"Results already done are kept. The {pending:,} not done end as cancelled and stay\n"
            "so (engine.auto_resubmit is off): r on this batch resubmits them."
        )
    body = Text(
        f"{clean(batch.provider)} · {clean(batch.model, limit=40)} · {clean(batch.status)}\n\n"
        f"{ok:,} of {total:,} succeeded, {failed:,} failed, {pending:,} not done yet.\n"
        f"{fate}\nThe provider may take a while to stop."
    )
    return title, body
