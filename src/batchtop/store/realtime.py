"""The synchronous lanes' side of the store: claims, records and their rollups (issue 15).

A request goes out real time (or flex) exactly once: `claim` takes it out of its
buffer (state `realtime`) and writes its `realtime_calls` row in one transaction,
BEFORE the engine sends anything; `record` stores the answer after. A claim left
without an outcome by an engine that died mid-call may have been answered (and paid
for): `settle_orphans` turns it into a dead letter the operator may send again
(`batchtop dead-letters --retry-realtime`), never into a silent second call. A batch
never takes a claimed request either: `submissions.plan` only takes `queued` ones.

Every statement on these tables lives here; the engine calls these functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchtop.store.db import epoch_bucket
from batchtop.store.store import Store

if TYPE_CHECKING:
    from batchtop.store.db import Connection

REALTIME_STATE = "realtime"
"""The request state while a synchronous call of it is claimed or running."""
RETRY_STATE = "retry_realtime"
"""A dead letter the operator asked to send once more real time; the engine claims it."""
REALTIME = "realtime"
FLEX = "flex"
LANES = (REALTIME, FLEX)

ORPHANED = (
    "real-time call interrupted: the engine stopped while the call was out, so it may have been"
    " answered (and billed); it is not sent again on its own: `batchtop dead-letters --retry-realtime` sends it"
)


@dataclass(frozen=True, slots=True)
class Claim:
    """One request claimed for one synchronous call."""

    call_id: int
    request_id: int
    number: int
    provider: str
    endpoint: str
    model: str
    custom_id: str
    line: str
    lane: str
    deadline: float | None


@dataclass(frozen=True, slots=True)
class CallResult:
    """What one call came back with (the response is a result line in the batch shape)."""

    outcome: str  # "succeeded" | "errored"
    response: str | None
    error: str | None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    cost_usd: float | None = None
    permanent: bool = False
    """The provider rejected the request itself (a 4xx other than 429): dead, not retried."""


_CLAIMABLE = {
    "queued": ("queued",),
    "rescue": ("queued", "cancelled", "failed", "expired"),
    "retry": (RETRY_STATE,),
}


def claim(
    store: Store, request_ids: Sequence[int], lane: str, reason: str, now: float, *, source: str = "queued"
) -> list[Claim]:
    """Claim these requests for `lane` in one transaction; those no longer in a
    claimable state (`source`: queued ones, a rescued batch's leftovers, or dead
    letters) are skipped. Queued ones leave their buffer's counters."""
    if not request_ids:
        return []
    states = _CLAIMABLE[source]
    claims: list[Claim] = []
    with store.transaction() as db:
        marks = ",".join("?" * len(states))
        for rid in request_ids:
            row = db.execute(
                f"SELECT r.state, r.attempts, r.provider, f.endpoint, f.model, r.custom_id, r.line, r.deadline,"
                f" r.buffer_id, r.bytes FROM requests r JOIN buffers f ON f.id = r.buffer_id"
                f" WHERE r.id = ? AND r.state IN ({marks})",
                (rid, *states),
            ).fetchone()
            if row is None:
                continue
            state, attempts, provider, endpoint, model, cid, line, deadline, buffer_id, size = row
            number = attempts + 1
            db.execute(
                "UPDATE requests SET state = ?, attempts = ?, last_error = NULL WHERE id = ?",
                (REALTIME_STATE, number, rid),
            )
            if state == "queued":  # the counters follow by trigger (_queue_counters_by_trigger)
                db.execute(
                    "UPDATE buffers SET flush_requested_at = CASE WHEN queued <= 0 THEN NULL ELSE flush_requested_at END"
                    " WHERE id = ?",
                    (buffer_id,),
                )
            (call_id,) = db.execute(
                "INSERT INTO realtime_calls (request_id, number, provider, endpoint, model, lane, reason, claimed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (rid, number, provider, endpoint, model, lane, reason[:200], now),
            ).fetchone()
            claims.append(Claim(int(call_id), rid, number, provider, endpoint, model, cid, line, lane, deadline))
    return claims


def mark_sent(store: Store, call_ids: Sequence[int], now: float) -> None:
    """These calls are about to leave: from here on a crash leaves each a dead letter
    (it may have been answered); before, the claim is simply queued again. One
    transaction for many (the pool's group commit: one fsync, not one per call)."""
    with store.transaction() as db:
        db.executemany(
            "UPDATE realtime_calls SET sent_at = ? WHERE id = ? AND sent_at IS NULL", [(now, i) for i in call_ids]
        )


def switch_lane(store: Store, call_id: int, lane: str) -> None:
    """A refused flex call goes on as real time (the same claim: still one request, one answer)."""
    with store.transaction() as db:
        db.execute("UPDATE realtime_calls SET lane = ? WHERE id = ? AND outcome IS NULL", (lane, call_id))


def release(store: Store, claim_: Claim, reason: str, now: float) -> None:
    """A claim that was never sent (its engine stopped first): the request goes back to
    its buffer as it was, and the claim's row goes (it counts nothing, and its number
    is free for the next claim)."""
    with store.transaction() as db:
        row = db.execute(
            "DELETE FROM realtime_calls WHERE id = ? AND outcome IS NULL AND sent_at IS NULL RETURNING id", (claim_.call_id,)
        ).fetchone()
        if row is None:
            return
        db.execute(  # back in its buffer: the queue counters follow by trigger
            "UPDATE requests SET state = 'queued', attempts = attempts - 1, last_error = ? WHERE id = ?",
            (reason[:500], claim_.request_id),
        )


_ROLLUP_SUMS = (
    "succeeded", "input_tokens", "cached_input_tokens", "cache_creation_input_tokens", "output_tokens",
    "cache_creation_1h_input_tokens", "ok_input_tokens", "ok_cached_input_tokens", "ok_cache_creation_input_tokens",
    "ok_output_tokens", "ok_cache_creation_1h_input_tokens",
)
_ROLLUP = (
    "INSERT INTO realtime_rollup (provider, model, lane, calls, succeeded, input_tokens, cached_input_tokens,"
    " cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens, spent_usd, ok_input_tokens,"
    " ok_cached_input_tokens, ok_cache_creation_input_tokens, ok_output_tokens, ok_cache_creation_1h_input_tokens)"
    " VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (provider, model, lane) DO UPDATE SET calls = realtime_rollup.calls + 1, "
    # the stored side named by its table: PostgreSQL calls a bare column ambiguous here
    + ", ".join(f"{c} = realtime_rollup.{c} + excluded.{c}" for c in _ROLLUP_SUMS)
    + ", spent_usd = CASE WHEN realtime_rollup.spent_usd IS NULL OR excluded.spent_usd IS NULL THEN NULL"
    " ELSE realtime_rollup.spent_usd + excluded.spent_usd END"
)


def record(store: Store, claim_: Claim, result: CallResult, now: float, *, max_attempts: int) -> str:
    """Store a call's answer and move its request on, in one transaction; returns the
    request's new state (`succeeded`, `queued` again for another lane, or `dead`).
    A failure is retried by the normal policy (its buffer, then the lanes again) until
    `max_attempts`; one the provider rejected outright is dead at once."""
    return record_many(store, [(claim_, result)], now, max_attempts=max_attempts)[0]


def record_many(
    store: Store, answers: Sequence[tuple[Claim, CallResult]], now: float, *, max_attempts: int
) -> list[str]:
    """`record` for many calls in one transaction (the pool's group commit)."""
    with store.transaction() as db:
        return [_record(db, c, r, now, max_attempts) for c, r in answers]


def commit_wave(
    store: Store, sent: Sequence[int], answers: Sequence[tuple[Claim, CallResult]], now: float, *, max_attempts: int
) -> None:
    """One transaction for a wave of the pool: the sent marks of the calls about to
    leave and the answers of those that came back (one fsync for both)."""
    with store.transaction() as db:
        if sent:
            db.executemany(
                "UPDATE realtime_calls SET sent_at = ? WHERE id = ? AND sent_at IS NULL", [(now, i) for i in sent]
            )
        for c, r in answers:
            _record(db, c, r, now, max_attempts)


def _record(db: Connection, claim_: Claim, result: CallResult, now: float, max_attempts: int) -> str:
    ok = result.outcome == "succeeded"
    tokens = (
        result.input_tokens, result.cached_input_tokens, result.cache_creation_input_tokens,
        result.output_tokens, result.cache_creation_1h_input_tokens,
    )
    updated = db.execute(
        "UPDATE realtime_calls SET outcome = ?, ended_at = ?, response = ?, error = ?, input_tokens = ?,"
        " cached_input_tokens = ?, cache_creation_input_tokens = ?, output_tokens = ?,"
        " cache_creation_1h_input_tokens = ?, cost_usd = ? WHERE id = ? AND outcome IS NULL RETURNING id",
        (result.outcome, now, result.response, result.error, *tokens, result.cost_usd, claim_.call_id),
    ).fetchone()
    if updated is None:  # settled already (an orphan sweep): never counted twice
        return "settled"
    db.execute(
        _ROLLUP,
        (claim_.provider, claim_.model, claim_.lane, int(ok), *tokens, result.cost_usd,
         *(tokens if ok else (0, 0, 0, 0, 0))),
    )
    if ok:
        db.execute("UPDATE requests SET state = 'succeeded', last_error = NULL WHERE id = ?", (claim_.request_id,))
        return "succeeded"
    error = result.error or result.outcome
    (spared,) = db.execute("SELECT spared_attempts FROM requests WHERE id = ?", (claim_.request_id,)).fetchone()
    if result.permanent or claim_.number - spared >= max_attempts:
        rejected = result.permanent and result.response is not None  # the provider's own refusal line
        suffix = " (not retried: the provider rejected the request itself)" if rejected else ""
        db.execute(
            "UPDATE requests SET state = 'dead', last_error = ? WHERE id = ?", (f"{error}{suffix}"[:2000], claim_.request_id)
        )
        return "dead"
    db.execute(  # back in its buffer: the queue counters follow by trigger
        "UPDATE requests SET state = 'queued', last_error = ? WHERE id = ?", (error[:2000], claim_.request_id)
    )
    return "queued"


def settle_orphans(store: Store, live: Iterable[int], now: float) -> tuple[int, int]:
    """Claims without an outcome that this engine is not running (a previous engine
    died mid-pass). One never marked sent was never sent: its request goes back to its
    buffer. One marked sent may have been answered (and billed): a dead letter, never
    resent on its own. Returns (requeued, dead)."""
    alive = set(live)
    rows = [
        (cid, sent)
        for cid, sent in store.db.execute("SELECT id, sent_at FROM realtime_calls WHERE outcome IS NULL")
        if cid not in alive
    ]
    requeued = dead = 0
    for cid, sent in rows:
        claim_ = _claim_of(store.db, cid)
        if claim_ is None:
            continue
        if sent is None:
            release(store, claim_, "the engine stopped before this real-time call was sent; queued again", now)
            requeued += 1
            continue
        with store.transaction() as db:
            if db.execute(
                "UPDATE realtime_calls SET outcome = 'interrupted', error = ?, ended_at = ? WHERE id = ? AND outcome IS NULL"
                " RETURNING id",
                (ORPHANED, now, cid),
            ).fetchone():
                db.execute(
                    "UPDATE requests SET state = 'dead', last_error = ? WHERE id = ? AND state = ?",
                    (ORPHANED, claim_.request_id, REALTIME_STATE),
                )
                dead += 1
    return requeued, dead


def _claim_of(db: Connection, call_id: int) -> Claim | None:
    row = db.execute(
        "SELECT c.id, c.request_id, c.number, c.provider, c.endpoint, c.model, r.custom_id, r.line, c.lane, r.deadline"
        " FROM realtime_calls c JOIN requests r ON r.id = c.request_id WHERE c.id = ?",
        (call_id,),
    ).fetchone()
    return Claim(*row) if row else None


# -- reads -------------------------------------------------------------------------------


def has_lanes(db: Connection) -> bool:
    """Whether the store has the lanes' tables (a reader of an older, unmigrated store
    sees none: nothing went real time there)."""
    if db.dialect == "sqlite":
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'realtime_rollup'").fetchone() is not None
    (found,) = db.execute("SELECT to_regclass('realtime_rollup') IS NOT NULL").fetchone()  # in the store's schema
    return bool(found)


def _bytewise(db: Connection) -> str:
    """A text ORDER BY key's collation: byte order, as SQLite's BINARY (a PostgreSQL
    database's default collation may be a language's, which orders `-`, `_` and case
    otherwise: the same rows would come in another order)."""
    return ' COLLATE "C"' if db.dialect == "postgresql" else ""


def due_with_deadline(db: Connection, buffer_id: int, before: float, limit: int) -> list[tuple[int, float, str]]:
    """(request id, deadline, line) of the buffer's queued requests due before `before`,
    earliest deadline first (the `requests_deadline` index). Requests an intent holds
    as a range claim keep their `queued` row until the provider has the batch: they
    are left out (`claims.outside`), so a request is never sent by batch and real time."""
    from batchtop.store import claims

    skip, skip_args = claims.outside(claims.open_claims(db, buffer_id))
    return [
        (int(r[0]), float(r[1]), r[2])
        for r in db.execute(
            "SELECT id, deadline, line FROM requests WHERE buffer_id = ? AND state = 'queued' AND deadline IS NOT NULL"
            f" AND deadline < ?{skip} ORDER BY deadline LIMIT ?",
            (buffer_id, before, *skip_args, limit),
        )
    ]


def spent_since(db: Connection, since: float) -> float:
    """Money the synchronous lanes spent on calls that ended since then (unpriced: 0),
    plus what the open claims are expected to spend is the caller's to add."""
    (spent,) = db.execute(
        "SELECT coalesce(sum(cost_usd), 0) FROM realtime_calls WHERE ended_at >= ? AND outcome IN ('succeeded', 'errored')",
        (since,),
    ).fetchone()
    return float(spent)


@dataclass(frozen=True, slots=True)
class LaneUsage:
    provider: str
    model: str
    lane: str
    calls: int
    succeeded: int
    tokens: tuple[int, int, int, int, int]
    ok_tokens: tuple[int, int, int, int, int]
    spent_usd: float | None


def lane_usage(db: Connection) -> list[LaneUsage]:
    """Every (provider, model, lane) the synchronous lanes served, from the rollup."""
    if not has_lanes(db):
        return []
    c = _bytewise(db)
    return [
        LaneUsage(r[0], r[1], r[2], r[3], r[4], tuple(r[5:10]), tuple(r[11:16]), r[10])
        for r in db.execute(
            "SELECT provider, model, lane, calls, succeeded, input_tokens, cached_input_tokens,"
            " cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens, spent_usd,"
            " ok_input_tokens, ok_cached_input_tokens, ok_cache_creation_input_tokens, ok_output_tokens,"
            f" ok_cache_creation_1h_input_tokens FROM realtime_rollup ORDER BY provider{c}, model{c}, lane{c}"
        )
    ]


_ENDED_CALL_SUMS = (
    "count(*), sum(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END),"
    " sum(input_tokens), sum(cached_input_tokens), sum(cache_creation_input_tokens), sum(output_tokens),"
    " sum(cache_creation_1h_input_tokens), CASE WHEN count(cost_usd) = count(*) THEN sum(cost_usd) END,"
    " sum(CASE WHEN outcome = 'succeeded' THEN input_tokens ELSE 0 END),"
    " sum(CASE WHEN outcome = 'succeeded' THEN cached_input_tokens ELSE 0 END),"
    " sum(CASE WHEN outcome = 'succeeded' THEN cache_creation_input_tokens ELSE 0 END),"
    " sum(CASE WHEN outcome = 'succeeded' THEN output_tokens ELSE 0 END),"
    " sum(CASE WHEN outcome = 'succeeded' THEN cache_creation_1h_input_tokens ELSE 0 END)"
    " FROM realtime_calls WHERE ended_at IS NOT NULL AND ended_at >= ? AND ended_at < ?"
)
"""The sums of a period's ended calls, in `LaneUsage` order after the key columns:
calls, successes, tokens, money (NULL when a call's price is unknown), the successes'
tokens; both period queries select them (`_period` gives their two bounds)."""


def _period(since: float | None, until: float | None) -> tuple[float, float]:
    return (since if since is not None else float("-inf"), until if until is not None else float("inf"))


def lane_usage_between(db: Connection, since: float | None, until: float | None) -> list[LaneUsage]:
    """`lane_usage` of the calls that ended in [since, until) (the period report: a
    real-time call's money is placed by its own end time)."""
    if not has_lanes(db):
        return []
    c = _bytewise(db)
    rows = db.execute(
        f"SELECT provider, model, lane, {_ENDED_CALL_SUMS}"
        f" AND outcome IN ('succeeded', 'errored') GROUP BY provider, model, lane ORDER BY provider{c}, model{c}, lane{c}",
        _period(since, until),
    ).fetchall()
    return [LaneUsage(r[0], r[1], r[2], r[3], r[4], tuple(r[5:10]), tuple(r[11:16]), r[10]) for r in rows]


def lane_usage_by_day(db: Connection, since: float | None, until: float | None) -> list[tuple[int, LaneUsage]]:
    """`lane_usage_between`, split by the UTC day (days since the epoch) each call ended."""
    if not has_lanes(db):
        return []
    day = epoch_bucket(db, "ended_at", 86400)
    c = _bytewise(db)
    rows = db.execute(
        f"SELECT {day}, provider, model, lane, {_ENDED_CALL_SUMS}"
        f" AND outcome IN ('succeeded', 'errored') GROUP BY 1, provider, model, lane ORDER BY 1, provider{c}, model{c}, lane{c}",
        _period(since, until),
    ).fetchall()
    return [
        (int(r[0]), LaneUsage(r[1], r[2], r[3], r[4], r[5], tuple(r[6:11]), tuple(r[12:17]), r[11]))
        for r in rows
    ]


def responses(db: Connection) -> Iterable[str]:
    """The result lines of requests that succeeded through a synchronous lane, in
    request order (for `batchtop results`)."""
    if not has_lanes(db):
        return
    from batchtop.store.export_queries import stream

    for rows in stream(
        db,
        "SELECT c.response FROM realtime_calls c JOIN requests r ON r.id = c.request_id"
        " WHERE c.outcome = 'succeeded' AND c.response IS NOT NULL AND r.state = 'succeeded' ORDER BY c.request_id",
    ):
        for (response,) in rows:
            yield response


def request_lane(db: Connection, request_id: int) -> dict[str, Any] | None:
    """The latest synchronous call of a request, for Inspect."""
    row = db.execute(
        "SELECT lane, reason, claimed_at, ended_at, outcome, cost_usd FROM realtime_calls WHERE request_id = ?"
        " ORDER BY number DESC LIMIT 1",
        (request_id,),
    ).fetchone()
    if row is None:
        return None
    return dict(zip(("lane", "reason", "claimed_at", "ended_at", "outcome", "cost_usd"), row))


HISTORY = 50
"""Completed batches of a model whose durations make its history (the latest ones)."""


def durations(db: Connection, provider: str, model: str, limit: int = HISTORY) -> list[float]:
    """Submit-to-end seconds of the latest batches of this provider and model that
    completed (cancelled, failed and expired ones say nothing about how long work takes)."""
    return [
        float(r[0])
        for r in db.execute(
            "SELECT ended_at - coalesce(submitted_at, created_at) FROM batches WHERE provider = ? AND model = ?"
            " AND status = 'completed' AND ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT ?",  # batches_model_completed
            (provider, model, limit),
        )
    ]


@dataclass(frozen=True, slots=True)
class OpenBatch:
    id: int
    provider_batch_id: str
    provider: str
    model: str
    status: str
    total: int
    done: int
    submitted_at: float
    deadline: float | None
    rescue_requested_at: float | None


def fill_deadlines(store: Store, limit: int = 50) -> int:
    """Work out `batches.deadline_at` (the earliest deadline of its requests) of up to
    `limit` sent batches not yet checked: once per batch, as it is first seen."""
    rows = store.db.execute(
        "SELECT id FROM batches WHERE deadline_checked = 0 AND provider_batch_id IS NOT NULL LIMIT ?", (limit,)
    ).fetchall()
    if not rows:
        return 0
    found = [
        (
            store.db.execute(
                "SELECT min(r.deadline) FROM attempts a JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ?",
                (bid,),
            ).fetchone()[0],
            bid,
        )
        for (bid,) in rows
    ]
    with store.transaction() as db:
        db.executemany("UPDATE batches SET deadline_at = ?, deadline_checked = 1 WHERE id = ?", found)
    return len(found)


def open_batches(db: Connection, provider: str | None = None) -> list[OpenBatch]:
    """Batches in flight (sent, not ingested), with the earliest deadline of their
    requests (`fill_deadlines` first)."""
    where = " AND b.provider = ?" if provider else ""
    return [
        OpenBatch(*r)
        for r in db.execute(
            "SELECT b.id, b.provider_batch_id, b.provider, b.model, b.status, b.total, b.succeeded + b.failed,"
            " coalesce(b.submitted_at, b.created_at), b.deadline_at, b.rescue_requested_at"
            " FROM batches b WHERE b.ingested_at IS NULL AND b.provider_batch_id IS NOT NULL"
            f" AND b.status NOT IN ('completed', 'failed', 'expired', 'cancelled'){where} ORDER BY b.id",
            (provider,) if provider else (),
        )
    ]


def deadlines_of(db: Connection, batch_ids: Sequence[int]) -> dict[int, float]:
    """Earliest deadline of each batch's requests (for `batches[].deadline_at`), as the
    engine worked it out (`fill_deadlines`); one in flight it has not seen yet (sent
    since its last pass) is worked out here, until the engine's next pass stores it. An
    ended one it never saw (history from before this column) shows none until it does:
    the status's work must not grow with the store's history."""
    if not batch_ids:
        return {}
    marks = ",".join("?" * len(batch_ids))
    out: dict[int, float] = {}
    for b, d, checked, ended in db.execute(
        f"SELECT id, deadline_at, deadline_checked, ingested_at IS NOT NULL FROM batches WHERE id IN ({marks})",
        list(batch_ids),
    ).fetchall():
        if not checked and not ended:
            (d,) = db.execute(
                "SELECT min(r.deadline) FROM attempts a JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ?", (b,)
            ).fetchone()
        if d is not None:
            out[int(b)] = float(d)
    return out


def request_rescue(store: Store, batch_id: int, now: float) -> bool:
    """Cancel this batch to send its unfinished requests real time (once)."""
    with store.transaction() as db:
        return (
            db.execute(
                "UPDATE batches SET rescue_requested_at = ?, cancel_requested_at = coalesce(cancel_requested_at, ?)"
                " WHERE id = ? AND rescue_requested_at IS NULL AND ingested_at IS NULL RETURNING id",
                (now, now, batch_id),
            ).fetchone()
            is not None
        )


def rescue_leftovers(db: Connection) -> list[tuple[int, list[int]]]:
    """Rescued batches now ingested, with their requests that did not succeed in them
    and are still waiting (queued again, or left cancelled/failed/expired)."""
    out = []
    for (bid,) in db.execute(
        "SELECT id FROM batches WHERE rescue_requested_at IS NOT NULL AND rescue_done_at IS NULL AND ingested_at IS NOT NULL"
    ).fetchall():
        ids = [
            int(r[0])
            for r in db.execute(
                "SELECT r.id FROM attempts a JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ?"
                " AND a.number = r.attempts AND a.outcome != 'succeeded'"
                " AND r.state IN ('queued', 'cancelled', 'failed', 'expired') ORDER BY r.id",
                (bid,),
            )
        ]
        out.append((int(bid), ids))
    return out


def rescue_done(store: Store, batch_id: int, now: float) -> None:
    with store.transaction() as db:
        db.execute("UPDATE batches SET rescue_done_at = ? WHERE id = ?", (now, batch_id))


def most_urgent_tier(db: Connection, provider: str, endpoint: str, model: str) -> str | None:
    """The tier of the buffer's queued request with the earliest deadline."""
    row = db.execute(
        "SELECT r.tier FROM buffers f JOIN requests r ON r.buffer_id = f.id WHERE f.provider = ? AND f.endpoint = ?"
        " AND f.model = ? AND r.state = 'queued' AND r.deadline IS NOT NULL ORDER BY r.deadline LIMIT 1",
        (provider, endpoint, model),
    ).fetchone()
    return row[0] if row else None


def lines_of(db: Connection, request_ids: Sequence[int]) -> dict[int, tuple[str, str, str, str]]:
    """request id -> (provider, endpoint, model, line)."""
    out = {}
    for rid in request_ids:
        row = db.execute(
            "SELECT r.provider, f.endpoint, f.model, r.line FROM requests r JOIN buffers f ON f.id = r.buffer_id WHERE r.id = ?",
            (rid,),
        ).fetchone()
        if row is not None:
            out[rid] = tuple(row)
    return out


def dead_letter_ids(db: Connection) -> list[tuple[int, str, str, str, str]]:
    """(request id, provider, endpoint, model, line) of every dead letter, oldest first."""
    return [
        (int(r[0]), r[1], r[2], r[3], r[4])
        for r in db.execute(
            "SELECT r.id, r.provider, f.endpoint, f.model, r.line FROM requests r JOIN buffers f ON f.id = r.buffer_id"
            " WHERE r.state = 'dead' ORDER BY r.id"
        )
    ]


def request_retry(store: Store, request_ids: Sequence[int]) -> int:
    """Dead letters to be sent once more real time by the engine holding the lease.
    One whose custom_id is live again (enqueued anew) is left dead. Returns how many."""
    n = 0
    with store.transaction(fenced=False) as db:
        for rid in request_ids:
            # left dead when its custom_id is live again: the requests_live_custom_id index's
            # condition, checked here (the UPDATE OR IGNORE of SQLite has no PostgreSQL form)
            cur = db.execute(
                "UPDATE requests SET state = ? WHERE id = ? AND state = 'dead' AND NOT EXISTS (SELECT 1 FROM requests o"
                " WHERE o.provider = requests.provider AND o.custom_id = requests.custom_id"
                " AND o.state NOT IN ('succeeded', 'dead'))",
                (RETRY_STATE, rid),
            )
            n += cur.rowcount
    return n


def retry_requested(db: Connection, provider: str, limit: int) -> list[int]:
    return [
        int(r[0])
        for r in db.execute(
            "SELECT id FROM requests WHERE provider = ? AND state = ? ORDER BY id LIMIT ?", (provider, RETRY_STATE, limit)
        )
    ]


def providers_with_retries(db: Connection) -> list[str]:
    """Providers with lane work and perhaps nothing else: dead letters to retry real
    time, or claims left open by an engine that died (to be settled)."""
    if not has_lanes(db):
        return []
    return sorted(  # in code point order, as SQLite's UNION gave them
        r[0]
        for r in db.execute(
            "SELECT provider FROM requests WHERE state = ? UNION SELECT provider FROM realtime_calls WHERE outcome IS NULL",
            (RETRY_STATE,),
        )
    )


# -- alerts the lanes raise ---------------------------------------------------------------

STUCK_BATCH = "stuck_batch"
DEADLINE_RISK = "deadline_risk"


def set_alert(store: Store, kind: str, scope: str, provider: str, message: str, now: float) -> None:
    """Raise or refresh an alert keyed by (kind, scope), e.g. one per batch; the
    status lists it with the engine's others. The event is recorded the first time."""
    from batchtop.store import events

    key = f"alert:{kind}:{scope}"
    with store.transaction() as db:
        row = db.execute("SELECT value FROM engine_state WHERE key = ?", (key,)).fetchone()
        value = {"kind": kind, "provider": provider, "message": message, "at": now}
        if row is not None:
            value["at"] = json.loads(row[0]).get("at", now)
        else:
            events.record_alert(db, kind, message, now, provider=provider)
        db.execute(
            "INSERT INTO engine_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )


def clear_alerts(store: Store, kind: str, keep: Iterable[str]) -> None:
    """Drop alerts of this kind whose scope is not in `keep` (the batch ended, the risk went)."""
    keep_keys = {f"alert:{kind}:{s}" for s in keep}
    stale = [
        k for (k,) in store.db.execute("SELECT key FROM engine_state WHERE key LIKE ?", (f"alert:{kind}:%",))
        if k not in keep_keys
    ]
    if stale:
        with store.transaction() as db:
            db.executemany("DELETE FROM engine_state WHERE key = ?", [(k,) for k in stale])


def batch_submissions(db: Connection, provider_batch_ids: Sequence[str]) -> dict[str, tuple[int, float]]:
    """Provider batch id -> (local id, when it was sent), for the ETA of those batches."""
    if not provider_batch_ids:
        return {}
    marks = ",".join("?" * len(provider_batch_ids))
    return {
        str(pid): (int(local), float(sent))
        for pid, local, sent in db.execute(
            f"SELECT provider_batch_id, id, coalesce(submitted_at, created_at) FROM batches"
            f" WHERE provider_batch_id IN ({marks})",
            list(provider_batch_ids),
        )
    }


def alert_scopes(db: Connection, kind: str, *, exclude_provider: str) -> list[str]:
    """The scopes of this kind's raised alerts that belong to other providers than
    `exclude_provider` (a pass clears only its own provider's)."""
    return [
        key.split(":", 2)[2]
        for key, value in db.execute("SELECT key, value FROM engine_state WHERE key LIKE ?", (f"alert:{kind}:%",))
        if json.loads(value).get("provider") != exclude_provider
    ]
