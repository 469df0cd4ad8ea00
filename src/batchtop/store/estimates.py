"""`buffer_estimates`: what the request estimator said of each buffer's requests at enqueue.

Written in the enqueue transaction, read by `pricing.inflight`: the sums only grow
(requests leaving a buffer do not change what its requests are like on average).
"""

from __future__ import annotations

from collections.abc import Iterable

from batchtop.store.db import Connection

ADD = (
    "INSERT INTO buffer_estimates (buffer_id, requests, bytes, input_tokens, capped_output_tokens, uncapped_outputs)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (buffer_id) DO UPDATE SET"
    " requests = buffer_estimates.requests + excluded.requests, bytes = buffer_estimates.bytes + excluded.bytes,"
    " input_tokens = buffer_estimates.input_tokens + excluded.input_tokens,"
    " capped_output_tokens = buffer_estimates.capped_output_tokens + excluded.capped_output_tokens,"
    " uncapped_outputs = buffer_estimates.uncapped_outputs + excluded.uncapped_outputs"
)

COLUMNS = "e.requests, e.bytes, e.input_tokens, e.capped_output_tokens, e.uncapped_outputs"
"""The sums, for a query that joins `buffer_estimates e` (all NULL without a row)."""


def add(db: Connection, rows: Iterable[tuple[int, ...]]) -> None:
    """Add (buffer_id, requests, bytes, input tokens, capped output tokens, uncapped outputs)."""
    db.executemany(ADD, rows)
