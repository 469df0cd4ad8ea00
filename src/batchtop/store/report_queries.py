"""The period report's SQL: `usage_hourly` (kept at ingest) and the batches of a period.

Everything here reads rollups or the `batches_ended` index, never `attempts`, so a
report over a store of a million results costs what one over a hundred does. The
rows are plain numbers: pricing them is `batchtop.report`'s business.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from batchtop.store.schema import USAGE_HOURLY_TOKENS

HOUR = 3600

HOURLY_ADD = (
    f"INSERT INTO usage_hourly (hour, provider, model, first_attempt, succeeded, attempts,"
    f" {', '.join(USAGE_HOURLY_TOKENS)}) VALUES (?, ?, ?, ?, ?, ?{', ?' * len(USAGE_HOURLY_TOKENS)})"
    " ON CONFLICT (hour, provider, model, first_attempt, succeeded) DO UPDATE SET attempts = attempts + excluded.attempts"
    + "".join(f", {c} = {c} + excluded.{c}" for c in USAGE_HOURLY_TOKENS)
)
"""Adds (hour, provider, model, first attempt?, succeeded?, attempts, tokens...) to `usage_hourly`."""


def add_hourly(db: sqlite3.Connection, batch_id: int, rollup_rows: Sequence[tuple], now: float) -> None:
    """Add one ingest chunk's `usage_rollup` rows (provider, model, first, ok, attempts,
    tokens...) to the hour its batch ended in, inside the caller's transaction.

    A batch with no end time yet (one that failed whole without the provider saying
    when) is placed at `now`, the time its ingest stamps on it as its end."""
    if not rollup_rows:
        return
    (ended,) = db.execute("SELECT ended_at FROM batches WHERE id = ?", (batch_id,)).fetchone()
    hour = int((ended if ended is not None else now) // HOUR)
    db.executemany(HOURLY_ADD, [(hour, *row) for row in rollup_rows])


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One (UTC day, provider, model, first attempt?, succeeded?) sum of `usage_hourly`."""

    day: int
    """Days since 1970-01-01 (UTC)."""
    provider: str
    model: str
    first_attempt: bool
    succeeded: bool
    attempts: int
    tokens: tuple[int, ...]
    """In `USAGE_HOURLY_TOKENS` order."""


def _range(column: str, since: float | None, until: float | None) -> tuple[str, list[float]]:
    where, args = [], []
    if since is not None:
        where.append(f"{column} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        args.append(until)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def usage_by_day(db: sqlite3.Connection, since_hour: int | None, until_hour: int | None) -> list[DayUsage]:
    """Usage of the batches that ended in [since_hour, until_hour), summed per UTC day."""
    where, args = _range("hour", since_hour, until_hour)
    sums = ", ".join(f"sum({c})" for c in USAGE_HOURLY_TOKENS)
    rows = db.execute(
        f"SELECT hour / 24, provider, model, first_attempt, succeeded, sum(attempts), {sums}"
        f" FROM usage_hourly{where} GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3",
        args,
    ).fetchall()
    return [DayUsage(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[5], tuple(r[6:])) for r in rows]


@dataclass(frozen=True, slots=True)
class EndedBatches:
    """The ingested batches of one provider x model that ended in a period."""

    provider: str
    model: str
    batches: int
    timed: int
    """How many of them have a provider creation time (the others have no duration)."""
    duration_s: float
    """Sum over the timed ones of provider creation to end."""
    first_ended_at: float
    last_ended_at: float


def ended_batches(db: sqlite3.Connection, since: float | None, until: float | None) -> list[EndedBatches]:
    """Per provider x model, the batches whose results are in the rollups and that ended
    in [since, until): how many, how long they took, the first and last end."""
    where, args = _range("ended_at", since, until)
    where = (where + " AND" if where else " WHERE") + " ended_at IS NOT NULL"
    rows = db.execute(
        "SELECT provider, model, count(*), count(provider_created_at),"
        " coalesce(sum(max(ended_at - provider_created_at, 0)), 0), min(ended_at), max(ended_at)"
        f" FROM batches{where} AND ingested_at IS NOT NULL AND provider_batch_id IS NOT NULL"
        " GROUP BY provider, model ORDER BY provider, model",
        args,
    ).fetchall()
    return [EndedBatches(*r) for r in rows]
