"""Alerts the engine raises from what it saw at a provider, beside the ones the status
derives from counters (failure rate, dead letters, unknown submissions).

- `quota`: a provider said the account is out of quota or credit; its buffers are
  held. Kept in `engine_state` until an ingest of that provider succeeds again.
- `lost_batch`: a batch the provider answers 404 for; derived from the batches table
  while its requests still wait for the operator's `batchtop resubmit`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchtop.store import events
from batchtop.store.store import Store

if TYPE_CHECKING:
    from batchtop.store.db import Connection

QUOTA = "quota"
LOST_BATCH = "lost_batch"
MAX_LISTED = 10
"""Lost batches named one by one; more are counted in one more alert."""


@dataclass(frozen=True)
class Alert:
    """One alert of the status document: its kind, the sentence shown, and what it is
    about where that is one provider, one batch or one webhook receiver."""

    kind: str
    message: str
    provider: str | None = None
    batch_id: str | None = None
    webhook: str | None = None

    def to_json(self) -> dict[str, Any]:
        """`{kind, [provider], [batch_id], [webhook], message}`: what it is about only when known."""
        doc: dict[str, Any] = {"kind": self.kind}
        for name in ("provider", "batch_id", "webhook"):
            if (value := getattr(self, name)) is not None:
                doc[name] = value
        doc["message"] = self.message
        return doc


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


def _lost(db: Connection) -> list[Alert]:
    rows = db.execute(
        "SELECT b.provider_batch_id, b.provider, b.model, count(r.id) FROM batches b"
        " JOIN attempts a ON a.batch_id = b.id JOIN requests r ON r.id = a.request_id"
        " WHERE b.lost_at IS NOT NULL AND a.number = r.attempts AND r.state = 'failed'"
        " GROUP BY b.id ORDER BY b.lost_at, b.id"
    ).fetchall()
    alerts = [
        Alert(
            LOST_BATCH,
            f"batch {batch_id} ({provider} {model}) was lost at the provider (404):"
            f" {n} request{'s' if n != 1 else ''} wait for `batchtop resubmit {batch_id}`",
            provider=provider,
            batch_id=batch_id,
        )
        for batch_id, provider, model, n in rows[:MAX_LISTED]
    ]
    if len(rows) > MAX_LISTED:
        alerts.append(Alert(LOST_BATCH, f"... and {len(rows) - MAX_LISTED} more lost batches"))
    return alerts


def _bytewise(db: Connection) -> str:
    """A text ORDER BY key's collation: byte order, as SQLite's BINARY (a PostgreSQL
    database's default collation may be a language's, which orders `-`, `_` and case
    otherwise: the same rows would come in another order)."""
    return ' COLLATE "C"' if db.dialect == "postgresql" else ""


def engine_alerts(db: Connection) -> list[Alert]:
    """The engine's alerts, as the status document lists them."""
    raised = [
        json.loads(value)
        for (value,) in db.execute(f"SELECT value FROM engine_state WHERE key LIKE 'alert:%' ORDER BY key{_bytewise(db)}")
    ]
    alerts = [Alert(a["kind"], a["message"], provider=a.get("provider")) for a in raised]
    return alerts + _lost(db)
