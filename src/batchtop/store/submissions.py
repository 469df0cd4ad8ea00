"""Submitting a batch exactly once: the intent is durable before any provider call.

`plan` writes the batch-to-be (status `submitting`, a local submission uid) and its
claim on the requests in one transaction: O(1) rows for a buffer's fresh requests
(an id range), numbered attempts for those queued again after one. Only then does
the engine call the provider; `record_submitted` adopts the provider's batch (and
writes the range's attempts), `undo` gives the requests back when the provider
provably created nothing, and `mark_unknown` leaves an ambiguous one to the operator.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from batchtop.config import FlushPolicy
from batchtop.providers.base import SUBMITTING, UNKNOWN, RemoteBatch
from batchtop.store import claims, events
from batchtop.store.db import Connection
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
    bytes, into a new intent. None when the buffer has nothing queued.

    Writes O(1) rows for the fresh requests, whatever their number: the batch row
    claims them as the id range above the buffer's cursor (`claimed_through`), which
    moves past them in the same transaction; their attempts and `in_flight` rows are
    written once the provider has the batch (`record_submitted`). Requests queued
    again after an attempt sit below the cursor: they come first (they are older)
    and are claimed row by row, as numbered attempts, as before."""
    with store.transaction() as db:
        row = db.execute(
            "SELECT provider, endpoint, model, queued, queued_bytes, claimed_through FROM buffers WHERE id = ?",
            (buffer_id,),
        ).fetchone()
        if row is None:
            return None
        provider, endpoint, model, queued, queued_bytes, cursor = row
        skip, skip_args = claims.outside(claims.open_claims(db, buffer_id))
        # 1. queued again after an attempt: row by row, oldest first
        taken = 0
        size = 0
        last_id = None
        full = False
        for rid, nbytes in db.execute(
            f"SELECT id, bytes FROM requests WHERE buffer_id = ? AND state = 'queued' AND id <= ?{skip}"
            " ORDER BY id LIMIT ?",
            (buffer_id, cursor, *skip_args, policy.max_requests),
        ):
            if taken and size + nbytes > policy.max_bytes:
                full = True
                break
            taken += 1
            size += nbytes
            last_id = rid
        full = full or taken >= policy.max_requests
        # 2. fresh requests: one range above the cursor
        fresh = (0, 0, None) if full else _fresh_range(
            db, buffer_id, cursor, policy.max_requests - taken, policy.max_bytes - size,
            at_least_one=taken == 0, expected=(queued - taken, queued_bytes - size),
        )
        n_range, range_bytes, hi = fresh
        if taken == 0 and n_range == 0:
            return None
        total = taken + n_range
        size += range_bytes
        uid = uuid.uuid4().hex
        (batch_id,) = db.execute(
            "INSERT INTO batches (submission_uid, provider, account, buffer_id, endpoint, model, status, total, bytes,"
            " created_at, claim_lo, claim_hi) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (uid, provider, account, buffer_id, endpoint, model, SUBMITTING, total, size, now,
             cursor + 1 if n_range else None, hi if n_range else None),
        ).fetchone()
        if taken:
            db.execute(
                "INSERT INTO attempts (request_id, batch_id, number) SELECT id, ?, attempts + 1 FROM requests"
                f" WHERE buffer_id = ? AND state = 'queued' AND id <= ?{skip} ORDER BY id",
                (batch_id, buffer_id, last_id, *skip_args),
            )
            db.execute(
                "UPDATE requests SET state = 'submitting', attempts = attempts + 1"
                f" WHERE buffer_id = ? AND state = 'queued' AND id <= ?{skip}",
                (buffer_id, last_id, *skip_args),
            )
        # The rows taken one by one left `queued` above, and the counters followed (the
        # triggers of _queue_counters_by_trigger); a claimed range keeps its rows as they
        # are until the provider has the batch, so its share of the counters goes here.
        # Its rows go from queued straight to in_flight then, which the triggers skip.
        db.execute(
            "UPDATE buffers SET queued = queued - ?, queued_bytes = queued_bytes - ?,"
            " claimed_through = CASE WHEN ? > 0 THEN ? ELSE claimed_through END,"
            " flush_requested_at = CASE WHEN queued - ? <= 0 THEN NULL ELSE flush_requested_at END WHERE id = ?",
            (n_range, range_bytes, n_range, hi, n_range, buffer_id),
        )
        return Intent(batch_id, uid, provider, account, buffer_id, endpoint, model, total, size, now)


def _fresh_range(
    db: Connection,
    buffer_id: int,
    cursor: int,
    max_requests: int,
    max_bytes: int,
    *,
    at_least_one: bool,
    expected: tuple[int, int],
) -> tuple[int, int, int | None]:
    """(count, bytes, last id) of the fresh requests a batch takes, oldest first,
    within the caps left (`at_least_one`: the first is taken even when larger).

    `expected` is what the buffer's counters leave for the fresh requests. When they
    all fit, only the index is read (their count, to check the counters, and the last
    id); otherwise a running sum over their sizes finds where the caps cut."""
    if max_requests <= 0:
        return 0, 0, None
    want_n, want_bytes = expected
    if 0 < want_n <= max_requests and (want_bytes <= max_bytes or (at_least_one and want_n == 1)):
        n, hi = db.execute(
            "SELECT count(*), max(id) FROM requests WHERE buffer_id = ? AND state = 'queued' AND id > ?",
            (buffer_id, cursor),
        ).fetchone()
        if n == want_n:
            return int(n), int(want_bytes), hi
    n, nbytes, hi = db.execute(
        "SELECT count(*), coalesce(sum(bytes), 0), max(id) FROM ("
        " SELECT id, bytes, sum(bytes) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS running,"
        " row_number() OVER (ORDER BY id) AS n FROM ("
        "  SELECT id, bytes FROM requests WHERE buffer_id = ? AND state = 'queued' AND id > ? ORDER BY id LIMIT ?"
        " ) AS fresh) AS numbered WHERE running <= ? OR (n = 1 AND ? != 0)",
        (buffer_id, cursor, max_requests, max_bytes, int(at_least_one)),
    ).fetchone()
    return int(n), int(nbytes), hi


def pending(store: Store, provider: str) -> list[Intent]:
    """Intents still `submitting`: after a crash they are reconciled before anything new is sent."""
    rows = store.db.execute(
        f"SELECT {_INTENT_COLS} FROM batches WHERE provider = ? AND status = ? ORDER BY id", (provider, SUBMITTING)
    ).fetchall()
    return [Intent(*r) for r in rows]


def lines(store: Store, batch_id: int) -> list[bytes]:
    """The batch's native lines, verbatim, in request id order: those it holds as
    attempts (claimed row by row, or all of them once the provider had it), then its
    open range claim, read straight from the requests in id order."""
    out = [
        line.encode() + b"\n"
        for (line,) in store.db.execute(
            "SELECT r.line FROM attempts a JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ? ORDER BY a.id",
            (batch_id,),
        )
    ]
    claim = _open_claim(store.db, batch_id)
    if claim is not None:
        buffer_id, lo, hi = claim
        out += [
            line.encode() + b"\n"
            for (line,) in store.db.execute(
                "SELECT line FROM requests WHERE buffer_id = ? AND state = 'queued' AND id BETWEEN ? AND ? ORDER BY id",
                (buffer_id, lo, hi),
            )
        ]
    return out


def _open_claim(db: Connection, batch_id: int) -> tuple[int, int, int] | None:
    """(buffer, lo, hi) of the batch's range while it is only a claim."""
    row = db.execute(
        f"SELECT buffer_id, claim_lo, claim_hi FROM batches WHERE id = ? AND {claims.OPEN_CLAIM}"
        " AND provider_batch_id IS NULL",
        (batch_id,),
    ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def _materialize(db: Connection, batch_id: int, claim: tuple[int, int, int] | None) -> None:
    """The provider has the batch: every request of it is `in_flight` with its
    numbered attempt. Called in the transaction that records the provider's batch;
    `claim` is its open range claim as read before that write closed it."""
    db.execute(
        "UPDATE requests SET state = 'in_flight' WHERE id IN (SELECT request_id FROM attempts WHERE batch_id = ?)",
        (batch_id,),
    )
    if claim is None:
        return
    buffer_id, lo, hi = claim
    db.execute(
        "INSERT INTO attempts (request_id, batch_id, number) SELECT id, ?, attempts + 1 FROM requests"
        " WHERE buffer_id = ? AND state = 'queued' AND id BETWEEN ? AND ? ORDER BY id",
        (batch_id, buffer_id, lo, hi),
    )
    db.execute(
        "UPDATE requests SET state = 'in_flight', attempts = attempts + 1"
        " WHERE buffer_id = ? AND state = 'queued' AND id BETWEEN ? AND ?",
        (buffer_id, lo, hi),
    )


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
            claim = _open_claim(db, intent_id)
            cur = db.execute(
                "UPDATE batches SET provider_batch_id = ?, status = ?, submitted_at = ?, provider_created_at = ?,"
                " expires_at = ?, candidates = NULL, last_error = NULL, polled_at = ?"
                " WHERE id = ? AND status = ? AND provider_batch_id IS NULL",
                (remote.id, remote.status, now, remote.created_at, remote.expires_at, now, intent_id, SUBMITTING),
            )
            if cur.rowcount == 1:
                _materialize(db, intent_id, claim)
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
            "INSERT INTO anomalies (batch_id, kind, detail, created_at) VALUES (?, 'orphaned_batch', ?, ?)"
            " ON CONFLICT DO NOTHING",
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
    their buffer without using an attempt, and the buffer waits until `retry_at`.
    Those of an open range claim never left their `queued` row: closing the claim
    gives them back (fresh again when it was the buffer's last claim)."""
    with store.transaction() as db:
        claim = _open_claim(db, intent_id)
        row = db.execute("SELECT buffer_id, total, bytes FROM batches WHERE id = ?", (intent_id,)).fetchone()
        if row is None:
            return
        buffer_id, total, size = row
        back, back_bytes = 0, 0
        if claim is not None:  # the range was never more than a claim: the cursor goes back if it can
            back, back_bytes = db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0) FROM requests"
                " WHERE buffer_id = ? AND state = 'queued' AND id BETWEEN ? AND ?",
                (buffer_id, claim[1], claim[2]),
            ).fetchone()
            db.execute(
                "UPDATE buffers SET claimed_through = ? WHERE id = ? AND claimed_through = ?",
                (claim[1] - 1, buffer_id, claim[2]),
            )
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
        # The rows taken one by one rose with their state (the triggers); the claimed
        # range's rows never left `queued`, so their share comes back here.
        db.execute(
            "UPDATE buffers SET queued = queued + ?, queued_bytes = queued_bytes + ?, held_reason = ?, retry_at = ?"
            " WHERE id = ?",
            (back, back_bytes, reason, retry_at, buffer_id),
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
            claim = _open_claim(db, intent_id)
            db.execute(
                "UPDATE batches SET provider_batch_id = ?, status = 'validating', candidates = NULL, last_error = NULL,"
                " submitted_at = ? WHERE id = ?",
                (adopt, now, intent_id),
            )
            _materialize(db, intent_id, claim)
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
