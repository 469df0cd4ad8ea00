"""Read-side queries shared by the console, `--once` and the engine.

Each returns plain frozen rows built from counters the store keeps, never a scan of
the requests table, so a refresh stays cheap with a million queued requests.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from batchtop.config import Config
from batchtop.engine.policy import flush_due_at
from batchtop.store import claims


@dataclass(frozen=True)
class BufferRow:
    id: int
    provider: str
    endpoint: str
    model: str
    queued: int
    bytes: int
    oldest_enqueued_at: float | None
    earliest_deadline: float | None
    flush_requested_at: float | None
    flush_due_at: float | None
    held_reason: str | None
    retry_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.endpoint}:{self.model}"


_BUFFER_COLS = "id, provider, endpoint, model, queued, queued_bytes, flush_requested_at, held_reason, retry_at"


def _buffer_row(db: sqlite3.Connection, config: Config, row: tuple) -> BufferRow:
    bid, provider, endpoint, model, queued, qbytes, requested, held, retry_at = row
    oldest = earliest = None
    if queued > 0:
        # requests of an open range claim keep their queued row, but are no longer queued
        skip, skip_args = claims.outside(claims.open_claims(db, bid))
        first = db.execute(
            f"SELECT enqueued_at FROM requests WHERE buffer_id = ? AND state = 'queued'{skip} ORDER BY id LIMIT 1",
            (bid, *skip_args),
        ).fetchone()
        oldest = first[0] if first else None
        earliest = db.execute(
            "SELECT min(deadline) FROM requests WHERE buffer_id = ? AND state = 'queued'"
            f" AND deadline IS NOT NULL{skip}",
            (bid, *skip_args),
        ).fetchone()[0]
    due = flush_due_at(
        config.policy_for(provider, endpoint, model),
        queued=queued,
        queued_bytes=qbytes,
        oldest_enqueued_at=oldest,
        earliest_deadline=earliest,
        flush_requested_at=requested,
    )
    return BufferRow(bid, provider, endpoint, model, queued, qbytes, oldest, earliest, requested, due, held, retry_at)


def ready_at(row: BufferRow) -> float | None:
    """When a buffer is worth a tick: its flush due time, but not before its retry
    time. None when it is empty, or held with no retry time (no key, a budget cap):
    such a buffer waits for the regular poll, or a loop would spin on it."""
    if row.flush_due_at is None or (row.retry_at is None and row.held_reason is not None):
        return None
    return max(row.flush_due_at, row.retry_at or 0.0)


def buffers(db: sqlite3.Connection, config: Config, *, include_empty: bool = False) -> list[BufferRow]:
    where = "" if include_empty else " WHERE queued > 0"
    return [
        _buffer_row(db, config, row)
        for row in db.execute(f"SELECT {_BUFFER_COLS} FROM buffers{where} ORDER BY provider, model, endpoint").fetchall()
    ]


def buffer_due(db: sqlite3.Connection, config: Config, buffer_id: int) -> float | None:
    """When one buffer is next due (None when empty)."""
    row = db.execute(f"SELECT {_BUFFER_COLS} FROM buffers WHERE id = ?", (buffer_id,)).fetchone()
    return _buffer_row(db, config, row).flush_due_at if row else None
