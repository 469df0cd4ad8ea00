"""The engine: reconcile, cancel, poll, ingest, flush; one pass is a tick.

Every step is a small store transaction around at most one provider call, so the
process can be killed at any instant: intents still `submitting` are reconciled
against the provider before anything is sent again, and ingest is idempotent.
Each provider runs its pass on its own; one that fails backs off (with jitter, at
least its Retry-After) and never stops the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from batchtop.config import Config, FlushPolicy
from batchtop.display import clean
from batchtop.engine.output_checks import output_rule, validate_output
from batchtop.engine.realtime import LaneReport, RealtimeLanes
from batchtop.engine.result_ingest import ResultFileTooLong, ingest_results, line_limit
from batchtop.integrations.webhooks import Deliveries
from batchtop.integrations.webhooks import key as webhook_key
from batchtop.pricing.budget import budget_hold_reason
from batchtop.pricing.inflight import estimate_batch_cost
from batchtop.pricing.table import price_of
from batchtop.providers import failures
from batchtop.providers.base import (
    ProviderAdapter,
    RemoteBatch,
    ResultLine,
)
from batchtop.providers.clients import (
    NO_KEY,
    NotConfigured,
    build_adapter,
    key_env,
    redact,
)
from batchtop.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNotFound,
    ProviderQuota,
    ProviderRefused,
    error_name,
)
from batchtop.providers.streaming import IngestBudget
from batchtop.states import BatchStatus, Outcome
from batchtop.store import Store, alerts, events, holds, lease, status_queries, submissions
from batchtop.store.db import StoreBusy
from batchtop.store.ingest import QUARANTINE_AFTER, BatchIngest, Settle
from batchtop.store.lifecycle import ProviderState
from batchtop.timefmt import iso

log = logging.getLogger("batchtop.engine.tick")

MAX_BACKOFF = 300.0
QUOTA_HOLD = 900.0
"""How long a provider out of quota or credit is left alone before it is tried again."""
QUOTA_HELD = "held: out of quota or credit"
AUTH_HELD = "authentication failed"


@dataclass
class TickReport:
    """What one tick did, for the CLI's summary and for tests."""

    submitted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    ingested: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Batches the provider answered 404 for: marked lost this tick."""
    lost_reasons: dict[str, str] = field(default_factory=dict)
    quota: list[str] = field(default_factory=list)
    """Providers whose buffers this tick held for their account's quota or credit."""
    list_calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    ingest_errors: dict[str, str] = field(default_factory=dict)
    """Batches whose ingest failed this tick (tried again later, then quarantined)."""
    quarantined: list[str] = field(default_factory=list)
    lanes: LaneReport = field(default_factory=LaneReport)
    """What the synchronous lanes (real time, flex) did this tick (issue 15)."""

    def summary(self) -> str:
        """What the pass did, as `tick` prints it ("submitted 2, ingested 1"); "" when nothing."""
        return ", ".join([
            f"{label} {len(items)}"
            for label, items in (
                ("submitted", self.submitted), ("adopted", self.adopted), ("ingested", self.ingested),
                ("cancelled", self.cancelled), ("refused", self.refused), ("unknown", self.unknown),
                ("lost", self.lost), ("quarantined", self.quarantined),
            )
            if items
        ] + self.lanes_summary())

    def lanes_summary(self) -> list[str]:
        """["real time 3", "flex 1"] when the synchronous lanes sent anything (issue 15)."""
        parts = [f"{label} {n}" for label, n in (("real time", self.lanes.realtime), ("flex", self.lanes.flex)) if n]
        return parts + ([f"rescued {len(self.lanes.rescued)}"] if self.lanes.rescued else [])


AdapterFactory = Callable[[Config, str], ProviderAdapter]


class Engine:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        now: Callable[[], float] = time.time,
        adapter_factory: AdapterFactory = build_adapter,
        host: str | None = None,
    ) -> None:
        """`host`: the name the lease is held under (this machine's by default)."""
        self.store = store
        self.config = config
        self.now = now
        self._factory = adapter_factory
        self._adapters: dict[str, ProviderAdapter] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failures: dict[str, int] = {}
        self._settle = Settle(config.engine.max_attempts, config.engine.auto_resubmit, config.engine.retry_delay)
        self.lease = lease.Lease(store, config.engine.lease_ttl, host=host, now=now)
        """Our hold on the data dir, renewed during every tick, and the store's fence."""
        self._stop: asyncio.Event | None = None
        """The stop signal of the driver's loop (`engine.driver`): a result download in
        progress is dropped at once."""
        self._ingest_unfinished = False
        """A result file was left part-read by the budget: the next tick comes at once."""
        self._webhooks = (
            Deliveries(
                store.data_dir, config.webhooks, now=now,
                url=store.url, schema=getattr(store.db, "schema", config.store.schema),
            )
            if config.webhooks
            else None
        )
        self.lanes = RealtimeLanes(store, config, now)
        """The synchronous lanes (issue 15): real time, flex, rescue; one pool for every provider."""

    # -- lifecycle -------------------------------------------------------------
    async def close(self) -> None:
        if self._loop is asyncio.get_running_loop():  # clients of a closed loop are gone with it
            for adapter in self._adapters.values():
                await adapter.close()
        self._adapters.clear()

    # -- one pass ------------------------------------------------------------------
    async def tick(self) -> TickReport:
        """One pass over every provider with work; raises EngineBusy if another
        engine holds the data dir."""
        self.lease.acquire()
        if self._webhooks is not None:
            self._webhooks.register(self.store.db)  # a new receiver gets this pass's events on
        report = TickReport()
        providers = self.store.active_providers()
        # concurrently: a slow provider does not delay the other. Store transactions never
        # span an await, so the two passes interleave safely on the one connection. The
        # lease is renewed meanwhile, however long an upload takes.
        async with self.lease.renewing():
            await asyncio.gather(*(self._provider_pass(provider, report) for provider in providers))
        self.store.set_ticked(self.now())
        events.prune(self.store.db, self.now(), (webhook_key(h.url) for h in self.config.webhooks))  # hourly
        if self._webhooks is not None:  # in its own thread: a slow receiver never holds up the engine
            self._webhooks.kick()
        return report

    def settle_deliveries(self) -> bool:
        """Before the process exits: give the webhook deliveries of the last pass a few
        seconds to finish; what is left goes on the next engine's pass."""
        return self._webhooks.settle() if self._webhooks is not None else True

    async def cancels_only(self) -> TickReport:
        """Carry out the requested cancels and nothing else (`batchtop cancel`)."""
        self.lease.acquire()
        report = TickReport()
        for provider in self.store.cancel_requested_providers():
            try:
                async with self.lease.renewing():
                    await self._cancels(self._adapter(provider), report)
            except lease.LeaseLost:
                raise
            except Exception as exc:
                report.errors[provider] = redact(f"{error_name(exc)}: {exc}")
        return report

    async def _provider_pass(self, provider: str, report: TickReport) -> None:
        state = self.store.provider_state(provider)
        now = self.now()
        if state.retry_at and state.retry_at > now:
            return
        try:
            adapter = self._adapter(provider)
        except NotConfigured as exc:
            holds.hold_provider(self.store, provider, str(exc), None, queued_only=True)
            self.store.set_provider_state(provider, ProviderState(status=f"not configured: {exc}", error=str(exc)))
            report.errors[provider] = str(exc)
            return
        holds.release(self.store, provider, (NO_KEY,))  # the key is there now
        try:
            if state.auth_failed:  # the key was refused: ask once, cheaply, before uploading anything
                await adapter.probe()
            await self._reconcile(adapter, report)
            await self._cancels(adapter, report)
            remotes = await self._poll(adapter, report)
            await self._ingest(adapter, remotes, report)
            await self.lanes.provider_pass(adapter, report.lanes)  # before flush: a batch never takes a claimed request
            await self._flush(adapter, report)
        except lease.LeaseLost:
            raise  # another engine holds the data dir now: this one stops, whatever the provider did
        except ProviderAuthError as exc:
            self._auth_failed(provider, exc, state, report)
            return
        except Exception as exc:  # a provider's failure must not stop the others
            delay = self._backoff(provider, exc)
            retry_at = self.now() + delay
            message = redact(f"{error_name(exc)}: {exc}")
            # one figure everywhere: the status line, its RETRY AT and stderr say the same
            waiting = f"backing off {delay:.0f}s (until {iso(retry_at)}) after {error_name(exc)}"
            self.store.set_provider_state(
                provider,
                ProviderState(
                    status=waiting,
                    error=message[:500],
                    retry_at=retry_at,
                    polled_at=state.polled_at,
                    failures=self._failures[provider],
                ),
            )
            report.errors[provider] = f"{message[:500]}; {waiting}"
            return
        self._failures.pop(provider, None)
        holds.release(self.store, provider, (NO_KEY, AUTH_HELD))
        status = "ok"
        foreign = self.store.other_account_batches(provider, adapter.account)
        if foreign:
            status = f"ok; {foreign} batch(es) of another account are not polled with account {adapter.account!r}"
        self.store.set_provider_state(provider, ProviderState(status=status, polled_at=self.now()))

    def _auth_failed(self, provider: str, exc: ProviderAuthError, state: ProviderState, report: TickReport) -> None:
        """A refused key is an error on the provider's line and in the exit status. No
        backoff: the next tick asks again with one cheap call, so a fixed key is taken
        at once, and nothing is uploaded while it is refused."""
        env = key_env(self.config, provider)
        message = redact(f"{AUTH_HELD} (401): {exc.message}; check {env}")[:500]
        holds.hold_provider(self.store, provider, message, None, queued_only=True)
        self.store.set_provider_state(
            provider,
            ProviderState(status="auth error (401): key refused", error=message, auth_failed=True,
                          polled_at=state.polled_at),
        )
        report.errors[provider] = message

    def _adapter(self, provider: str) -> ProviderAdapter:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # SDK clients are bound to the loop they first ran on
            self._adapters.clear()
            self._loop = loop
        adapter = self._adapters.get(provider)
        if adapter is None:
            adapter = self._adapters[provider] = self._factory(self.config, provider)
        return adapter

    def _backoff(self, provider: str, exc: BaseException) -> float:
        """Whole seconds (so every view can show the same figure), jittered, at least
        the provider's Retry-After."""
        n = self._failures[provider] = self._failures.get(provider, 0) + 1
        delay = min(MAX_BACKOFF, 2.0 ** min(n, 10)) * (0.5 + random.random() / 2)
        wait = exc.retry_after if isinstance(exc, ProviderError) else None
        return float(math.ceil(max(delay, wait or 0.0)))


    # -- steps ---------------------------------------------------------------------
    async def _reconcile(self, adapter: ProviderAdapter, report: TickReport) -> None:
        """Intents left `submitting` by a previous run: adopt, send, or ask the operator."""
        intents = submissions.pending(self.store, adapter.provider)
        if not intents:
            return
        owned = submissions.owned_ids(self.store, adapter.provider)
        for intent in intents:
            skip = owned | submissions.excluded(self.store, intent.id)
            found = await adapter.find_submission(intent.uid, intent.created_at, intent.total, skip)
            if len(found) == 1:
                submissions.record_submitted(self.store, intent.id, found[0], self.now())
                owned.add(found[0].id)
                report.adopted.append(found[0].id)
            elif not found:
                await self._send(adapter, intent, report)
            else:
                submissions.mark_unknown(self.store, intent.id, [b.id for b in found])
                report.unknown.append(intent.id)

    async def _send(self, adapter: ProviderAdapter, intent: submissions.Intent, report: TickReport) -> bool:
        lines = submissions.lines(self.store, intent.id)
        try:
            remote = await adapter.submit(intent.uid, intent.endpoint, lines)
        except ProviderQuota as exc:  # no batch of this provider can be taken now: hold them all, say so
            reason = redact(f"{QUOTA_HELD}: {exc.reason}")
            submissions.undo(self.store, intent.id, reason, self.now() + QUOTA_HOLD, self.now())
            report.refused.append(exc.reason)
            self._hold_for_quota(adapter.provider, exc.reason, report)
            return False
        except ProviderRefused as exc:
            n = self._failures.get(f"refused:{intent.buffer_id}", 0) + 1
            self._failures[f"refused:{intent.buffer_id}"] = n
            if exc.retry_after is not None:  # the provider said when: no longer, no shorter than a second
                wait = max(1.0, exc.retry_after)
            else:
                wait = min(MAX_BACKOFF * 4, 30.0 * 2 ** (n - 1)) * (0.5 + random.random() / 2)
            submissions.undo(self.store, intent.id, redact(f"provider refused: {exc.reason}"), self.now() + wait, self.now())
            report.refused.append(exc.reason)
            return False
        except ProviderAuthError:
            # a refused key created nothing: the requests go back, no attempt used, and
            # the pass reports the provider's auth error
            submissions.undo(self.store, intent.id, redact(f"{AUTH_HELD} (401)"), None, self.now())
            raise
        self._failures.pop(f"refused:{intent.buffer_id}", None)
        submissions.record_submitted(self.store, intent.id, remote, self.now())
        report.submitted.append(remote.id)
        return True

    async def _cancels(self, adapter: ProviderAdapter, report: TickReport) -> None:
        for target in self.store.batches_to_cancel(adapter.provider, adapter.account):
            local_id, batch_id = target.local_id, target.batch_id
            try:
                remote = await adapter.cancel(batch_id)  # one that ended meanwhile comes back as it is
            except ProviderNotFound as exc:
                self._lose(local_id, exc, report)
                continue
            self._update(local_id, remote, cancelled=True)
            report.cancelled.append(batch_id)

    async def _poll(self, adapter: ProviderAdapter, report: TickReport) -> dict[str, RemoteBatch]:
        """List newest first until every batch in flight was seen (or the listing
        passed the oldest): ceil(N/page)+1 list calls, not one retrieve per batch."""
        targets = self.store.batches_to_poll(adapter.provider, adapter.account)
        if not targets:
            return {}
        wanted = {t.batch_id: t.local_id for t in targets}
        oldest = min((t.provider_created_at for t in targets if t.provider_created_at is not None), default=self.now())
        seen, calls = await adapter.list_recent(oldest, set(wanted))
        report.list_calls[adapter.provider] = calls
        for batch_id in sorted(set(wanted) - set(seen)):  # not in the listing (should not happen): ask directly
            try:
                seen[batch_id] = await adapter.retrieve(batch_id)
            except ProviderNotFound as exc:
                self._lose(wanted[batch_id], exc, report)
        self.store.update_many_from_remote([(wanted[b], remote) for b, remote in seen.items()], self.now())
        return seen

    def _lose(self, local_id: int, exc: ProviderNotFound, report: TickReport) -> None:
        """One batch the provider no longer knows: marked lost, its requests left for
        the operator; the rest of the provider's pass goes on."""
        reason = redact(
            f"lost at the provider: it answers {exc.detail} for batch {exc.batch_id};"
            f" `batchtop resubmit {exc.batch_id}` sends its requests again"
        )[:500]
        submissions.mark_lost(self.store, local_id, reason, self.now())
        report.lost.append(exc.batch_id)
        report.lost_reasons[exc.batch_id] = reason

    def _update(self, local_id: int, remote: RemoteBatch, *, cancelled: bool = False) -> None:
        self.store.update_from_remote(local_id, remote, self.now(), cancelled=cancelled)

    async def _ingest(self, adapter: ProviderAdapter, remotes: dict[str, RemoteBatch], report: TickReport) -> None:
        """Ended batches' results, within one budget of time and bytes for the pass.
        A batch whose files fail (or make no progress within the budget) is tried
        again later, and quarantined after QUARANTINE_AFTER failures in a row, or at
        once when its files hold more lines than it has requests: it never stops the
        other batches, nor the flush after it."""
        engine = self.config.engine
        budget = IngestBudget(engine.ingest_budget, engine.ingest_budget_bytes, self._stop)
        for target in self.store.batches_to_ingest(adapter.provider, adapter.account):
            local_id, batch_id, retry_at = target.local_id, target.batch_id, target.ingest_retry_at
            if retry_at is not None and retry_at > self.now():
                continue
            if budget.spent():
                self._ingest_unfinished = not budget.stopped()
                return
            try:
                remote = remotes.get(batch_id) or await adapter.retrieve(batch_id)
            except ProviderNotFound as exc:
                self._lose(local_id, exc, report)
                continue
            if remote.refused:
                reason = redact(f"provider refused the batch: {remote.error}")
                submissions.undo(self.store, local_id, reason, self.now() + 60.0, self.now())
                report.refused.append(reason)
                continue
            ingest = BatchIngest(self.store, local_id, self._settle, self._tier_above)
            try:
                run = await ingest_results(
                    ingest,
                    adapter.results(remote, ingest.position, engine.ingest_max_line),  # type: ignore[arg-type]
                    budget,
                    self.now,
                    lambda chunk: self._invalid_outputs(local_id, chunk),  # noqa: B023  (awaited within this iteration)
                    lambda chunk: failures.verdicts(adapter.provider, chunk),
                    max_lines=line_limit(len(ingest.attempts)),
                )
            except ProviderNotFound as exc:  # what was ingested stays; the rest waits for the operator
                self._lose(local_id, exc, report)
                continue
            except ResultFileTooLong as exc:
                self._quarantine(ingest, batch_id, str(exc), report)
                continue
            except (lease.LeaseLost, *StoreBusy):
                raise  # not this batch's fault
            except Exception as exc:  # noqa: BLE001 - the download failed, or the provider sent what we cannot store
                self._ingest_failed(ingest, batch_id, redact(f"{error_name(exc)}: {exc}"), report)
                continue
            if not run.complete:
                if budget.stopped():
                    return
                if run.advanced:
                    self._ingest_unfinished = True
                else:
                    self._ingest_failed(ingest, batch_id, "no result line came within the ingest budget", report)
                continue
            ingest.finish(self.now(), batch_error=remote.error if remote.status == BatchStatus.FAILED else None)
            report.ingested.append(batch_id)
            if ingest.quota_error is not None:
                self._hold_for_quota(adapter.provider, ingest.quota_error, report)
            elif ingest.succeeded:  # what was stored, not the batch's counts: a Gemini file batch has none
                alerts.clear_alert(self.store, alerts.QUOTA, adapter.provider)

    def _tier_above(self, provider: str, model: str) -> int | None:
        """The prompt tokens over which a model is priced at its upper tier (Gemini Pro):
        the ingest rolls such requests up apart, so that each is priced at its own tier."""
        price = price_of(self.config, provider, model)
        return price.tier_above if price is not None else None

    def _hold_for_quota(self, provider: str, error: str, report: TickReport) -> None:
        """The account is out of quota or credit: every buffer of the provider waits
        (more batches would fail the same way) and an alert says why; the operator's
        `flush` or QUOTA_HOLD later tries again."""
        reason = redact(f"{QUOTA_HELD}: {error}")[:500]
        holds.hold_provider(self.store, provider, reason, self.now() + QUOTA_HOLD, queued_only=False)
        alerts.raise_alert(
            self.store, alerts.QUOTA, provider,
            f"{provider} is out of quota or credit ({reason.removeprefix(QUOTA_HELD + ': ')}); its buffers are held"
            f" until {iso(self.now() + QUOTA_HOLD)} or `batchtop flush`",
            self.now(),
        )
        report.quota.append(provider)

    def _ingest_failed(self, ingest: BatchIngest, batch_id: str, reason: str, report: TickReport) -> None:
        """Try this batch again after a backoff of its own; quarantine it after a few."""
        report.ingest_errors[batch_id] = reason
        base = max(1.0, self.config.engine.poll_interval)
        n = ingest.failed(reason, self.now(), base)
        log.warning("ingest of %s failed (%d in a row): %s", clean(batch_id, limit=80), n, clean(reason, limit=300))
        if n >= QUARANTINE_AFTER:
            self._quarantine(ingest, batch_id, f"{n} failed ingests in a row; last: {reason}", report)

    def _quarantine(self, ingest: BatchIngest, batch_id: str, reason: str, report: TickReport) -> None:
        log.warning("batch %s quarantined: %s", clean(batch_id, limit=80), clean(reason, limit=300))
        ingest.quarantine(reason, self.now())
        report.quarantined.append(batch_id)

    def _invalid_outputs(self, local_id: int, chunk: list[ResultLine]) -> dict[str, str]:
        """custom_id -> why its output is invalid, where the buffer asks for validation:
        such an attempt failed (its tokens count as resubmission cost) and is retried."""
        route = self.store.batch_route(local_id)
        provider, endpoint, model = route.provider, route.endpoint, route.model
        if output_rule(self.config, provider, endpoint, model) is None:
            return {}
        invalid = {}
        for line in chunk:
            if line.outcome == Outcome.SUCCEEDED and line.response:
                problem = validate_output(self.config, provider, endpoint, model, json.loads(line.response))
                if problem:
                    invalid[line.custom_id] = problem
        return invalid

    def _budget_hold(self, buf: status_queries.BufferRow, policy: FlushPolicy) -> str | None:
        """Why the next batch of this buffer must wait for the budget, if a cap is set."""
        if not self.config.budget.has_caps():
            return None
        n = min(buf.queued, policy.max_requests)
        size = min(buf.bytes, policy.max_bytes)
        adding = estimate_batch_cost(self.store.db, self.config, buf.provider, buf.model, n, size)
        return budget_hold_reason(self.store.db, self.config, buf.provider, adding, self.now())

    async def _flush(self, adapter: ProviderAdapter, report: TickReport) -> None:
        """Every due buffer of this provider, split into as many batches as its caps need."""
        for buf in status_queries.buffers(self.store.db, self.config):
            if buf.provider != adapter.provider:
                continue
            policy = self.config.policy_for(buf.provider, buf.endpoint, buf.model)
            now = self.now()
            if buf.retry_at is not None and buf.retry_at > now:
                continue
            due = buf.flush_due_at
            if due is not None and due <= now and (reason := self._budget_hold(buf, policy)):
                self.store.hold_buffer(buf.id, reason)
                continue
            while due is not None and due <= now:
                intent = submissions.plan(self.store, buf.id, policy, adapter.account, now)
                if intent is None or not await self._send(adapter, intent, report):
                    break
                due = status_queries.buffer_due(self.store.db, self.config, buf.id)
                now = self.now()

    def _work_due(self) -> bool:
        """Something the operator asked for, a buffer that came due, or result files
        the last tick's budget left part-read."""
        if self._ingest_unfinished:
            self._ingest_unfinished = False
            return True
        now = self.now()
        if self.store.cancel_due():
            return True
        return any(
            (at := status_queries.ready_at(b)) is not None and at <= now for b in status_queries.buffers(self.store.db, self.config)
        )

