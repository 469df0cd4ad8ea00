"""Read-side streams behind `batchtop results` and `batchtop dead-letters`.

Each stream walks one cursor `FETCH` rows at a time, so a million results cost the
memory of one fetch, and follows an index so nothing is sorted.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchtop.store.location import DIALECT

if TYPE_CHECKING:
    from batchtop.store.db import Connection

FETCH = 1000
"""Rows taken from the cursor at a time."""

_NAMES = itertools.count(1)


def stream(db: Connection, statement: str, params: Sequence[object] = ()) -> Iterator[list[tuple[Any, ...]]]:
    """The statement's rows, FETCH at a time, from one cursor. On PostgreSQL a
    server-side cursor (WITH HOLD: the connection is in autocommit), as a client-side
    one would take the whole result into memory first; closed once read or dropped."""
    if db.dialect == DIALECT:
        from batchtop.store import postgres  # psycopg only for a PostgreSQL store

        assert isinstance(db, postgres.PgConnection)
        cursor: Any = db.conn.cursor(name=f"batchtop_stream_{next(_NAMES)}", withhold=True)
        cursor.execute(postgres.translate(statement), tuple(params) or None)
    else:
        cursor = db.execute(statement, tuple(params))
    try:
        while rows := cursor.fetchmany(FETCH):
            yield rows
    finally:
        cursor.close()

# The latest successful attempt of each request: the highest-numbered one (the
# UNIQUE (request_id, number) index makes the inner max a seek). Both orders follow an
# index, so nothing is sorted: request order over the store (a custom_id enqueued again
# after it succeeded comes out last for its newest run), attempt order within a batch.
_RESULTS = (
    "SELECT a.response FROM attempts a WHERE a.outcome = 'succeeded' AND a.response IS NOT NULL{where}"
    " AND a.number = (SELECT max(b.number) FROM attempts b WHERE b.request_id = a.request_id"
    " AND b.outcome = 'succeeded') ORDER BY {order}"
)

_DEAD = (
    "SELECT r.custom_id, r.provider, f.model, f.endpoint, r.attempts, r.last_error, r.enqueued_at,"
    " b.provider_batch_id, a.ended_at FROM requests r JOIN buffers f ON f.id = r.buffer_id"
    " LEFT JOIN attempts a ON a.request_id = r.id AND a.number = r.attempts"
    " LEFT JOIN batches b ON b.id = a.batch_id WHERE r.state = 'dead' ORDER BY r.id"
)

_DEAD_WIDTHS = (
    "SELECT max(length(r.custom_id)), max(length(r.provider)), max(length(f.model)),"
    " max(length(CAST(r.attempts AS TEXT))), max(length(b.provider_batch_id)) FROM requests r"
    " JOIN buffers f ON f.id = r.buffer_id LEFT JOIN attempts a ON a.request_id = r.id"
    " AND a.number = r.attempts LEFT JOIN batches b ON b.id = a.batch_id WHERE r.state = 'dead'"
)


@dataclass(frozen=True)
class ExportBatch:
    """A provider batch a results export is limited to."""

    local_id: int
    status: str
    ingested_at: float | None


def export_batch(db: Connection, provider_batch_id: str) -> ExportBatch | None:
    row = db.execute(
        "SELECT id, status, ingested_at FROM batches WHERE provider_batch_id = ?", (provider_batch_id,)
    ).fetchone()
    return ExportBatch(*row) if row is not None else None


def results_stream(db: Connection, batch_local_id: int | None = None) -> Iterator[list[str]]:
    """The provider's raw result line of each request's latest success, a fetch at a
    time: over the whole store in request order, or over one batch in attempt order."""
    if batch_local_id is None:
        rows_of = stream(db, _RESULTS.format(where="", order="a.request_id"))
    else:
        rows_of = stream(db, _RESULTS.format(where=" AND a.batch_id = ?", order="a.id"), (batch_local_id,))
    for rows in rows_of:
        yield [response for (response,) in rows]


@dataclass(frozen=True)
class DeadLetter:
    """A request that used up its attempts (times in unix seconds)."""

    custom_id: str
    provider: str
    model: str
    endpoint: str
    attempts: int
    last_error: str | None
    enqueued_at: float
    last_batch_id: str | None
    failed_at: float | None
    """When its last attempt ended (None if that attempt's batch never reported it)."""


def dead_letters(db: Connection) -> Iterator[DeadLetter]:
    """Every dead request, oldest first, streamed from one cursor."""
    for rows in stream(db, _DEAD):
        for row in rows:
            yield DeadLetter(*row)


def dead_letter_widths(db: Connection) -> tuple[int | None, ...]:
    """The longest custom_id, provider, model, attempts (as text) and last batch id among
    the dead letters (None each when there are none): one aggregate, so a table of them
    is aligned while its rows still stream."""
    return tuple(db.execute(_DEAD_WIDTHS).fetchone())
