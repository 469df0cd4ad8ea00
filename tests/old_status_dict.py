"""TEMPORARY: the dict builder of the status document before it was typed, to compare against."""
# ruff: noqa
# mypy: ignore-errors


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


def _batch(b: status_queries.BatchRow) -> dict[str, Any]:
    return {
        "id": b.provider_batch_id or f"local-{b.local_id}",
        "provider": b.provider,
        "model": b.model,
        "status": b.status,
        "total": b.total,
        "succeeded": b.succeeded,
        "failed": b.failed,
        "created_at": iso(b.provider_created_at or b.created_at),
        "ended_at": iso(b.ended_at) if b.status in ENDED else None,
        "expires_at": iso(b.expires_at),
        "endpoint": b.endpoint,
        "account": b.account,
        "submission": b.submission_uid,
        "ingested": b.ingested_at is not None,
        "cancel_requested": b.cancel_requested_at is not None,
        "error": b.last_error,
        "candidates": json.loads(b.candidates) if b.status == UNKNOWN and b.candidates else [],
        "unfinished": b.unfinished,
    }


def _batches(db: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_batch(b) for b in status_queries.status_batches(db, RECENT_ENDED)]


def batches_by_id(db: sqlite3.Connection, local_ids: list[int]) -> list[dict[str, Any]]:
    """The document's batch entries for these batches (a search's hits), in that order."""
    return [_batch(b) for b in status_queries.batches_by_id(db, local_ids)]


def batch_counts(db: sqlite3.Connection) -> dict[str, int]:
    """How many batches the store holds in flight and ended (the console's titles)."""
    totals = status_queries.batch_totals(db)
    return {"in_flight": totals.in_flight, "ended": totals.ended}


def failure_rate(db: sqlite3.Connection, config: Config, now: float) -> tuple[int, int]:
    """(failed, ended) attempts within the alert window, from the hourly counts."""
    return status_queries.failure_counts(db, now - config.alerts.window)


def quarantined(db: sqlite3.Connection, config: Config, now: float) -> list[tuple[str, str]]:
    """(provider batch id, reason) of batches quarantined at ingest within the alert window."""
    return status_queries.quarantined_since(db, now - config.alerts.window)


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
    return {
        name: {"status": p.status, "polled_at": iso(p.polled_at), "retry_at": iso(p.retry_at), "error": p.error}
        for name, p in status_queries.provider_lines(db).items()
    }


def collect(db: sqlite3.Connection, config: Config, now: float) -> dict[str, Any]:
    """The status document at `now`."""
    from batchtop.pricing.inflight import in_flight_estimate
    from batchtop.pricing.savings import savings

    counts = status_queries.problem_counts(db)
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
        "dead_letters": counts.dead_letters,
        "unknown_submissions": counts.unknown_submissions,
        "anomalies": counts.anomalies,
        "failure_rate": {"failed": failed, "attempts": ended, "rate": failed / ended if ended else None},
        "providers": providers,
        "last_poll_at": max(polls) if polls else None,
    }
    doc["alerts"] = (
        _alerts(doc, failed, ended, config, quarantined(db, config, now))
        + [a.to_json() for a in engine_alerts(db)]
        + [a.to_json() for a in webhook_alerts(db, config.webhooks, now)]
    )
    return doc


def empty(now: float) -> dict[str, Any]:
    """The document for a data dir with no database yet: nothing to show, nothing created."""
    return {
        "generated_at": iso(now),
        "buffers": [],
        "batches": [],
        "batch_counts": {"in_flight": 0, "ended": 0},
        "savings": {"by_model": [], "total": {"batch_cost_usd": 0.0, "realtime_cost_usd": 0.0, "saved_usd": 0.0,
                                             "saved_pct": None, "resubmission_cost_usd": 0.0, "requests_succeeded": 0,
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
        "alerts": [],
    }
