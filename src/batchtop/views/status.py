"""The status document: what the console shows and `--once` prints.

One function reads the store (counters and rollups the engine keeps, never a scan
of the requests table) and returns the `--once --json` schema of shared/cli.md,
plus a few extra keys the console uses. Both views render this and compute nothing
of their own. No Textual, no SDK imported here.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from batchtop.config import Config
from batchtop.providers.base import ENDED, UNKNOWN
from batchtop.store import status_queries
from batchtop.store.alerts import engine_alerts
from batchtop.timefmt import iso
from batchtop.integrations.webhooks import status_alerts as webhook_alerts

RECENT_ENDED = 50
"""How many ended batches are listed beside those in flight."""


def _buffers(db: sqlite3.Connection, config: Config) -> list[dict[str, Any]]:
    return [
        {
            "name": b.name,
            "provider": b.provider,
            "endpoint": b.endpoint,
            "model": b.model,
            "queued": b.queued,
            "bytes": b.bytes,
            "oldest_enqueued_at": iso(b.oldest_enqueued_at),
            "earliest_deadline": iso(b.earliest_deadline),
            "flush_due_at": iso(b.flush_due_at),
            "flush_requested": b.flush_requested_at is not None,
            "held_reason": b.held_reason,
            "retry_at": iso(b.retry_at),
        }
        for b in status_queries.buffers(db, config)
    ]


_BATCH_COLS = (
    "id, submission_uid, provider_batch_id, provider, account, endpoint, model, status, total, succeeded, failed,"
    " created_at, provider_created_at, expires_at, ended_at, ingested_at, cancel_requested_at, last_error, candidates"
)


def _batch(row: tuple) -> dict[str, Any]:
    (local, uid, pid, provider, account, endpoint, model, status, total, ok, failed, created, pcreated, expires, ended,
     ingested, cancel, error, candidates) = row
    return {
        "id": pid or f"local-{local}",
        "provider": provider,
        "model": model,
        "status": status,
        "total": total,
        "succeeded": ok,
        "failed": failed,
        "created_at": iso(pcreated or created),
        "ended_at": iso(ended) if status in ENDED else None,
        "expires_at": iso(expires),
        "endpoint": endpoint,
        "account": account,
        "submission": uid,
        "ingested": ingested is not None,
        "cancel_requested": cancel is not None,
        "error": error,
        "candidates": json.loads(candidates) if status == UNKNOWN and candidates else [],
    }


def _batches(db: sqlite3.Connection) -> list[dict[str, Any]]:
    live = db.execute(
        f"SELECT {_BATCH_COLS} FROM batches WHERE ingested_at IS NULL ORDER BY created_at DESC, id DESC"
    ).fetchall()
    ended = db.execute(  # walks batches_ingested from its newest end: as cheap at 10,000 ended as at 10
        f"SELECT {_BATCH_COLS} FROM batches WHERE ingested_at IS NOT NULL AND total > 0"
        " ORDER BY ingested_at DESC, id DESC LIMIT ?",
        (RECENT_ENDED,),
    ).fetchall()
    batches = [_batch(r) for r in live + ended]
    _unfinished(db, batches, [r[0] for r in live + ended])
    return batches


def _unfinished(db: sqlite3.Connection, batches: list[dict[str, Any]], local_ids: list[int]) -> None:
    """`unfinished`: attempts a cancelled or expired batch never ran (outcome cancelled
    or expired), so views can show them apart from real failures. Only such batches are
    counted, over the index of their non-succeeded attempts."""
    for doc, local in zip(batches, local_ids):
        doc["unfinished"] = 0
        if doc["status"] in ("cancelled", "expired") and doc["ingested"]:
            (n,) = db.execute(
                "SELECT count(*) FROM attempts WHERE batch_id = ? AND outcome IN ('cancelled', 'expired')", (local,)
            ).fetchone()
            doc["unfinished"] = int(n)


def batches_by_id(db: sqlite3.Connection, local_ids: list[int]) -> list[dict[str, Any]]:
    """The document's batch entries for these batches (a search's hits), in that order."""
    if not local_ids:
        return []
    marks = ", ".join("?" * len(local_ids))
    found = {r[0]: r for r in db.execute(f"SELECT {_BATCH_COLS} FROM batches WHERE id IN ({marks})", local_ids)}
    rows = [found[i] for i in local_ids if i in found]
    batches = [_batch(r) for r in rows]
    _unfinished(db, batches, [r[0] for r in rows])
    return batches


def batch_counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many batches the store holds in flight and ended (the console's titles)."""
    # in flight: the batches_open partial index holds only those; ended: a counter the
    # schema's triggers keep, so neither grows with the store's history
    (live,) = db.execute("SELECT count(*) FROM batches INDEXED BY batches_open WHERE ingested_at IS NULL").fetchone()
    row = db.execute("SELECT value FROM counters WHERE name = 'ended_batches'").fetchone()
    return {"in_flight": int(live), "ended": int(row[0]) if row else 0}


def failure_rate(db: sqlite3.Connection, config: Config, now: float) -> tuple[int, int]:
    """(failed, ended) attempts within the alert window, from the hourly counts."""
    since = int((now - config.alerts.window) // 3600)
    failed, total = db.execute(
        "SELECT coalesce(sum(failed), 0), coalesce(sum(attempts), 0) FROM outcome_hourly WHERE hour > ?", (since,)
    ).fetchone()
    return int(failed), int(total)


def quarantined(db: sqlite3.Connection, config: Config, now: float) -> list[tuple[str, str]]:
    """(provider batch id, reason) of batches quarantined at ingest within the alert window."""
    return [
        (str(pid), str(error or ""))
        for pid, error in db.execute(
            "SELECT provider_batch_id, last_error FROM batches WHERE quarantined_at IS NOT NULL AND quarantined_at > ?"
            " ORDER BY quarantined_at DESC",
            (now - config.alerts.window,),
        )
    ]


def _alerts(
    doc: dict[str, Any], failed: int, ended: int, config: Config, held: list[tuple[str, str]] | None = None
) -> list[dict[str, Any]]:
    alerts = []
    threshold = config.alerts.failure_rate
    if ended and failed / ended > threshold:
        alerts.append({
            "kind": "failure_rate",
            "message": f"{failed} of {ended} attempts failed in the last {config.alerts.window / 3600:g}h"
            f" ({failed / ended:.1%}, threshold {threshold:.0%})",
        })
    dead, unknown = doc["dead_letters"], doc["unknown_submissions"]
    if dead:
        used = "request used up its" if dead == 1 else "requests used up their"
        alerts.append({"kind": "dead_letters", "message": f"{dead} {used} attempts"})
    if unknown:
        alerts.append({
            "kind": "unknown_submissions",
            "message": f"{unknown} submission{'s' if unknown != 1 else ''} could not be matched at the provider:"
            " adopt or resubmit",
        })
    if held:
        first, reason = held[0]
        alerts.append({
            "kind": "ingest_quarantined",
            "message": f"{len(held)} batch(es) quarantined: their result files could not be ingested"
            f" ({first}: {reason[:200]}); `batchtop resubmit ID` sends their requests without a result again",
        })
    return alerts


def _providers(db: sqlite3.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in db.execute("SELECT key, value FROM engine_state WHERE key LIKE 'provider:%'"):
        state = json.loads(value)
        out[key.split(":", 1)[1]] = {
            "status": state.get("status"),
            "polled_at": iso(state.get("polled_at")),
            "retry_at": iso(state.get("retry_at")),
            "error": state.get("error"),
        }
    return out


def collect(db: sqlite3.Connection, config: Config, now: float) -> dict[str, Any]:
    """The status document at `now`."""
    from batchtop.pricing.inflight import in_flight_estimate
    from batchtop.pricing.savings import savings

    (dead,) = db.execute("SELECT count(*) FROM requests WHERE state = 'dead'").fetchone()
    # The status is a literal so that the partial index batches_unknown applies (a bound
    # parameter cannot prove the index's WHERE); it is our constant, not input.
    (unknown,) = db.execute(f"SELECT count(*) FROM batches WHERE status = '{UNKNOWN}'").fetchone()
    (anomalies,) = db.execute("SELECT value FROM counters WHERE name = 'anomalies'").fetchone()  # kept by triggers
    estimate = in_flight_estimate(db, config)
    providers = _providers(db)
    polls = [p["polled_at"] for p in providers.values() if p["polled_at"]]
    failed, ended = failure_rate(db, config, now)
    doc: dict[str, Any] = {
        "generated_at": iso(now),
        "buffers": _buffers(db, config),
        "batches": _batches(db),
        "batch_counts": batch_counts(db),
        "savings": savings(db, config),
        "in_flight_estimate_usd": estimate.get("in_flight_usd"),
        "queued_estimate_usd": estimate.get("queued_usd"),
        "in_flight_estimate": estimate,
        "dead_letters": int(dead),
        "unknown_submissions": int(unknown),
        "anomalies": int(anomalies),
        "failure_rate": {"failed": failed, "attempts": ended, "rate": failed / ended if ended else None},
        "providers": providers,
        "last_poll_at": max(polls) if polls else None,
    }
    _lanes(db, config, doc, now)
    doc["alerts"] = (
        _alerts(doc, failed, ended, config, quarantined(db, config, now))
        + engine_alerts(db)
        + webhook_alerts(db, config.webhooks, now)
    )
    return doc


def _lanes(db: sqlite3.Connection, config: Config, doc: dict[str, Any], now: float) -> None:
    """Issue 15: `batches[].eta_at` / `deadline_at`, and `lanes` (requests served per lane)."""
    from batchtop.views.eta import add_buffer_tiers, add_eta, lanes_summary

    add_eta(db, config, doc["batches"], now)
    add_buffer_tiers(db, doc["buffers"])
    doc["lanes"] = lanes_summary(db, doc)


def empty(now: float) -> dict[str, Any]:
    """The document for a data dir with no database yet: nothing to show, nothing created."""
    return {
        "generated_at": iso(now),
        "buffers": [],
        "batches": [],
        "batch_counts": {"in_flight": 0, "ended": 0},
        "savings": {"by_model": [], "total": {"batch_cost_usd": 0.0, "realtime_cost_usd": 0.0, "saved_usd": 0.0,
                                             "saved_pct": None, "resubmission_cost_usd": 0.0, "requests_succeeded": 0,
                                             "realtime_lane_spent_usd": 0.0,
                                             "first_pass_success_rate": None, "complete": True}},
        "in_flight_estimate_usd": 0.0,
        "queued_estimate_usd": 0.0,
        "in_flight_estimate": {"usd": 0.0, "complete": True, "estimate": True, "queued_usd": 0.0,
                               "in_flight_usd": 0.0, "total_usd": 0.0, "by_model": []},
        "dead_letters": 0,
        "unknown_submissions": 0,
        "anomalies": 0,
        "failure_rate": {"failed": 0, "attempts": 0, "rate": None},
        "providers": {},
        "last_poll_at": None,
        "lanes": {"batch": 0, "flex": 0, "realtime": 0, "realtime_spent_usd": 0.0},
        "alerts": [],
    }
