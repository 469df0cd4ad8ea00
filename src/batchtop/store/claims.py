"""A buffer's open range claims: requests an intent holds without a row of their own.

A flush claims a buffer's fresh requests as one id range (`batches.claim_lo` ..
`claim_hi`, see the `_claim_request_ranges` migration): nothing is written per
request until the provider has the batch. Until then those requests keep their
`queued` row, so every reader of queued rows (the next flush, a buffer's oldest
request or earliest deadline) leaves these ranges out. A buffer has a handful of
open claims at most: one while its batch uploads, or a few left by a crash until
reconcile settles them.
"""

from __future__ import annotations

from batchtop.providers.base import SUBMITTING, UNKNOWN
from batchtop.store.db import Connection

OPEN_CLAIM = f"claim_hi IS NOT NULL AND status IN ('{SUBMITTING}', '{UNKNOWN}')"
"""A batch whose range may still be only a claim: the WHERE of the
`batches_open_claims` index, word for word, so the planner uses it. It is one only
without a provider batch (recording one changes the status in the same statement,
but a status is what a provider says): readers check `provider_batch_id` apart, as
a `provider_batch_id IS NULL` term sends SQLite's planner to that column's UNIQUE
index, which holds every batch never submitted."""


def open_claims(db: Connection, buffer_id: int) -> list[tuple[int, int]]:
    """(lo, hi) of the buffer's open claims, in id order."""
    return [
        (int(lo), int(hi))
        for lo, hi, remote in db.execute(
            f"SELECT claim_lo, claim_hi, provider_batch_id FROM batches WHERE buffer_id = ? AND {OPEN_CLAIM}"
            " ORDER BY claim_lo",
            (buffer_id,),
        )
        if remote is None
    ]


def outside(ranges: list[tuple[int, int]], column: str = "id") -> tuple[str, list[int]]:
    """A SQL condition (with its parameters) true for ids in none of `ranges`:
    `" AND NOT (id BETWEEN ? AND ?)"` once per range, or nothing."""
    sql = "".join(f" AND NOT ({column} BETWEEN ? AND ?)" for _ in ranges)
    return sql, [bound for pair in ranges for bound in pair]
