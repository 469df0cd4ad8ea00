"""Which lane a request takes, and when a batch will likely end (issue 15). Pure functions.

Lanes, cheapest first: `batch` (batch price, up to the 24 h window), `flex` (OpenAI
`service_tier: "flex"`, batch price, minutes; only where a buffer is configured for
it), `realtime` (the synchronous API at list price). A lane's expected latency is the
p90 of what batchtop observed for that provider and model (submit to end of completed
batches), or the documented worst case without enough history. A request takes the
cheapest lane whose latency fits before its deadline; one no lane can meet (passed,
or `0s`) goes real time, the fastest there is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

BATCH = "batch"
FLEX = "flex"
REALTIME = "realtime"

BATCH_WORST_CASE = 86400.0
"""Both providers document a 24 h completion window: the latency of a batch without history."""
FLEX_WORST_CASE = 900.0
"""OpenAI documents flex answers as slower than the default tier (minutes) and may refuse
them when it has no capacity: 15 minutes is the figure planned with."""
MIN_HISTORY = 3
"""Completed batches of a model needed before their p90 replaces the worst case."""
STUCK_HISTORY = 5
"""Completed batches needed before history alone may call a batch stuck."""
STUCK_FACTOR = 3.0
"""Without `alerts.stuck_after`, a batch is stuck once it has run this many times the
longest observed duration (and never before the 24 h window with too little history)."""


def p90(values: Sequence[float]) -> float | None:
    """The 90th percentile (nearest rank), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(0.9 * len(ordered)) - 1))]


def batch_latency(history: Sequence[float]) -> float:
    """Expected submit-to-end seconds of a new batch of this model."""
    observed = p90(history) if len(history) >= MIN_HISTORY else None
    return BATCH_WORST_CASE if observed is None else min(BATCH_WORST_CASE, observed)


def choose_lane(deadline: float | None, now: float, batch_s: float, *, flex: bool, margin: float = 0.0) -> str:
    """The cheapest lane that meets the deadline (`margin`: time before the batch is
    even sent, e.g. the poll interval)."""
    if deadline is None:
        return BATCH
    left = deadline - now
    if left >= batch_s + margin:
        return BATCH
    if flex and left >= FLEX_WORST_CASE:
        return FLEX
    return REALTIME


@dataclass(frozen=True, slots=True)
class BatchEta:
    eta_at: float | None
    """When it will likely end; None when it is stuck (nothing can be said)."""
    stuck: bool
    at_risk: bool
    """Its requests will likely miss their earliest deadline."""
    why: str


def batch_eta(
    *,
    now: float,
    submitted_at: float,
    total: int,
    done: int,
    history: Sequence[float],
    deadline_at: float | None,
    stuck_after: float | None,
) -> BatchEta:
    """ETA from the batch's own progress (its rate so far), else from history (p90),
    else the 24 h worst case; stuck past `stuck_after`, or without it past what
    history makes unlikely."""
    elapsed = max(0.0, now - submitted_at)
    if stuck_after is not None:
        stuck = elapsed > stuck_after and done < total
    elif len(history) >= STUCK_HISTORY:
        stuck = elapsed > STUCK_FACTOR * max(history) and done < total
    else:
        stuck = elapsed > BATCH_WORST_CASE and done < total
    if stuck:
        return BatchEta(None, True, deadline_at is not None, f"not ended after {elapsed:.0f}s")
    if 0 < done < total and elapsed > 0:
        eta = now + (total - done) * elapsed / done
        why = f"{done} of {total} done in {elapsed:.0f}s"
    else:
        eta = submitted_at + batch_latency(history)
        why = "p90 of history" if len(history) >= MIN_HISTORY else "documented 24 h worst case"
        eta = max(eta, now)
    risk = deadline_at is not None and eta > deadline_at
    return BatchEta(eta, False, risk, why)
