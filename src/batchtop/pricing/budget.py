"""Budget caps: hold a batch whose submission would take spend past a daily or monthly cap.

Spend in a period = batch cost of the attempts that ended in it (UTC day / UTC month,
as the providers bill), plus the estimate of batches submitted but not yet ingested,
plus the batch about to be submitted. The engine calls `budget_hold_reason` before it
creates the batch row (called after, the batch is counted twice: still safe) and puts
the returned reason in `buffers.held_reason`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from batchtop.pricing.inflight import estimate_work, sum_known
from batchtop.pricing.money import fmt_usd
from batchtop.pricing.table import UPPER_TIER, PriceTable, Tokens, price_table
from batchtop.store import pricing_queries

if TYPE_CHECKING:
    from batchtop.config import BudgetLimits, Config
    from batchtop.store.db import Connection

LIFETIME_MARGIN = 7 * 86400.0
"""A batch lives at most 24 h at either provider: attempts that end in a period belong
to batches created at most this long before it, so only those batches are read."""

DAY = 86400

@dataclass(frozen=True)
class _BatchSpend:
    provider: str
    model: str
    days: tuple[tuple[int, Tokens, Tokens], ...]
    """(day, tokens, the part of them over the model's prompt tier)."""


_cache: dict[str, dict[tuple[int, str], _BatchSpend]] = {}
"""Per database file: the daily token sums of ingested batches, which never change
again, so a process re-checking its budget reads the attempts of new batches only."""


def period_starts(now: float) -> tuple[float, float]:
    """(start of the UTC day, start of the UTC month) containing `now`."""
    t = datetime.fromtimestamp(now, tz=UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp(), day.replace(day=1).timestamp()


def spent(
    db: Connection, table: PriceTable, now: float, provider: str | None = None
) -> tuple[Decimal, Decimal]:
    """(spent today, spent this month) at batch price, for one provider or all.

    Attempts of models with no known price are left out: they cannot be priced.
    """
    day, month = period_starts(now)
    today_n, month_n = int(day) // DAY, int(month) // DAY
    key = pricing_queries.database_key(db)
    known = _cache.get(key, {})
    keep: dict[tuple[int, str], _BatchSpend] = {}
    sums: dict[tuple[str, str, bool], tuple[Tokens, Tokens]] = {}  # (all tokens, the upper tier's)
    for batch in pricing_queries.batches_created_since(db, month - LIFETIME_MARGIN):
        prov = batch.provider
        entry = known.get((batch.id, batch.submission_uid))
        if entry is None:
            price = table.price(prov, batch.model)
            split: dict[int, tuple[Tokens, Tokens]] = {}
            for d in pricing_queries.batch_days(db, batch.id, price.tier_above if price is not None else None):
                tokens = Tokens(d.input_tokens, d.cached_input_tokens, d.cache_creation_input_tokens, d.output_tokens,
                                d.cache_creation_1h_input_tokens)
                every, upper = split.get(d.day, (Tokens(), Tokens()))
                split[d.day] = (every + tokens, upper + tokens if d.tier == UPPER_TIER else upper)
            entry = _BatchSpend(prov, batch.model, tuple((n, every, upper) for n, (every, upper) in split.items()))
        if batch.ingested_at is not None:
            keep[(batch.id, batch.submission_uid)] = entry
        if provider is not None and prov != provider:
            continue
        for n, tokens, upper_tokens in entry.days:
            if n >= month_n:
                k = (prov, batch.model, n >= today_n)
                every, upper = sums.get(k, (Tokens(), Tokens()))
                sums[k] = (every + tokens, upper + upper_tokens)
    _cache[key] = keep
    today = this_month = Decimal(0)
    for (prov, model, is_today), (tokens, upper) in sums.items():
        price = table.price(prov, model)
        if price is None:
            continue
        cost = price.tiered_batch_cost(tokens, upper)  # each prompt tier at its own prices (Gemini Pro)
        this_month += cost
        if is_today:
            today += cost
    return today, this_month


def _caps(config: Config, provider: str) -> list[tuple[str | None, str, Decimal]]:
    """(provider or None for all, "daily" | "monthly", cap), the narrower caps first."""
    scoped: list[tuple[str | None, BudgetLimits]] = []
    limits = config.budget.providers.get(provider)
    if limits is not None:
        scoped.append((provider, limits))
    scoped.append((None, config.budget.total))
    caps: list[tuple[str | None, str, Decimal]] = []
    for scope, lim in scoped:
        if lim.daily_usd is not None:
            caps.append((scope, "daily", lim.daily_usd))
        if lim.monthly_usd is not None:
            caps.append((scope, "monthly", lim.monthly_usd))
    return caps


def _label(scope: str | None, period: str, cap: Decimal) -> str:
    return f"{scope} {period} cap {fmt_usd(cap)}" if scope else f"{period} cap {fmt_usd(cap)} (all providers)"


def budget_hold_reason(
    db: Connection, config: Config, provider: str, adding_usd: Decimal | None, now: float
) -> str | None:
    """Why a batch of `adding_usd` (batch price) for `provider` must wait, or None to go ahead.

    With a cap in force, a batch whose cost is unknown (model without a price) is held:
    it could break the cap unseen. Spending exactly up to a cap is allowed.
    """
    caps = _caps(config, provider)
    if not caps:
        return None
    if adding_usd is None:
        return (
            f"budget: {_label(*caps[0])} is set but this batch's model has no known price; "
            f'add it under [prices.{provider}."<model>"] in the config'
        )
    table = price_table(config)
    cache: dict[str | None, tuple[Decimal, Decimal, Decimal]] = {}
    for scope, period, cap in caps:
        if scope not in cache:
            today, month = spent(db, table, now, scope)
            flying, _ = sum_known(estimate_work(db, table, provider=scope, queued=False))
            cache[scope] = (today, month, flying)
        today, month, flying = cache[scope]
        used = today if period == "daily" else month
        if used + flying + adding_usd > cap:
            return (
                f"budget: {_label(scope, period, cap)} would be exceeded "
                f"(spent {fmt_usd(used)} + in flight {fmt_usd(flying)} + this batch {fmt_usd(adding_usd)})"
            )
    return None
