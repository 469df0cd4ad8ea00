"""Read-side queries behind the money figures: usage rollups, estimate sums, budget spend.

Every one reads rollups or counters the store keeps (`usage_rollup`, `buffer_estimates`,
buffers' queued/queued_bytes, batches' total/bytes) or one batch's attempts over the
attempts_batch index: none scans `attempts` or `requests`, so the savings, the in-flight
estimate and the budget check cost the same with a million stored results as with ten.
The arithmetic is `batchtop.pricing`'s; here are only rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchtop.pricing.table import UPPER_TIER
from batchtop.store.db import epoch_bucket
from batchtop.store.estimates import COLUMNS
from batchtop.store.location import DIALECT

if TYPE_CHECKING:
    from batchtop.store.db import Connection


@dataclass(frozen=True)
class UsageRow:
    """One `usage_rollup` row: one model's attempts of one (first attempt?, succeeded?) kind."""

    provider: str
    model: str
    first_attempt: bool
    succeeded: bool
    attempts: int
    input_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    output_tokens: int
    cache_creation_1h_input_tokens: int
    tier: str = ""
    """'' (the base tier) or `pricing.table.UPPER_TIER`: requests over the prompt tier."""


def usage_rows(db: Connection) -> list[UsageRow]:
    """Every usage rollup row (at most four per model and prompt tier)."""
    return [
        UsageRow(p, m, bool(first), bool(ok), *counts_then_tier)
        for p, m, first, ok, *counts_then_tier in db.execute(
            "SELECT provider, model, first_attempt, succeeded, attempts, input_tokens, cached_input_tokens,"
            " cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens, tier FROM usage_rollup"
        )
    ]


@dataclass(frozen=True)
class EstimateSums:
    """A buffer's `buffer_estimates` row (or their sum): per-request estimates summed at enqueue."""

    requests: int
    bytes: int
    input_tokens: int
    capped_output_tokens: int
    uncapped_outputs: int


def _sums(row: tuple[object, ...]) -> EstimateSums | None:
    """None when there is no row (a buffer enqueued before `buffer_estimates` existed)."""
    return EstimateSums(*(int(v) for v in row)) if row[0] else None  # type: ignore[call-overload]


@dataclass(frozen=True)
class StageRow:
    """Requests of one buffer at one stage (queued in it, or in its unended batches)."""

    provider: str
    model: str
    requests: int
    bytes: int
    sums: EstimateSums | None
    """The buffer's enqueue-time estimate sums, None for an old buffer without them."""


# A batch whose status is `failed` was rejected whole by the provider (validation) and is billed nothing.
_IN_FLIGHT = (
    f"SELECT b.provider, b.model, sum(b.total), sum(b.bytes), {COLUMNS} FROM batches b"
    " LEFT JOIN buffer_estimates e ON e.buffer_id = b.buffer_id"
    # a buffer is one provider x model, and its estimates row is one: grouped by them too
    # (PostgreSQL asks for every column not aggregated), the groups are the buffers still
    " WHERE b.ingested_at IS NULL AND b.status != 'failed' {where}"
    f" GROUP BY b.buffer_id, b.provider, b.model, {COLUMNS} ORDER BY b.buffer_id"
)
_QUEUED = (
    f"SELECT b.provider, b.model, b.queued, b.queued_bytes, {COLUMNS} FROM buffers b"
    " LEFT JOIN buffer_estimates e ON e.buffer_id = b.id WHERE b.queued > 0 {where}"
)
_ENQUEUED = (
    "SELECT sum(e.requests), sum(e.bytes), sum(e.input_tokens), sum(e.capped_output_tokens),"
    " sum(e.uncapped_outputs) FROM buffers b JOIN buffer_estimates e ON e.buffer_id = b.id"
    " WHERE b.provider = ? AND b.model = ?"
)


def _stage(db: Connection, sql: str, provider: str | None) -> list[StageRow]:
    where, args = ("AND b.provider = ?", (provider,)) if provider is not None else ("", ())
    return [
        StageRow(prov, model, int(requests or 0), int(size or 0), _sums(tuple(row)))
        for prov, model, requests, size, *row in db.execute(sql.format(where=where), args)
    ]


def in_flight_rows(db: Connection, provider: str | None = None) -> list[StageRow]:
    """Per buffer: the requests and bytes of its batches not yet ingested (billable ones)."""
    return _stage(db, _IN_FLIGHT, provider)


def queued_rows(db: Connection, provider: str | None = None) -> list[StageRow]:
    """Per non-empty buffer: its queued requests and bytes."""
    return _stage(db, _QUEUED, provider)


def enqueued_sums(db: Connection, provider: str, model: str) -> EstimateSums | None:
    """The estimate sums of every buffer of one model (None when none has them)."""
    return _sums(tuple(db.execute(_ENQUEUED, (provider, model)).fetchone()))


@dataclass(frozen=True)
class SpendBatch:
    """A batch whose ended attempts may fall in a budget period."""

    id: int
    submission_uid: str
    provider: str
    model: str
    ingested_at: float | None


def batches_created_since(db: Connection, since: float) -> list[SpendBatch]:
    return [
        SpendBatch(*row)
        for row in db.execute(
            "SELECT id, submission_uid, provider, model, ingested_at FROM batches WHERE created_at >= ?", (since,)
        ).fetchall()
    ]


@dataclass(frozen=True)
class DayTokens:
    """Tokens of one batch's attempts that ended on one UTC day (a Unix day number)."""

    day: int
    input_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    output_tokens: int
    cache_creation_1h_input_tokens: int
    tier: str = ""
    """'' (the base tier) or `pricing.table.UPPER_TIER`: attempts over the prompt tier."""


def batch_days(db: Connection, batch_id: int, tier_above: int | None = None) -> Iterator[DayTokens]:
    """One batch's ended attempts (attempts_batch index), summed per Unix day number:
    days start at UTC midnight. With `tier_above`, attempts whose prompt (input, cache
    reads and writes) is over it are summed apart, as tier UPPER_TIER."""
    args: tuple[object, ...] = (batch_id,)
    tier = "''"
    if tier_above is not None:
        tier = "CASE WHEN input_tokens + cached_input_tokens + cache_creation_input_tokens > ? THEN ? ELSE '' END"
        args = (tier_above, UPPER_TIER, batch_id)
    day = epoch_bucket(db, "ended_at", 86400)
    for day_of, tier_of, *tokens in db.execute(
        f"SELECT {day} AS day, {tier} AS tier, sum(input_tokens), sum(cached_input_tokens),"
        " sum(cache_creation_input_tokens), sum(output_tokens), sum(cache_creation_1h_input_tokens)"
        " FROM attempts WHERE batch_id = ? AND ended_at IS NOT NULL GROUP BY day, tier ORDER BY day, tier",
        args,
    ):
        i, c, w, o, w1h = (int(t or 0) for t in tokens)
        yield DayTokens(int(day_of), i, c, w, o, w1h, str(tier_of))


def database_key(db: Connection) -> str:
    """A name for the connection's database that outlives the connection: its file, or
    (in memory) the connection itself, or a PostgreSQL store's server, database and
    schema; caches of immutable rows are keyed by it."""
    if db.dialect == DIALECT:
        from batchtop.store import postgres  # psycopg only for a PostgreSQL store

        assert isinstance(db, postgres.PgConnection)
        return db.identity()
    file = db.execute("PRAGMA database_list").fetchone()[2]
    return str(file) if file else f"memory:{id(db)}"
