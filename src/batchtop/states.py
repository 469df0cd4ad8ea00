"""The lifecycle's states, one definition each, for every layer.

A leaf module (it imports nothing of batchtop), so the providers, the store, the
engine and the views all name the same members instead of spelling out strings.
The values are exactly the strings stored in the database and printed in the CLI
contract (shared/cli.md): a `StrEnum` member *is* its string, so it compares equal
to what a query returns and binds as a SQL parameter unchanged.

SQL text inside `batchtop.store` may still hold the literals (a partial index's
WHERE needs the literal to apply); Python code compares with these members.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    """A batch's normalized status (`batches.status`)."""

    SUBMITTING = "submitting"
    """Recorded locally (the durable intent); not known to exist at the provider yet."""
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    """More than one provider batch could be this submission: the operator decides."""


ENDED: frozenset[BatchStatus] = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
"""Statuses after which the provider changes nothing more: results can be ingested."""
RUNNING: frozenset[BatchStatus] = frozenset(
    {BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING}
)


class RequestState(StrEnum):
    """A request's state (`requests.state`):
    queued -> submitting -> in_flight -> succeeded | failed | cancelled | expired,
    then queued again for a new attempt, or dead after max_attempts."""

    QUEUED = "queued"
    SUBMITTING = "submitting"
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEAD = "dead"


FINAL: frozenset[RequestState] = frozenset({RequestState.SUCCEEDED, RequestState.DEAD})
"""A request in one of these has ended for good: its custom_id may be enqueued again."""


class Outcome(StrEnum):
    """An attempt's outcome (`attempts.outcome`, `ResultLine.outcome`)."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    MISSING = "missing"
    """The batch ended without a result line for the request."""
    INVALID_OUTPUT = "invalid_output"
    """The provider answered, but the output failed the buffer's validation rule."""
    LOST = "lost"
    """The provider no longer knows the batch (404)."""
