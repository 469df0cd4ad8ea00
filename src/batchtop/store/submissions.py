"""Submitting a batch exactly once: the intent is durable before any provider call.

`plan` writes the batch-to-be (status `submitting`, a local submission uid) and its
requests as numbered attempts in one transaction. Only then does the engine call
the provider; `record_submitted` adopts the provider's batch, `undo` gives the
requests back when the provider provably created nothing, and `mark_unknown`
leaves an ambiguous one to the operator.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from batchtop.config import FlushPolicy
from batchtop.providers.base import SUBMITTING, UNKNOWN, RemoteBatch
from batchtop.store import events
from batchtop.store.lease import LeaseLost
from batchtop.store.store import Store


@dataclass(frozen=True)
class Intent:
    """A batch recorded locally, not yet (known to be) created at the provider."""

    id: int
    uid: str
    provider: str
    account: str
    buffer_id: int
    endpoint: str
    model: str
    total: int
    bytes: int
    created_at: float


_INTENT_COLS = "id, submission_uid, provider, account, buffer_id, endpoint, model, total, bytes, created_at"


def plan(store: Store, buffer_id: int, policy: FlushPolicy, account: str, now: float) -> Intent | None:
    """Take the oldest queued requests of a buffer, up to the batch caps in lines and
    bytes, into a new intent. None when the buffer has nothing queued."""
    with store.transaction() as db:
        row = db.execute("SELECT provider, endpoint, model FROM buffers WHERE id = ?", (buffer_id,)).fetchone()
        if row is None:
            return None
        provider, endpoint, model = row
        taken = 0
        size = 0
        last_id = None
        for rid, nbytes in db.execute(
            "SELECT id, bytes FROM requests WHERE buffer_id = ? AND state = 'queued' ORDER BY id LIMIT ?",
            (buffer_id, policy.max_requests),
        ):
            if taken and size + nbytes > policy.max_bytes:
                break
            taken += 1
            size += nbytes
            last_id = rid
        if last_id is None:
            return None
        uid = uuid.uuid4().hex
        cur = db.execute(
            "INSERT INTO batches (submission_uid, provider, account, buffer_id, endpoint, model, status, total, bytes,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (uid, provider, account, buffer_id, endpoint, model, SUBMITTING, taken, size, now),
        )
        batch_id = int(cur.lastrowid or 0)
        db.execute(
            "INSERT INTO attempts (request_id, batch_id, number) SELECT id, ?, attempts + 1 FROM requests"
            " WHERE buffer_id = ? AND state = 'queued' AND id <= ? ORDER BY id",
            (batch_id, buffer_id, last_id),
        )
        db.execute(
            "UPDATE requests SET state = 'submitting', attempts = attempts + 1"
            " WHERE buffer_id = ? AND state = 'queued' AND id <= ?",
            (buffer_id, last_id),
        )
        db.execute(  # queued / queued_bytes fell with the requests' state (a trigger)
            "UPDATE buffers SET flush_requested_at = CASE WHEN queued <= 0 THEN NULL ELSE flush_requested_at END"
            " WHERE id = ?",
            (buffer_id,),
        )
        return Intent(batch_id, uid, provider, account, buffer_id, endpoint, model, taken, size, now)


def pending(store: Store, provider: str) -> list[Intent]:
    """Intents still `submitting`: after a crash they are reconciled before anything new is sent."""
    rows = store.db.execute(
        f"SELECT {_INTENT_COLS} FROM batches WHERE provider = ? AND status = ? ORDER BY id", (provider, SUBMITTING)
    ).fetchall()
    return [Intent(*r) for r in rows]


def lines(store: Store, batch_id: int) -> list[bytes]:
    """The batch's native lines, verbatim, in attempt order."""
    return [
        line.encode() + b"\n"
        for (line,) in store.db.execute(
            "SELECT r.line FROM attempts a JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ? ORDER BY a.id",
            (batch_id,),
        )
    ]


def owned_ids(store: Store, provider: str) -> set[str]:
    return {
        r[0]
        for r in store.db.execute(
            "SELECT provider_batch_id FROM batches WHERE provider = ? AND provider_batch_id IS NOT NULL", (provider,)
        )
    }


def record_submitted(store: Store, intent_id: int, remote: RemoteBatch, now: float) -> bool:
    """The provider has the batch: remember its id; the requests are in flight.

    Only while the intent is still ours: still `submitting` without a provider
    batch, under our lease (the store's fence, checked in this transaction). Another
    engine that took the lease over meanwhile may have sent or adopted it; then the
    provider's batch is recorded as an `orphaned_batch` anomaly for the operator
    (it may be a duplicate to cancel) and False returned, or LeaseLost raised."""
    try:
        with store.transaction() as db:
            cur = db.execute(
                "UPDATE batches SET provider_batch_id = ?, status = ?, submitted_at = ?, provider_created_at = ?,"
                " expires_at = ?, candidates = NULL, last_error = NULL, polled_at = ?"
                " WHERE id = ? AND status = ? AND provider_batch_id IS NULL",
                (remote.id, remote.status, now, remote.created_at, remote.expires_at, now, intent_id, SUBMITTING),
            )
            if cur.rowcount == 1:
                db.execute(
                    "UPDATE requests SET state = 'in_flight' WHERE id IN"
                    " (SELECT request_id FROM attempts WHERE batch_id = ?)",
                    (intent_id,),
                )
                db.execute("UPDATE buffers SET held_reason = NULL, retry_at = NULL WHERE id ="
                           " (SELECT buffer_id FROM batches WHERE id = ?)", (intent_id,))
                events.record_submitted(db, intent_id, now, remote.succeeded, remote.failed)
                return True
            row = db.execute("SELECT provider_batch_id FROM batches WHERE id = ?", (intent_id,)).fetchone()
    except LeaseLost:
        _orphaned(store, intent_id, remote, now, "this engine lost the lease while the provider created it")
        raise
    if row is None or row[0] != remote.id:
        _orphaned(store, intent_id, remote, now, "the submission was meanwhile sent or adopted by another engine")
        return False
    return True  # another engine adopted this very batch: nothing is lost


def _orphaned(store: Store, intent_id: int, remote: RemoteBatch, now: float, why: str) -> None:
    """A provider batch no submission owns: not a state change (unfenced), only a note."""
    with store.transaction(fenced=False) as db:
        db.execute(
            "INSERT OR IGNORE INTO anomalies (batch_id, kind, detail, created_at) VALUES (?, 'orphaned_batch', ?, ?)",
            (
                intent_id,
                (
                    f"provider batch {remote.id} was created for this submission but not recorded: {why};"
                    " cancel it at the provider if it duplicates the recorded one"
                ),
                now,
            ),
        )


def undo(store: Store, intent_id: int, reason: str, retry_at: float | None, now: float) -> None:
    """Nothing was created at the provider: the requests go back to the front of
    their buffer without using an attempt, and the buffer waits until `retry_at`."""
    with store.transaction() as db:
        row = db.execute("SELECT buffer_id, total, bytes FROM batches WHERE id = ?", (intent_id,)).fetchone()
        if row is None:
            return
        buffer_id, total, size = row
        events.record_requeued(db, intent_id, total, now)
        db.execute(
            "UPDATE requests SET state = 'queued', attempts = attempts - 1"
            " WHERE id IN (SELECT request_id FROM attempts WHERE batch_id = ?)",
            (intent_id,),
        )
        db.execute("DELETE FROM attempts WHERE batch_id = ?", (intent_id,))
        db.execute(
            "UPDATE batches SET status = 'failed', last_error = ?, ended_at = ?, ingested_at = ?, total = 0"
            " WHERE id = ?",
            (f"not submitted: {reason}", now, now, intent_id),
        )
        db.execute(  # queued / queued_bytes rose with the requests' state (a trigger)
            "UPDATE buffers SET held_reason = ?, retry_at = ? WHERE id = ?", (reason, retry_at, buffer_id)
        )


def mark_unknown(store: Store, intent_id: int, candidates: list[str]) -> None:
    """More than one provider batch could be this submission: never guess."""
    with store.transaction() as db:
        db.execute(
            "UPDATE batches SET status = ?, candidates = ?, last_error = ? WHERE id = ?",
            (
                UNKNOWN,
                json.dumps(candidates),
                f"ambiguous: {len(candidates)} provider batches match; adopt one or resubmit",
                intent_id,
            ),
        )
        events.record_unknown(db, intent_id, len(candidates), time.time())


def excluded(store: Store, intent_id: int) -> set[str]:
    """Provider batches an intent must not adopt: the candidates the operator already
    turned down by choosing to resubmit an `unknown` submission."""
    row = store.db.execute("SELECT candidates FROM batches WHERE id = ?", (intent_id,)).fetchone()
    return set(json.loads(row[0])) if row and row[0] else set()


def resolve_unknown(store: Store, submission: str, *, adopt: str | None, now: float) -> int:
    """The operator's choice for an `unknown` submission (by uid or local id): adopt
    one of the candidate provider batches, or (adopt=None) send it again. A resend
    takes a fresh uid and excludes the old candidates, so it is itself crash-safe."""
    row = store.db.execute(
        "SELECT id, candidates FROM batches WHERE status = ? AND (submission_uid = ? OR CAST(id AS TEXT) = ?)",
        (UNKNOWN, submission, submission),
    ).fetchone()
    if row is None:
        raise LookupError(f"no unknown submission {submission!r}")
    intent_id, candidates = row
    if adopt is not None and adopt not in json.loads(candidates or "[]"):
        raise LookupError(f"{adopt} is not a candidate of submission {submission}")
    with store.transaction() as db:
        if adopt is not None:
            db.execute(
                "UPDATE batches SET provider_batch_id = ?, status = 'validating', candidates = NULL, last_error = NULL,"
                " submitted_at = ? WHERE id = ?",
                (adopt, now, intent_id),
            )
            db.execute(
                "UPDATE requests SET state = 'in_flight' WHERE id IN (SELECT request_id FROM attempts WHERE batch_id = ?)",
                (intent_id,),
            )
            events.record_submitted(db, intent_id, now)
        else:
            db.execute(
                "UPDATE batches SET status = ?, submission_uid = ?, created_at = ?, last_error = NULL WHERE id = ?",
                (SUBMITTING, uuid.uuid4().hex, now, intent_id),
            )
    return intent_id


def mark_lost(store: Store, batch_id: int, reason: str, now: float) -> int:
    """The provider no longer knows this batch (404): it ended `failed`, its open
    attempts are `lost` and their requests wait, `failed`, for the operator's
    `batchtop resubmit` (never resent by themselves: the batch may still run where the
    provider keeps it, another project or base URL, and would be paid twice). Returns
    how many requests wait."""
    with store.transaction() as db:
        db.execute(
            "UPDATE attempts SET outcome = 'lost', ended_at = ?, error = ? WHERE batch_id = ? AND outcome IS NULL",
            (now, reason, batch_id),
        )
        cur = db.execute(
            "UPDATE requests SET state = 'failed', last_error = ? WHERE state = 'in_flight' AND id IN"
            " (SELECT request_id FROM attempts WHERE batch_id = ? AND outcome = 'lost')",
            (reason, batch_id),
        )
        (ok,) = db.execute(
            "SELECT count(*) FROM attempts WHERE batch_id = ? AND outcome = 'succeeded'", (batch_id,)
        ).fetchone()  # results ingested before the rest went missing stay
        db.execute(
            "UPDATE batches SET status = 'failed', last_error = ?, lost_at = ?, ended_at = coalesce(ended_at, ?),"
            " ingested_at = ?, succeeded = ?, failed = total - ? WHERE id = ?",
            (reason, now, now, now, ok, ok, batch_id),
        )
        events.record_lost(db, batch_id, reason, now)
        return cur.rowcount
