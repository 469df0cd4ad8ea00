"""The period report's SQL: `usage_daily` / `usage_hourly` (kept at ingest) and the
batches of a period.

Everything here reads rollups or the `batches_ended` index, never `attempts`, so a
report over a store of a million results costs what one over a hundred does. The
rows are plain numbers: pricing them is `batchtop.report`'s business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchtop.store.schema import PERIOD_ROLLUP_TOKENS

if TYPE_CHECKING:
    from batchtop.store.db import Connection

HOUR = 3600
HOURS_A_DAY = 24


def _add_statement(table: str, key: str) -> str:
    cols = ", ".join(PERIOD_ROLLUP_TOKENS)
    marks = ", ?" * len(PERIOD_ROLLUP_TOKENS)
    sums = "".join(f", {c} = {table}.{c} + excluded.{c}" for c in PERIOD_ROLLUP_TOKENS)
    return (
        f"INSERT INTO {table} ({key}, provider, model, first_attempt, succeeded, tier, attempts, {cols})"
        f" VALUES (?, ?, ?, ?, ?, ?, ?{marks}) ON CONFLICT ({key}, provider, model, first_attempt, succeeded, tier)"
        f" DO UPDATE SET attempts = {table}.attempts + excluded.attempts{sums}"
    )


DAILY_ADD = _add_statement("usage_daily", "day")
HOURLY_ADD = _add_statement("usage_hourly", "hour")
"""Add (day or hour, provider, model, first attempt?, succeeded?, prompt tier, attempts, tokens...)."""


def add_at(db: Connection, hour: int, rollup_rows: Sequence[tuple]) -> None:
    """Add `usage_rollup`-shaped rows (provider, model, first, ok, tier, attempts, tokens...) to
    that hour and its day, inside the caller's transaction."""
    db.executemany(DAILY_ADD, [(hour // HOURS_A_DAY, *row) for row in rollup_rows])
    db.executemany(HOURLY_ADD, [(hour, *row) for row in rollup_rows])


def add_by_batch_end(db: Connection, batch_id: int, rollup_rows: Sequence[tuple], now: float) -> None:
    """Add one ingest chunk's `usage_rollup` rows at the hour its batch ended in.

    A batch with no end time yet (one that failed whole without the provider saying
    when) is placed at `now`, the time its ingest stamps on it as its end."""
    if not rollup_rows:
        return
    (ended,) = db.execute("SELECT ended_at FROM batches WHERE id = ?", (batch_id,)).fetchone()
    add_at(db, int((ended if ended is not None else now) // HOUR), rollup_rows)


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One (UTC day, provider, model, first attempt?, succeeded?, prompt tier) sum of the rollups."""

    day: int
    """Days since 1970-01-01 (UTC)."""
    provider: str
    model: str
    first_attempt: bool
    succeeded: bool
    attempts: int
    tokens: tuple[int, ...]
    """In `PERIOD_ROLLUP_TOKENS` order."""
    tier: str = ""
    """'' (the base tier) or `pricing.table.UPPER_TIER`: requests over the prompt tier."""


def _range(column: str, since: float | None, until: float | None) -> tuple[str, list[float]]:
    where, args = [], []
    if since is not None:
        where.append(f"{column} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{column} < ?")
        args.append(until)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def _sum(db: Connection, table: str, day: str, key: str, since: int | None, until: int | None) -> list[DayUsage]:
    where, args = _range(key, since, until)
    sums = ", ".join(f"sum({c})" for c in PERIOD_ROLLUP_TOKENS)
    rows = db.execute(
        f"SELECT {day}, provider, model, first_attempt, succeeded, tier, sum(attempts), {sums}"
        f" FROM {table}{where} GROUP BY 1, 2, 3, 4, 5, 6",
        args,
    ).fetchall()
    return [DayUsage(r[0], r[1], r[2], bool(r[3]), bool(r[4]), r[6], tuple(r[7:]), r[5]) for r in rows]


def usage_by_day(db: Connection, since_hour: int | None, until_hour: int | None) -> list[DayUsage]:
    """Usage of the batches that ended in [since_hour, until_hour), summed per UTC day:
    whole days from `usage_daily`, the hours of a partial first or last day from
    `usage_hourly` (at most 23 hours each end), so a year costs 365 keys, not 8,760."""
    first_day = None if since_hour is None else -(-since_hour // HOURS_A_DAY)  # the first whole day
    end_day = None if until_hour is None else until_hour // HOURS_A_DAY  # the day after the last whole day
    if first_day is not None and end_day is not None and first_day >= end_day:  # no whole day inside
        return _sum(db, "usage_hourly", f"hour / {HOURS_A_DAY}", "hour", since_hour, until_hour)
    rows = _sum(db, "usage_daily", "day", "day", first_day, end_day)
    if first_day is not None and since_hour is not None and since_hour < first_day * HOURS_A_DAY:
        rows += _sum(db, "usage_hourly", f"hour / {HOURS_A_DAY}", "hour", since_hour, first_day * HOURS_A_DAY)
    if end_day is not None and until_hour is not None and until_hour > end_day * HOURS_A_DAY:
        rows += _sum(db, "usage_hourly", f"hour / {HOURS_A_DAY}", "hour", end_day * HOURS_A_DAY, until_hour)
    return rows


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


def _bytewise(db: Connection) -> str:
    """A text ORDER BY key's collation: byte order, as SQLite's BINARY (a PostgreSQL
    database's default collation may be a language's, which orders `-`, `_` and case
    otherwise: the same rows would come in another order)."""
    return ' COLLATE "C"' if db.dialect == "postgresql" else ""


def ended_batches(db: Connection, since: float | None, until: float | None) -> list[EndedBatches]:
    """Per provider x model, the batches whose results are in the rollups and that ended
    in [since, until): how many, how long they took, the first and last end."""
    where, args = _range("ended_at", since, until)
    where = (where + " AND" if where else " WHERE") + " ended_at IS NOT NULL"
    rows = db.execute(
        "SELECT provider, model, count(*), count(provider_created_at),"
        " coalesce(sum(CASE WHEN ended_at - provider_created_at > 0 THEN ended_at - provider_created_at"
        " WHEN provider_created_at IS NOT NULL THEN 0 END), 0), min(ended_at), max(ended_at)"
        f" FROM batches{where} AND ingested_at IS NOT NULL AND provider_batch_id IS NOT NULL"
        f" GROUP BY provider, model ORDER BY provider{_bytewise(db)}, model{_bytewise(db)}",
        args,
    ).fetchall()
    return [EndedBatches(*r) for r in rows]
