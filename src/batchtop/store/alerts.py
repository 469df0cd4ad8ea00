"""Alerts the engine raises from what it saw at a provider, beside the ones the status
derives from counters (failure rate, dead letters, unknown submissions).

- `quota`: a provider said the account is out of quota or credit; its buffers are
  held. Kept in `engine_state` until an ingest of that provider succeeds again.
- `lost_batch`: a batch the provider answers 404 for; derived from the batches table
  while its requests still wait for the operator's `batchtop resubmit`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from batchtop.store import events
from batchtop.store.store import Store

QUOTA = "quota"
LOST_BATCH = "lost_batch"
MAX_LISTED = 10
"""Lost batches named one by one; more are counted in one more alert."""


def _key(kind: str, scope: str) -> str:
    return f"alert:{kind}:{scope}"


def raise_alert(store: Store, kind: str, provider: str, message: str, now: float) -> None:
    """Raise (or refresh) an alert of this kind for this provider; the first time stays."""
    value = {"kind": kind, "provider": provider, "message": message, "at": now}
    with store.transaction() as db:
        row = db.execute("SELECT value FROM engine_state WHERE key = ?", (_key(kind, provider),)).fetchone()
        if row is not None:
            value["at"] = json.loads(row[0]).get("at", now)
        else:
            events.record_alert(db, kind, message, now, provider=provider)
        db.execute(
            "INSERT INTO engine_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (_key(kind, provider), json.dumps(value)),
        )


def clear_alert(store: Store, kind: str, provider: str) -> None:
    key = _key(kind, provider)
    if store.db.execute("SELECT 1 FROM engine_state WHERE key = ?", (key,)).fetchone() is None:
        return  # the common case: no write transaction for nothing
    with store.transaction() as db:
        db.execute("DELETE FROM engine_state WHERE key = ?", (key,))


def _lost(db: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = db.execute(
        "SELECT b.provider_batch_id, b.provider, b.model, count(r.id) FROM batches b"
        " JOIN attempts a ON a.batch_id = b.id JOIN requests r ON r.id = a.request_id"
        " WHERE b.lost_at IS NOT NULL AND a.number = r.attempts AND r.state = 'failed'"
        " GROUP BY b.id ORDER BY b.lost_at, b.id"
    ).fetchall()
    alerts = [
        {
            "kind": LOST_BATCH,
            "provider": provider,
            "batch_id": batch_id,
            "message": f"batch {batch_id} ({provider} {model}) was lost at the provider (404):"
            f" {n} request{'s' if n != 1 else ''} wait for `batchtop resubmit {batch_id}`",
        }
        for batch_id, provider, model, n in rows[:MAX_LISTED]
    ]
    if len(rows) > MAX_LISTED:
        alerts.append({"kind": LOST_BATCH, "message": f"... and {len(rows) - MAX_LISTED} more lost batches"})
    return alerts


def engine_alerts(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The engine's alerts, as the status document lists them ({kind, message, ...})."""
    raised = [
        json.loads(value)
        for (value,) in db.execute("SELECT value FROM engine_state WHERE key LIKE 'alert:%' ORDER BY key")
    ]
    alerts = [{"kind": a["kind"], "provider": a.get("provider"), "message": a["message"]} for a in raised]
    return alerts + _lost(db)
