"""The event log: what the engine did, as rows a script or a webhook can follow.

Every `record_*` here runs inside the caller's transaction, the one that makes the
change, so an event exists exactly when its change was committed: a crash loses
neither, and a rolled-back change leaves no event behind. Events are data: provider
text in them (batch ids, alert messages) is kept as it came and cleaned only where it
is displayed; nothing secret is ever put in one (keys, URLs of receivers).

The webhook bookkeeping (`webhook_state`) is here too, so all SQL stays in the store;
`batchtop.integrations.webhooks` decides what to do with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from batchtop.states import ENDED as BATCH_ENDED
from batchtop.states import BatchStatus
from batchtop.timefmt import iso

if TYPE_CHECKING:
    from batchtop.store.db import Connection

SUBMITTED = "submitted"
ENDED = "ended"
INGESTED = "ingested"
RESUBMITTED = "resubmitted"
DEAD_LETTER = "dead_letter"
ALERT = "alert"
CANCELLED = "cancelled"
KINDS = (SUBMITTED, ENDED, INGESTED, RESUBMITTED, DEAD_LETTER, ALERT, CANCELLED)

_ENDED_STATUSES = tuple(sorted(BATCH_ENDED))
"""`batchtop.states.ENDED` as SQL parameters, in a fixed order."""


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    provider: str | None
    batch_id: str | None
    counts: dict[str, int]
    detail: dict[str, Any]

    def document(self) -> dict[str, Any]:
        """The event as `batchtop events` prints it and webhooks receive it."""
        return {
            "id": self.id,
            "at": iso(self.at),
            "kind": self.kind,
            "provider": self.provider,
            "batch_id": self.batch_id,
            "counts": self.counts,
            **{k: v for k, v in self.detail.items() if k not in _CORE},
        }


_CORE = {"id", "at", "kind", "provider", "batch_id", "counts"}


def record(
    db: Connection,
    kind: str,
    *,
    at: float,
    provider: str | None,
    batch_id: str | None,
    counts: dict[str, int],
    **detail: Any,
) -> None:
    """Append one event (inside the caller's transaction)."""
    db.execute(
        "INSERT INTO events (at, kind, provider, batch_id, counts, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at, kind, provider, batch_id, json.dumps(counts), json.dumps(detail) if detail else None),
    )


_BATCH_COLUMNS = ("total", "bytes", "succeeded", "failed")
"""The batch row's counters an event's `counts` may take."""


def _compact(value: dict[str, Any]) -> str:
    """JSON as SQLite's json_object writes it (no spaces): the stored text stays what
    it was when these objects were built in SQL."""
    return json.dumps(value, separators=(",", ":"))


def _record_batch(
    db: Connection, kind: str, local_id: int, now: float, counts: dict[str, str | int], **detail: Any
) -> None:
    """An event about one batch, its provider, id, model and endpoint read from its row;
    each of `counts` is a number, or the name of one of the row's counters (`_BATCH_COLUMNS`).
    Built here rather than in SQL, as the two databases' JSON functions differ: `detail`
    follows the model and endpoint, a None in it leaves the key out (json_patch did so)."""
    row = db.execute(
        f"SELECT provider, provider_batch_id, model, endpoint, {', '.join(_BATCH_COLUMNS)} FROM batches WHERE id = ?",
        (local_id,),
    ).fetchone()
    if row is None:
        return
    provider, batch_id, model, endpoint, *numbers = row
    columns = dict(zip(_BATCH_COLUMNS, numbers))
    counted = {k: columns[v] if isinstance(v, str) else int(v) for k, v in counts.items()}
    merged = {"model": model, "endpoint": endpoint}
    for key, value in detail.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    db.execute(
        "INSERT INTO events (at, kind, provider, batch_id, counts, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (now, kind, provider, batch_id, _compact(counted), _compact(merged)),
    )


def _ended_counts(succeeded: int, failed: int) -> dict[str, str | int]:
    return {"total": "total", "succeeded": int(succeeded), "failed": int(failed)}


_ROW_COUNTS: dict[str, str | int] = {"total": "total", "succeeded": "succeeded", "failed": "failed"}


def record_submitted(db: Connection, local_id: int, now: float, succeeded: int = 0, failed: int = 0) -> None:
    """After the batch row took the provider's batch (sent, or adopted after a crash or
    by the operator). One adopted after it had already ended is never polled again: its
    `ended` is logged here, with the provider's counts."""
    _record_batch(db, SUBMITTED, local_id, now, {"requests": "total", "bytes": "bytes"})
    row = db.execute("SELECT status FROM batches WHERE id = ?", (local_id,)).fetchone()
    if row is not None and row[0] in _ENDED_STATUSES:
        _record_batch(db, ENDED, local_id, now, _ended_counts(succeeded, failed), status=row[0])


def record_polled(
    db: Connection, local_id: int, status: str, succeeded: int, failed: int, now: float, *, cancelled: bool = False
) -> None:
    """Before a poll's (or a cancel's) update of the batch row: `ended` when it shows
    the batch ended for the first time, `cancelled` when batchtop's cancel was carried
    out at the provider."""
    counts = _ended_counts(succeeded, failed)
    if cancelled:
        _record_batch(db, CANCELLED, local_id, now, counts, status=status)
    if status in _ENDED_STATUSES:
        marks = ", ".join("?" * len(_ENDED_STATUSES))
        (was_open,) = db.execute(
            f"SELECT count(*) FROM batches WHERE id = ? AND status NOT IN ({marks})", (local_id, *_ENDED_STATUSES)
        ).fetchone()
        if was_open:
            _record_batch(db, ENDED, local_id, now, counts, status=status)


def record_lost(db: Connection, local_id: int, reason: str, now: float) -> None:
    """The provider no longer knows the batch: it ended (failed), and an alert says so."""
    _record_batch(db, ENDED, local_id, now, _ROW_COUNTS, status=BatchStatus.FAILED, lost=True)
    _record_batch(db, ALERT, local_id, now, {}, alert="lost_batch", message=reason)


def record_ingested(db: Connection, local_id: int, now: float) -> None:
    """After the batch row was marked ingested: `ingested` with its succeeded and failed,
    then what became of its failures: `resubmitted` (queued again for a new attempt)
    and `dead_letter` (attempts used up, or refused by the provider), each only when
    there are some. Read from this batch's failed attempts (their index), each request
    counted where it stands now, its attempt in this batch being its latest."""
    _record_batch(db, INGESTED, local_id, now, _ROW_COUNTS)
    queued, dead = db.execute(
        "SELECT coalesce(sum(CASE WHEN r.state = 'queued' THEN 1 ELSE 0 END), 0),"
        " coalesce(sum(CASE WHEN r.state = 'dead' THEN 1 ELSE 0 END), 0) FROM attempts a"
        " JOIN requests r ON r.id = a.request_id"
        " WHERE a.batch_id = ? AND a.outcome IS NOT NULL AND a.outcome != 'succeeded' AND a.number = r.attempts",
        (local_id,),
    ).fetchone()
    if queued:
        _record_batch(db, RESUBMITTED, local_id, now, {"requests": int(queued)}, by="engine")
    if dead:
        _record_batch(db, DEAD_LETTER, local_id, now, {"requests": int(dead)})


def record_requeued(db: Connection, local_id: int, requests: int, now: float) -> None:
    """Before a submitted batch's requests go back to their buffer (the provider refused
    the batch after taking it): `resubmitted`, so a follower that saw it submitted is
    told what became of it. An intent the provider never had logs nothing."""
    known = db.execute(
        "SELECT CASE WHEN provider_batch_id IS NOT NULL THEN 1 ELSE 0 END FROM batches WHERE id = ?", (local_id,)
    ).fetchone()
    if requests and known and known[0]:
        _record_batch(db, RESUBMITTED, local_id, now, {"requests": int(requests)}, by="engine", refused=True)


def record_resubmitted(db: Connection, provider_batch_id: str, requests: int, now: float) -> None:
    """The operator put a batch's failed requests back (`batchtop resubmit`, the console)."""
    if requests:
        for (local_id,) in db.execute(
            "SELECT id FROM batches WHERE provider_batch_id = ? ORDER BY id", (provider_batch_id,)
        ).fetchall():
            _record_batch(db, RESUBMITTED, local_id, now, {"requests": int(requests)}, by="operator")


def record_unknown(db: Connection, local_id: int, candidates: int, now: float) -> None:
    """A submission more than one provider batch could be: the operator must choose."""
    record_alert(
        db, "unknown_submission",
        f"submission local-{local_id} could not be matched at the provider ({candidates} candidates): adopt or resubmit",
        now, local_id=local_id,
    )


def record_alert(
    db: Connection, alert: str, message: str, now: float, *, provider: str | None = None, local_id: int | None = None
) -> None:
    """An alert raised (first seen, not each refresh of it)."""
    if local_id is not None:
        _record_batch(db, ALERT, local_id, now, {}, alert=alert, message=message)
    else:
        record(db, ALERT, at=now, provider=provider, batch_id=None, counts={}, alert=alert, message=message)


# -- reading -----------------------------------------------------------------------------

_COLS = "id, at, kind, provider, batch_id, counts, detail"


def _event(row: tuple) -> Event:
    eid, at, kind, provider, batch_id, counts, detail = row
    return Event(eid, at, kind, provider, batch_id, json.loads(counts), json.loads(detail) if detail else {})


def after(
    db: Connection, last_id: int, *, since: float | None = None, kinds: Iterable[str] | None = None, limit: int = 1000
) -> list[Event]:
    """Events with an id above `last_id` (and at or after `since`), oldest first, at most
    `limit`: a reader pages through by passing the last id it got."""
    where: list[str] = ["id > ?"]
    args: list[object] = [last_id]
    if since is not None:
        where.append("at >= ?")
        args.append(since)
    if kinds is not None:
        wanted = sorted(set(kinds))
        where.append(f"kind IN ({', '.join('?' * len(wanted))})")
        args.extend(wanted)
    rows = db.execute(
        f"SELECT {_COLS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*args, limit)
    ).fetchall()
    return [_event(r) for r in rows]


def first_id_since(db: Connection, since: float) -> int:
    """The id just before the first event at or after `since` (its index): where to start."""
    (first,) = db.execute("SELECT min(id) FROM events WHERE at >= ?", (since,)).fetchone()
    if first is None:
        return last_id(db)
    return int(first) - 1


def last_id(db: Connection) -> int:
    (last,) = db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
    return int(last)


# -- webhook delivery state --------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """Where one webhook receiver stands."""

    webhook: str
    label: str
    cursor: int
    head: int | None
    tries: int
    failures: int
    next_at: float | None
    last_ok_at: float | None
    last_error: str | None
    last_error_at: float | None
    last_status: int | None
    rejected: int
    rejected_at: float | None
    rejected_error: str | None


_RECEIVER_COLS = (
    "webhook, label, cursor, head, tries, failures, next_at, last_ok_at, last_error, last_error_at, last_status,"
    " rejected, rejected_at, rejected_error"
)


def receiver(db: Connection, webhook: str, label: str) -> Receiver:
    """The receiver's state; a new one starts after the events already recorded (a
    webhook added to the config gets what happens from then on, not the history)."""
    row = db.execute(f"SELECT {_RECEIVER_COLS} FROM webhook_state WHERE webhook = ?", (webhook,)).fetchone()
    if row is None:
        db.begin_write()
        try:
            db.execute(
                "INSERT INTO webhook_state (webhook, label, cursor) SELECT ?, ?, coalesce(max(id), 0) FROM events"
                " WHERE true ON CONFLICT DO NOTHING",
                (webhook, label),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        row = db.execute(f"SELECT {_RECEIVER_COLS} FROM webhook_state WHERE webhook = ?", (webhook,)).fetchone()
    return Receiver(*row)


def receivers(db: Connection, webhooks: Iterable[str]) -> list[Receiver]:
    """The known receivers among these (those the engine has seen), for the status."""
    wanted = list(webhooks)
    if not wanted:
        return []
    rows = db.execute(
        f"SELECT {_RECEIVER_COLS} FROM webhook_state WHERE webhook IN ({', '.join('?' * len(wanted))})", wanted
    ).fetchall()
    order = {w: i for i, w in enumerate(wanted)}
    return sorted((Receiver(*r) for r in rows), key=lambda r: order[r.webhook])


def pending_count(db: Connection, cursor: int, kinds: Iterable[str], cap: int = 10_000) -> int:
    """Events a receiver has still to get, counted up to `cap` (the status says "10000+")."""
    wanted = sorted(set(kinds))
    (n,) = db.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM events WHERE id > ? AND kind IN ({', '.join('?' * len(wanted))}) LIMIT ?) AS t",
        (cursor, *wanted, cap),
    ).fetchone()
    return int(n)


def _update(db: Connection, webhook: str, sql: str, args: tuple, alert: str | None, now: float) -> None:
    """One change of a receiver's state, with the `alert` event it raises, if any."""
    db.begin_write()
    try:
        db.execute(f"UPDATE webhook_state SET {sql} WHERE webhook = ?", (*args, webhook))
        if alert is not None:
            record_alert(db, "webhook_failing", alert, now)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def delivered(db: Connection, webhook: str, event_id: int, now: float) -> None:
    """The receiver took the event (2xx): the cursor passes it, failures are over."""
    _update(
        db, webhook,
        "cursor = CASE WHEN cursor > ? THEN cursor ELSE ? END, head = NULL, tries = 0, failures = 0, next_at = NULL,"
        " last_ok_at = ?, last_status = NULL",
        (event_id, event_id, now), None, now,
    )


def failed(
    db: Connection, webhook: str, event_id: int, error: str, status: int | None, next_at: float | None,
    now: float, *, tries: int, alert: str | None = None,
) -> None:
    """A try of the event failed: it stays pending until `next_at`."""
    _update(
        db, webhook,
        "head = ?, tries = ?, failures = failures + 1, next_at = ?, last_error = ?, last_error_at = ?, last_status = ?",
        (event_id, tries, next_at, error, now, status), alert, now,
    )


def refused(db: Connection, webhook: str, error: str, now: float, *, alert: str | None = None) -> None:
    """batchtop itself will not deliver (its signing secret is missing): nothing
    advances; `last_status` 0 marks it as ours, not the receiver's."""
    _update(
        db, webhook, "failures = failures + 1, last_error = ?, last_error_at = ?, last_status = 0", (error, now),
        alert, now,
    )


def rejected(
    db: Connection, webhook: str, event_id: int, error: str, status: int | None, now: float,
    *, alert: str | None = None,
) -> None:
    """The receiver refused the event (4xx) on every try: given up for this receiver,
    counted and reported; the cursor moves on so later events still arrive."""
    _update(
        db, webhook,
        "cursor = CASE WHEN cursor > ? THEN cursor ELSE ? END, head = NULL, tries = 0, failures = failures + 1,"
        " next_at = NULL, last_error = ?, last_error_at = ?, last_status = ?, rejected = rejected + 1, rejected_at = ?,"
        " rejected_error = ?",
        (event_id, event_id, error, now, status, now, error), alert, now,
    )


KEEP = 30 * 86400.0
"""How long events are kept: long enough to replay a month with `batchtop events`."""
PRUNE_EVERY = 3600.0
PRUNE_BATCH = 10_000
"""Rows deleted per transaction: a year of backlog never holds the write lock for long."""


def prune(db: Connection, now: float, webhooks: Iterable[str]) -> int:
    """Delete events older than KEEP that none of these receivers still waits for, at
    most once per PRUNE_EVERY (kept in `engine_state`), PRUNE_BATCH at a time. Returns
    how many went."""
    row = db.execute("SELECT value FROM engine_state WHERE key = 'events:pruned_at'").fetchone()
    if row is not None and now - float(row[0]) < PRUNE_EVERY:
        return 0
    wanted = list(webhooks)
    keep_after = None
    if wanted:
        (keep_after,) = db.execute(
            f"SELECT min(cursor) FROM webhook_state WHERE webhook IN ({', '.join('?' * len(wanted))})", wanted
        ).fetchone()
    limit = "" if keep_after is None else f" AND id <= {int(keep_after)}"
    gone = 0
    while True:
        db.begin_write()
        try:
            cur = db.execute(
                f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ?{limit} ORDER BY id LIMIT ?)",
                (now - KEEP, PRUNE_BATCH),
            )
            if cur.rowcount < PRUNE_BATCH:
                db.execute(
                    "INSERT INTO engine_state (key, value) VALUES ('events:pruned_at', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (json.dumps(now),),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        gone += cur.rowcount
        if cur.rowcount < PRUNE_BATCH:
            return gone
