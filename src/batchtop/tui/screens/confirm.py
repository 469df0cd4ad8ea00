"""The confirmation before a destructive action: y confirms; n or escape does nothing."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on y (or the confirm button)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="batchtop.confirm.yes"),
        Binding("n", "answer(False)", "No", id="batchtop.confirm.no"),
        Binding("escape", "answer(False)", "No", show=False, id="batchtop.confirm.escape"),
    ]

    def __init__(self, title: str, body: str, *, yes: str = "Yes (y)", no: str = "No (n)") -> None:
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


def cancel_prompt(batch: dict) -> tuple[str, str]:
    """Title and body naming the batch and its counts."""
    total, ok, failed = batch["total"], batch["succeeded"], batch["failed"]
    pending = max(0, total - ok - failed)
    title = f"Cancel batch {batch['id']}?"
    body = (
        f"{batch['provider']} · {batch['model']} · {batch['status']}\n\n"
        f"{ok:,} of {total:,} succeeded, {failed:,} failed, {pending:,} not done yet.\n"
        "Results already done are kept; the requests not done come back as cancelled\n"
        "(r resubmits them). The provider may take a while to stop."
    )
    return title, body
