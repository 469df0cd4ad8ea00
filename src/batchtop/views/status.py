"""The status document: what the console shows and `--once` prints.

One function reads the store (counters and rollups the engine keeps, never a scan
of the requests table, through `batchtop.store.status_queries`) and returns a typed
`status_model.Status`; its `to_json()` is the `--once --json` schema of shared/cli.md.
Every view renders this and computes nothing of its own. No Textual, no SDK, no SQL here.
"""

from __future__ import annotations

import json
from types import MappingProxyType

from batchtop.config import Config
from batchtop.integrations.webhooks import status_alerts as webhook_alerts
from batchtop.providers.base import ENDED, UNKNOWN
from batchtop.store import status_queries
from batchtop.store.alerts import engine_alerts
from batchtop.store.db import Connection
from batchtop.store.lifecycle import provider_states
from batchtop.views.status_model import (
    Alert,
    BatchCounts,
    BatchStatus,
    BufferStatus,
    FailureRate,
    ProviderStatus,
    Status,
)
from batchtop.views.status_model import empty as empty

RECENT_ENDED = 50
"""How many ended batches are listed beside those in flight."""


def _buffers(db: Connection, config: Config) -> tuple[BufferStatus, ...]:
    return tuple(
        BufferStatus(
            name=b.name,
            provider=b.provider,
            endpoint=b.endpoint,
            model=b.model,
            queued=b.queued,
            bytes=b.bytes,
            oldest_enqueued_at=b.oldest_enqueued_at,
            earliest_deadline=b.earliest_deadline,
            flush_due_at=b.flush_due_at,
            flush_requested=b.flush_requested_at is not None,
            held_reason=b.held_reason,
            retry_at=b.retry_at,
        )
        for b in status_queries.buffers(db, config)
    )


def _batch(b: status_queries.BatchRow) -> BatchStatus:
    return BatchStatus(
        id=b.provider_batch_id or f"local-{b.local_id}",
        provider=b.provider,
        model=b.model,
        status=b.status,
        total=b.total,
        succeeded=b.succeeded,
        failed=b.failed,
        created_at=b.provider_created_at or b.created_at,
        ended_at=b.ended_at if b.status in ENDED else None,
        expires_at=b.expires_at,
        endpoint=b.endpoint,
        account=b.account,
        submission=b.submission_uid,
        ingested=b.ingested_at is not None,
        cancel_requested=b.cancel_requested_at is not None,
        error=b.last_error,
        candidates=tuple(json.loads(b.candidates)) if b.status == UNKNOWN and b.candidates else (),
        unfinished=b.unfinished,
    )


def batches_by_id(db: Connection, local_ids: list[int]) -> list[BatchStatus]:
    """The document's batch entries for these batches (a search's hits), in that order."""
    return [_batch(b) for b in status_queries.batches_by_id(db, local_ids)]


def _alerts(
    counts: status_queries.ProblemCounts, rate: FailureRate, config: Config, held: list[tuple[str, str]]
) -> list[Alert]:
    """The alerts derived from the store's counters (the engine's and the webhooks' follow)."""
    alerts = []
    threshold = config.alerts.failure_rate
    failed, ended = rate.failed, rate.attempts
    if ended and failed / ended > threshold:
        alerts.append(Alert(
            "failure_rate",
            f"{failed} of {ended} attempts failed in the last {config.alerts.window / 3600:g}h"
            f" ({failed / ended:.1%}, threshold {threshold:.0%})",
        ))
    dead, unknown = counts.dead_letters, counts.unknown_submissions
    if dead:
        used = "request used up its" if dead == 1 else "requests used up their"
        alerts.append(Alert("dead_letters", f"{dead} {used} attempts"))
    if unknown:
        alerts.append(Alert(
            "unknown_submissions",
            f"{unknown} submission{'s' if unknown != 1 else ''} could not be matched at the provider:"
            " adopt or resubmit",
        ))
    if held:
        first, reason = held[0]
        alerts.append(Alert(
            "ingest_quarantined",
            f"{len(held)} batch(es) quarantined: their result files could not be ingested"
            f" ({first}: {reason[:200]}); `batchtop resubmit ID` sends their requests without a result again",
        ))
    return alerts


def collect(db: Connection, config: Config, now: float) -> Status:
    """The status document at `now`."""
    from batchtop.pricing.inflight import in_flight_cost
    from batchtop.pricing.savings import savings_summary

    counts = status_queries.problem_counts(db)
    since = now - config.alerts.window
    rate = FailureRate(*status_queries.failure_counts(db, since))
    totals = status_queries.batch_totals(db)
    providers = {
        name: ProviderStatus(p.status, p.polled_at, p.retry_at, p.error)
        for name, p in provider_states(db).items()
    }
    from batchtop.views.eta import lanes_summary, with_eta, with_tiers

    savings = savings_summary(db, config)
    return Status(
        generated_at=now,
        buffers=with_tiers(db, _buffers(db, config)),
        batches=with_eta(db, config, tuple(_batch(b) for b in status_queries.status_batches(db, RECENT_ENDED)), now),
        batch_counts=BatchCounts(totals.in_flight, totals.ended),
        savings=savings,
        in_flight_estimate=in_flight_cost(db, config),
        dead_letters=counts.dead_letters,
        unknown_submissions=counts.unknown_submissions,
        anomalies=counts.anomalies,
        failure_rate=rate,
        providers=MappingProxyType(providers),
        lanes=lanes_summary(db, savings),
        alerts=(
            *_alerts(counts, rate, config, status_queries.quarantined_since(db, since)),
            *engine_alerts(db),
            *webhook_alerts(db, config.webhooks, now),
        ),
    )
