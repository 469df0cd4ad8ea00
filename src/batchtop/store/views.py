"""Read-side queries shared by the console, `--once` and the engine.

Each returns plain frozen rows built from counters the store keeps, never a scan of
the requests table, so a refresh stays cheap with a million queued requests.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from batchtop.config import Config
from batchtop.policy import flush_due_at


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

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.endpoint}:{self.model}"


def buffers(db: sqlite3.Connection, config: Config, *, include_empty: bool = False) -> list[BufferRow]:
    rows = []
    for (bid, provider, endpoint, model, queued, qbytes, requested, held) in db.execute(
        "SELECT id, provider, endpoint, model, queued, queued_bytes, flush_requested_at, held_reason"
        " FROM buffers ORDER BY provider, model, endpoint"
    ):
        if queued <= 0 and not include_empty:
            continue
        oldest = earliest = None
        if queued > 0:
            oldest = db.execute(
                "SELECT enqueued_at FROM requests WHERE buffer_id = ? AND state = 'queued' ORDER BY id LIMIT 1", (bid,)
            ).fetchone()
            oldest = oldest[0] if oldest else None
            earliest = db.execute(
                "SELECT min(deadline) FROM requests WHERE buffer_id = ? AND state = 'queued' AND deadline IS NOT NULL",
                (bid,),
            ).fetchone()[0]
        policy = config.policy_for(provider, endpoint, model)
        due = flush_due_at(
            policy,
            queued=queued,
            queued_bytes=qbytes,
            oldest_enqueued_at=oldest,
            earliest_deadline=earliest,
            flush_requested_at=requested,
        )
        rows.append(BufferRow(bid, provider, endpoint, model, queued, qbytes, oldest, earliest, requested, due, held))
    return rows
