"""When a buffer is due: pure arithmetic over the flush policy."""

from __future__ import annotations

from batchtop.config import FlushPolicy
from batchtop.engine.policy import BATCH_WINDOW, flush_due_at


def due(policy: FlushPolicy, **kw: object) -> float | None:
    args = {"queued": 10, "queued_bytes": 1000, "oldest_enqueued_at": 1000.0, "earliest_deadline": None,
            "flush_requested_at": None, **kw}
    return flush_due_at(policy, **args)  # type: ignore[arg-type]


def test_age_size_deadline_and_force() -> None:
    p = FlushPolicy(max_age=600, max_requests=100, max_bytes=10_000, deadline_margin=3600)
    assert due(p) == 1600.0
    assert due(p, queued=0) is None
    assert due(p, queued=100) == 1000.0  # a full batch goes at once
    assert due(p, queued_bytes=10_000) == 1000.0
    deadline = 1000.0 + BATCH_WINDOW + 3600 + 300  # must be submitted 24h + margin before
    assert due(p, earliest_deadline=deadline) == 1300.0
    assert due(p, flush_requested_at=1100.0) == 1100.0


def test_min_requests_holds_a_small_buffer_unless_a_deadline_or_a_flush_says_otherwise() -> None:
    p = FlushPolicy(max_age=600, min_requests=50)
    assert due(p) is None
    assert due(p, flush_requested_at=1200.0) == 1200.0
    assert due(p, earliest_deadline=1000.0 + BATCH_WINDOW + 2 * 3600 + 60) == 1060.0
    assert due(p, queued=50) == 1600.0
