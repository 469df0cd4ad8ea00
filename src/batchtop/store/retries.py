"""What became of a batch's failed requests after it: for a resubmit that finds
nothing left to do, so the console can say the engine already retried them."""

from __future__ import annotations

from dataclasses import dataclass, field

from batchtop.store.db import Connection


@dataclass(frozen=True)
class Fates:
    failed: int
    """Attempts in this batch that did not succeed."""
    retried: dict[str, int] = field(default_factory=dict)
    """Of those requests, the ones tried again in a later attempt, by their state now
    (succeeded, queued, submitted, failed, dead…)."""


def failure_fates(db: Connection, provider_batch_id: str) -> Fates:
    """The batch's failed attempts and, for the requests tried again since, where they
    stand now. Reads only the batch's non-succeeded attempts (their index)."""
    rows = db.execute(
        "SELECT r.state, a.number < r.attempts AS later, count(*) FROM batches b"
        " JOIN attempts a ON a.batch_id = b.id JOIN requests r ON r.id = a.request_id"
        " WHERE b.provider_batch_id = ? AND a.outcome IS NOT NULL AND a.outcome != 'succeeded'"
        " GROUP BY r.state, later",
        (provider_batch_id,),
    ).fetchall()
    retried: dict[str, int] = {}
    for state, later, n in rows:
        if later:
            retried[state] = retried.get(state, 0) + int(n)
    return Fates(failed=sum(int(n) for _, _, n in rows), retried=retried)
