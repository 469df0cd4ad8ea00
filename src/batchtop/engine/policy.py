"""The flush policy as pure arithmetic: when is a buffer due?

A batch may take its whole 24 h window, so a request with a deadline must be
submitted by `deadline - 24h - margin`.
"""

from __future__ import annotations

from batchtop.config import FlushPolicy

BATCH_WINDOW = 24 * 3600.0


def flush_due_at(
    policy: FlushPolicy,
    *,
    queued: int,
    queued_bytes: int,
    oldest_enqueued_at: float | None,
    earliest_deadline: float | None,
    flush_requested_at: float | None,
) -> float | None:
    """Unix time at which the buffer should be flushed; None when it is empty."""
    if queued <= 0 or oldest_enqueued_at is None:
        return None
    # below min_requests age alone does not flush (no tiny batches); a deadline or a
    # forced flush still does
    due = oldest_enqueued_at + policy.max_age if queued >= policy.min_requests else float("inf")
    if earliest_deadline is not None:
        due = min(due, earliest_deadline - BATCH_WINDOW - policy.deadline_margin)
    if flush_requested_at is not None:
        due = min(due, flush_requested_at)
    if queued >= policy.max_requests or queued_bytes >= policy.max_bytes:
        due = min(due, oldest_enqueued_at)  # a full batch is ready: no reason to wait
    return None if due == float("inf") else due
