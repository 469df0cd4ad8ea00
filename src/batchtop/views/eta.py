"""`batches[].eta_at` / `deadline_at`, buffers' deadline tiers and the lanes line of the status.

Kept apart from `views.status` so the status document gains these in one place: the
ETA is the engine's own (`engine.lanes.batch_eta`, from the batch's progress and the
model's observed durations), so the console, `--once` and the alerts agree. A store
that never used a lane (`realtime.has_lanes` false) pays nothing here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from batchtop.config import Config
from batchtop.engine.lanes import batch_eta
from batchtop.pricing.savings import Savings
from batchtop.store import realtime as rt
from batchtop.views.status_model import BatchStatus, BufferStatus, Lanes

if TYPE_CHECKING:
    from batchtop.store.db import Connection

_OPEN = frozenset({"submitting", "validating", "in_progress", "finalizing", "cancelling", "unknown"})


def with_eta(db: Connection, config: Config, batches: tuple[BatchStatus, ...], now: float) -> tuple[BatchStatus, ...]:
    """Every batch with its `deadline_at` and `eta_at` (None once ended, or stuck)."""
    if not batches or not rt.has_lanes(db):
        return batches
    ids = rt.batch_submissions(db, [b.id for b in batches])
    deadlines = rt.deadlines_of(db, [local for local, _ in ids.values()])
    history: dict[tuple[str, str], list[float]] = {}
    out = []
    for b in batches:
        local, submitted = ids.get(b.id, (None, None))
        deadline = deadlines.get(local) if local is not None else None
        eta_at = None
        if local is not None and submitted is not None and b.status in _OPEN and b.ended_at is None:
            key = (b.provider, b.model)
            if key not in history:
                history[key] = rt.durations(db, *key)
            eta_at = batch_eta(
                now=now, submitted_at=submitted, total=b.total, done=b.succeeded + b.failed, history=history[key],
                deadline_at=deadline, stuck_after=config.alerts.stuck_after,
            ).eta_at
        out.append(replace(b, deadline_at=deadline, eta_at=eta_at))
    return tuple(out)


def with_tiers(db: Connection, buffers: tuple[BufferStatus, ...]) -> tuple[BufferStatus, ...]:
    """Every buffer with `deadline_tier`: the tier of the request behind its earliest
    deadline, one index seek per buffer with one (`requests_deadline`)."""
    if not buffers or not rt.has_lanes(db):
        return buffers
    return tuple(
        replace(b, deadline_tier=rt.most_urgent_tier(db, b.provider, b.endpoint, b.model))
        if b.earliest_deadline is not None else b
        for b in buffers
    )


def lanes_summary(db: Connection, savings: Savings) -> Lanes:
    """Requests served per lane: `batch` (succeeded in batches), `flex`, `realtime`, and
    what real time spent (at list price): the console's lanes line."""
    if not rt.has_lanes(db):
        return Lanes(batch=savings.total.requests_succeeded)
    flex = realtime = 0
    spent: float | None = 0.0
    for u in rt.lane_usage(db):
        if u.lane == rt.FLEX:
            flex += u.succeeded
        else:
            realtime += u.succeeded
            spent = None if spent is None or u.spent_usd is None else spent + u.spent_usd
    succeeded = savings.total.requests_succeeded
    return Lanes(batch=max(0, succeeded - flex - realtime), flex=flex, realtime=realtime, realtime_spent_usd=spent)
