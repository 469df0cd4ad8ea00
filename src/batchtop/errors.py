"""Errors that reach the operator: each names what is wrong and where."""

from __future__ import annotations

from dataclasses import dataclass


class BatchtopError(Exception):
    """An error the CLI prints as one clear message and exits 1 on."""


@dataclass(frozen=True)
class LineError:
    """One problem in one input line: enough to find and fix it."""

    source: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        field = f" {self.field}:" if self.field else ""
        return f"{where}:{field} {self.message}"


class EnqueueError(BatchtopError):
    """Input was rejected whole; nothing was enqueued."""

    def __init__(self, errors: list[LineError], more: int = 0) -> None:
        self.errors = errors
        self.more = more
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [str(e) for e in self.errors]
        if self.more:
            lines.append(f"... and {self.more} more problem{'s' if self.more != 1 else ''}")
        lines.append("nothing was enqueued")
        return "\n".join(lines)


class StoreError(BatchtopError):
    """The database cannot be used as it is (newer schema, corrupt file)."""
