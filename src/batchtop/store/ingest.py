"""Storing a batch's results, chunk by chunk, idempotently.

Each chunk is one transaction that sets the outcome of attempts still without one,
adds their usage to the rollups and moves their requests on (succeeded, queued
again, or dead). A crash mid-ingest loses nothing: the next ingest skips attempts
that already have an outcome, so no rollup is counted twice.

The result files are untrusted, so the store also keeps how far they were read
(resumed there on the next tick), caps the anomalies one batch may record, counts
failed ingests and quarantines a batch whose files cannot be ingested.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from batchtop.pricing.table import prompt_tier
from batchtop.providers.base import ERRORED, MISSING, SUCCEEDED, ResultLine
from batchtop.providers.failures import PERMANENT, QUOTA, RETRY
from batchtop.providers.streaming import Position
from batchtop.states import Outcome, RequestState
from batchtop.store import events, postgres, report_queries
from batchtop.store.db import Connection
from batchtop.store.store import Store

ANOMALIES_PER_BATCH = 100
"""A hostile file can hold millions of bad lines: past this many, one marker row."""
QUARANTINE_AFTER = 5
"""Failed ingests in a row before a batch is quarantined."""

_ROLLUP_SUMS = "".join(
    f"{',' if i else ''} {c} = usage_rollup.{c} + excluded.{c}"
    for i, c in enumerate((
        "attempts", "input_tokens", "cached_input_tokens", "cache_creation_input_tokens", "output_tokens",
        "cache_creation_1h_input_tokens",
    ))
)
"""The rollup's sums, each column qualified (PostgreSQL calls a bare one ambiguous)."""
ROLLUP_ADD = (
    "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens,"
    " cached_input_tokens, cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (provider, model, first_attempt, succeeded, tier) DO UPDATE SET" + _ROLLUP_SUMS
)
"""Adds (provider, model, first attempt?, succeeded?, attempts, input, cache reads, cache
writes, output, 1-hour cache writes) to the rollup, at the base prompt tier ('')."""
TIERED_ROLLUP_ADD = (
    "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, tier, attempts, input_tokens,"
    " cached_input_tokens, cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (provider, model, first_attempt, succeeded, tier) DO UPDATE SET" + _ROLLUP_SUMS
)
"""`ROLLUP_ADD` with the prompt tier after succeeded? ('' or `pricing.table.UPPER_TIER`)."""

_FAILED_STATE: dict[str, RequestState] = {Outcome.EXPIRED: RequestState.EXPIRED, Outcome.CANCELLED: RequestState.CANCELLED}


@dataclass(slots=True)
class Pending:
    attempt_id: int
    request_id: int
    number: int
    open: bool
    spared: int = 0
    """Earlier attempts of the request that did not count (quota)."""


@dataclass(frozen=True)
class Settle:
    """How failures are handled: the engine's config, captured per ingest."""

    max_attempts: int
    auto_resubmit: bool
    retry_delay: float = 0.0


class BatchIngest:
    """Ingest of one batch; `attempts` maps custom_id to its attempt in this batch."""

    def __init__(
        self, store: Store, batch_id: int, settle: Settle, tier_above: Callable[[str, str], int | None] | None = None
    ) -> None:
        """`tier_above(provider, model)`: the prompt tokens over which the model is priced
        at its upper tier (None: one tier); each such request is rolled up apart."""
        self.store = store
        self.batch_id = batch_id
        self.settle = settle
        row = store.db.execute(
            "SELECT provider, model, ingest_file, ingest_offset, ingest_lines FROM batches WHERE id = ?", (batch_id,)
        ).fetchone()
        self.provider, self.model = row[:2]
        self.tier_above = tier_above(self.provider, self.model) if tier_above is not None else None
        self.position = Position(*row[2:])
        """How far the result files were stored: the next read starts here."""
        self.attempts: dict[str, Pending] = {
            cid: Pending(aid, rid, number, outcome is None, spared)
            for aid, rid, number, outcome, cid, spared in store.db.execute(
                "SELECT a.id, a.request_id, a.number, a.outcome, r.custom_id, r.spared_attempts FROM attempts a"
                " JOIN requests r ON r.id = a.request_id WHERE a.batch_id = ?",
                (batch_id,),
            )
        }
        self.quota_error: str | None = None
        """The first quota or credit error of this batch: the engine holds the provider."""
        self.succeeded = 0
        """The batch's stored successes, set by `finish`: proof the account works again even
        when the provider's batch reports no counts (a Gemini file batch)."""

    def add(
        self,
        results: Iterable[ResultLine],
        now: float,
        invalid: dict[str, str] | None = None,
        verdicts: dict[str, str] | None = None,
        *,
        anomalies: Iterable[tuple[str, str]] = (),
        position: Position | None = None,
        hold: bool = False,
    ) -> int:
        """Store a chunk of results in one transaction; returns how many were new.
        `invalid` maps custom_ids whose output failed validation to the reason;
        `verdicts` maps failed custom_ids that must not simply be retried to
        PERMANENT or QUOTA (`providers.failures`); `anomalies` are (kind, detail) of
        lines that could not be used; `position` is how far the files are read with
        this chunk (stored with it, so a resumed ingest starts after it); `hold`
        leaves failed requests for the operator."""
        invalid = invalid or {}
        verdicts = verdicts or {}
        found = list(anomalies)
        closing: dict[int, Pending] = {}  # closed once the transaction commits: a rolled-back chunk stays open
        updates = []
        failures: list[tuple[Pending, str, str, str]] = []
        succeeded: list[int] = []
        firsts: list[bool] = []
        for r in results:
            p = self.attempts.get(r.custom_id)
            if p is None:
                found.append(("unknown_custom_id", f"result for custom_id {r.custom_id!r} we did not submit"))
                continue
            if not p.open or p.attempt_id in closing:
                continue
            closing[p.attempt_id] = p
            outcome, error = r.outcome, r.error
            if outcome == SUCCEEDED and r.custom_id in invalid:
                outcome, error = Outcome.INVALID_OUTPUT, f"invalid_output: {invalid[r.custom_id]}"
            updates.append(
                (outcome, now, r.response, error, r.input_tokens, r.cached_input_tokens,
                 r.cache_creation_input_tokens, r.output_tokens, r.cache_creation_1h_input_tokens, p.attempt_id)
            )
            firsts.append(p.number == 1)
            if outcome == SUCCEEDED:
                succeeded.append(p.request_id)
            else:
                verdict = verdicts.get(r.custom_id, RETRY) if outcome == r.outcome else RETRY
                if verdict == QUOTA and self.quota_error is None:
                    self.quota_error = error or outcome
                failures.append((p, outcome, error or outcome, verdict))
        with self.store.transaction() as db:
            if db.dialect == postgres.DIALECT:
                _store_outcomes_set_based(db, updates, succeeded)
            else:
                db.executemany(
                    "UPDATE attempts SET outcome = ?, ended_at = ?, response = ?, error = ?, input_tokens = ?,"
                    " cached_input_tokens = ?, cache_creation_input_tokens = ?, output_tokens = ?,"
                    " cache_creation_1h_input_tokens = ? WHERE id = ?",
                    updates,
                )
                db.executemany(
                    "UPDATE requests SET state = 'succeeded', last_error = NULL WHERE id = ?", [(i,) for i in succeeded]
                )
            self._rollup(db, updates, firsts, now)
            self._settle_failures(db, failures, now, hold=hold)
            self._anomalies(db, found, now)
            if position is not None and position != self.position:
                db.execute(
                    "UPDATE batches SET ingest_file = ?, ingest_offset = ?, ingest_lines = ?, ingest_failures = 0,"
                    " ingest_retry_at = NULL WHERE id = ?",
                    (position.file, position.offset, position.lines, self.batch_id),
                )
        for p in closing.values():
            p.open = False
        if position is not None:
            self.position = position
        return len(updates)

    def _anomalies(self, db: Connection, found: list[tuple[str, str]], now: float) -> None:
        """Record up to ANOMALIES_PER_BATCH for this batch, then one marker row."""
        if not found:
            return
        (have,) = db.execute("SELECT count(*) FROM anomalies WHERE batch_id = ?", (self.batch_id,)).fetchone()
        room = max(0, ANOMALIES_PER_BATCH - have)
        rows = [(self.batch_id, kind, detail[:1000], now) for kind, detail in found[:room]]
        if len(found) > room:
            rows.append((self.batch_id, "anomalies_capped",
                         f"more than {ANOMALIES_PER_BATCH} anomalies in this batch; the rest were not recorded", now))
        db.executemany(
            "INSERT INTO anomalies (batch_id, kind, detail, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
        )

    def _rollup(self, db: Connection, updates: list[tuple], firsts: list[bool], now: float) -> None:
        sums: dict[tuple[int, int, str], list[int]] = {}
        failed = 0
        for (outcome, _, _, _, i, c, w, o, w1h, _), first in zip(updates, firsts):
            ok = outcome == SUCCEEDED
            failed += not ok
            tier = prompt_tier(self.tier_above, i, c, w)
            entry = sums.setdefault((int(first), int(ok), tier), [0, 0, 0, 0, 0, 0])
            entry[0] += 1
            entry[1] += i
            entry[2] += c
            entry[3] += w
            entry[4] += o
            entry[5] += w1h
        rows = [(self.provider, self.model, f, s, tier, *v) for (f, s, tier), v in sums.items()]
        db.executemany(TIERED_ROLLUP_ADD, rows)
        # the same sums by the day and hour the batch ended in (the period report's)
        report_queries.add_by_batch_end(db, self.batch_id, rows, now)
        if updates:
            db.execute(
                "INSERT INTO outcome_hourly (hour, attempts, failed) VALUES (?, ?, ?) ON CONFLICT (hour) DO UPDATE SET"
                " attempts = outcome_hourly.attempts + excluded.attempts, failed = outcome_hourly.failed + excluded.failed",
                (int(now // 3600), len(updates), failed),
            )

    def _settle_failures(
        self, db: Connection, failures: list[tuple[Pending, str, str, str]], now: float, *, hold: bool = False
    ) -> None:
        """A failed attempt's request: dead at once when the provider rejected the
        request itself, dead after max_attempts (quota failures not counted), else
        queued again (or left failed for a manual resubmit when auto_resubmit is off,
        or `hold`)."""
        settled: list[tuple[int, str, str, int | None]] = []  # (request, state, last_error, spared when queued)
        for p, outcome, error, verdict in failures:
            spared = p.spared + (verdict == QUOTA)
            if hold:
                settled.append((p.request_id, RequestState.FAILED, error, None))
            elif verdict == PERMANENT:
                settled.append((p.request_id, RequestState.DEAD,
                                f"{error} (not retried: the provider rejected the request itself)", None))
            elif verdict != QUOTA and p.number - spared >= self.settle.max_attempts:
                settled.append((p.request_id, RequestState.DEAD, error, None))
            elif self.settle.auto_resubmit or verdict == QUOTA:
                settled.append((p.request_id, RequestState.QUEUED, error, spared))
            else:
                settled.append((p.request_id, _FAILED_STATE.get(outcome, RequestState.FAILED), error, None))
        requeue = _settle_set_based(db, settled) if db.dialect == postgres.DIALECT else _settle_by_row(db, settled)
        # a retry does not wait out its buffer's max_age again: the buffer is due once
        # the retry delay has passed (an earlier flush request stands)
        due = now + self.settle.retry_delay
        db.executemany(  # queued / queued_bytes rose with the requests' state (a trigger)
            "UPDATE buffers SET flush_requested_at = CASE WHEN coalesce(flush_requested_at, ?) < ? THEN flush_requested_at"
            " ELSE ? END WHERE id = ?",
            [(due, due, due, b) for b in requeue],
        )


    def finish(self, now: float, *, batch_error: str | None = None) -> None:
        """Every submitted custom_id without a result is a failed attempt (`missing`,
        or the batch's own error when it failed whole); then the batch is done."""
        leftovers = [
            ResultLine(cid, ERRORED if batch_error else MISSING, None, batch_error or "missing: no result line came back")
            for cid, p in self.attempts.items()
            if p.open
        ]
        if leftovers:
            self.add(leftovers, now)
        with self.store.transaction() as db:
            (ok,) = db.execute(
                "SELECT count(*) FROM attempts WHERE batch_id = ? AND outcome = 'succeeded'", (self.batch_id,)
            ).fetchone()
            db.execute(
                "UPDATE batches SET ingested_at = ?, succeeded = ?, failed = total - ?,"
                " ended_at = coalesce(ended_at, ?) WHERE id = ?",
                (now, ok, ok, now, self.batch_id),
            )
            events.record_ingested(db, self.batch_id, now)
        self.succeeded = int(ok)

    def failed(self, reason: str, now: float, base_delay: float) -> int:
        """An ingest of this batch failed (the download, or no progress within the
        budget): count it, and wait base_delay x 2^(n-1) (an hour at most) before the
        next; returns the failures in a row."""
        with self.store.transaction() as db:
            (n,) = db.execute(
                "SELECT ingest_failures + 1 FROM batches WHERE id = ?", (self.batch_id,)
            ).fetchone()
            db.execute(
                "UPDATE batches SET ingest_failures = ?, ingest_retry_at = ?, last_error = ? WHERE id = ?",
                (n, now + min(3600.0, base_delay * 2 ** (n - 1)), f"ingest failed: {reason}"[:500], self.batch_id),
            )
        return int(n)

    def quarantine(self, reason: str, now: float) -> None:
        """Stop reading this batch's files for good: what was stored stays; every
        attempt still without a result fails as `ingest_quarantined` and its request
        waits, failed, for the operator (`resubmit`), never resent on its own to the
        provider that sent the files. The batch counts as ingested."""
        error = f"ingest_quarantined: {reason}"[:500]
        leftovers = [ResultLine(cid, ERRORED, None, error, "ingest_quarantined") for cid, p in self.attempts.items() if p.open]
        if leftovers:
            self.add(leftovers, now, hold=True)
        with self.store.transaction() as db:
            (ok,) = db.execute(
                "SELECT count(*) FROM attempts WHERE batch_id = ? AND outcome = 'succeeded'", (self.batch_id,)
            ).fetchone()
            db.execute(
                "UPDATE batches SET ingested_at = ?, quarantined_at = ?, succeeded = ?, failed = total - ?,"
                " last_error = ?, ended_at = coalesce(ended_at, ?) WHERE id = ?",
                (now, now, ok, ok, f"ingest quarantined: {reason}"[:500], now, self.batch_id),
            )
            events.record_ingested(db, self.batch_id, now)


def _settle_by_row(db: Connection, settled: list[tuple[int, str, str, int | None]]) -> list[int]:
    """SQLite: each failed request's new state, one statement each (no round trips
    there); returns the buffers of the requests queued again, in order."""
    requeue: dict[int, None] = {}
    for request_id, state, error, spared in settled:
        if spared is None:
            db.execute("UPDATE requests SET state = ?, last_error = ? WHERE id = ?", (state, error, request_id))
        else:
            (buffer_id,) = db.execute(
                "UPDATE requests SET state = 'queued', last_error = ?, spared_attempts = ? WHERE id = ?"
                " RETURNING buffer_id",
                (error, spared, request_id),
            ).fetchone()
            requeue[buffer_id] = None
    return list(requeue)


def _settle_set_based(db: Connection, settled: list[tuple[int, str, str, int | None]]) -> list[int]:
    """PostgreSQL: the chunk's failed requests in one UPDATE (one round trip, one firing
    of the queue counters' statement trigger); the buffers of those queued again."""
    if not settled:
        return []
    ids, states, errors, spared = (list(c) for c in zip(*settled))
    rows = db.execute(
        "UPDATE requests AS r SET state = v.state, last_error = v.error,"
        " spared_attempts = coalesce(v.spared, r.spared_attempts)"
        " FROM unnest(?::bigint[], ?::text[], ?::text[], ?::bigint[]) AS v(id, state, error, spared)"
        " WHERE r.id = v.id RETURNING r.buffer_id, v.state",
        (ids, [str(x) for x in states], errors, spared),
    ).fetchall()
    return sorted({buffer_id for buffer_id, state in rows if state == RequestState.QUEUED})


def _store_outcomes_set_based(db: Connection, updates: list[tuple], succeeded: list[int]) -> None:
    """PostgreSQL: a chunk's attempt outcomes as one UPDATE from arrays, its successes as
    another: a statement per row (2,000 a chunk) costs a round trip and a firing of
    the queue counters' statement trigger each, ten times SQLite's ingest."""
    if updates:
        columns = [list(c) for c in zip(*updates)]
        columns[0] = [str(x) for x in columns[0]]
        db.execute(
            "UPDATE attempts AS a SET outcome = v.outcome, ended_at = v.ended_at, response = v.response,"
            " error = v.error, input_tokens = v.input_tokens, cached_input_tokens = v.cached_input_tokens,"
            " cache_creation_input_tokens = v.cache_creation_input_tokens, output_tokens = v.output_tokens,"
            " cache_creation_1h_input_tokens = v.cache_creation_1h_input_tokens"
            " FROM unnest(?::text[], ?::double precision[], ?::text[], ?::text[], ?::bigint[], ?::bigint[],"
            " ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) AS v(outcome, ended_at, response, error,"
            " input_tokens, cached_input_tokens, cache_creation_input_tokens, output_tokens,"
            " cache_creation_1h_input_tokens, id) WHERE a.id = v.id",
            columns,
        )
    if succeeded:
        db.execute(
            "UPDATE requests SET state = 'succeeded', last_error = NULL WHERE id = ANY(?::bigint[])", (succeeded,)
        )
