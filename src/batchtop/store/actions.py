"""The operator's actions as durable writes: flush, resubmit, cancel.

Any process may make them (the CLI, the console, a console attached as a viewer);
the engine that holds the data dir carries out what needs a provider call on its
next tick, so an action is never lost when the process that asked goes away.
"""

from __future__ import annotations

from batchtop.errors import BatchtopError
from batchtop.states import ENDED, RequestState
from batchtop.store import events
from batchtop.store.lifecycle import clear_provider_backoff
from batchtop.store.store import Store


def find_buffer(store: Store, name: str) -> int:
    """A buffer by `provider:endpoint:model`, or by model when that is unambiguous."""
    rows = store.db.execute(
        "SELECT id FROM buffers WHERE provider || ':' || endpoint || ':' || model = ? OR model = ?", (name, name)
    ).fetchall()
    if len(rows) != 1:
        known = ", ".join(
            f"{p}:{e}:{m}" for p, e, m in store.db.execute("SELECT provider, endpoint, model FROM buffers ORDER BY 1, 3")
        )
        what = "no buffer" if not rows else "more than one buffer"
        raise BatchtopError(f"{what} named {name!r} (buffers: {known or 'none yet'})")
    return int(rows[0][0])


def request_flush(store: Store, buffer_id: int | None, now: float) -> int:
    """Mark one buffer (or every non-empty one) to be flushed on the next tick, even
    if it or its provider was backing off; returns how many requests that covers."""
    with store.transaction() as db:
        where = "queued > 0" + ("" if buffer_id is None else " AND id = ?")
        args: tuple = () if buffer_id is None else (buffer_id,)
        (n,) = db.execute(f"SELECT coalesce(sum(queued), 0) FROM buffers WHERE {where}", args).fetchone()
        db.execute(f"UPDATE buffers SET flush_requested_at = ?, retry_at = NULL WHERE {where}", (now, *args))
        # the operator's word overrides a provider backoff too: the next tick tries now
        clear_provider_backoff(db)
    return int(n)


def _batch(store: Store, provider_batch_id: str) -> tuple[int, str, int | None]:
    row = store.db.execute(
        "SELECT id, status, ingested_at FROM batches WHERE provider_batch_id = ?", (provider_batch_id,)
    ).fetchone()
    if row is None:
        raise BatchtopError(f"no batch {provider_batch_id!r} in this data dir")
    return row


def resubmit(store: Store, provider_batch_id: str, now: float) -> int:
    """Put the batch's failed, expired and cancelled requests (dead letters too: the
    operator asked) back for a new attempt now; returns how many are waiting."""
    batch_id, status, ingested = _batch(store, provider_batch_id)
    if ingested is None:
        raise BatchtopError(f"batch {provider_batch_id} has not ended and been ingested yet ({status})")
    with store.transaction() as db:
        rows = db.execute(
            "SELECT r.id, r.buffer_id, r.bytes, r.state FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE a.batch_id = ? AND a.outcome != 'succeeded' AND a.number = r.attempts"
            " AND r.state IN ('queued', 'failed', 'expired', 'cancelled', 'dead')"
            " AND NOT EXISTS (SELECT 1 FROM requests o WHERE o.provider = r.provider AND o.custom_id = r.custom_id"
            "   AND o.id != r.id AND o.state NOT IN ('succeeded', 'dead'))",
            (batch_id,),
        ).fetchall()
        added: dict[int, list[int]] = {}
        for _rid, buffer_id, size, state in rows:
            entry = added.setdefault(buffer_id, [0, 0])
            if state != RequestState.QUEUED:
                entry[0] += 1
                entry[1] += size
        db.executemany(
            "UPDATE requests SET state = 'queued' WHERE id = ? AND state != 'queued'", [(r[0],) for r in rows]
        )
        db.executemany(  # queued / queued_bytes rose with the requests' state (a trigger)
            "UPDATE buffers SET flush_requested_at = ?, retry_at = NULL WHERE id = ?", [(now, b) for b in added]
        )
        events.record_resubmitted(db, provider_batch_id, sum(n for n, _ in added.values()), now)
    return len(rows)


def request_cancel(store: Store, provider_batch_id: str, now: float) -> tuple[str, int, int, int]:
    """Ask for a cancel; returns (status, total, succeeded, failed) for the message."""
    batch_id, status, _ = _batch(store, provider_batch_id)
    if status in ENDED:
        raise BatchtopError(f"batch {provider_batch_id} has already ended ({status})")
    with store.transaction() as db:
        db.execute("UPDATE batches SET cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ?", (now, batch_id))
        total, ok, failed = db.execute(
            "SELECT total, succeeded, failed FROM batches WHERE id = ?", (batch_id,)
        ).fetchone()
    return status, total, ok, failed
