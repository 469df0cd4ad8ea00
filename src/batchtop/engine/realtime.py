"""The synchronous lanes inside an engine pass: lane choice, rescue, the worker pool (issue 15).

Per provider pass, after ingest and before flush:
1. claims left open by an engine that died mid-call become dead letters (once per engine);
2. in-flight batches get an ETA; `stuck_batch` and `deadline_risk` alerts follow it; a
   batch at risk whose requests have deadlines is cancelled for rescue (cancel first:
   what finished is ingested, nothing is paid twice);
3. a rescued batch, once ingested, has its unfinished requests claimed real time;
4. queued requests whose deadline no batch can meet are claimed for flex or real time;
5. the claims run in one bounded pool (`[realtime] concurrency`) under the daily cap
   (`[realtime] daily_usd`), each retried on 429/5xx after at least its Retry-After.

Every claim is durable before its call and recorded after (`store.realtime`): a request
is sent at most once per claim, and a batch never takes a claimed one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from batchtop.config import Config
from batchtop.engine import lanes
from batchtop.pricing.estimate import estimate_request, request_body
from batchtop.pricing.table import Tokens, price_of
from batchtop.providers import realtime as sync_api
from batchtop.redaction import redact
from batchtop.store import Store
from batchtop.store import realtime as rt
from batchtop.timefmt import iso

log = logging.getLogger("batchtop.engine.realtime")

MAX_TRIES = 5
"""Tries of one call on 429/5xx/connection errors before its attempt counts as failed."""
MAX_WAIT = 60.0
"""Longest wait between two tries inside one pass (a longer Retry-After fails the try)."""
CLAIMS_PER_PASS = 2000
ANSWER_LINGER = 0.005
"""Seconds a wave of answers only waits for more to share its commit (their slots in the
pool are free meanwhile; a call waiting for its sent mark ends the wait)."""
"""Requests claimed per provider pass; the rest wait for the next pass."""


@dataclass
class LaneReport:
    """What the synchronous lanes did in one pass (for the tick summary and tests)."""

    realtime: int = 0
    flex: int = 0
    succeeded: int = 0
    failed: int = 0
    capped: int = 0
    """Requests left for batch because the daily cap would be passed."""
    rescued: list[str] = field(default_factory=list)
    """Batches cancelled for rescue this pass."""
    orphans: int = 0


class _GroupCommit:
    """Writes of concurrent workers in one transaction: the first to arrive yields once,
    so the others of its wave join, then commits them all; each caller returns once its
    item is durable. With synchronous=FULL a commit is an fsync: one per wave instead of
    one per call is what keeps the lane near a bare `gather` of SDK calls. A wave of
    answers only (nothing waits to be sent) lingers up to `linger` seconds for more;
    an urgent item (a sent mark: a call waits for it) ends the linger at once."""

    def __init__(self, write: Callable[[list[Any]], list[Any] | None], linger: float = 0.0) -> None:
        self._write = write
        self._linger = linger
        self._pending: list[Any] = []
        self._flushing: asyncio.Future[None] | None = None
        self._urgent: asyncio.Event | None = None

    async def add(self, item: Any, *, urgent: bool = True) -> None:
        self._pending.append(item)
        if self._flushing is not None:
            if urgent and self._urgent is not None:
                self._urgent.set()
            await asyncio.shield(self._flushing)
            return
        flushing = self._flushing = asyncio.get_running_loop().create_future()
        self._urgent = asyncio.Event()
        if urgent:
            self._urgent.set()
        try:
            await asyncio.sleep(0)  # the wave's other workers append meanwhile
            if self._linger > 0 and not self._urgent.is_set():
                try:
                    await asyncio.wait_for(self._urgent.wait(), self._linger)
                except TimeoutError:
                    pass
            while self._pending:
                items, self._pending = self._pending, []
                self._write(items)
        except BaseException as exc:
            flushing.set_exception(exc)
            flushing.exception()  # retrieved: the joiners re-raise it
            raise
        else:
            flushing.set_result(None)
        finally:
            self._flushing = None
            self._urgent = None


@dataclass(frozen=True)
class _Tagged:
    """One kind of item (sent marks, answers) of a shared group commit."""

    commit: _GroupCommit
    kind: str

    async def add(self, item: Any) -> None:
        await self.commit.add((self.kind, item), urgent=self.kind == "sent")


@dataclass
class _Live:
    claim: rt.Claim
    estimate: Decimal


class RealtimeLanes:
    """The engine's synchronous lanes; one per Engine, its pool shared by every provider."""

    def __init__(self, store: Store, config: Config, now: Callable[[], float]) -> None:
        self.store = store
        self.config = config
        self.now = now
        self._live: dict[int, _Live] = {}
        self._swept = False
        self._pool: asyncio.Semaphore | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self.last = LaneReport()

    # -- the pool ------------------------------------------------------------------------
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            self._pool = asyncio.Semaphore(self.config.realtime.concurrency)
            self._pool_loop = loop
        return self._pool

    # -- money ---------------------------------------------------------------------------
    def estimate(self, provider: str, endpoint: str, model: str, line: str, lane: str) -> Decimal:
        """What one call will likely cost at its lane's price (the request's own
        estimate: max_tokens when it has one); 0 when the price is unknown."""
        price = price_of(self.config, provider, model)
        if price is None:
            return Decimal(0)
        try:
            body = request_body(provider, json.loads(line))
        except ValueError:
            return Decimal(0)
        est = estimate_request(endpoint, body, provider=provider)
        tokens = Tokens(input=est.input_tokens, output=est.output_tokens)
        return price.batch_cost(tokens) if lane == rt.FLEX else price.list_cost(tokens)

    def _estimate(self, claim: rt.Claim) -> Decimal:
        return self.estimate(claim.provider, claim.endpoint, claim.model, claim.line, claim.lane)

    def _cost(self, claim: rt.Claim, lane: str, tokens: Tokens) -> float | None:
        price = price_of(self.config, claim.provider, claim.model)
        if price is None:
            return None
        return float(price.batch_cost(tokens) if lane == rt.FLEX else price.list_cost(tokens))

    def _room(self) -> Decimal | None:
        """USD the lanes may still commit today (None: no cap)."""
        cap = self.config.realtime.daily_usd
        if cap is None:
            return None
        now = self.now()
        spent = Decimal(str(rt.spent_since(self.store.db, now - now % 86400)))
        reserved = sum((live.estimate for live in self._live.values()), Decimal(0))
        return cap - spent - reserved

    # -- one provider pass ---------------------------------------------------------------
    async def provider_pass(self, adapter: Any, report: LaneReport) -> None:
        """Everything the synchronous lanes have to do for this provider now."""
        provider = adapter.provider
        now = self.now()
        if not self._swept:
            requeued, dead = rt.settle_orphans(self.store, self._live, now)
            report.orphans += dead
            self._swept = True
        self._watch(provider, report)
        claims: list[rt.Claim] = []
        room = self._room()
        retries = rt.retry_requested(self.store.db, provider, CLAIMS_PER_PASS)  # the operator asked: rescue or not
        if retries:
            lines = rt.lines_of(self.store.db, retries)
            ids, room = self._within_cap([(rid, *lines[rid], rt.REALTIME) for rid in retries if rid in lines], room, report)
            claims.extend(rt.claim(self.store, ids, rt.REALTIME, "dead letter retried real time", now, source="retry"))
        if not self.config.realtime.rescue:
            if claims:
                await self.run_claims(adapter.client, claims, report)
            return
        for batch_id, leftovers in rt.rescue_leftovers(self.store.db):
            lines = rt.lines_of(self.store.db, leftovers)
            ids, room = self._within_cap([(rid, *lines[rid], rt.REALTIME) for rid in leftovers if rid in lines], room, report)
            taken = rt.claim(self.store, ids, rt.REALTIME, "rescue: batch likely to miss deadlines", now, source="rescue")
            rt.rescue_done(self.store, batch_id, now)
            claims.extend(taken)
        claims.extend(self._due(provider, now, room, report))
        if claims:
            await self.run_claims(adapter.client, claims, report)

    def _due(self, provider: str, now: float, room: Decimal | None, report: LaneReport) -> list[rt.Claim]:
        """Queued requests of this provider whose deadline no batch can meet, claimed
        while the daily cap leaves `room`."""
        from batchtop.store import status_queries

        out: list[rt.Claim] = []
        margin = self.config.engine.poll_interval
        for buf in status_queries.buffers(self.store.db, self.config):
            if buf.provider != provider or not buf.queued or buf.earliest_deadline is None:
                continue
            if not sync_api.supports(buf.provider, buf.endpoint):
                continue
            batch_s = lanes.batch_latency(rt.durations(self.store.db, buf.provider, buf.model))
            flex = self.config.flex_for(buf.provider, buf.endpoint, buf.model)
            due = rt.due_with_deadline(self.store.db, buf.id, now + batch_s + margin, CLAIMS_PER_PASS - len(out))
            wanted = []
            for rid, deadline, line in due:
                lane = lanes.choose_lane(deadline, now, batch_s, flex=flex, margin=margin)
                if lane != lanes.BATCH:
                    wanted.append((rid, buf.provider, buf.endpoint, buf.model, line, lane))
            kept, room = self._within_cap(wanted, room, report)
            by_lane: dict[str, list[int]] = {}
            for rid, *_rest, lane in (w for w in wanted if w[0] in set(kept)):
                by_lane.setdefault(lane, []).append(rid)
            for lane, ids in by_lane.items():
                reason = "deadline no batch can meet" + (" (flex configured)" if lane == rt.FLEX else "")
                out.extend(rt.claim(self.store, ids, lane, reason, now))
            if len(out) >= CLAIMS_PER_PASS:
                break
        return out

    def _within_cap(
        self, wanted: list[tuple[int, str, str, str, str, str]], room: Decimal | None, report: LaneReport
    ) -> tuple[list[int], Decimal | None]:
        """The requests (id, provider, endpoint, model, line, lane; in deadline order)
        the daily cap leaves room for, and the room left. The others are not claimed:
        they stay queued and go by batch (checked before any claim, so a capped
        request costs no write)."""
        if room is None:
            return [w[0] for w in wanted], None
        kept: list[int] = []
        for rid, provider, endpoint, model, line, lane in wanted:
            cost = self.estimate(provider, endpoint, model, line, lane)
            if cost <= room:
                room -= cost
                kept.append(rid)
            else:
                report.capped += 1
        return kept, room

    # -- watching batches ----------------------------------------------------------------
    def _watch(self, provider: str, report: LaneReport) -> None:
        rt.fill_deadlines(self.store)
        now = self.now()
        stuck_keys: list[str] = []
        risk_keys: list[str] = []
        history: dict[str, list[float]] = {}
        for b in rt.open_batches(self.store.db, provider):
            hist = history.get(b.model)
            if hist is None:
                hist = history[b.model] = rt.durations(self.store.db, b.provider, b.model)
            eta = lanes.batch_eta(
                now=now, submitted_at=b.submitted_at, total=b.total, done=b.done, history=hist,
                deadline_at=b.deadline, stuck_after=self.config.alerts.stuck_after,
            )
            if eta.stuck:
                stuck_keys.append(b.provider_batch_id)
                rt.set_alert(
                    self.store, rt.STUCK_BATCH, b.provider_batch_id, provider,
                    f"batch {b.provider_batch_id} ({b.model}) is stuck: {eta.why}, {b.done} of {b.total} done"
                    + ("; its requests have no deadline, so it is left to run" if b.deadline is None else ""),
                    now,
                )
            if eta.at_risk and b.deadline is not None:
                risk_keys.append(b.provider_batch_id)
                when = "unknown" if eta.eta_at is None else iso(eta.eta_at)
                rescue = self.config.realtime.rescue
                rt.set_alert(
                    self.store, rt.DEADLINE_RISK, b.provider_batch_id, provider,
                    f"batch {b.provider_batch_id} will likely miss its earliest deadline {iso(b.deadline)}"
                    f" (ETA {when})" + ("; cancelling it to send what is unfinished real time" if rescue else ""),
                    now,
                )
                if rescue and b.rescue_requested_at is None and rt.request_rescue(self.store, b.id, now):
                    report.rescued.append(b.provider_batch_id)
        rt.clear_alerts(self.store, rt.STUCK_BATCH, stuck_keys + self._other_provider_keys(rt.STUCK_BATCH, provider))
        rt.clear_alerts(self.store, rt.DEADLINE_RISK, risk_keys + self._other_provider_keys(rt.DEADLINE_RISK, provider))

    def _other_provider_keys(self, kind: str, provider: str) -> list[str]:
        """Scopes of this kind's alerts raised for other providers (each pass clears only its own)."""
        return rt.alert_scopes(self.store.db, kind, exclude_provider=provider)

    # -- the calls -----------------------------------------------------------------------
    async def run_claims(self, client: Any, claims: list[rt.Claim], report: LaneReport) -> None:
        """Run these claims through the pool; every one ends recorded (or released)."""
        for claim in claims:
            self._live[claim.call_id] = _Live(claim, self._estimate(claim))
        max_attempts = self.config.engine.max_attempts
        marked: set[int] = set()

        def commit(items: list[tuple[str, Any]]) -> None:
            """A wave's sent marks (never ahead of their call: a crash leaves as dead
            letters only calls that were out) and answers, in one commit."""
            ids = [x for kind, x in items if kind == "sent"]
            rt.commit_wave(
                self.store, ids, [x for kind, x in items if kind == "done"], self.now(), max_attempts=max_attempts
            )
            marked.update(ids)

        wave = _GroupCommit(commit, linger=ANSWER_LINGER)
        sent, done = _Tagged(wave, "sent"), _Tagged(wave, "done")
        try:
            await asyncio.gather(*(self._one(client, claim, report, sent, done, marked) for claim in claims))
        finally:
            for claim in claims:
                self._live.pop(claim.call_id, None)

    async def _one(
        self, client: Any, claim: rt.Claim, report: LaneReport, sent: _Tagged, done: _Tagged, marked: set[int]
    ) -> None:
        lane = claim.lane
        pool = self._semaphore()
        error = "no try made"
        for attempt in range(MAX_TRIES):
            answer = None
            async with pool:
                if claim.call_id not in marked:  # durable before the first byte leaves
                    await sent.add(claim.call_id)
                try:
                    answer = await sync_api.call(
                        client, claim.provider, claim.endpoint, claim.custom_id, claim.line, flex=lane == rt.FLEX
                    )
                except (asyncio.CancelledError, KeyboardInterrupt):
                    raise
                except sync_api.Retryable as exc:
                    error = redact(str(exc))
                    if exc.flex_refused:  # flex has no capacity: fall back to real time at once
                        lane = rt.REALTIME
                        rt.switch_lane(self.store, claim.call_id, lane)
                        continue
                    wait = exc.wait
                except Exception as exc:  # noqa: BLE001 - it may have been sent and answered: never again on its own
                    log.warning("real-time call of %s failed unexpectedly: %s", claim.custom_id, redact(repr(exc))[:300])
                    failed = rt.CallResult(
                        "errored", None,
                        redact(f"{type(exc).__name__}: {exc}")[:300] + "; the call may have been answered, so it is not"
                        " sent again on its own (`batchtop dead-letters --retry-realtime` sends it)",
                        permanent=True,
                    )
                    self._count(lane, report)
                    report.failed += 1
                    await done.add((claim, failed))
                    return
            if answer is not None:  # stored after the slot is free: the next call is already out
                await self._record(claim, lane, answer, report, done)
                return
            backoff = min(MAX_WAIT, 0.25 * 2**attempt) * (0.5 + random.random() / 2)
            delay = max(backoff, wait or 0.0)
            if delay > MAX_WAIT:
                break
            await asyncio.sleep(delay)
        self._count(lane, report)
        report.failed += 1
        failed = rt.CallResult("errored", None, f"{lane} call failed {MAX_TRIES} times; last: {error}"[:500])
        await done.add((claim, failed))

    @staticmethod
    def _count(lane: str, report: LaneReport) -> None:
        if lane == rt.FLEX:
            report.flex += 1
        else:
            report.realtime += 1

    async def _record(
        self, claim: rt.Claim, lane: str, answer: sync_api.Answer, report: LaneReport, done: _Tagged
    ) -> None:
        line = answer.parsed
        tokens = Tokens(
            line.input_tokens, line.cached_input_tokens, line.cache_creation_input_tokens, line.output_tokens,
            line.cache_creation_1h_input_tokens,
        )
        ok = line.outcome == "succeeded"
        result = rt.CallResult(
            "succeeded" if ok else "errored", answer.raw, None if ok else line.error,
            tokens.input, tokens.cached_input, tokens.cache_write, tokens.output, tokens.cache_write_1h,
            self._cost(claim, lane, tokens), permanent=answer.permanent,
        )
        if lane != claim.lane:
            claim = dataclasses.replace(claim, lane=lane)
        await done.add((claim, result))
        self._count(lane, report)
        if ok:
            report.succeeded += 1
        else:
            report.failed += 1


def retry_estimate(db: Any, config: Config) -> tuple[list[int], int, Decimal, bool]:
    """Dead letters that can go real time, how many cannot (no synchronous endpoint),
    their estimated cost at list price, and whether every price was known."""
    lanes_ = RealtimeLanes(None, config, lambda: 0.0)  # type: ignore[arg-type]  # only its estimate is used
    ids: list[int] = []
    skipped = 0
    cost = Decimal(0)
    known = True
    for rid, provider, endpoint, model, line in rt.dead_letter_ids(db):
        if not sync_api.supports(provider, endpoint):
            skipped += 1
            continue
        ids.append(rid)
        known = known and price_of(config, provider, model) is not None
        cost += lanes_.estimate(provider, endpoint, model, line, rt.REALTIME)
    return ids, skipped, cost, known
