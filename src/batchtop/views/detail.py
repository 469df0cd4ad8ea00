"""What the console's inspect screen shows of one batch or one buffer.

Built from the store's bounded reads (`batchtop.store.detail_queries`), no Textual and
no SQL here, so the console stays a thin view and the same detail can be printed by a
CLI command later. Inspecting a 50,000-line batch reads its failures, not its successes.
"""

from __future__ import annotations

from dataclasses import dataclass

from batchtop.errors import BatchtopError
from batchtop.store import detail_queries
from batchtop.store.db import Connection
from batchtop.store.detail_queries import AttemptLine, QueuedRow

__all__ = ["AttemptRow", "BatchDetail", "BufferDetail", "ErrorGroup", "ErrorSample", "QueuedRow", "batch_detail",
           "buffer_detail", "error_code"]

LIMIT = 500
"""Rows listed at most; the counts above a list always cover everything."""

SAMPLES = 3
"""Sample lines shown per error code."""


@dataclass(frozen=True)
class ErrorSample:
    custom_id: str
    message: str
    line: str
    """The request's native batch line, as enqueued (may be long: the view truncates)."""


@dataclass(frozen=True)
class ErrorGroup:
    """Failed attempts of one batch sharing an error code (`server_error`, `missing`, ...)."""

    code: str
    count: int
    samples: tuple[ErrorSample, ...]


AttemptRow = AttemptLine
"""One attempt of a batch (`store.detail_queries.AttemptLine`)."""


@dataclass(frozen=True)
class BatchDetail:
    id: str
    provider: str
    model: str
    endpoint: str
    status: str
    total: int
    succeeded: int
    failed: int
    created_at: float
    expires_at: float | None
    ended_at: float | None
    ingested: bool
    error: str | None
    outcomes: dict[str, int]
    """Attempts per outcome ('pending' for those without one yet)."""
    errors: tuple[ErrorGroup, ...]
    attempts: tuple[AttemptRow, ...]
    """Failures first, then the rest, at most `limit`."""


@dataclass(frozen=True)
class BufferDetail:
    name: str
    provider: str
    endpoint: str
    model: str
    queued: int
    bytes: int
    held_reason: str | None
    requests: tuple[QueuedRow, ...]
    """Oldest first, at most `limit`."""


def error_code(error: str | None, outcome: str | None) -> str:
    """The code of a stored error ("code: message", as the adapters write it)."""
    if error:
        head, sep, _ = error.partition(":")
        if sep and head and " " not in head.strip():
            return head.strip()
    return outcome or "unknown"


def batch_detail(db: Connection, batch_id: str, *, limit: int = LIMIT, samples: int = SAMPLES) -> BatchDetail:
    """One batch (provider id, or `local-N` before it has one): its failures grouped
    by code with sample lines, its attempts, and counts per outcome."""
    b = detail_queries.batch_record(db, batch_id)
    if b is None:
        raise BatchtopError(f"no batch {batch_id!r} in this data dir")
    outcomes = {(outcome or "pending"): n for outcome, n in detail_queries.outcome_counts(db, b.local_id).items()}
    groups: dict[str, tuple[list[int], list[ErrorSample]]] = {}
    failures: list[AttemptRow] = []
    for f in detail_queries.failed_attempts(db, b.local_id):
        count, kept = groups.setdefault(error_code(f.error, f.outcome), ([0], []))
        count[0] += 1
        if len(kept) < samples:
            kept.append(ErrorSample(f.custom_id, f.error or f.outcome or "", f.line))
        if len(failures) < limit:
            failures.append(AttemptRow(f.custom_id, f.number, f.outcome, f.error, f.request_state))
    rest = detail_queries.other_attempts(db, b.local_id, limit - len(failures))
    errors = tuple(
        ErrorGroup(code, n[0], tuple(s))
        for code, (n, s) in sorted(groups.items(), key=lambda kv: (-kv[1][0][0], kv[0]))
    )
    return BatchDetail(
        id=b.provider_batch_id or f"local-{b.local_id}",
        provider=b.provider,
        model=b.model,
        endpoint=b.endpoint,
        status=b.status,
        total=b.total,
        succeeded=b.succeeded,
        failed=b.failed,
        created_at=b.created_at,
        expires_at=b.expires_at,
        ended_at=b.ended_at,
        ingested=b.ingested_at is not None,
        error=b.last_error,
        outcomes=outcomes,
        errors=errors,
        attempts=tuple(failures) + tuple(rest),
    )


def buffer_detail(db: Connection, name: str, *, limit: int = LIMIT) -> BufferDetail:
    """One buffer by `provider:endpoint:model`: its queued requests, oldest first."""
    b = detail_queries.buffer_record(db, name)
    if b is None:
        raise BatchtopError(f"no buffer named {name!r}")
    requests = detail_queries.queued_requests(db, b.id, limit)
    return BufferDetail(name, b.provider, b.endpoint, b.model, b.queued, b.bytes, b.held_reason, requests)
