"""Read-side queries behind the inspect screen: one batch's attempts, one buffer's queue.

Each is bounded (`limit`) or walks one batch's attempts over the attempts_batch index,
so inspecting a 50,000-line batch reads its failures, not its successes. The grouping
of failures by error code is the view's (`batchtop.views.detail`); here are only rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchtop.store.db import Connection


@dataclass(frozen=True)
class BatchRecord:
    """The batch row the inspect screen heads with (times in unix seconds)."""

    local_id: int
    provider_batch_id: str | None
    provider: str
    model: str
    endpoint: str
    status: str
    total: int
    succeeded: int
    failed: int
    created_at: float
    """The provider's creation time once known, else ours."""
    expires_at: float | None
    ended_at: float | None
    ingested_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class AttemptLine:
    """One attempt of a batch and the request it belongs to."""

    custom_id: str
    number: int
    outcome: str | None
    """None while the batch has not been ingested."""
    error: str | None
    request_state: str


@dataclass(frozen=True)
class FailedAttempt(AttemptLine):
    line: str = ""
    """The request's native batch line, as enqueued."""


_BATCH_COLS = (
    "id, provider_batch_id, provider, model, endpoint, status, total, succeeded, failed,"
    " coalesce(provider_created_at, created_at), expires_at, ended_at, ingested_at, last_error"
)


def _bytewise(db: Connection) -> str:
    """A text ORDER BY key's collation: byte order, as SQLite's BINARY (a PostgreSQL
    database's default collation may be a language's, which orders `-`, `_` and case
    otherwise: the same rows would come in another order)."""
    return ' COLLATE "C"' if db.dialect == "postgresql" else ""


def batch_record(db: Connection, batch_id: str) -> BatchRecord | None:
    """The batch by provider id, or `local-N` before it has one; None if there is none."""
    if batch_id.startswith("local-") and batch_id[6:].isdigit():
        row = db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE id = ?", (int(batch_id[6:]),)).fetchone()
    else:
        row = db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone()
    return BatchRecord(*row) if row is not None else None


def outcome_counts(db: Connection, local_id: int) -> dict[str | None, int]:
    """Attempts of a batch per outcome (None: not ended yet), ordered by outcome."""
    return {
        outcome: int(n)
        for outcome, n in db.execute(
            "SELECT outcome, count(*) FROM attempts WHERE batch_id = ? GROUP BY outcome"
            f" ORDER BY outcome{_bytewise(db)} NULLS FIRST",
            (local_id,),
        )
    }


def failed_attempts(db: Connection, local_id: int) -> Iterator[FailedAttempt]:
    """Every ended, unsucceeded attempt of a batch with its request's line, in attempt order."""
    for cid, number, outcome, err, state, line in db.execute(
        "SELECT r.custom_id, a.number, a.outcome, a.error, r.state, r.line FROM attempts a"
        " JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ? AND a.outcome IS NOT NULL"
        " AND a.outcome != 'succeeded' ORDER BY a.id",
        (local_id,),
    ):
        yield FailedAttempt(cid, number, outcome, err, state, line)


def other_attempts(db: Connection, local_id: int, limit: int) -> list[AttemptLine]:
    """At most `limit` succeeded or not yet ended attempts of a batch, in attempt order."""
    return [
        AttemptLine(*r)
        for r in db.execute(
            "SELECT r.custom_id, a.number, a.outcome, a.error, r.state FROM attempts a"
            " JOIN requests r ON r.id = a.request_id"
            " WHERE a.batch_id = ? AND (a.outcome IS NULL OR a.outcome = 'succeeded') ORDER BY a.id LIMIT ?",
            (local_id, max(0, limit)),
        )
    ]


@dataclass(frozen=True)
class BufferRecord:
    id: int
    provider: str
    endpoint: str
    model: str
    queued: int
    bytes: int
    held_reason: str | None


@dataclass(frozen=True)
class QueuedRow:
    custom_id: str
    enqueued_at: float
    deadline: float | None
    bytes: int
    attempts: int
    last_error: str | None
    tier: str | None = None
    """The priority tier it was enqueued with (`enqueue --tier`), or None."""


def buffer_record(db: Connection, name: str) -> BufferRecord | None:
    """One buffer by `provider:endpoint:model`; None if there is none."""
    row = db.execute(
        "SELECT id, provider, endpoint, model, queued, queued_bytes, held_reason FROM buffers"
        " WHERE provider || ':' || endpoint || ':' || model = ?",
        (name,),
    ).fetchone()
    return BufferRecord(*row) if row is not None else None


def queued_requests(db: Connection, buffer_id: int, limit: int) -> tuple[QueuedRow, ...]:
    """At most `limit` of a buffer's queued requests, oldest first; not those an intent
    holds as a range claim while its batch uploads (they are the batch's now)."""
    from batchtop.store import claims

    skip, skip_args = claims.outside(claims.open_claims(db, buffer_id))
    return tuple(
        QueuedRow(*r)
        for r in db.execute(
            "SELECT custom_id, enqueued_at, deadline, bytes, attempts, last_error, tier FROM requests"
            f" WHERE buffer_id = ? AND state = 'queued'{skip} ORDER BY id LIMIT ?",
            (buffer_id, *skip_args, limit),
        )
    )
