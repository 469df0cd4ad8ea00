"""Batch timelines computed from the clock on each access.

No background tasks: a batch's phase, how many requests are done and its
timestamps are a pure function of its creation time, its timing snapshot,
the time a cancel or forced expiry was requested, and "now".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import SimConfig

# Phases use OpenAI's names; Anthropic maps them onto in_progress/canceling/ended.
VALIDATING = "validating"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
CANCELLING = "cancelling"
CANCELLED = "cancelled"

STALLED_S = 1e9
"""Validation time of a stalled batch: longer than any window, so it never starts."""

TERMINAL = frozenset({COMPLETED, FAILED, EXPIRED, CANCELLED})
RUNNING = frozenset({VALIDATING, IN_PROGRESS, FINALIZING})


@dataclass(frozen=True, slots=True)
class Timing:
    """Timing knobs captured when a batch is created."""

    validate_s: float
    per_request_s: float
    finalize_s: float
    cancel_s: float
    window_s: float

    @classmethod
    def from_config(cls, cfg: SimConfig) -> Timing:
        if cfg.stall:  # issue 15: a batch that never progresses (work never starts)
            return cls(STALLED_S, cfg.per_request_s, cfg.finalize_s, cfg.cancel_s, cfg.window_s)
        return cls(cfg.validate_s, cfg.per_request_s, cfg.finalize_s, cfg.cancel_s, cfg.window_s)


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a batch stands at one instant."""

    phase: str
    done: int
    """Requests whose result is known (they ran, successfully or not)."""
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None

    @property
    def ended_at(self) -> float | None:
        """When the batch reached its terminal phase, if it has."""
        return self.completed_at or self.failed_at or self.expired_at or self.cancelled_at


def _done_at(t: float, start: float, n: int, per_request_s: float) -> int:
    if t < start:
        return 0
    if per_request_s <= 0:
        return n
    return min(n, math.floor((t - start) / per_request_s + 1e-9))


def progress(
    created: float,
    n: int,
    timing: Timing,
    now: float,
    *,
    invalid: bool = False,
    cancel_at: float | None = None,
    expire_at: float | None = None,
) -> Progress:
    """Compute the phase at ``now``.

    ``invalid`` batches fail when validation ends. A cancel freezes progress at
    ``cancel_at``; the window (or a forced ``expire_at``) cuts off whatever has
    not completed by then. Both are only ever recorded while the batch runs.
    """
    start = created + timing.validate_s
    all_done = start + n * max(timing.per_request_s, 0.0)
    complete = all_done + timing.finalize_s
    expiry = created + timing.window_s
    if expire_at is not None:
        expiry = min(expiry, expire_at)
    if invalid:
        complete = start

    def reached(t: float, limit: float) -> float | None:
        return t if t <= limit else None

    if cancel_at is not None:
        done = 0 if invalid else _done_at(cancel_at, start, n, timing.per_request_s)
        stamps = dict(
            in_progress_at=None if invalid else reached(start, cancel_at),
            finalizing_at=None if invalid or n == 0 else reached(all_done, cancel_at),
            cancelling_at=cancel_at,
        )
        if now < cancel_at + timing.cancel_s:
            return Progress(CANCELLING, done, **stamps)
        return Progress(CANCELLED, done, cancelled_at=cancel_at + timing.cancel_s, **stamps)

    if expiry < complete and now >= expiry:
        return Progress(
            EXPIRED,
            _done_at(expiry, start, n, timing.per_request_s),
            in_progress_at=reached(start, expiry),
            finalizing_at=reached(all_done, expiry),
            expired_at=expiry,
        )
    if now < start:
        return Progress(VALIDATING, 0)
    if invalid:
        return Progress(FAILED, 0, failed_at=start)
    done = _done_at(now, start, n, timing.per_request_s)
    if now < all_done:
        return Progress(IN_PROGRESS, done, in_progress_at=start)
    if now < complete:
        return Progress(FINALIZING, n, in_progress_at=start, finalizing_at=all_done)
    return Progress(COMPLETED, n, in_progress_at=start, finalizing_at=all_done, completed_at=complete)
