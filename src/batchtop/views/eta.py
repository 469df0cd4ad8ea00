"""`batches[].eta_at` / `deadline_at` and the lanes line of the status (issue 15).

Kept apart from `views.status` so the status document gains these keys in one call:
the ETA is the engine's own (`engine.lanes.batch_eta`, from the batch's progress and
the model's observed durations), so the console, `--once` and the alerts agree.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from batchtop.config import Config
from batchtop.engine.lanes import batch_eta
from batchtop.pricing.money import fmt_usd
from batchtop.timefmt import iso

_OPEN = ("submitting", "validating", "in_progress", "finalizing", "cancelling", "unknown")


def add_eta(db: sqlite3.Connection, config: Config, batches: list[dict[str, Any]], now: float) -> None:
    """Give every `batches[]` entry `eta_at` (null once ended, or stuck) and `deadline_at`."""
    from batchtop.store import realtime as rt

    if not rt.has_lanes(db):
        for b in batches:
            b.setdefault("eta_at", None)
            b.setdefault("deadline_at", None)
        return
    ids = {
        pid: (local, submitted)
        for pid, local, submitted in db.execute(
            "SELECT provider_batch_id, id, coalesce(submitted_at, created_at) FROM batches WHERE provider_batch_id IN (%s)"
            % ",".join("?" * len(batches)),
            [b["id"] for b in batches],
        )
    } if batches else {}
    deadlines = rt.deadlines_of(db, [v[0] for v in ids.values()])
    history: dict[tuple[str, str], list[float]] = {}
    for b in batches:
        local, submitted = ids.get(b["id"], (None, None))
        deadline = deadlines.get(local) if local is not None else None
        b["deadline_at"] = iso(deadline)
        b["eta_at"] = None
        if local is None or b.get("status") not in _OPEN or b.get("ended_at"):
            continue
        key = (b["provider"], b["model"])
        if key not in history:
            history[key] = rt.durations(db, *key)
        eta = batch_eta(
            now=now, submitted_at=submitted, total=int(b.get("total") or 0),
            done=int(b.get("succeeded") or 0) + int(b.get("failed") or 0), history=history[key],
            deadline_at=deadline, stuck_after=config.alerts.stuck_after,
        )
        b["eta_at"] = iso(eta.eta_at)


def add_buffer_tiers(db: sqlite3.Connection, buffers: list[dict[str, Any]]) -> None:
    """`buffers[].deadline_tier`: the tier of the request behind `earliest_deadline`
    (null when it has none), one index seek per buffer (`requests_deadline`)."""
    from batchtop.store import realtime as rt

    for b in buffers:
        b["deadline_tier"] = None
        if b.get("earliest_deadline") is None or not rt.has_lanes(db):
            continue
        b["deadline_tier"] = rt.most_urgent_tier(db, b["provider"], b["endpoint"], b["model"])


def lanes_summary(db: sqlite3.Connection, doc: dict[str, Any]) -> dict[str, Any]:
    """Requests served per lane: `batch` (succeeded in batches), `flex`, `realtime`, and
    what real time spent (at list price) — the console's lanes line."""
    from batchtop.store import realtime as rt

    flex = realtime = 0
    spent: float | None = 0.0
    for u in rt.lane_usage(db):
        if u.lane == rt.FLEX:
            flex += u.succeeded
        else:
            realtime += u.succeeded
            spent = None if spent is None or u.spent_usd is None else spent + u.spent_usd
    succeeded = int(doc.get("savings", {}).get("total", {}).get("requests_succeeded") or 0)
    return {"batch": max(0, succeeded - flex - realtime), "flex": flex, "realtime": realtime, "realtime_spent_usd": spent}


def lanes_line(lanes: dict[str, Any]) -> str:
    """"batch 9,812 · flex 0 · real time 188 ($0.41 at full price)"."""
    money = fmt_usd(lanes.get("realtime_spent_usd")) if lanes.get("realtime_spent_usd") is not None else "price unknown"
    return (
        f"batch {lanes.get('batch', 0):,} · flex {lanes.get('flex', 0):,} · real time {lanes.get('realtime', 0):,}"
        f" ({money} at full price)"
    )
