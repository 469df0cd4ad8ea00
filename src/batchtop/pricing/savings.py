"""The `savings` object of `--once --json` (and the console's savings panel).

Computed from `usage_rollup` only, so it costs the same with a million stored results
as with ten. Savings are net of resubmissions: a failed attempt that used tokens was
paid for at batch price and saved nothing, and the warning says when failures eat
the discount.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from batchtop.pricing.inflight import in_flight_estimate
from batchtop.pricing.money import fmt_usd, ratio, usd
from batchtop.pricing.table import ModelPrice, PriceTable, Tokens, price_table
from batchtop.pricing.usage import ModelUsage, read_usage

if TYPE_CHECKING:
    from collections.abc import Iterable

    from batchtop.config import Config
    from batchtop.store.db import Connection
    from batchtop.store.realtime import LaneUsage

__all__ = [
    "LaneSpend", "ModelSavings", "RealtimeLane", "Savings", "SavingsTotal", "break_even_first_pass_rate",
    "in_flight_estimate", "model_savings", "savings", "savings_summary",
]


@dataclass(frozen=True)
class RealtimeLane:
    """`by_model[].realtime_lane`: calls sent by the synchronous lanes and what they spent
    (None when the model's price is unknown)."""

    requests: int
    spent_usd: float | None


@dataclass(frozen=True)
class ModelSavings:
    """One `savings.by_model` entry of cli.md: money in US dollars (float, rounded as
    `money.usd` rounds), None when the model has no known price."""

    provider: str
    model: str
    family: str | None
    requests_succeeded: int
    attempts: int
    input_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    cache_creation_1h_input_tokens: int
    output_tokens: int
    batch_cost_usd: float | None
    realtime_cost_usd: float | None
    resubmission_cost_usd: float | None
    saved_usd: float | None
    saved_pct: float | None
    first_pass_success_rate: float | None
    break_even_first_pass_rate: float | None
    price_known: bool
    warning: str | None
    realtime_lane: RealtimeLane = field(default_factory=lambda: RealtimeLane(0, 0.0))
    """What the synchronous lanes (real time, flex) sent and spent, each call at its own price."""

    def to_json(self) -> dict[str, Any]:
        """The entry as cli.md spells it: the fields, in their order."""
        return asdict(self)


@dataclass(frozen=True)
class SavingsTotal:
    """`savings.total`: sums over the priced models (money None when none is priced)."""

    batch_cost_usd: float | None
    realtime_cost_usd: float | None
    saved_usd: float | None
    saved_pct: float | None
    resubmission_cost_usd: float | None
    realtime_lane_spent_usd: float | None
    """What the synchronous lanes spent; `saved_usd` is net of it."""
    requests_succeeded: int
    first_pass_success_rate: float | None
    complete: bool
    """False when some model has no known price (it is left out of the money)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Savings:
    by_model: tuple[ModelSavings, ...]
    total: SavingsTotal
    prices_as_of: str | None = None
    """The price table's date; None only in the document of a data dir without a store."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"by_model": [m.to_json() for m in self.by_model], "total": self.total.to_json()}
        if self.prices_as_of is not None:
            doc["prices_as_of"] = self.prices_as_of
        return doc


NO_SAVINGS = Savings((), SavingsTotal(0.0, 0.0, 0.0, None, 0.0, 0.0, 0, None, True))
"""The savings of a data dir without a store."""


def break_even_first_pass_rate(discount: Decimal, failed_cost_ratio: Decimal) -> Decimal:
    """The first-pass success rate below which resubmissions cost more than the discount saves.

    If each request succeeds with probability p and failures are retried until they
    succeed, a success costs (1-d) x c x (1 + r(1-p)/p) in batch against c in real time,
    where r = mean cost of a failed attempt / mean cost of a successful one. Equal
    when p = r(1-d) / (d + r(1-d)): 50% for d = 0.5 and failures as costly as successes.
    """
    paid = failed_cost_ratio * (1 - discount)
    if paid + discount == 0:
        return Decimal(0)
    return paid / (discount + paid)


def _failed_cost_ratio(usage: ModelUsage, price: ModelPrice | None) -> Decimal:
    """Mean cost of a failed attempt over that of a successful one (tokens when unpriced).

    With no failures or no successes yet there is nothing to compare: assume the worst,
    that a failure costs as much as a success.
    """
    if not usage.failed or not usage.succeeded:
        return Decimal(1)
    if price is not None:
        ok = price.tiered_list_cost(usage.ok_tokens, usage.upper_ok_tokens)
        failed = price.tiered_list_cost(usage.failed_tokens, usage.upper_failed_tokens)
    else:
        ok, failed = Decimal(usage.ok_tokens.total), Decimal(usage.failed_tokens.total)
    if ok == 0:
        return Decimal(1)
    return (failed / usage.failed) / (ok / usage.succeeded)


def _warning(
    usage: ModelUsage, price: ModelPrice | None, discount: Decimal, batch: Decimal | None, realtime: Decimal | None
) -> tuple[str | None, Decimal | None]:
    """(break-even warning or None, the break-even first-pass rate)."""
    threshold = break_even_first_pass_rate(discount, _failed_cost_ratio(usage, price))
    if batch is not None and realtime is not None and (batch > 0 or usage.succeeded) and realtime - batch <= 0:
        resub = price.tiered_batch_cost(usage.failed_tokens, usage.upper_failed_tokens) if price is not None else Decimal(0)
        gross = realtime - (batch - resub)
        return (
            f"no net saving: failed attempts cost {fmt_usd(resub)} at batch price, "
            f"at least the {fmt_usd(gross)} the batch discount saved",
            threshold,
        )
    if usage.first_attempts and usage.first_succeeded < threshold * usage.first_attempts:
        rate = Decimal(usage.first_succeeded) / usage.first_attempts
        return (
            f"first-pass success {rate:.0%} is below the break-even {threshold:.0%}: "
            "resubmitting failures costs more than the batch discount saves",
            threshold,
        )
    return None, threshold


def _model_row(
    usage: ModelUsage, price: ModelPrice | None, default_discount: Decimal, lane: LaneSpend | None = None
) -> tuple[ModelSavings, dict[str, Decimal] | None]:
    """One `by_model` entry, and its exact money (None when the price is unknown).
    `lane`: what the synchronous lanes did for this model: their successes count in
    the real-time equivalent, their spend is taken off the saving."""
    tokens = usage.tokens
    money: dict[str, Decimal] | None = None
    batch = realtime = resub = None
    lane_spent: Decimal | None = Decimal(0)
    if lane is not None:
        lane_spent = lane.spent
    if price is not None:
        # each prompt tier at its own prices (Gemini Pro): the rollups keep the upper one apart;
        # the synchronous lanes' successes count in the real-time equivalent
        batch = price.tiered_batch_cost(tokens, usage.upper_tokens)
        realtime = price.tiered_list_cost(
            usage.ok_tokens + (lane.ok_tokens if lane is not None else Tokens()), usage.upper_ok_tokens
        )
        resub = price.tiered_batch_cost(usage.failed_tokens, usage.upper_failed_tokens)
        money = {"batch": batch, "realtime": realtime, "resub": resub, "lane": lane_spent or Decimal(0)}
    discount = price.batch_discount if price is not None else default_discount
    warning, threshold = _warning(usage, price, discount, batch, realtime) if usage.attempts or lane is None else (None, None)
    saved = (
        realtime - batch - (lane_spent or Decimal(0))
        if realtime is not None and batch is not None and lane_spent is not None else None
    )
    row = ModelSavings(
        provider=usage.provider,
        model=usage.model,
        family=price.family if price is not None else None,
        requests_succeeded=usage.succeeded + (lane.succeeded if lane is not None else 0),
        attempts=usage.attempts,
        input_tokens=tokens.input,
        cached_input_tokens=tokens.cached_input,
        cache_creation_input_tokens=tokens.cache_write,
        cache_creation_1h_input_tokens=tokens.cache_write_1h,
        output_tokens=tokens.output,
        batch_cost_usd=usd(batch),
        realtime_cost_usd=usd(realtime),
        resubmission_cost_usd=usd(resub),
        saved_usd=usd(saved),
        saved_pct=ratio(saved, realtime, 100) if saved is not None and realtime is not None else None,
        first_pass_success_rate=ratio(usage.first_succeeded, usage.first_attempts),
        break_even_first_pass_rate=ratio(threshold, 1) if threshold is not None else None,
        price_known=price is not None,
        warning=warning,
        realtime_lane=RealtimeLane(
            requests=lane.calls if lane is not None else 0,
            spent_usd=usd(lane_spent) if price is not None else None,
        ),
    )
    return row, money


@dataclass
class LaneSpend:
    """One model's synchronous-lane calls, summed over its lanes (`realtime_rollup`)."""

    calls: int = 0
    succeeded: int = 0
    ok_tokens: Tokens = field(default_factory=Tokens)
    spent: Decimal | None = Decimal(0)
    by_lane: dict[str, int] = field(default_factory=dict)


def lane_spend(
    db: Connection, period: tuple[float | None, float | None] | None = None
) -> dict[tuple[str, str], LaneSpend]:
    """(provider, model) -> what the synchronous lanes did for it (`period`: only the
    calls that ended within it)."""
    from batchtop.store.realtime import lane_usage, lane_usage_between

    return _fold_lanes(lane_usage(db) if period is None else lane_usage_between(db, *period))


def lane_spend_by_day(
    db: Connection, period: tuple[float | None, float | None]
) -> dict[int, dict[tuple[str, str], LaneSpend]]:
    """`lane_spend` of each UTC day (days since the epoch) by the calls' own end time."""
    from batchtop.store.realtime import lane_usage_by_day

    days: dict[int, list[LaneUsage]] = {}
    for day, u in lane_usage_by_day(db, *period):
        days.setdefault(day, []).append(u)
    return {day: _fold_lanes(usages) for day, usages in days.items()}


def _fold_lanes(usages: Iterable[LaneUsage]) -> dict[tuple[str, str], LaneSpend]:
    out: dict[tuple[str, str], LaneSpend] = {}
    for u in usages:
        spend = out.setdefault((u.provider, u.model), LaneSpend())
        spend.calls += u.calls
        spend.succeeded += u.succeeded
        spend.ok_tokens += Tokens(*u.ok_tokens)
        spend.by_lane[u.lane] = spend.by_lane.get(u.lane, 0) + u.succeeded
        spend.spent = None if spend.spent is None or u.spent_usd is None else spend.spent + Decimal(str(u.spent_usd))
    return out


def savings(db: Connection, config: Config) -> dict[str, Any]:
    """`{"by_model": [...], "total": {...}}` as in cli.md, plus `prices_as_of`."""
    return savings_summary(db, config).to_json()


def savings_summary(db: Connection, config: Config) -> Savings:
    """Every model's savings and their total, as the status document holds them.

    Totals sum the priced models only; `complete` is false when some model has no
    price (and the money totals are null when none has one but there is usage).
    """
    table = price_table(config)
    rows: list[ModelSavings] = []
    batch = realtime = resub = lane_total = Decimal(0)
    complete = True
    priced = 0
    first_attempts = first_succeeded = succeeded = 0
    lanes = lane_spend(db)
    usages = {(u.provider, u.model): u for u in read_usage(db)}
    for key in lanes:  # a model served only real time has no batch usage
        usages.setdefault(key, ModelUsage(*key))
    for usage in (usages[k] for k in sorted(usages)):
        price = table.price(usage.provider, usage.model)
        provider_table = table.providers.get(usage.provider)
        default_discount = provider_table.batch_discount if provider_table is not None else Decimal("0.5")
        lane = lanes.get((usage.provider, usage.model))
        row, money = _model_row(usage, price, default_discount, lane)
        rows.append(row)
        first_attempts += usage.first_attempts
        first_succeeded += usage.first_succeeded
        succeeded += row.requests_succeeded
        if money is None:
            complete = False
            continue
        priced += 1
        batch += money["batch"]
        realtime += money["realtime"]
        resub += money["resub"]
        lane_total += money["lane"]
    known = complete or priced > 0
    saved = realtime - batch - lane_total
    total = SavingsTotal(
        batch_cost_usd=usd(batch) if known else None,
        realtime_cost_usd=usd(realtime) if known else None,
        saved_usd=usd(saved) if known else None,
        saved_pct=ratio(saved, realtime, 100) if known else None,
        resubmission_cost_usd=usd(resub) if known else None,
        realtime_lane_spent_usd=usd(lane_total) if known else None,
        requests_succeeded=succeeded,
        first_pass_success_rate=ratio(first_succeeded, first_attempts),
        complete=complete,
    )
    return Savings(tuple(rows), total, table.as_of)


def model_savings(
    usage: ModelUsage, table: PriceTable, lane: LaneSpend | None = None
) -> tuple[dict[str, Any], dict[str, Decimal] | None]:
    """One model's `by_model` entry and its exact money ("batch", "realtime", "resub"; None
    when the price is unknown), exactly as `savings` computes them, for views that fold
    usage of their own: the period report sums `usage_daily` / `usage_hourly` over its days."""
    price = table.price(usage.provider, usage.model)
    provider_table = table.providers.get(usage.provider)
    default_discount = provider_table.batch_discount if provider_table is not None else Decimal("0.5")
    row, money = _model_row(usage, price, default_discount, lane)
    return row.to_json(), money
