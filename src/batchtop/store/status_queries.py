"""Read-side queries shared by the console, `--once` and the engine.

Each returns plain frozen rows built from counters the store keeps, never a scan of
the requests table, so a refresh stays cheap with a million queued requests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from batchtop.config import Config
from batchtop.engine.policy import flush_due_at
from batchtop.store import claims

if TYPE_CHECKING:
    from batchtop.store.db import Connection


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


def _buffer_row(db: Connection, config: Config, row: tuple) -> BufferRow:
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


def _bytewise(db: Connection) -> str:
    """A text ORDER BY key's collation: byte order, as SQLite's BINARY (a PostgreSQL
    database's default collation may be a language's, which orders `-`, `_` and case
    otherwise: the same rows would come in another order)."""
    return ' COLLATE "C"' if db.dialect == "postgresql" else ""


def ready_at(row: BufferRow) -> float | None:
    """When a buffer is worth a tick: its flush due time, but not before its retry
    time. None when it is empty, or held with no retry time (no key, a budget cap):
    such a buffer waits for the regular poll, or a loop would spin on it."""
    if row.flush_due_at is None or (row.retry_at is None and row.held_reason is not None):
        return None
    return max(row.flush_due_at, row.retry_at or 0.0)


def buffers(db: Connection, config: Config, *, include_empty: bool = False) -> list[BufferRow]:
    where = "" if include_empty else " WHERE queued > 0"
    c = _bytewise(db)
    return [
        _buffer_row(db, config, row)
        for row in db.execute(
            f"SELECT {_BUFFER_COLS} FROM buffers{where} ORDER BY provider{c}, model{c}, endpoint{c}"
        ).fetchall()
    ]


def buffer_due(db: Connection, config: Config, buffer_id: int) -> float | None:
    """When one buffer is next due (None when empty)."""
    row = db.execute(f"SELECT {_BUFFER_COLS} FROM buffers WHERE id = ?", (buffer_id,)).fetchone()
    return _buffer_row(db, config, row).flush_due_at if row else None


# -- the status document's batches, counts and provider lines ------------------------------


@dataclass(frozen=True)
class BatchRow:
    """One batch as the status lists it: the stored columns, times as unix seconds."""

    local_id: int
    submission_uid: str | None
    provider_batch_id: str | None
    provider: str
    account: str | None
    endpoint: str
    model: str
    status: str
    total: int
    succeeded: int
    failed: int
    created_at: float
    provider_created_at: float | None
    expires_at: float | None
    ended_at: float | None
    ingested_at: float | None
    cancel_requested_at: float | None
    last_error: str | None
    candidates: str | None
    """JSON list of provider batch ids an unknown submission could be (as stored)."""
    unfinished: int = 0
    """Attempts an ingested cancelled or expired batch never ran (outcome cancelled or
    expired), so views can show them apart from real failures; 0 for any other batch."""


_BATCH_COLS = (
    "id, submission_uid, provider_batch_id, provider, account, endpoint, model, status, total, succeeded, failed,"
    " created_at, provider_created_at, expires_at, ended_at, ingested_at, cancel_requested_at, last_error, candidates"
)


def _with_unfinished(db: Connection, rows: list[tuple]) -> list[BatchRow]:
    """Only ingested cancelled or expired batches are counted, over the index of their
    non-succeeded attempts: the rest of a listing costs nothing more."""
    out: list[BatchRow] = []
    for row in rows:
        batch = BatchRow(*row)
        if batch.status in ("cancelled", "expired") and batch.ingested_at is not None:
            (n,) = db.execute(
                "SELECT count(*) FROM attempts WHERE batch_id = ? AND outcome IN ('cancelled', 'expired')",
                (batch.local_id,),
            ).fetchone()
            batch = replace(batch, unfinished=int(n))
        out.append(batch)
    return out


def status_batches(db: Connection, recent_ended: int) -> list[BatchRow]:
    """Every batch in flight (newest first), then the `recent_ended` most recently ingested."""
    live = db.execute(
        f"SELECT {_BATCH_COLS} FROM batches WHERE ingested_at IS NULL ORDER BY created_at DESC, id DESC"
    ).fetchall()
    ended = db.execute(  # walks batches_ingested from its newest end: as cheap at 10,000 ended as at 10
        f"SELECT {_BATCH_COLS} FROM batches WHERE ingested_at IS NOT NULL AND total > 0"
        " ORDER BY ingested_at DESC, id DESC LIMIT ?",
        (recent_ended,),
    ).fetchall()
    return _with_unfinished(db, live + ended)


def batches_by_id(db: Connection, local_ids: list[int]) -> list[BatchRow]:
    """These batches (a search's hits), in that order; ids not in the store are skipped."""
    if not local_ids:
        return []
    marks = ", ".join("?" * len(local_ids))
    found = {r[0]: r for r in db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE id IN ({marks})", local_ids)}
    return _with_unfinished(db, [found[i] for i in local_ids if i in found])


@dataclass(frozen=True)
class BatchTotals:
    in_flight: int
    ended: int


def batch_totals(db: Connection) -> BatchTotals:
    """How many batches the store holds in flight and ended (the console's titles)."""
    # in flight: the batches_open partial index holds only those; ended: a counter the
    # schema's triggers keep, so neither grows with the store's history
    # (SQLite is told the index; PostgreSQL's planner takes the partial index on its own)
    hint = " INDEXED BY batches_open" if db.dialect == "sqlite" else ""
    (live,) = db.execute(f"SELECT count(*) FROM batches{hint} WHERE ingested_at IS NULL").fetchone()
    row = db.execute("SELECT value FROM counters WHERE name = 'ended_batches'").fetchone()
    return BatchTotals(int(live), int(row[0]) if row else 0)


@dataclass(frozen=True)
class ProblemCounts:
    dead_letters: int
    unknown_submissions: int
    anomalies: int


def problem_counts(db: Connection) -> ProblemCounts:
    """Dead letters, unknown submissions and ingest anomalies, each from an index or a counter."""
    (dead,) = db.execute("SELECT count(*) FROM requests WHERE state = 'dead'").fetchone()
    # The status is a literal so that the partial index batches_unknown applies (a bound
    # parameter cannot prove the index's WHERE).
    (unknown,) = db.execute("SELECT count(*) FROM batches WHERE status = 'unknown'").fetchone()
    (anomalies,) = db.execute("SELECT value FROM counters WHERE name = 'anomalies'").fetchone()  # kept by triggers
    return ProblemCounts(int(dead), int(unknown), int(anomalies))


def failure_counts(db: Connection, since: float) -> tuple[int, int]:
    """(failed, ended) attempts in the hours after `since`, from the hourly counts."""
    failed, total = db.execute(
        "SELECT coalesce(sum(failed), 0), coalesce(sum(attempts), 0) FROM outcome_hourly WHERE hour > ?",
        (int(since // 3600),),
    ).fetchone()
    return int(failed), int(total)


def quarantined_since(db: Connection, since: float) -> list[tuple[str, str]]:
    """(provider batch id, reason) of batches quarantined at ingest after `since`, newest first."""
    return [
        (str(pid), str(error or ""))
        for pid, error in db.execute(
            "SELECT provider_batch_id, last_error FROM batches WHERE quarantined_at IS NOT NULL AND quarantined_at > ?"
            " ORDER BY quarantined_at DESC",
            (since,),
        )
    ]


def submitted_batches(db: Connection, *, model: str | None = None) -> list[tuple[str, str]]:
    """(provider batch id, provider) of every submitted batch, or of one model's, oldest
    first (the demo fixtures pick batches to expire or watch by it)."""
    where, args = (" AND model = ?", (model,)) if model is not None else ("", ())
    return [
        (str(pid), str(provider))
        for pid, provider in db.execute(
            f"SELECT provider_batch_id, provider FROM batches WHERE provider_batch_id IS NOT NULL{where} ORDER BY id",
            args,
        )
    ]
