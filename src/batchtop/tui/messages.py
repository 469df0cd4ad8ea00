"""Messages the console's workers post to the UI loop: each carries one immutable result."""

from __future__ import annotations

from concurrent.futures import Future

from textual.message import Message

from batchtop.engine.driver import TickOutcome
from batchtop.tui.snapshot import Snapshot
from batchtop.views.status_model import BatchStatus


class StatusRefreshed(Message):
    """A newer status snapshot replaces an older one still queued."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatusRefreshed)


class EngineTicking(Message):
    """The engine driver started a tick (whoever asked for it): its outcome, to come."""

    def __init__(self, outcome: Future[TickOutcome]) -> None:
        super().__init__()
        self.outcome = outcome


class EngineTicked(Message):
    """A tick of the console's engine ended (or failed: `outcome.error`)."""

    def __init__(self, outcome: TickOutcome) -> None:
        super().__init__()
        self.outcome = outcome


class ActionDone(Message):
    """An operator action was written to the store (or refused, with `error`)."""

    def __init__(self, text: str, *, error: bool = False, wake: bool = False) -> None:
        super().__init__()
        self.text = text
        self.error = error
        self.wake = wake


class SearchDone(Message):
    """The batches in the whole store that match a search."""

    def __init__(self, needle: str, batches: list[BatchStatus]) -> None:
        super().__init__()
        self.needle = needle
        self.batches = batches
