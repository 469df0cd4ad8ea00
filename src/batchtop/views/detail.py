"""Read-side queries behind the console's inspect screen: one batch or one buffer.

Plain sqlite3 on a store connection, no Textual, so the console stays a thin view
and the same detail can be printed by a CLI command later. Each query is bounded
(`limit`) and uses the store's indexes, so inspecting a 50,000-line batch reads
its failures, not its successes.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from batchtop.errors import BatchtopError

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


@dataclass(frozen=True)
class AttemptRow:
    custom_id: str
    number: int
    outcome: str | None
    """None while the batch has not been ingested."""
    error: str | None
    request_state: str


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
class QueuedRow:
    custom_id: str
    enqueued_at: float
    deadline: float | None
    bytes: int
    attempts: int
    last_error: str | None
    tier: str | None = None
    """The priority tier it was enqueued with (issue 15), or None."""


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


def _batch_row(db: sqlite3.Connection, batch_id: str) -> tuple:
    cols = (
        "id, provider_batch_id, provider, model, endpoint, status, total, succeeded, failed,"
        " coalesce(provider_created_at, created_at), expires_at, ended_at, ingested_at, last_error"
    )
    if batch_id.startswith("local-") and batch_id[6:].isdigit():
        row = db.execute(f"SELECT {cols} FROM batches WHERE id = ?", (int(batch_id[6:]),)).fetchone()
    else:
        row = db.execute(f"SELECT {cols} FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone()
    if row is None:
        raise BatchtopError(f"no batch {batch_id!r} in this data dir")
    return row


def batch_detail(db: sqlite3.Connection, batch_id: str, *, limit: int = LIMIT, samples: int = SAMPLES) -> BatchDetail:
    """One batch (provider id, or `local-N` before it has one): its failures grouped
    by code with sample lines, its attempts, and counts per outcome."""
    (local, pid, provider, model, endpoint, status, total, ok, failed, created, expires, ended, ingested,
     error) = _batch_row(db, batch_id)
    outcomes = {
        (outcome or "pending"): n
        for outcome, n in db.execute(
            "SELECT outcome, count(*) FROM attempts WHERE batch_id = ? GROUP BY outcome ORDER BY outcome", (local,)
        )
    }
    groups: dict[str, list] = {}
    failures: list[AttemptRow] = []
    for cid, number, outcome, err, state, line in db.execute(
        "SELECT r.custom_id, a.number, a.outcome, a.error, r.state, r.line FROM attempts a"
        " JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ? AND a.outcome IS NOT NULL"
        " AND a.outcome != 'succeeded' ORDER BY a.id",
        (local,),
    ):
        group = groups.setdefault(error_code(err, outcome), [0, []])
        group[0] += 1
        if len(group[1]) < samples:
            group[1].append(ErrorSample(cid, err or outcome, line))
        if len(failures) < limit:
            failures.append(AttemptRow(cid, number, outcome, err, state))
    rest = db.execute(
        "SELECT r.custom_id, a.number, a.outcome, a.error, r.state FROM attempts a JOIN requests r ON r.id = a.request_id"
        " WHERE a.batch_id = ? AND (a.outcome IS NULL OR a.outcome = 'succeeded') ORDER BY a.id LIMIT ?",
        (local, max(0, limit - len(failures))),
    ).fetchall()
    errors = tuple(
        ErrorGroup(code, n, tuple(s)) for code, (n, s) in sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
    )
    return BatchDetail(
        id=pid or f"local-{local}",
        provider=provider,
        model=model,
        endpoint=endpoint,
        status=status,
        total=total,
        succeeded=ok,
        failed=failed,
        created_at=created,
        expires_at=expires,
        ended_at=ended,
        ingested=ingested is not None,
        error=error,
        outcomes=outcomes,
        errors=errors,
        attempts=tuple(failures) + tuple(AttemptRow(*r) for r in rest),
    )


def buffer_detail(db: sqlite3.Connection, name: str, *, limit: int = LIMIT) -> BufferDetail:
    """One buffer by `provider:endpoint:model`: its queued requests, oldest first."""
    row = db.execute(
        "SELECT id, provider, endpoint, model, queued, queued_bytes, held_reason FROM buffers"
        " WHERE provider || ':' || endpoint || ':' || model = ?",
        (name,),
    ).fetchone()
    if row is None:
        raise BatchtopError(f"no buffer named {name!r}")
    buffer_id, provider, endpoint, model, queued, size, held = row
    requests = tuple(
        QueuedRow(*r)
        for r in db.execute(
            "SELECT custom_id, enqueued_at, deadline, bytes, attempts, last_error, tier FROM requests"
            " WHERE buffer_id = ? AND state = 'queued' ORDER BY id LIMIT ?",
            (buffer_id, limit),
        )
    )
    return BufferDetail(name, provider, endpoint, model, queued, size, held, requests)
