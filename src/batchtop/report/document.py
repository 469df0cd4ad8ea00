"""The report document: batch cost against the real-time equivalent over a period,
per model and per UTC day, with projections, first-pass break-even and what-if routing.

Money is placed in a period and on a day by the end of the batch that spent it, read
from `usage_daily` / `usage_hourly` (the engine keeps them at ingest, beside `usage_rollup`), and priced
by `pricing.savings.model_savings`: the very function `--once` prices its rows with,
so over all of history the two agree to the micro-dollar. A model without a known
price keeps its usage and has null money, never $0; totals then say `complete: false`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from batchtop.pricing.money import ratio, usd
from batchtop.pricing.savings import LaneSpend, lane_spend, lane_spend_by_day, model_savings
from batchtop.pricing.table import PriceTable, Tokens, price_table
from batchtop.pricing.usage import ModelUsage
from batchtop.store import report_queries
from batchtop.store.db import Connection
from batchtop.store.report_queries import DayUsage, EndedBatches
from batchtop.timefmt import iso, parse_duration, parse_time

if TYPE_CHECKING:
    from batchtop.config import Config

HOUR = 3600
DAY = 86400
MONTH_DAYS = 30
YEAR_MONTHS = 12

Key = tuple[str, str]  # (provider, model)


@dataclass(frozen=True)
class Period:
    """[since, until) in Unix seconds, either end open (None); whole hours, as the
    rollup keeps them."""

    since: float | None = None
    until: float | None = None

    @classmethod
    def rounded(cls, since: float | None, until: float | None) -> Period:
        """Widened to whole hours, so nothing asked for is left out (`since` down, `until` up)."""
        return cls(
            None if since is None else math.floor(since / HOUR) * HOUR,
            None if until is None else math.ceil(until / HOUR) * HOUR,
        )

    @property
    def hours(self) -> tuple[int | None, int | None]:
        return (
            None if self.since is None else int(self.since // HOUR),
            None if self.until is None else int(self.until // HOUR),
        )


def parse_since(text: str, now: float) -> float:
    """`--since`: an ISO 8601 time, or a duration back from now ("7d", "24h")."""
    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        return now - parse_duration(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time (2026-11-01T00:00:00Z) nor a duration (7d, 24h)") from None


def day_text(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


# -- folding rollup rows into usage ------------------------------------------------------


def _add(usage: ModelUsage, row: DayUsage) -> None:
    """One rollup row into a model's usage, split the ways `model_savings` reads it."""
    tokens = Tokens(*row.tokens)  # PERIOD_ROLLUP_TOKENS is in Tokens field order
    usage.add(row.first_attempt, row.succeeded, row.tier, row.attempts, tokens)


def _merge(into: ModelUsage, usage: ModelUsage) -> None:
    into.attempts += usage.attempts
    into.succeeded += usage.succeeded
    into.first_attempts += usage.first_attempts
    into.first_succeeded += usage.first_succeeded
    into.ok_tokens += usage.ok_tokens
    into.failed_tokens += usage.failed_tokens
    into.upper_ok_tokens += usage.upper_ok_tokens
    into.upper_failed_tokens += usage.upper_failed_tokens


def _fold(rows: Iterable[DayUsage]) -> tuple[dict[Key, ModelUsage], dict[int, dict[Key, ModelUsage]]]:
    """(usage per model over the period, usage per day per model): rows into days, then
    days into the period (a year of rows is folded once, not twice)."""
    days: dict[int, dict[Key, ModelUsage]] = {}
    for row in rows:
        key = (row.provider, row.model)
        _add(days.setdefault(row.day, {}).setdefault(key, ModelUsage(*key)), row)
    whole: dict[Key, ModelUsage] = {}
    for models in days.values():
        for key, usage in models.items():
            _merge(whole.setdefault(key, ModelUsage(*key)), usage)
    return whole, days


# -- the document ---------------------------------------------------------------------------


@dataclass
class _Sum:
    """Money of the priced models, and whether every model was priced."""

    batch: Decimal = Decimal(0)
    realtime: Decimal = Decimal(0)
    resub: Decimal = Decimal(0)
    lane: Decimal = Decimal(0)
    """What the synchronous lanes spent (issue 15); the saving is net of it."""
    priced: int = 0
    unpriced: int = 0

    def add(self, money: dict[str, Decimal] | None) -> None:
        if money is None:
            self.unpriced += 1
            return
        self.priced += 1
        self.batch += money["batch"]
        self.realtime += money["realtime"]
        self.resub += money["resub"]
        self.lane += money.get("lane", Decimal(0))

    @property
    def known(self) -> bool:
        """Totals are numbers unless there is usage and none of it could be priced."""
        return self.priced > 0 or self.unpriced == 0

    @property
    def complete(self) -> bool:
        return self.unpriced == 0

    @property
    def saved(self) -> Decimal:
        return self.realtime - self.batch - self.lane

    def money(self, value: Decimal) -> float | None:
        return usd(value) if self.known else None


def _avg_duration(batches: Sequence[EndedBatches]) -> float | None:
    timed = sum(b.timed for b in batches)
    return round(sum(b.duration_s for b in batches) / timed, 3) if timed else None


def _by_model(
    usage: dict[Key, ModelUsage], batches: dict[Key, EndedBatches], table: PriceTable,
    lanes: dict[Key, LaneSpend] | None = None,
) -> tuple[list[dict[str, Any]], dict[Key, dict[str, Decimal] | None], _Sum]:
    rows: list[dict[str, Any]] = []
    moneys: dict[Key, dict[str, Decimal] | None] = {}
    total = _Sum()
    lanes = lanes or {}
    for key in sorted(set(usage) | set(batches) | set(lanes)):
        row, money = model_savings(usage.get(key) or ModelUsage(*key), table, lanes.get(key))
        ended = batches.get(key)
        threshold, rate = row["break_even_first_pass_rate"], row["first_pass_success_rate"]
        row["batches"] = ended.batches if ended is not None else 0
        row["avg_batch_duration_s"] = _avg_duration([ended]) if ended is not None else None
        row["below_break_even"] = rate is not None and threshold is not None and rate < threshold
        rows.append(row)
        moneys[key] = money
        total.add(money)
    return rows, moneys, total


def _by_day(
    days: dict[int, dict[Key, ModelUsage]], table: PriceTable, lane_days: dict[int, dict[Key, LaneSpend]]
) -> list[dict[str, Any]]:
    """One entry per UTC day from the first to the last with usage (days between with
    none are zeros, so a chart of them keeps its time axis). A day's real-time lane
    calls (by their own end time) count as in the totals: their successes in the
    real-time equivalent, their spend taken off the saving."""
    known = set(days) | set(lane_days)
    if not known:
        return []
    out = []
    for day in range(min(known), max(known) + 1):
        models = days.get(day, {})
        lanes = lane_days.get(day, {})
        s = _Sum()
        for key in sorted(set(models) | set(lanes)):
            usage = models.get(key) or ModelUsage(*key)
            s.add(model_savings(usage, table, lanes.get(key))[1])
        out.append({
            "day": day_text(day),
            "requests_succeeded": sum(u.succeeded for u in models.values()) + sum(x.succeeded for x in lanes.values()),
            "batch_cost_usd": s.money(s.batch),
            "realtime_cost_usd": s.money(s.realtime),
            "saved_usd": s.money(s.saved),
            "complete": s.complete,
        })
    return out


def _basis_days(batches: Sequence[EndedBatches], days: Iterable[int]) -> int:
    """UTC calendar days from the first to the last ended batch, inclusive, at least 1."""
    if batches:
        first = int(min(b.first_ended_at for b in batches) // DAY)
        last = int(max(b.last_ended_at for b in batches) // DAY)
        return last - first + 1
    known = list(days)
    return max(known) - min(known) + 1 if known else 1


def _projection(total: _Sum, basis: int) -> dict[str, Any]:
    monthly_batch = total.batch / basis * MONTH_DAYS
    monthly_saved = total.saved / basis * MONTH_DAYS
    return {
        "basis_days": basis,
        "monthly_batch_cost_usd": total.money(monthly_batch),
        "monthly_saved_usd": total.money(monthly_saved),
        "annual_batch_cost_usd": total.money(monthly_batch * YEAR_MONTHS),
        "annual_saved_usd": total.money(monthly_saved * YEAR_MONTHS),
        "complete": total.complete,
    }


def _what_if(
    targets: Sequence[str],
    usage: dict[Key, ModelUsage],
    moneys: dict[Key, dict[str, Decimal] | None],
    table: PriceTable,
    notes: list[str],
) -> list[dict[str, Any]]:
    """Each model's own usage (every attempt's tokens, as its batch cost counts them)
    priced in batch on each target model of the same provider."""
    out: list[dict[str, Any]] = []
    for target in targets:
        providers = {p for p in table.providers if table.price(p, target) is not None}
        if not providers:
            notes.append(f"what-if {target}: no known price at any provider (add it under [prices]); its figures are unknown")
            providers = {p for p, _ in usage}
        for key in sorted(usage):
            provider, model = key
            if provider not in providers or model == target:
                continue
            money = moneys.get(key)
            to_price = table.price(provider, target)
            tokens = usage[key].tokens
            to_batch = to_price.batch_cost(tokens) if to_price is not None else None
            batch = money["batch"] if money is not None else None
            realtime = money["realtime"] if money is not None else None
            extra = batch - to_batch if batch is not None and to_batch is not None else None
            vs_realtime = realtime - to_batch if realtime is not None and to_batch is not None else None
            out.append({
                "provider": provider,
                "model": model,
                "to_model": target,
                "batch_cost_usd": usd(batch),
                "to_batch_cost_usd": usd(to_batch),
                "extra_saved_usd": usd(extra),
                "extra_saved_pct": ratio(extra, batch, 100) if extra is not None and batch else None,
                "realtime_cost_usd": usd(realtime),
                "saved_pct_vs_realtime": (
                    ratio(vs_realtime, realtime, 100) if vs_realtime is not None and realtime else None
                ),
                "price_known": extra is not None,
            })
    return out


def build(
    db: Connection | None,
    config: Config,
    period: Period = Period(),
    what_if: Sequence[str] | None = None,
    *,
    now: float,
) -> dict[str, Any]:
    """The report document (shared/cli.md "Report"), plus keys the views use.

    `db` None (no database yet) is an empty report. `what_if` None takes the config's
    `[routing] candidates`.
    """
    table = price_table(config)
    since_hour, until_hour = period.hours
    rows = report_queries.usage_by_day(db, since_hour, until_hour) if db is not None else []
    ended = report_queries.ended_batches(db, period.since, period.until) if db is not None else []
    usage, days = _fold(rows)
    batches = {(b.provider, b.model): b for b in ended}
    lanes = lane_spend(db, (period.since, period.until)) if db is not None else {}  # issue 15: by each call's end
    by_model, moneys, total = _by_model(usage, batches, table, lanes)
    first_attempts = sum(u.first_attempts for u in usage.values())
    first_succeeded = sum(u.first_succeeded for u in usage.values())
    notes: list[str] = []
    targets = list(dict.fromkeys(what_if if what_if is not None else config.routing.candidates))
    return {
        "generated_at": iso(now),
        "period": {"since": iso(period.since), "until": iso(period.until)},
        "prices_as_of": table.as_of,
        "totals": {
            "batches": sum(b.batches for b in ended),
            "requests_succeeded": sum(u.succeeded for u in usage.values()) + sum(x.succeeded for x in lanes.values()),
            "attempts": sum(u.attempts for u in usage.values()),
            "batch_cost_usd": total.money(total.batch),
            "realtime_cost_usd": total.money(total.realtime),
            "realtime_lane_spent_usd": total.money(total.lane),
            "saved_usd": total.money(total.saved),
            "saved_pct": ratio(total.saved, total.realtime, 100) if total.known else None,
            "resubmission_cost_usd": total.money(total.resub),
            "first_pass_success_rate": ratio(first_succeeded, first_attempts),
            "avg_batch_duration_s": _avg_duration(ended),
            "complete": total.complete,
        },
        "by_model": by_model,
        "by_day": _by_day(days, table, lane_spend_by_day(db, (period.since, period.until)) if db is not None else {}),
        "projection": _projection(total, _basis_days(ended, days)),
        "what_if": _what_if(targets, usage, moneys, table, notes),
        "notes": notes,
    }
