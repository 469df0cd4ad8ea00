"""The status document as types: what `views.status.collect` returns and every view reads.

Frozen dataclasses, so a console worker thread can hand one to the UI loop as it is.
Times are unix seconds (float) until a view renders them: `Status.to_json` renders them
as ISO 8601 (the `--once --json` contract of shared/cli.md and status.schema.json), the
console as ages and countdowns. Nothing here reads the store.

Adding a field: declare it on its class (with `metadata=TIME` when it is a time, and a
default so older builders and tests need not name it); `to_json` writes every field in
declaration order, so it appears in the JSON with no other change. A key that is not a
field of its object (a figure derived from another, like `last_poll_at`) is written by
that object's own `to_json`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from batchtop.pricing.inflight import NO_WORK, InFlightEstimate, ModelEstimate
from batchtop.pricing.money import fmt_usd
from batchtop.pricing.savings import NO_SAVINGS, ModelSavings, Savings, SavingsTotal
from batchtop.store.alerts import Alert
from batchtop.timefmt import iso

__all__ = [
    "Alert", "BatchCounts", "BatchStatus", "BufferStatus", "FailureRate", "InFlightEstimate", "Lanes", "ModelEstimate",
    "ModelSavings", "ProviderStatus", "Savings", "SavingsTotal", "Status", "TIME", "empty", "to_json", "whole_second",
]

TIME: Mapping[str, Any] = MappingProxyType({"json": "time"})
"""Field metadata: unix seconds, written to JSON as ISO 8601 UTC to the second."""


def whole_second(ts: float | None) -> float | None:
    """`ts` cut to the second the JSON shows (None when it cannot be shown): what a
    view that counts ages from the document must use to read as the JSON reads."""
    if ts is None or not math.isfinite(ts):
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def to_json(value: Any) -> Any:
    """Any part of the document as JSON data: an object with its own `to_json` by it,
    a dataclass field by field in declaration order (TIME fields as ISO text), tuples
    as lists, mappings as objects."""
    own = getattr(value, "to_json", None)
    if own is not None and not isinstance(value, type):
        return own()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_json(v) for k, v in value.items()}
    return value


class _Json:
    """`to_json` over the fields of a dataclass (the mixin of every class here)."""

    def to_json(self) -> dict[str, Any]:
        return {
            f.name: iso(getattr(self, f.name)) if f.metadata.get("json") == "time" else to_json(getattr(self, f.name))
            for f in fields(self)  # type: ignore[arg-type]
        }


@dataclass(frozen=True)
class BufferStatus(_Json):
    """One buffer with queued requests."""

    name: str
    """`provider:endpoint:model`, the buffer's key."""
    provider: str
    endpoint: str
    model: str
    queued: int
    bytes: int
    oldest_enqueued_at: float | None = field(default=None, metadata=TIME)
    earliest_deadline: float | None = field(default=None, metadata=TIME)
    flush_due_at: float | None = field(default=None, metadata=TIME)
    flush_requested: bool = False
    held_reason: str | None = None
    retry_at: float | None = field(default=None, metadata=TIME)
    deadline_tier: str | None = None
    """The priority tier of the request behind `earliest_deadline` (`enqueue --tier`)."""


@dataclass(frozen=True)
class BatchStatus(_Json):
    """One batch: in flight, or among the most recent ended."""

    id: str
    """The provider's batch id, or `local-N` before it has one."""
    provider: str
    model: str
    status: str
    total: int
    succeeded: int
    failed: int
    created_at: float | None = field(default=None, metadata=TIME)
    """The provider's creation time once known, else ours."""
    ended_at: float | None = field(default=None, metadata=TIME)
    """Set only once the status is an ended one."""
    expires_at: float | None = field(default=None, metadata=TIME)
    endpoint: str = ""
    account: str | None = None
    submission: str | None = None
    ingested: bool = False
    cancel_requested: bool = False
    error: str | None = None
    candidates: tuple[str, ...] = ()
    """Provider batch ids an unknown submission could be."""
    unfinished: int = 0
    """Requests an ingested cancelled or expired batch never ran: not failures."""
    deadline_at: float | None = field(default=None, metadata=TIME)
    """The earliest deadline of its requests."""
    eta_at: float | None = field(default=None, metadata=TIME)
    """When it will likely end, from its progress and the model's observed durations
    (None once ended, or when nothing makes an end likely: stuck)."""

    @property
    def in_flight(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True)
class BatchCounts(_Json):
    """How many batches the store holds (the document lists only the recent ended)."""

    in_flight: int = 0
    ended: int = 0


@dataclass(frozen=True)
class FailureRate(_Json):
    """Attempts that failed within the alert window, of those that ended in it."""

    failed: int = 0
    attempts: int = 0

    @property
    def rate(self) -> float | None:
        return self.failed / self.attempts if self.attempts else None

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "rate": self.rate}


@dataclass(frozen=True)
class ProviderStatus(_Json):
    """The engine's last word on one provider."""

    status: str | None = None
    """"ok", or what went wrong; None before the first poll."""
    polled_at: float | None = field(default=None, metadata=TIME)
    retry_at: float | None = field(default=None, metadata=TIME)
    error: str | None = None


@dataclass(frozen=True)
class Lanes(_Json):
    """Requests served per lane: `batch` (succeeded in batches), `flex` and `realtime`
    (the synchronous lanes), and what real time spent at list price."""

    batch: int = 0
    flex: int = 0
    realtime: int = 0
    realtime_spent_usd: float | None = 0.0

    def line(self) -> str:
        """"batch 9,812 · flex 0 · real time 188 ($0.41 at full price)"."""
        money = fmt_usd(self.realtime_spent_usd) if self.realtime_spent_usd is not None else "price unknown"
        return f"batch {self.batch:,} · flex {self.flex:,} · real time {self.realtime:,} ({money} at full price)"


@dataclass(frozen=True)
class Status:
    """The whole document at `generated_at`."""

    generated_at: float
    buffers: tuple[BufferStatus, ...] = ()
    batches: tuple[BatchStatus, ...] = ()
    """Every batch in flight (newest first), then the most recently ingested."""
    batch_counts: BatchCounts = BatchCounts()
    savings: Savings = NO_SAVINGS
    in_flight_estimate: InFlightEstimate = NO_WORK
    dead_letters: int = 0
    unknown_submissions: int = 0
    anomalies: int = 0
    failure_rate: FailureRate = FailureRate()
    providers: Mapping[str, ProviderStatus] = field(default_factory=lambda: MappingProxyType({}))
    """Provider name -> its status, for every provider the engine has contacted."""
    lanes: Lanes = Lanes()
    alerts: tuple[Alert, ...] = ()

    @property
    def last_poll_at(self) -> float | None:
        """The latest poll of any provider."""
        polls = [p.polled_at for p in self.providers.values() if p.polled_at is not None]
        return max(polls) if polls else None

    @property
    def live_batches(self) -> list[BatchStatus]:
        return [b for b in self.batches if b.in_flight]

    def to_json(self) -> dict[str, Any]:
        """The `--once --json` document of shared/cli.md (status.schema.json)."""
        estimate = self.in_flight_estimate
        return {
            "generated_at": iso(self.generated_at),
            "buffers": to_json(self.buffers),
            "batches": to_json(self.batches),
            "batch_counts": self.batch_counts.to_json(),
            "savings": self.savings.to_json(),
            "in_flight_estimate_usd": estimate.in_flight_usd,
            "queued_estimate_usd": estimate.queued_usd,
            "in_flight_estimate": estimate.to_json(),
            "dead_letters": self.dead_letters,
            "unknown_submissions": self.unknown_submissions,
            "anomalies": self.anomalies,
            "failure_rate": self.failure_rate.to_json(),
            "providers": to_json(self.providers),
            "last_poll_at": iso(self.last_poll_at),
            "lanes": self.lanes.to_json(),
            "alerts": to_json(self.alerts),
        }


def empty(now: float) -> Status:
    """The document for a data dir with no database yet: nothing to show."""
    return Status(now)
